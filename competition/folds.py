"""Stratified K folds of the Training rows, with byte-identical images kept in one fold.

    python -m competition.folds --k 5 --seed 42        # writes folds/folds.csv (row,label,group,fold)

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


def make_folds(labels: np.ndarray, groups: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Fold index (0..k-1) for each row: stratified by label, duplicates grouped."""
    if k < 2:
        raise ValueError(f"--k must be at least 2, got {k}")
    fold = np.full(len(labels), -1, dtype=np.int64)
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    for i, (_, val) in enumerate(splitter.split(np.zeros(len(labels)), labels, groups)):
        fold[val] = i
    return fold


def load_folds(n_rows: int, path: Path | None = None) -> np.ndarray:
    """Fold per Training row, checked against the dataset it is used with."""
    path = Path(path or paths.folds_csv())
    if not path.exists():
        raise DataError(f"{path}: no folds file. Run `./run.sh folds` (python -m competition.folds) first.")
    table = pd.read_csv(path)
    if list(table["row"]) != list(range(n_rows)):
        raise DataError(f"{path}: made for {len(table)} Training rows, the dataset has {n_rows}. "
                        f"Run `./run.sh folds` again.")
    return table["fold"].to_numpy()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--k", type=int, default=5, help="number of folds")
    parser.add_argument("--seed", type=int, default=42, help="shuffling seed of the splitter")
    args = parser.parse_args(argv)
    try:
        data = load_dataset()
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    groups = duplicate_groups(data.train_images)
    fold = make_folds(data.train_labels, groups, args.k, args.seed)
    table = pd.DataFrame({"row": np.arange(len(fold)), "label": data.train_labels, "group": groups, "fold": fold})
    atomic_write_text(paths.folds_csv(), table.to_csv(index=False))
    counts = pd.crosstab(table["fold"], table["label"])
    print(f"wrote {paths.folds_csv()}: {args.k} folds of {len(fold)} Training rows (seed {args.seed}), "
          f"{int((np.bincount(groups) > 1).sum())} duplicate groups kept whole")
    print(counts.to_string())
    return 0


if __name__ == "__main__":
    sys.exit(main())
