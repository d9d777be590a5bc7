"""Where the harness reads and writes: one place, so tests can point everything at a temp folder.

All outputs live under the work folder, the repository root unless `FER_WORKDIR` is set:
  data/raw/            the competition files as downloaded or imported
  data/fer2013.npz     the parsed, validated dataset cache (see competition.data)
  folds/folds.csv      training row -> fold
  folds/<model>/fold<k>/  checkpoints, logs and logits of one fold (see competition.train_folds)
  submissions/         submission CSVs and leaderboard.csv
  reports/             generated reports
"""
import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def workdir() -> Path:
    return Path(os.environ.get("FER_WORKDIR", REPO))


def raw_dir() -> Path:
    return workdir() / "data" / "raw"


def cache_path() -> Path:
    return workdir() / "data" / "fer2013.npz"


def folds_dir() -> Path:
    return workdir() / "folds"


def folds_csv() -> Path:
    return folds_dir() / "folds.csv"


def fold_dir(model: str, fold: int) -> Path:
    return folds_dir() / model / f"fold{fold}"


def submissions_dir() -> Path:
    return workdir() / "submissions"


def reports_dir() -> Path:
    return workdir() / "reports"
