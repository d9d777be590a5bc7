"""Ensemble on synthetic fold runs (tests/fake_runs.py): averaging, OOF-only weights, missing folds, the CLI.

    .venv/bin/python -m pytest -q tests/test_ensemble.py
"""
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from scipy.special import softmax

from competition import artifacts, blending, data, ensemble, paths
from competition.errors import SettingsError
from competition.submission import validate_submission
from tests.conftest import REPO
from tests.fake_runs import make_dataset, make_fold_run, make_folds, make_run

MODELS = ["baseline_cnn", "bn_cnn"]


def fold_test_logits(model, k=3):
    return [np.load(paths.fold_dir(model, f) / "test.npz")["logits"] for f in range(k)]


def leaderboard():
    return pd.read_csv(paths.submissions_dir() / "leaderboard.csv", dtype=str, keep_default_na=False)


def scramble_test_labels():
    """Rewrite the dataset cache with the test labels permuted (everything else as it was)."""
    fd = data.load_dataset()
    scrambled = np.random.default_rng(1).permutation(fd.test_labels)
    data.save_cache(data.FerData(fd.train_images, fd.train_labels, fd.test_images, scrambled, fd.test_usage,
                                 fd.example_submission), paths.cache_path(), "scrambled")


def test_blend_on_a_tiny_case_matches_numpy():
    a = np.array([[1.0, 2.0, 0.0], [0.0, 0.0, 3.0]])
    b = np.array([[3.0, 0.0, 1.0], [2.0, 1.0, 0.0]])
    w = np.array([0.25, 0.75])
    assert np.allclose(blending.blend([a, b], w, "logits"), [[2.5, 0.5, 0.75], [1.5, 0.75, 0.75]])
    probs = 0.25 * np.exp(a) / np.exp(a).sum(1, keepdims=True) + 0.75 * np.exp(b) / np.exp(b).sum(1, keepdims=True)
    assert np.allclose(blending.blend([a, b], w, "probs"), np.log(probs))


def test_model_logits_are_the_fold_mean_and_oof_is_sorted(tmp_path):
    make_run(tmp_path)
    m = artifacts.load_member("bn_cnn")
    assert m.folds == [0, 1, 2]
    per_fold = fold_test_logits("bn_cnn")
    assert np.allclose(m.test_logits, (per_fold[0] + per_fold[1] + per_fold[2]) / 3)
    assert np.array_equal(m.test_logits_per_fold, np.stack(per_fold))
    assert np.array_equal(m.oof_rows, np.arange(140))  # every Training row exactly once, sorted
    fold1 = np.load(paths.fold_dir("bn_cnn", 1) / "oof.npz")
    assert np.array_equal(m.oof_logits[fold1["rows"]], fold1["logits"])
    assert np.array_equal(m.oof_logits_plain[fold1["rows"]], fold1["logits_plain"])


def test_combine_is_the_weighted_mean_of_model_logits(tmp_path):
    make_run(tmp_path)
    a, b = artifacts.load_member("baseline_cnn"), artifacts.load_member("bn_cnn")
    oof, test = blending.combine([a, b], np.array([0.3, 0.7]), "logits")
    assert np.allclose(test, 0.3 * a.test_logits + 0.7 * b.test_logits, atol=1e-6)  # float32 inputs
    assert np.allclose(oof, 0.3 * a.oof_logits + 0.7 * b.oof_logits, atol=1e-6)
    _, test_probs = blending.combine([a, b], np.array([0.3, 0.7]), "probs")
    mixed = 0.3 * softmax(a.test_logits.astype(float), 1) + 0.7 * softmax(b.test_logits.astype(float), 1)
    assert np.allclose(np.exp(test_probs), mixed, atol=1e-9)


def test_every_fold_contributes(tmp_path):
    make_run(tmp_path)
    before = artifacts.load_member("bn_cnn").test_logits
    for fold in range(3):
        path = paths.fold_dir("bn_cnn", fold) / "test.npz"
        saved = dict(np.load(path))
        changed = saved["logits"].copy()
        changed[5, 2] += 3.0
        np.savez(path, logits=changed, logits_plain=saved["logits_plain"])
        after = artifacts.load_member("bn_cnn").test_logits
        np.savez(path, **saved)
        diff = after - before
        assert diff[5, 2] == pytest.approx(1.0, abs=1e-5)  # 3.0 / 3 folds
        assert np.count_nonzero(np.abs(diff) > 1e-6) == 1


def test_accuracy_ignores_unknown_labels_and_says_none_when_all_unknown():
    logits = np.eye(7)[[0, 1, 2, 3]]
    assert blending.accuracy(logits, np.array([0, 1, 5, -1])) == pytest.approx(2 / 3)
    assert blending.accuracy(logits, np.full(4, -1)) is None


