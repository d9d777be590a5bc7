"""`./run.sh all --quick`: from competition files to a valid submission and a report, and resumable."""
import re
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from competition import budget, folds, paths, run_all, train_folds
from tests.conftest import kaggle_zip, synthetic_rows


def test_quick_pipeline_end_to_end_then_rerun_redoes_nothing(tmp_path, capsys):
    source = kaggle_zip(tmp_path / "c.zip", *synthetic_rows(n_train=280), with_private_labels=False)
    args = ["--quick", "--from", str(source), "--models", "baseline_cnn,bn_cnn", "--nproc", "2", "--epochs", "3",
            "--refit-seeds", "0,1"]  # and a refit-only seed 1 of each, in the budget's one call
    assert run_all.main(args) == 0
    submission = (paths.submissions_dir() / "submission.csv").read_text().splitlines()
    assert len(submission) == 1 + 28 and all(0 <= int(v) <= 6 for v in submission[1:])
    board = pd.read_csv(paths.submissions_dir() / "leaderboard.csv", keep_default_na=False)
    assert board.loc[0, "models"] == "baseline_cnn[refit x2 0.667]+bn_cnn[refit x2 0.667]"
    assert len(board) == 1 and (paths.reports_dir() / "quick" / "report.md").exists() and board.loc[0, "private"] == "n/a"
    done = {(m, f): (paths.fold_dir(m, f) / "done.json").stat().st_mtime_ns  # --quick: fold 0 and a refit, one
            for m in ("baseline_cnn", "bn_cnn") for f in (0, None)}  # member each, and a refit-only seed 1
    done |= {(m, None): (paths.fold_dir(m, None) / "done.json").stat().st_mtime_ns
             for m in ("baseline_cnn.s1", "bn_cnn.s1")}
    assert not paths.fold_dir("bn_cnn", 1).exists() and not paths.fold_dir("bn_cnn.s1", 0).exists()
    assert "+ 2 refits (share ⅔" in (paths.reports_dir() / "quick" / "report.md").read_text()
    capsys.readouterr()

    assert run_all.main(args) == 0
    assert "up to date" in capsys.readouterr().out
    assert done == {(m, f): (paths.fold_dir(m, f) / "done.json").stat().st_mtime_ns for m, f in done}
    assert len(pd.read_csv(paths.submissions_dir() / "leaderboard.csv")) == 2


def test_seeds_refits_and_a_student_in_one_run(tmp_path, capsys):
    source = kaggle_zip(tmp_path / "c.zip", *synthetic_rows(n_train=210), with_private_labels=False)
    assert run_all.main(["--from", str(source), "--models", "baseline_cnn", "--k", "3", "--epochs", "2",
                         "--nproc", "1", "--seeds", "0,1", "--refit", "--distill", "baseline_cnn"]) == 0
    for member in ("baseline_cnn", "baseline_cnn.s1"):
        assert all((paths.fold_dir(member, f) / "done.json").exists() for f in (0, 1, 2, None))
    assert (paths.fold_dir("baseline_cnn.student", None) / "done.json").exists()
    assert not paths.fold_dir("baseline_cnn.student", 0).exists()  # one student, on every row
    board = pd.read_csv(paths.submissions_dir() / "leaderboard.csv", keep_default_na=False)
    assert list(board["models"]) == ["baseline_cnn[refit 0.5]+baseline_cnn.s1[refit 0.5]", "baseline_cnn.student"]
    assert board.loc[1, "oof"] == "n/a" and board.loc[0, "oof"] != "n/a"
    latest = (paths.submissions_dir() / "submission.csv").read_text()
    assert latest == (paths.submissions_dir() / board.loc[0, "file"]).read_text()  # still the ensemble's
    out = capsys.readouterr().out
    assert re.search(r"baseline_cnn\.student +0\+refit +[12] .* n/a", out) and "total wall time" in out
    student = (paths.fold_dir("baseline_cnn.student", None) / "done.json").stat().st_mtime_ns
    assert run_all.main(["--models", "baseline_cnn", "--k", "3", "--epochs", "2", "--nproc", "1", "--seeds", "0,1",
                         "--refit", "--distill", "baseline_cnn"]) == 0  # the teacher is written again: the same
    assert (paths.fold_dir("baseline_cnn.student", None) / "done.json").stat().st_mtime_ns == student


def test_refit_seeds_need_a_seed_0_member_and_imply_a_refit(capsys):
    assert run_all.main(["--seeds", "1", "--refit-seeds", "2", "--from", "none.zip"]) == 2
    assert "add 0 to --seeds" in capsys.readouterr().err
    assert run_all.refit_seeds_of(SimpleNamespace(quick=True, refit_seeds=None), [0]) == ()  # quick: its own refit
    assert run_all.refit_seeds_of(SimpleNamespace(quick=True, refit_seeds="0,1"), [0]) == (1,)
    assert run_all.refit_seeds_of(SimpleNamespace(quick=False, refit_seeds="0,1,2,1"), [0, 1]) == (2,)


