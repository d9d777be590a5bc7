"""Get the competition data: from Kaggle through its official client, or from files you already have.

    python -m competition.download                  # kaggle competitions download -> data/raw/, then parse
    python -m competition.download --from PATH      # import a zip, fer2013.tar.gz, a csv or a folder

Either way the data ends up parsed and validated in data/fer2013.npz (see competition.data); a second
run on the same input does nothing.
"""
import argparse
import sys
from pathlib import Path

from competition import SLUG, paths
from competition.data import prepare
from competition.errors import run_command
from competition.kaggle_cli import download_competition


def run(source: Path | None = None, force: bool = False) -> None:
    """Import `source` (a zip, tar.gz, csv or folder), or else the competition zip in data/raw/ (downloaded when
    absent, or again with `force`), into data/fer2013.npz: the command's work, and run_all's data stage."""
    if source is None:
        zip_path = paths.raw_dir() / f"{SLUG}.zip"
        source = zip_path if zip_path.exists() and not force else download_competition(paths.raw_dir())
        print(f"competition files: {source}")
    prepare(source, force=force)


def _main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--from", dest="source", type=Path,
                        help="import this zip / tar.gz / csv / folder instead of downloading")
    parser.add_argument("--force", action="store_true", help="download and parse again even if up to date")
    args = parser.parse_args(argv)
    run(args.source, args.force)
    return 0


def main(argv=None) -> int:
    return run_command(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