def test_a_missing_fold_is_refused_unless_allowed(tmp_path, capsys):
    make_run(tmp_path)
    (paths.fold_dir("bn_cnn", 1) / "done.json").unlink()
    with pytest.raises(SettingsError, match=r"bn_cnn: fold\(s\) \[1\] of 3 .*--allow-missing"):
        artifacts.load_member("bn_cnn")
    assert ensemble.main([]) == 2
    assert "fold(s) [1] of 3" in capsys.readouterr().err
    assert not (paths.submissions_dir() / "submission.csv").exists()

    m = artifacts.load_member("bn_cnn", allow_missing=True)
    assert m.folds == [0, 2] and sorted(m.done) == [0, 2]
    assert np.array_equal(m.oof_rows, np.flatnonzero(np.arange(140) % 3 != 1))
    assert np.allclose(m.test_logits, np.mean([fold_test_logits("bn_cnn")[f] for f in (0, 2)], axis=0))
    rows, _, _ = blending.common_oof([artifacts.load_member("baseline_cnn"), m])
    assert np.array_equal(rows, m.oof_rows)  # the ensemble's OOF: rows both models predicted

    assert ensemble.main(["--allow-missing", "--weights", "oof"]) == 0
    assert "in: bn_cnn fold2" in capsys.readouterr().out
    for fold in range(3):
        (paths.fold_dir("bn_cnn", fold) / "done.json").unlink(missing_ok=True)
    with pytest.raises(SettingsError, match="no finished fold"):
        artifacts.load_member("bn_cnn", allow_missing=True)


def test_a_model_perfect_on_test_but_bad_on_oof_gets_no_weight(tmp_path):
    fd, fold_of_row = make_run(tmp_path, models={"good": 0.8})
    for fold in range(3):  # random on OOF, an oracle on the test labels
        out = make_fold_run(fd, fold_of_row, "oracle", fold, accuracy=0.0)
        oracle = 10 * np.eye(7, dtype=np.float32)[fd.test_labels]
        np.savez(out / "test.npz", logits=oracle, logits_plain=oracle)
    models = [artifacts.load_member("good"), artifacts.load_member("oracle")]
    assert blending.accuracy(models[1].test_logits, fd.test_labels) == 1.0
    for average in blending.AVERAGES:
        weights = blending.fit_weights(models, average)
        assert weights.sum() == pytest.approx(1.0) and (weights >= 0).all()
        assert weights[1] < 0.05, (average, weights)


def test_weights_do_not_change_when_test_labels_are_scrambled(tmp_path):
    make_run(tmp_path)
    assert ensemble.main(["--weights", "oof"]) == 0
    scramble_test_labels()
    assert ensemble.main(["--weights", "oof"]) == 0
    first, second = leaderboard().to_dict("records")
    assert first["weights"] == second["weights"]
    assert len(set(first["weights"].split())) == 2  # fitted, not the equal default
    assert first["public"] != second["public"]  # the scrambled labels were read, for scoring only


@pytest.mark.parametrize("private_known", [False, True])
def test_cli_writes_a_valid_submission_and_a_leaderboard_row(tmp_path, capsys, private_known):
    fd, _ = make_run(tmp_path, private_known=private_known)
    assert ensemble.main([]) == 0
    out = capsys.readouterr().out
    for model in MODELS:
        assert all(f"in: {model} fold{f}" in out for f in range(3))
    submission = paths.submissions_dir() / "submission.csv"
    validate_submission(submission, len(fd.test_labels))
    (row,) = leaderboard().to_dict("records")
    assert (paths.submissions_dir() / row["file"]).read_bytes() == submission.read_bytes()
    assert row["file"].endswith("_baseline_cnn+bn_cnn.csv") and row["models"] == "baseline_cnn+bn_cnn"
    assert row["weights"] == "0.5000 0.5000" and row["average"] == "logits"
    mean = sum(fold_test_logits(m)[f] for m in MODELS for f in range(3)) / 6
    lines = submission.read_text().splitlines()
    assert lines[0] == "Emotion"  # copied from the download's example_submission.csv
    assert [int(v) for v in lines[1:]] == mean.argmax(1).tolist()
    public = fd.test_usage == "PublicTest"
    assert float(row["public"]) == pytest.approx((mean.argmax(1) == fd.test_labels)[public].mean(), abs=1e-4)
    if private_known:
        assert float(row["private"]) == pytest.approx((mean.argmax(1) == fd.test_labels)[~public].mean(), abs=1e-4)
    else:
        assert row["private"] == "n/a"
        assert "ensemble" in out and "n/a" in out


def test_cli_refuses_logits_made_from_other_data_and_writes_nothing(tmp_path, capsys):
    fd, fold_of_row = make_run(tmp_path)
    for fold in range(3):  # one test row short
        make_fold_run(fd, fold_of_row, "bn_cnn", fold, 0.7, test_labels=fd.test_labels[:-1])
    assert ensemble.main(["--models", "bn_cnn"]) == 2
    assert "55 test rows of logits, the dataset has 56" in capsys.readouterr().err
    assert not paths.submissions_dir().exists()