def test_the_gpu_default_adds_the_48_px_resnet_and_air_fer_l_and_quick_trains_air_fer():
    assert run_all.architectures(None, "cpu") == ["baseline_cnn", "bn_cnn", "resnet_cbam"]
    assert sorted(run_all.architectures(None, "cuda")) == ["air_fer_l", "baseline_cnn", "bn_cnn", "resnet_cbam",
                                                           "resnet_cbam48"]
    assert run_all.architectures(None, "cpu", quick=True) == ["air_fer"]
    assert run_all.architectures("bn_cnn, vgg_fer", "cuda") == ["bn_cnn", "vgg_fer"]


def test_the_data_and_folds_stages_are_function_calls_and_a_bad_source_is_one_error_line(tmp_path, capsys):
    """run_all's data and folds stages call download.run and folds.run (the commands' own work, typed), once
    each, and skip them when their files exist; a bad --from is the download command's error, exit 2."""
    source = kaggle_zip(tmp_path / "c.zip", *synthetic_rows(n_train=140), with_private_labels=False)
    run_all.get_data(source)
    run_all.make_folds(3)
    assert folds.fold_count() == 3 and paths.cache_path().exists()
    capsys.readouterr()
    run_all.get_data(None)
    run_all.make_folds(4)  # present: kept, not split again
    assert "present" in capsys.readouterr().out and folds.fold_count() == 3
    assert run_all.main(["--quick", "--from", str(tmp_path / "none.zip")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "none.zip" in err[0]


def test_quick_trains_the_cheaper_sibling_where_the_budget_gives_too_few_epochs(tmp_path, monkeypatch, capsys):
    """air_fer's facts name air_fer_s as its cheaper sibling: where the budget's probe plans air_fer fewer than
    QUICK_MIN_EPOCHS epochs (faked here: a slow machine), --quick trains air_fer_s instead, and a rerun resumes it
    without probing again."""
    probed = []

    def slow_machine(name, recipe, minutes, folds, refits, *rest):
        probed.append((name, folds, refits))
        return (1 if name == "air_fer" else 9), budget.Speed(10.0, 20.0)
    monkeypatch.setattr(budget, "planned_epochs", slow_machine)
    source = kaggle_zip(tmp_path / "c.zip", *synthetic_rows(n_train=210), with_private_labels=False)
    args = ["--quick", "--from", str(source), "--epochs", "2", "--k", "3"]
    assert run_all.main(args) == 0
    assert probed == [("air_fer", 1, 1)]  # fold 0 and its refit
    assert "fewer than 2, so the cheaper air_fer_s" in capsys.readouterr().out  # --epochs 2 caps what it asks
    assert (paths.fold_dir("air_fer_s", None) / "done.json").exists() and not paths.fold_dir("air_fer", 0).exists()
    board = pd.read_csv(paths.submissions_dir() / "leaderboard.csv", keep_default_na=False)
    assert board.loc[0, "models"] == "air_fer_s[refit 0.5]"
    assert run_all.main(args) == 0 and probed == [("air_fer", 1, 1)]  # its folds are started: no probe


@pytest.mark.parametrize("planned, overrides, expected", [(4, (), "air_fer"), (3, (), "air_fer_s"),
                                                          (2, (("epochs", 2),), "air_fer")])
def test_affordable_asks_min_epochs_or_the_recipes_cap(monkeypatch, planned, overrides, expected):
    """air_fer while the budget gives it 4 epochs (or all its --epochs cap), else air_fer_s; a model with no
    cheaper sibling is kept without a probe."""
    monkeypatch.setattr(budget, "planned_epochs", lambda *args: (planned, budget.Speed(1.0, 1.0)))
    monkeypatch.setattr(train_folds, "load_dataset", lambda: SimpleNamespace(train_labels=np.zeros(10, int)))
    monkeypatch.setattr(train_folds, "load_folds", lambda n: np.zeros(n, int))
    monkeypatch.setattr(train_folds.Resident, "place", lambda *args: None)
    monkeypatch.setattr(train_folds.artifacts, "fold_count", lambda: 5)  # no work folder: nothing started
    settings = train_folds.Settings(recipe="quick", overrides=overrides, device="cpu", budget=30.0)
    assert train_folds.affordable("air_fer", settings, 1, 1, 4) == expected
    monkeypatch.setattr(train_folds, "load_dataset", lambda: pytest.fail("probed a model with no cheaper sibling"))
    assert train_folds.affordable("bn_cnn", settings, 1, 1, 4) == "bn_cnn"
