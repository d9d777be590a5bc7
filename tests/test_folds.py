"""Folds: stratified by label, duplicates never split across folds, the same input gives the same file."""
import numpy as np
import pandas as pd
import pytest

from competition import data, folds, paths, report
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


def write_folds(rows: list[str], header="row,label,group,fold"):
    paths.folds_csv().parent.mkdir(parents=True, exist_ok=True)
    paths.folds_csv().write_text("\n".join([header, *rows]) + "\n")
    return paths.folds_csv()


GOOD_FOLDS = [f"{i},{i % 7},{i},{i % 5}" for i in range(10)]  # k = 5, two rows per fold
BAD_FOLDS = {
    # name: (rows of folds.csv or (header, rows), what the message must say)
    "fold 7 with k=5": (GOOD_FOLDS[:6] + ["6,6,6,7"] + GOOD_FOLDS[7:],
                        "line 8 (data row 7): fold 7, but fold 5 has no rows"),
    "a row missing": (GOOD_FOLDS[:2] + GOOD_FOLDS[3:], "line 4 (data row 3): row '3', expected 2"),
    "a gap": ([f"{i},0,{i},{i % 2 * 2}" for i in range(6)], "line 3 (data row 2): fold 2, but fold 1 has no rows"),
    "fold -1": (GOOD_FOLDS[:3] + ["3,3,3,-1"] + GOOD_FOLDS[4:], "line 5 (data row 4): fold -1 is below 0"),
    "NaN fold": (GOOD_FOLDS[:2] + ["2,2,2,"] + GOOD_FOLDS[3:], "line 4 (data row 3): fold '' is not an integer"),
    "nan text": (GOOD_FOLDS[:2] + ["2,2,2,nan"] + GOOD_FOLDS[3:], "line 4 (data row 3): fold 'nan' is not an integer"),
    "fractional fold": (GOOD_FOLDS[:5] + ["5,5,5,1.5"] + GOOD_FOLDS[6:], "line 7 (data row 6): fold '1.5' is not"),
    "missing fold column": (("row,label,group", [r.rsplit(",", 1)[0] for r in GOOD_FOLDS]),
                            "missing column(s) ['fold']"),
    "missing row column": (("label,group,fold", [r.split(",", 1)[1] for r in GOOD_FOLDS]),
                           "missing column(s) ['row']"),
    "header only": ([], "no rows below the header"),
}


@pytest.mark.parametrize("case", BAD_FOLDS)
def test_load_folds_refuses_bad_values_naming_the_file_and_row(case):
    rows, expected = BAD_FOLDS[case]
    path = write_folds(*reversed(rows)) if isinstance(rows, tuple) else write_folds(rows)
    for call in (lambda: folds.load_folds(10), folds.fold_count):
        with pytest.raises(data.DataError) as caught:
            call()
        message = str(caught.value)
        assert message.startswith(f"{path}: ") and expected in message, message
        assert message.endswith("Run `./run.sh folds` again.")


def test_fold_count_is_k_of_a_checked_file():
    write_folds(GOOD_FOLDS)
    assert list(folds.load_folds(10)) == [i % 5 for i in range(10)]
    assert folds.fold_count() == 5


def test_a_command_names_a_bad_folds_file_in_one_line(tmp_path, capsys):
    data.prepare(kaggle_zip(tmp_path / "c.zip", *synthetic_rows()))
    write_folds([f"{i},0,{i},{7 if i == 3 else i % 3}" for i in range(70)])
    assert report.main(["--out", str(tmp_path / "rep")]) == 2
    err = capsys.readouterr().err
    assert err == (f"error: {paths.folds_csv()}: line 5 (data row 4): fold 7, but fold 3 has no rows; folds must be "
                   f"0..k-1 with each present. Run `./run.sh folds` again.\n")