def test_nan_or_inf_logits_are_refused_naming_the_file(tmp_path, capsys):
    make_run(tmp_path)
    path = paths.fold_dir("bn_cnn", 2) / "test.npz"
    saved = dict(np.load(path))
    saved["logits"][3, 1] = np.nan
    np.savez(path, **saved)
    assert ensemble.main(["--models", "bn_cnn"]) == 2
    assert f"{path}: logits holds NaN or inf" in capsys.readouterr().err
    assert not (paths.submissions_dir() / "submission.csv").exists()


def test_oof_rows_must_be_the_fold_rows_of_the_current_split(tmp_path, capsys):
    fd, fold_of_row = make_run(tmp_path)
    pd.DataFrame({"row": np.arange(140), "label": fd.train_labels, "group": np.arange(140),
                  "fold": (np.arange(140) + 1) % 3}).to_csv(paths.folds_csv(), index=False)  # a new split
    assert ensemble.main(["--models", "bn_cnn"]) == 2
    assert "bn_cnn fold 0" in capsys.readouterr().err  # its recorded folds.csv hash is not the new one's
    config = paths.fold_dir("bn_cnn", 0) / "config.json"  # and were that hash forged, its rows still differ:
    config.write_text(json.dumps({**json.loads(config.read_text()), **artifacts.current_provenance()}))
    assert ensemble.main(["--models", "bn_cnn"]) == 2
    assert "are not fold 0 of the current folds/folds.csv" in capsys.readouterr().err


def test_a_truncated_logits_file_is_named(tmp_path, capsys):
    make_run(tmp_path)
    path = paths.fold_dir("bn_cnn", 1) / "oof.npz"
    path.write_bytes(path.read_bytes()[:200])
    assert ensemble.main(["--models", "bn_cnn"]) == 2
    assert f"{path}: unreadable" in capsys.readouterr().err


def test_a_failed_weight_fit_is_said_not_ignored(tmp_path, capsys, monkeypatch):
    make_run(tmp_path)

    class Failed:
        success, message, x = False, "Iteration limit reached", np.array([0.5, 0.5])
    monkeypatch.setattr(blending, "minimize", lambda *a, **k: Failed())
    assert ensemble.main(["--weights", "oof"]) == 2
    err = capsys.readouterr().err
    assert "Iteration limit reached" in err and "--weights equal" in err


def test_concurrent_ensembles_keep_every_leaderboard_row(tmp_path):
    make_run(tmp_path)
    code = "import sys; from competition import ensemble; sys.exit(ensemble.main(['--models', 'bn_cnn']))"
    procs = [subprocess.Popen([sys.executable, "-c", code], cwd=REPO) for _ in range(4)]
    assert [p.wait(timeout=300) for p in procs] == [0, 0, 0, 0]
    assert len(leaderboard()) == 4


# ---------------------------------------------------------------- the stacked combiner

def expert_run(tmp_path, signal, n_train=700, k=3):
    """A 'good' model (60% everywhere) and an 'expert' whose logits are `signal(labels, rng)`."""
    fd = make_dataset(tmp_path, n_train=n_train)
    fold_of_row = make_folds(fd, k)
    rng = np.random.default_rng(5)
    for fold in range(k):
        make_fold_run(fd, fold_of_row, "good", fold, accuracy=0.6)
        out = make_fold_run(fd, fold_of_row, "expert", fold, accuracy=0.0)
        oof = dict(np.load(out / "oof.npz"))
        oof["logits"] = signal(oof["labels"], rng)
        np.savez(out / "oof.npz", **oof)
        test = signal(fd.test_labels, rng)
        np.savez(out / "test.npz", logits=test, logits_plain=test)
    return fd


def knows_class_3(labels, rng):
    """Right on every Happy (3) row and says 3 nowhere else; noise elsewhere: alone, about 1/7 + 6/7 x 1/7."""
    logits = rng.normal(0, 1, (len(labels), 7)).astype(np.float32)
    logits[:, 3] = np.where(labels == 3, 6.0, -6.0)
    return logits


def permuted(labels, rng):
    """90% right, but about the next class: informative, yet wrong for any average of logits."""
    logits = rng.normal(0, 1, (len(labels), 7)).astype(np.float32)
    hit = rng.random(len(labels)) < 0.9
    logits[hit, (labels[hit] + 1) % 7] += 6.0
    return logits


