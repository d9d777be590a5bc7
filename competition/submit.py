"""Send a submission file to Kaggle, after checking it against the dataset.

    python -m competition.submit -m "bn_cnn+resnet_cbam, 5 folds"              # submissions/submission.csv
    python -m competition.submit submissions/20260101T120000Z_bn_cnn.csv -m "bn_cnn alone"

The file is validated first (one label 0..6 per test.csv row, the row count taken from data/fer2013.npz),
so a bad file never reaches Kaggle. Then competition.kaggle_cli.submit runs the real kaggle CLI; its
errors (no credentials, rules not accepted, a competition that no longer accepts submissions, ...) come
back as one clear message on stderr and exit code 2.
"""
import argparse
import sys
from pathlib import Path

from competition import artifacts
from competition.data import DataError, load_dataset
from competition.errors import run_command
from competition.kaggle_cli import submit
from competition.submission import validate_submission


def _main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("file", nargs="?", type=Path, help="the submission (default: submissions/submission.csv)")
    parser.add_argument("-m", "--message", required=True, help="the submission's description on Kaggle")
    args = parser.parse_args(argv)
    file = args.file or artifacts.latest_submission()
    try:
        n_rows = len(load_dataset().test_labels)
    except DataError as err:
        raise DataError(f"cannot check the submission's row count: {err}") from err
    validate_submission(file, n_rows)
    print(f"{file}: valid, {n_rows} rows; submitting")
    print(submit(file, args.message))
    return 0


def main(argv=None) -> int:
    return run_command(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
