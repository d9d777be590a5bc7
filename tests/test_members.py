"""More members for the ensemble: seeds, refits on every Training row, and a distilled student."""
import json

import numpy as np
import pytest

from competition import artifacts, blending, ensemble, folds, paths, train_folds
from competition.artifacts import FoldFiles
from competition.errors import SettingsError
from tests.fake_runs import FAST, make_dataset, make_folds, make_refit_run, make_run


@pytest.fixture
def prepared(tmp_path):
    fd = make_dataset(tmp_path, n_train=150)
    folds.main(["--k", "3"])
    return fd


def train(*args):
    assert train_folds.main(["--model", "baseline_cnn", "--epochs", "3", *FAST, *args]) == 0


def test_a_refit_trains_every_row_and_stops_at_the_median_best_epoch_of_its_folds(prepared):
    train("--folds", "all,refit")
    refit = FoldFiles("baseline_cnn", None)
    best = [artifacts.read_done(FoldFiles("baseline_cnn", f)).best_epoch for f in range(3)]
    done, config = artifacts.read_done(refit), json.loads((refit / "config.json").read_text())
    assert done.refit and done.epochs_run == done.best_epoch == int(np.ceil(np.median(best)))
    assert config["refit"] == {"epochs": done.epochs_run, "folds_of": "baseline_cnn", "best_epochs": best}
    assert not (refit / "oof.npz").exists() and "val_acc" not in json.loads((refit / "done.json").read_text())
    rows = len(prepared.test_labels)
    assert artifacts.refit_test_logits("baseline_cnn", rows).shape == (rows, 7)
    assert len(open(refit / "log.csv").read().splitlines()) == done.epochs_run + 1
    assert artifacts.available_members() == ["baseline_cnn"]  # a refit is not a member of its own


def test_a_refit_needs_its_folds_finished_and_their_recipe(prepared, capsys):
    assert train_folds.main(["--model", "baseline_cnn", "--folds", "refit", *FAST]) == 2
    assert "all 3 folds finished" in capsys.readouterr().err
    train("--folds", "all")
    assert train_folds.main(["--model", "baseline_cnn", "--folds", "refit", "--epochs", "3", *FAST,
                             "--set", "lr=0.01"]) == 2
    assert "(lr differ)" in capsys.readouterr().err  # the folds' recipe, or none
    assert not FoldFiles("baseline_cnn", None).is_done()


@pytest.mark.parametrize("member, name", [
    (artifacts.Member("bn_cnn"), "bn_cnn"), (artifacts.Member("bn_cnn", 1), "bn_cnn.s1"),
    (artifacts.Member("bn_cnn", 0, artifacts.STUDENT), "bn_cnn.student"),
    (artifacts.Member("bn_cnn", 2, "mixup"), "bn_cnn.mixup.s2")])
def test_a_member_is_its_folder_name_and_back(member, name):
    assert member.name == name and artifacts.Member.parse(name) == member
    base = artifacts.Member("bn_cnn", 0, member.tag) if member.seed else None
    assert artifacts.Member.parse(name).seed_base == base


def test_the_old_seed_flag_still_sets_the_seeds_with_a_note(capsys):
    assert train_folds.parse_args(["--model", "bn_cnn", "--seed", "0,1"]).seeds == "0,1"
    assert "--seed is now --seeds" in capsys.readouterr().err
    assert train_folds.parse_args(["--model", "bn_cnn"]).seeds == "0"


def test_the_old_models_flag_still_names_the_members_with_a_note(capsys):
    assert ensemble.main(["--models", "bn_cnn"]) == 2  # parsed as --members; then no dataset in this work folder
    err = capsys.readouterr().err
    assert "--models is now --members" in err and "error:" in err


def test_each_seed_is_a_member_of_its_own(prepared):
    train("--folds", "0", "--seeds", "0,1")
    zero, one = (np.load(FoldFiles(m, 0) / "test.npz")["logits"] for m in ("baseline_cnn", "baseline_cnn.s1"))
    assert not np.allclose(zero, one)  # other initial weights, shuffles and augmentations
    assert json.loads((FoldFiles("baseline_cnn.s1", 0) / "config.json").read_text())["seed"] == 1
    assert artifacts.arch_of("baseline_cnn.s1") == "baseline_cnn"


def test_a_refit_takes_its_stated_share_of_the_members_test_logits(tmp_path):
    make_run(tmp_path, {"bn_cnn": 0.7})
    folds_only = artifacts.load_member("bn_cnn")
    refit = np.random.default_rng(0).normal(size=folds_only.test_logits.shape).astype(np.float32)
    files = FoldFiles("bn_cnn", None)
    files.dir.mkdir(parents=True)
    np.savez(files / "test.npz", logits=refit, logits_plain=refit)
    none_yet = artifacts.refit_logits("bn_cnn", len(refit))  # no done.json: no refit yet
    assert none_yet == [] and blending.with_refit(folds_only, none_yet).refit_share == 0
    (files / "done.json").write_text(json.dumps({"refit": True}))
    (files / "config.json").write_text(json.dumps(artifacts.current_provenance()))
    mixed = blending.with_refit(folds_only, artifacts.refit_logits("bn_cnn", len(refit)), 0.25)
    assert np.allclose(mixed.test_logits, 0.75 * folds_only.test_logits + 0.25 * refit)
    assert np.array_equal(mixed.oof_logits, folds_only.oof_logits)  # OOF, and so the weight, stay the folds'
    assert blending.with_refit(folds_only, [refit], 0).test_logits is folds_only.test_logits
    ruled = blending.with_refit(folds_only, [refit])  # the rule: the folds' mean and the refit, one model each
    assert ruled.refit_share == 0.5 and np.allclose(ruled.test_logits, (folds_only.test_logits + refit) / 2)
    other = refit[::-1].copy()  # a second refit (a refit-only seed): the folds' mean, and each refit, a third
    thirds = blending.with_refit(folds_only, [refit, other])
    assert np.allclose(thirds.test_logits, (folds_only.test_logits + refit + other) / 3)
    with pytest.raises(SettingsError, match="refit share"):
        blending.with_refit(folds_only, [refit], 1.5)