def test_a_stack_of_a_good_model_and_a_one_class_expert_beats_either_alone(tmp_path):
    expert_run(tmp_path, knows_class_3)
    models = [artifacts.load_member("good"), artifacts.load_member("expert")]
    rows, labels, oof = blending.common_oof(models)
    alone = [blending.accuracy(o, labels) for o in oof]
    stack_oof, stack_test = blending.stack(models)
    assert stack_oof.shape == (len(rows), 7) and stack_test.shape == (len(models[0].test_logits), 7)
    assert np.allclose(np.exp(stack_oof).sum(1), 1) and np.allclose(np.exp(stack_test).sum(1), 1)
    stacked = blending.accuracy(stack_oof, labels)
    assert alone[1] < 0.35 and stacked > max(alone) + 0.03, (alone, stacked)
    assert (stack_oof.argmax(1)[labels == 3] == 3).mean() > 0.95  # it learned to trust the expert on class 3


def test_the_stacks_oof_is_cross_validated_not_fitted_on_its_own_rows(tmp_path):
    fd = make_dataset(tmp_path, n_train=700)
    fold_of_row = make_folds(fd, 3)
    for model in ("noise_a", "noise_b"):
        for fold in range(3):
            make_fold_run(fd, fold_of_row, model, fold, accuracy=0.0)  # logits that say nothing
    models = [artifacts.load_member("noise_a"), artifacts.load_member("noise_b")]
    _, labels, oof = blending.common_oof(models)
    features = np.concatenate(oof, axis=1)
    in_sample = blending.accuracy(blending.stacker().fit(features, labels).predict_log_proba(features), labels)
    honest = blending.accuracy(blending.stack(models)[0], labels)
    assert honest < 0.2 < in_sample, (honest, in_sample)  # chance is 1/7


def test_the_stacker_never_reads_test_labels(tmp_path, monkeypatch):
    make_run(tmp_path)
    made = []
    monkeypatch.setattr(ensemble, "stack", lambda models: made.append(blending.stack(models)) or made[-1])
    assert ensemble.main(["--combiner", "stack"]) == 0
    scramble_test_labels()
    assert ensemble.main(["--combiner", "stack"]) == 0
    (oof1, test1), (oof2, test2) = made
    assert np.array_equal(test1, test2) and np.array_equal(oof1, oof2)
    first, second = leaderboard().to_dict("records")
    assert first["oof"] == second["oof"] and first["public"] != second["public"]  # labels read, for scoring only


def test_cli_stack_writes_its_predictions_and_says_stack(tmp_path, capsys):
    fd, _ = make_run(tmp_path)
    assert ensemble.main(["--combiner", "stack"]) == 0
    assert "stacked: logistic regression" in capsys.readouterr().out
    (row,) = leaderboard().to_dict("records")
    assert list(row) == list(ensemble.LEADERBOARD_COLUMNS)
    assert row["average"] == "stack" and row["weights"] == "n/a"
    stack_oof, stack_test = blending.stack([artifacts.load_member(m) for m in MODELS])
    lines = (paths.submissions_dir() / "submission.csv").read_text().splitlines()
    assert [int(v) for v in lines[1:]] == stack_test.argmax(1).tolist()
    assert float(row["oof"]) == pytest.approx(blending.accuracy(stack_oof, fd.train_labels), abs=1e-4)


def auto_choice(out):
    """(average OOF, stack OOF, chosen) from the line `--combiner auto` prints."""
    line = next(line for line in out.splitlines() if line.startswith("combiner auto:"))
    numbers = [float(v) for v in line.split("average ")[1].split(" -> ")[0].replace(", stack", "").split()]
    return numbers[0], numbers[1], line.rsplit("-> ", 1)[1]


def test_auto_picks_the_stack_when_it_wins_on_oof(tmp_path, capsys):
    expert_run(tmp_path, permuted)
    assert ensemble.main(["--combiner", "auto", "--weights", "oof"]) == 0
    mean_acc, stack_acc, chose = auto_choice(capsys.readouterr().out)
    assert stack_acc > mean_acc + 0.1 and chose == "stack"
    (row,) = leaderboard().to_dict("records")
    assert row["average"] == "stack" and float(row["oof"]) == pytest.approx(stack_acc, abs=1e-4)


def test_auto_picks_the_average_when_it_wins_on_oof(tmp_path, capsys, monkeypatch):
    make_run(tmp_path)
    worse = lambda models: tuple(np.roll(p, 1, axis=1) for p in blending.stack(models))  # noqa: E731
    monkeypatch.setattr(ensemble, "stack", worse)  # a stacker that is wrong almost everywhere
    assert ensemble.main(["--combiner", "auto"]) == 0
    mean_acc, stack_acc, chose = auto_choice(capsys.readouterr().out)
    assert mean_acc > stack_acc and chose == "average"
    (row,) = leaderboard().to_dict("records")
    assert row["average"] == "logits" and row["weights"] == "0.5000 0.5000"
    assert float(row["oof"]) == pytest.approx(mean_acc, abs=1e-4)
