"""Folds: stratified by label, duplicates never split across folds, the same input gives the same file."""
import numpy as np
import pandas as pd
import pytest

from competition import data, folds, paths
from tests.conftest import kaggle_zip, synthetic_rows


def make_labels_and_groups(n=700, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.choice(7, size=n, p=[.14, .02, .14, .25, .17, .11, .17])
    groups = np.arange(n)
    groups[1:60:2] = groups[0:60:2]  # 30 duplicate pairs
    return labels, groups


def test_folds_are_stratified_and_cover_every_row():
    labels, groups = make_labels_and_groups()
    fold = folds.make_folds(labels, groups, k=5, seed=42)
    assert set(fold) == {0, 1, 2, 3, 4}
    share = pd.crosstab(fold, labels, normalize="index").to_numpy()
    overall = np.bincount(labels) / len(labels)
    assert np.abs(share - overall).max() < 0.03


def test_duplicates_stay_in_one_fold():
    labels, groups = make_labels_and_groups()
    fold = folds.make_folds(labels, groups, k=5, seed=42)
    for g in np.unique(groups):
        assert len(set(fold[groups == g])) == 1


def test_same_seed_same_folds_other_seed_other_folds():
    labels, groups = make_labels_and_groups()
    a, b = folds.make_folds(labels, groups, 5, 42), folds.make_folds(labels, groups, 5, 42)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, folds.make_folds(labels, groups, 5, 7))


def test_cli_writes_folds_csv_for_training_rows_only(tmp_path):
    labels, usage, images = synthetic_rows(n_train=140)
    images[3] = images[10]  # byte-identical pair in Training
    data.prepare(kaggle_zip(tmp_path / "c.zip", labels, usage, images))
    assert folds.main(["--k", "5", "--seed", "1"]) == 0
    first = paths.folds_csv().read_bytes()
    table = pd.read_csv(paths.folds_csv())
    assert len(table) == 140 and list(table.columns) == ["row", "label", "group", "fold"]
    assert table.loc[3, "fold"] == table.loc[10, "fold"]
    assert folds.main(["--k", "5", "--seed", "1"]) == 0
    assert paths.folds_csv().read_bytes() == first
    assert np.array_equal(folds.load_folds(140), table["fold"].to_numpy())


def test_load_folds_refuses_a_file_made_for_other_data(tmp_path):
    data.prepare(kaggle_zip(tmp_path / "c.zip", *synthetic_rows()))
    folds.main([])
    with pytest.raises(data.DataError, match="Run `./run.sh folds` again"):
        folds.load_folds(71)
    paths.folds_csv().unlink()
    with pytest.raises(data.DataError, match="no folds file"):
        folds.load_folds(70)
