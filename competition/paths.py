"""Where the harness reads and writes: one place, so tests can point everything at a temp folder.

All outputs live under the work folder, the repository root unless `FER_WORKDIR` is set:
  data/raw/            the competition files as downloaded or imported
  data/fer2013.npz     the parsed, validated dataset cache (see competition.data)
  folds/folds.csv      training row -> fold
  folds/<member>/fold<k>/ checkpoints, logs and logits of one fold (see competition.artifacts)
  folds/<member>/refit/   the same member trained on every Training row (no OOF)
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


def fold_dir(member: str, fold: int | None) -> Path:
    """fold None: the member's refit on every Training row."""
    return folds_dir() / member / ("refit" if fold is None else f"fold{fold}")


def submissions_dir() -> Path:
    return workdir() / "submissions"


def reports_dir() -> Path:
    return workdir() / "reports"
