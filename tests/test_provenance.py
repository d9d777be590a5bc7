"""Nothing stale gets in: a fold, refit or teacher made from other data or another split is refused by every
reader (ensemble, report, refit, student), --allow-missing or not (issue #20)."""
import numpy as np
import pytest

from competition import artifacts, data, ensemble, folds, paths, report, train_folds
from competition.errors import SettingsError
from tests.conftest import kaggle_zip, synthetic_rows
from tests.fake_runs import make_folds, make_refit_run, make_run, make_teacher
from tests.test_train_folds import FAST


def reimport_with_changed_labels(tmp_path, fold_of_row, n_train, away_from=0, n_changed=3):
    """Import the data again from a copy in which `n_changed` Training labels differ, all in rows that fold
    `away_from` trained on (rows of the other folds): its own held-out rows and their labels stay the same."""
    labels, usage, images = synthetic_rows(n_train, 28, 28)
    rows = np.flatnonzero(fold_of_row != away_from)[:n_changed]
    labels[rows] = (labels[rows] + 1) % 7
    return data.prepare(kaggle_zip(tmp_path / "changed.zip", labels, usage, images))


def test_a_fold_trained_before_the_data_changed_gets_into_no_submission_and_no_report(tmp_path, capsys):
    """The issue's probe: train fold 0, re-import with 3 Training labels changed in folds 1-2."""
    data.prepare(kaggle_zip(tmp_path / "c.zip", *synthetic_rows(150, 28, 28)))
    folds.main(["--k", "3"])
    fold_of_row = folds.load_folds(150)
    assert train_folds.main(["--model", "baseline_cnn", "--folds", "0", "--epochs", "1", *FAST]) == 0
    reimport_with_changed_labels(tmp_path, fold_of_row, 150)
    capsys.readouterr()
    assert train_folds.main(["--model", "baseline_cnn", "--folds", "0", "--epochs", "1", *FAST]) == 2
    assert "the dataset differ" in capsys.readouterr().err  # #11: resuming it is refused
    assert ensemble.main(["--models", "baseline_cnn", "--allow-missing"]) == 2
    err = capsys.readouterr().err
    assert "baseline_cnn fold 0" in err and "the dataset" in err and "train it again" in err
    assert not paths.submissions_dir().exists()  # no submission, no leaderboard row, no teacher
    assert report.main(["--models", "baseline_cnn", "--allow-missing"]) == 2
    assert "baseline_cnn fold 0" in capsys.readouterr().err
    assert not (paths.reports_dir() / "latest").exists()


@pytest.mark.parametrize("change", ["data", "folds"])
def test_every_reader_of_fold_files_refuses_a_stale_one(tmp_path, change):
    fd, fold_of_row = make_run(tmp_path, {"bn_cnn": 0.7})
    make_refit_run(fd, "bn_cnn", "bn_cnn")
    assert artifacts.load_member("bn_cnn").folds == [0, 1, 2]  # current: read
    if change == "data":
        reimport_with_changed_labels(tmp_path, fold_of_row, 140)
        what = "the dataset"
    else:
        make_folds(fd, k=3)  # the same split written again...
        paths.folds_csv().write_text(paths.folds_csv().read_text().replace("\n", "\r\n"))  # ...other bytes
        what = "folds/folds.csv"
    readers = {"ensemble and report": lambda: artifacts.load_member("bn_cnn", allow_missing=True),
               "refit (its epochs)": lambda: artifacts.refit_epochs("bn_cnn", 3),
               "a refit's test logits": lambda: artifacts.refit_test_logits("bn_cnn", len(fd.test_labels))}
    for reader in readers.values():
        with pytest.raises(SettingsError, match=f"bn_cnn (fold|refit).*{what}.*differ"):
            reader()


def test_a_fold_without_recorded_provenance_is_refused(tmp_path):
    make_run(tmp_path, {"bn_cnn": 0.7})
    config = paths.fold_dir("bn_cnn", 1) / "config.json"
    config.write_text('{"model": "bn_cnn", "fold": 1}')  # a fold from before provenance was recorded
    with pytest.raises(SettingsError, match=r"bn_cnn fold 1 .*the dataset \(not recorded\)"):
        artifacts.load_member("bn_cnn")


# ---------------------------------------------------------------- teachers

def test_a_teacher_records_its_provenance_and_members(tmp_path):
    fd, _ = make_run(tmp_path, {"bn_cnn": 0.7, "baseline_cnn": 0.5})
    assert ensemble.main(["--models", "bn_cnn,baseline_cnn"]) == 0
    z = np.load(paths.submissions_dir() / artifacts.TEACHER)
    now = artifacts.current_provenance()
    assert {key: z[key].item() for key in now} == now
    assert list(z["members"]) == ["bn_cnn", "baseline_cnn"]


@pytest.mark.parametrize("change", ["data", "folds", "old teacher"])
def test_a_teacher_from_other_data_or_folds_is_refused(tmp_path, change, capsys):
    fd, fold_of_row = make_run(tmp_path, {"bn_cnn": 0.7})
    make_teacher(fd, ["bn_cnn"])
    path = paths.submissions_dir() / artifacts.TEACHER
    assert artifacts.load_teacher(path, 0.5).rows.size == 140  # current: accepted
    if change == "data":
        reimport_with_changed_labels(tmp_path, fold_of_row, 140)
    elif change == "folds":
        make_folds(fd, k=2)
    else:  # written before teachers carried provenance
        z = dict(np.load(path))
        np.savez(path, rows=z["rows"], probs=z["probs"], members=z["members"])
    assert train_folds.main(["--model", "baseline_cnn", "--folds", "0", "--teacher", str(path), *FAST]) == 2
    err = capsys.readouterr().err
    assert f"{path}: this teacher was made from other data" in err and "--members bn_cnn" in err
    assert not paths.fold_dir("baseline_cnn.student", 0).exists()