def test_a_refit_only_seed_is_trained_after_the_seed_0_folds_and_joins_that_members_refit(prepared, capsys):
    train("--folds", "all,refit")
    train("--seeds", "1", "--folds", "refit")  # no folds of its own: it follows baseline_cnn's
    config = json.loads((FoldFiles("baseline_cnn.s1", None) / "config.json").read_text())
    assert config["refit"]["folds_of"] == "baseline_cnn" and config["seed"] == 1
    assert artifacts.available_members() == ["baseline_cnn"]  # not a member of its own
    assert artifacts.refits_of("baseline_cnn") == ["baseline_cnn", "baseline_cnn.s1"]
    rows = len(prepared.test_labels)
    own, seed1 = (artifacts.read_npz(FoldFiles(m, None) / "test.npz")["logits"] for m in ("baseline_cnn",
                                                                                       "baseline_cnn.s1"))
    assert not np.allclose(own, seed1) and np.allclose(artifacts.refit_test_logits("baseline_cnn", rows),
                                                       (own + seed1) / 2)
    capsys.readouterr()
    assert ensemble.main(["--members", "baseline_cnn"]) == 0
    assert "baseline_cnn, baseline_cnn.s1: their mean" in capsys.readouterr().out
    board = (paths.submissions_dir() / "leaderboard.csv").read_text()
    assert "baseline_cnn[refit x2 0.667]" in board  # the folds' mean and each refit: a third each


def test_only_seeds_without_folds_are_refit_only_seeds(tmp_path):
    fd, fold_of_row = make_run(tmp_path, {"bn_cnn": 0.7, "bn_cnn.s2": 0.6})
    for member, seed in (("bn_cnn", 0), ("bn_cnn.s1", 1), ("bn_cnn.s2", 2), ("baseline_cnn.s3", 3),
                         ("bn_cnn.student.s4", 4)):
        make_refit_run(fd, member, member.split(".")[0], seed=seed)
    assert artifacts.refits_of("bn_cnn") == ["bn_cnn", "bn_cnn.s1"]  # s2 has folds: a member with its own refit
    assert artifacts.refits_of("bn_cnn.s2") == ["bn_cnn.s2"] and artifacts.refits_of("bn_cnn.s1") == ["bn_cnn.s1"]
    assert artifacts.refits_of("bn_cnn.student") == ["bn_cnn.student.s4"]  # a tag's seeds stay that tag's
    assert sorted(artifacts.available_members()) == ["bn_cnn", "bn_cnn.s2"]


def test_teacher_targets_mix_the_ensembles_oof_probabilities_with_the_labels(tmp_path):
    make_folds(make_dataset(tmp_path))  # a teacher records the data and folds it was made from
    probs = np.full((4, 7), 1 / 7, np.float32)
    path = tmp_path / "teacher.npz"
    artifacts.save_teacher(path, np.array([0, 2, 5, 9]), probs, ["a", "b"])
    teacher = artifacts.load_teacher(path, 0.5)
    targets = teacher.targets(np.array([5, 0]), np.array([3, 1]))
    assert np.allclose(targets.sum(1), 1) and np.allclose(targets[0, 3], 0.5 + 0.5 / 7)
    assert (targets.argmax(1) == [3, 1]).all()  # at weight 0.5 the label always stays the argmax
    with pytest.raises(SettingsError, match="no teacher prediction for 1 of the 2"):
        teacher.targets(np.array([5, 6]), np.array([0, 0]))
    with pytest.raises(SettingsError, match="teacher-weight"):
        artifacts.load_teacher(path, 0)


def test_a_student_learns_from_the_ensembles_teacher_file_and_is_submitted_alone(prepared):
    train("--folds", "all")
    assert ensemble.main(["--models", "baseline_cnn"]) == 0
    teacher_path = paths.submissions_dir() / "teacher.npz"
    z = np.load(teacher_path)
    assert np.array_equal(z["rows"], np.arange(150)) and np.allclose(z["probs"].sum(1), 1, atol=1e-4)
    train("--folds", "refit", "--teacher", str(teacher_path))
    student = FoldFiles("baseline_cnn.student", None)
    config = json.loads((student / "config.json").read_text())
    assert config["teacher"]["weight"] == 0.5 and config["refit"]["folds_of"] == "baseline_cnn"
    assert artifacts.is_student("baseline_cnn.student")
    assert ensemble.main(["--models", "baseline_cnn.student"]) == 0
    row = open(paths.submissions_dir() / "leaderboard.csv").read().splitlines()[-1]
    assert ",baseline_cnn.student,n/a,refit,n/a," in row  # no OOF: a refit-only student has none
    assert ensemble.main(["--models", "baseline_cnn,baseline_cnn.student"]) == 2  # never weighted beside others
    assert train_folds.main(["--model", "baseline_cnn", "--folds", "0", "--teacher", str(teacher_path),
                             *FAST, "--set", "mixup=0.2"]) == 2  # soft targets with mixup: refused
