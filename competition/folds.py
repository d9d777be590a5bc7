"""Stratified K folds of the Training rows, with byte-identical images kept in one fold.

    python -m competition.folds --k 5 --seed 42        # writes folds/folds.csv (row,label,group,fold)

    fold_of_row = load_folds(n_train_rows)              # checked: folds 0..k-1, each present, one per row
    k = fold_count()                                    # the same file's k (= fold_of_row.max() + 1)

FER2013 holds 1,516 groups of byte-identical images. Split at random, a copy of a validation image would
sit in the training part and inflate fold-validation accuracy, the one score we choose models by; so
folds come from scikit-learn's StratifiedGroupKFold with the duplicate group as the group. Test rows are
never in a fold. The same data, k and seed always give the same file.
"""
import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold

from competition import paths
from competition.atomic import atomic_write_text
from competition.data import DataError, duplicate_groups, load_dataset
from competition.errors import SettingsError, quote, run_command

AGAIN = "Run `./run.sh folds` again."
SPLIT_SEED = 42  # the splitter's default shuffling seed (run_all's split too)


def make_folds(labels: np.ndarray, groups: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Fold index (0..k-1) for each row: stratified by label, duplicates grouped."""
    if k < 2:
        raise SettingsError(f"--k must be at least 2, got {k}. Use --k 5, the default.")
    fold = np.full(len(labels), -1, dtype=np.int64)
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    try:
        for i, (_, val) in enumerate(splitter.split(np.zeros(len(labels)), labels, groups)):
            fold[val] = i
    except ValueError as err:  # sklearn: more folds than groups
        raise SettingsError(f"--k {k}: cannot split {len(labels)} Training rows into {k} folds ({err}). "
                            f"Choose a smaller --k.") from err
    return fold


def _bad(path: Path, i: int, what: str) -> DataError:
    return DataError(f"{path}: line {i + 2} (data row {i + 1}): {what}. {AGAIN}")


def read_folds(path: Path | None = None) -> np.ndarray:
    """Fold per row of folds.csv, checked: columns row and fold, rows 0..n-1 in order, folds integers 0..k-1
    with every fold present. After this check, k = max + 1."""
    path = Path(path or paths.folds_csv())
    if not path.exists():
        raise DataError(f"{path}: no folds file. Run `./run.sh folds` (python -m competition.folds) first.")
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: not a readable folds file ({quote(str(err))}). {AGAIN}") from err
    missing = [c for c in ("row", "fold") if c not in table.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing}; found {quote(list(table.columns))}. {AGAIN}")
    if len(table) == 0:
        raise DataError(f"{path}: no rows below the header. {AGAIN}")
    rows, folds = table["row"].str.strip(), table["fold"].str.strip()
    wrong_row = np.flatnonzero(rows.to_numpy() != np.arange(len(table)).astype(str))
    if wrong_row.size:
        i = int(wrong_row[0])
        raise _bad(path, i, f"row {quote(rows.iloc[i])}, expected {i} (rows 0..{len(table) - 1} in order)")
    not_integer = np.flatnonzero(~folds.str.fullmatch(r"-?\d+").to_numpy(dtype=bool))
    if not_integer.size:
        i = int(not_integer[0])
        raise _bad(path, i, f"fold {quote(folds.iloc[i])} is not an integer")
    fold = folds.astype(np.int64).to_numpy()
    negative = np.flatnonzero(fold < 0)
    if negative.size:
        i = int(negative[0])
        raise _bad(path, i, f"fold {fold[i]} is below 0; folds are 0..k-1")
    empty = np.flatnonzero(np.bincount(fold) == 0)
    if empty.size:  # a fold past a gap: the first row whose fold is above the first empty one
        i = int(np.flatnonzero(fold > empty[0])[0])
        raise _bad(path, i, f"fold {fold[i]}, but fold {int(empty[0])} has no rows; folds must be 0..k-1 with "
                            f"each present")
    return fold


def load_folds(n_rows: int, path: Path | None = None) -> np.ndarray:
    """Fold per Training row (read_folds' checks), checked against the dataset it is used with.
    k is fold_count(), or equally this array's max + 1."""
    path = Path(path or paths.folds_csv())
    fold = read_folds(path)
    if len(fold) != n_rows:
        raise DataError(f"{path}: made for {len(fold)} Training rows, the dataset has {n_rows}. {AGAIN}")
    return fold


def fold_count(path: Path | None = None) -> int:
    """k, the number of folds in folds.csv, after read_folds' checks (so every fold 0..k-1 has rows)."""
    return int(read_folds(path).max()) + 1


def run(k: int = 5, seed: int = SPLIT_SEED) -> None:
    """Split the prepared dataset's Training rows into k folds (duplicates grouped) and write folds/folds.csv:
    the command's work, and run_all's folds stage."""
    data = load_dataset()
    groups = duplicate_groups(data.train_images)
    fold = make_folds(data.train_labels, groups, k, seed)
    table = pd.DataFrame({"row": np.arange(len(fold)), "label": data.train_labels, "group": groups, "fold": fold})
    atomic_write_text(paths.folds_csv(), table.to_csv(index=False))
    counts = pd.crosstab(table["fold"], table["label"])
    print(f"wrote {paths.folds_csv()}: {k} folds of {len(fold)} Training rows (seed {seed}), "
          f"{int((np.bincount(groups) > 1).sum())} duplicate groups kept whole")
    print(counts.to_string())


def _main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--k", type=int, default=5, help="number of folds")
    parser.add_argument("--seed", type=int, default=SPLIT_SEED, help="shuffling seed of the splitter")
    args = parser.parse_args(argv)
    run(args.k, args.seed)
    return 0


def main(argv=None) -> int:
    return run_command(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
