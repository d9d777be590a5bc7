"""Per-fold training: outputs, resume after SIGKILL with identical logits, bad arguments, the fold lock."""
import json
import math
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from competition import artifacts, engine, folds, paths, train_folds
from competition.errors import SettingsError
from competition.recipes import get_recipe, parse_overrides, scaled
from tests.conftest import REPO
from tests.fake_runs import FAST, make_dataset


@pytest.fixture
def prepared(tmp_path):
    fd = make_dataset(tmp_path, n_train=210)
    folds.main(["--k", "3"])
    return fd


def run_cli(*args, env_extra=None, **kw):
    env = os.environ | (env_extra or {})
    return subprocess.run([sys.executable, "-m", "competition.train_folds", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300, **kw)


def test_a_fold_writes_every_output(prepared):
    assert train_folds.main(["--model", "baseline_cnn", "--folds", "1", "--epochs", "2", *FAST]) == 0
    out = paths.fold_dir("baseline_cnn", 1)
    oof, test = np.load(out / "oof.npz"), np.load(out / "test.npz")
    fold_of_row = folds.load_folds(210)
    assert np.array_equal(oof["rows"], np.flatnonzero(fold_of_row == 1))
    assert oof["logits"].shape == oof["logits_plain"].shape == (70, 7)
    assert test["logits"].shape == (len(prepared.test_labels), 7)
    assert not np.allclose(test["logits"], test["logits_plain"])  # the flip view changed something
    done = json.loads((out / "done.json").read_text())
    assert done["val_acc"] == pytest.approx(float((oof["logits"].argmax(1) == oof["labels"]).mean()))
    assert 1 <= done["best_epoch"] <= done["epochs_run"] == 2
    config = json.loads((out / "config.json").read_text())
    assert config["settings"]["batch_size"] == 16 and config["versions"]["torch"] and config["git_commit"]
    assert len((out / "log.csv").read_text().splitlines()) == 3
    finished = (out / "done.json").stat().st_mtime_ns
    assert train_folds.main(["--model", "baseline_cnn", "--folds", "1", "--epochs", "2", *FAST]) == 0
    assert (out / "done.json").stat().st_mtime_ns == finished  # skipped, not retrained


@pytest.mark.parametrize("args, message", [
    (["--model", "vgg99"], "unknown model"),
    (["--model", "bn_cnn", "--folds", "3"], "out of range"),
    (["--model", "bn_cnn", "--set", "learning_rate=1"], "expected key=value"),
])
def test_bad_arguments_get_one_clear_message(prepared, capsys, args, message):
    assert train_folds.main(args) == 2
    assert message in capsys.readouterr().err


def test_missing_data_and_missing_folds(tmp_path, capsys):
    assert train_folds.main(["--model", "bn_cnn"]) == 2
    assert "./run.sh download" in capsys.readouterr().err
    make_dataset(tmp_path)
    assert train_folds.main(["--model", "bn_cnn"]) == 2
    assert "./run.sh folds" in capsys.readouterr().err


def test_sigkill_mid_epoch_then_resume_gives_identical_logits(prepared, workdir):
    args = ["--model", "bn_cnn", "--folds", "0", "--epochs", "3", "--set", "batch_size=8", "--threads", "1",
            "--checkpoint-every", "0"]
    assert run_cli(*args).returncode == 0
    reference = {f: np.load(paths.fold_dir("bn_cnn", 0) / f"{f}.npz")["logits"] for f in ("oof", "test")}
    reference_log = (paths.fold_dir("bn_cnn", 0) / "log.csv").read_text()
    subprocess.run(["rm", "-rf", str(paths.fold_dir("bn_cnn", 0))], check=True)

    proc = subprocess.Popen([sys.executable, "-m", "competition.train_folds", *args], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in proc.stdout:  # wait for epoch 1 to end, then kill about half-way through epoch 2
        if "epoch 1/3" in line:
            seconds = float(re.search(r" ([0-9.]+)s [0-9]+ img/s", line).group(1))
            time.sleep(seconds / 2)
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (paths.fold_dir("bn_cnn", 0) / "done.json").exists()
    resumed = run_cli(*args)
    assert resumed.returncode == 0 and "resuming after epoch" in resumed.stdout
    for f in ("oof", "test"):
        assert np.array_equal(np.load(paths.fold_dir("bn_cnn", 0) / f"{f}.npz")["logits"], reference[f])
    strip = lambda log: [row.rsplit(",", 2)[0] for row in log.splitlines()]  # noqa: E731 (drop timings)
    assert strip((paths.fold_dir("bn_cnn", 0) / "log.csv").read_text()) == strip(reference_log)
    assert not list(paths.fold_dir("bn_cnn", 0).glob(".*.tmp"))


def test_recipes_and_overrides():
    assert get_recipe("study", "bn_cnn").sched == "step" and get_recipe("study", "bn_cnn").patience > 0
    assert get_recipe("study", "resnet_cbam").lr != get_recipe("study", "bn_cnn").lr
    assert get_recipe("strong", "bn_cnn", parse_overrides(["lr=0.01", "flip=false"])).lr == 0.01
    assert get_recipe("strong", "bn_cnn", parse_overrides(["flip=false"])).flip is False
    with pytest.raises(SettingsError, match="unknown recipe"):
        get_recipe("weak", "bn_cnn")


def test_resuming_with_other_settings_is_refused(prepared, capsys):
    args = ["--model", "baseline_cnn", "--folds", "0", *FAST]
    assert train_folds.main([*args, "--epochs", "2"]) == 0
    assert train_folds.main([*args, "--epochs", "5"]) == 2  # finished with 2 epochs: not "done" for 5
    assert "epochs differ" in capsys.readouterr().err
    (paths.fold_dir("baseline_cnn", 0) / "done.json").unlink()  # as if interrupted before the end
    assert train_folds.main([*args, "--epochs", "5"]) == 2
    assert "epochs differ" in capsys.readouterr().err


def test_tensor_augmentation_path_trains_too(prepared):
    assert train_folds.main(["--model", "baseline_cnn", "--folds", "2", "--epochs", "1", "--aug", "tensor", *FAST]) == 0
    out = paths.fold_dir("baseline_cnn", 2)
    assert json.loads((out / "config.json").read_text())["aug"] == "tensor" and (out / "done.json").exists()


def test_a_locked_fold_is_refused_naming_the_holder(prepared, capsys):
    from competition.artifacts import FoldFiles
    with FoldFiles("baseline_cnn", 0).lock():  # as if another process were training it
        assert train_folds.main(["--model", "baseline_cnn", "--folds", "0", "--epochs", "1", *FAST]) == 2
    err = capsys.readouterr().err
    assert "baseline_cnn fold 0 is in use by" in err and f'"pid": {os.getpid()}' in err
    assert not (paths.fold_dir("baseline_cnn", 0) / "state.pt").exists()  # nothing of it was touched


def test_a_new_split_or_other_k_is_not_done_and_not_resumed(prepared, capsys):
    args = ["--model", "baseline_cnn", "--folds", "0", "--epochs", "1", *FAST]
    assert train_folds.main(args) == 0
    config = (paths.fold_dir("baseline_cnn", 0) / "config.json").read_text()
    assert train_folds.main(args) == 0 and "skipped" in capsys.readouterr().out
    assert (paths.fold_dir("baseline_cnn", 0) / "config.json").read_text() == config  # written once
    folds.main(["--k", "3", "--seed", "7"])  # the same k, another split: fold 0's rows changed
    assert train_folds.main(args) == 2
    assert "folds/folds.csv" in capsys.readouterr().err
    folds.main(["--k", "5"])
    assert train_folds.main(args) == 2
    assert "the number of folds" in capsys.readouterr().err


def test_sigkill_inside_finish_then_rerun_completes_the_same(prepared):
    args = ["--model", "baseline_cnn", "--folds", "0", "--epochs", "2", *FAST]
    assert run_cli(*args).returncode == 0
    reference = np.load(paths.fold_dir("baseline_cnn", 0) / "test.npz")["logits"]
    subprocess.run(["rm", "-rf", str(paths.fold_dir("baseline_cnn", 0))], check=True)
    killer = ("import os, signal, sys; from competition import artifacts, train_folds; save = artifacts.save_npz\n"
              "def dying(path, **arrays):\n"
              "    if path.name == 'test.npz': os.kill(os.getpid(), signal.SIGKILL)\n"
              "    save(path, **arrays)\n"
              "artifacts.save_npz = dying; sys.exit(train_folds.main(sys.argv[1:]))")
    killed = subprocess.run([sys.executable, "-c", killer, *args], cwd=REPO, capture_output=True, text=True,
                            timeout=300)
    assert killed.returncode == -signal.SIGKILL
    out = paths.fold_dir("baseline_cnn", 0)
    assert (out / "oof.npz").exists() and not (out / "test.npz").exists() and not (out / "done.json").exists()
    rerun = run_cli(*args)
    assert rerun.returncode == 0 and "resuming after epoch 2" in rerun.stdout
    assert np.array_equal(np.load(out / "test.npz")["logits"], reference)


def test_a_corrupt_state_file_is_named_with_what_to_do(prepared, capsys):
    out = paths.fold_dir("baseline_cnn", 0)
    assert train_folds.main(["--model", "baseline_cnn", "--folds", "0", "--epochs", "1", *FAST]) == 0
    (out / "done.json").unlink()
    (out / "state.pt").write_bytes(b"PK\x03\x04 not a checkpoint")
    assert train_folds.main(["--model", "baseline_cnn", "--folds", "0", "--epochs", "1", *FAST]) == 2
    err = capsys.readouterr().err
    assert f"{out / 'state.pt'}: unreadable" in err and "Delete it" in err


def test_any_timm_architecture_trains_a_fold(prepared):
    assert train_folds.main(["--model", "resnet18", "--folds", "1", "--epochs", "1", *FAST]) == 0
    assert (paths.fold_dir("resnet18", 1) / "done.json").exists()


class Payload:
    """Stands for code hidden in a shared checkpoint: unpickling it would import and build this class."""


def test_checkpoints_load_with_weights_only(prepared, capsys):
    import torch
    out = paths.fold_dir("baseline_cnn", 0)
    assert train_folds.main(["--model", "baseline_cnn", "--folds", "0", "--epochs", "1", *FAST]) == 0
    (out / "done.json").unlink()
    torch.save({"model": Payload()}, out / "state.pt")  # a full pickle, not tensors and plain containers
    assert train_folds.main(["--model", "baseline_cnn", "--folds", "0", "--epochs", "1", *FAST]) == 2
    assert "state.pt: unreadable (UnpicklingError" in capsys.readouterr().err


def test_a_config_json_in_the_old_layout_reads_and_resumes(prepared, capsys):
    """config.json as the code before RunConfig wrote it (a dict of these keys; older ones lack step, threads and
    precision, or carry keys this version does not know): it reads back field for field, writes back the same
    keys, and its fold counts as done; another seed or epochs is still refused."""
    args = ["--model", "baseline_cnn", "--folds", "0", "--epochs", "2", *FAST]
    assert train_folds.main(args) == 0
    path = paths.fold_dir("baseline_cnn", 0) / "config.json"
    written = json.loads(path.read_text())
    assert list(written) == ["model", "fold", "recipe", "seed", "epochs", "device", "aug", "threads", "precision",
                             "settings", "step", "k", "folds_sha1", "data_sha1", "versions", "git_commit", "teacher"]
    config = artifacts.read_config(artifacts.FoldFiles("baseline_cnn", 0))
    assert (config.arch, config.fold, config.epochs, config.step.batch_size) == ("baseline_cnn", 0, 2, 16)
    assert config.to_json() == written
    old = {key: v for key, v in written.items() if key not in ("step", "threads", "precision")} | {"gone": 1}
    path.write_text(json.dumps(old))
    assert artifacts.read_config(artifacts.FoldFiles("baseline_cnn", 0)).step is None
    capsys.readouterr()
    assert train_folds.main(args) == 0
    assert "finished earlier" in capsys.readouterr().out
    assert train_folds.main([*args, "--seeds", "0", "--epochs", "3"]) == 2
    assert "epochs differ" in capsys.readouterr().err
    before, now = artifacts.RunConfig.from_json(old), artifacts.RunConfig.from_json(written | {"seed": 4})
    assert artifacts.settings_differ(before, now) == ["seed"]
    assert artifacts.settings_differ(before, now, whole_run=False) == []


def test_a_fold_applies_the_batch_rule_once_and_its_optimizer_runs_at_the_scaled_lr(prepared, monkeypatch):
    """RunConfig.step is the batch rule's answer (recipes.scaled), computed once; engine.build takes it as given
    (here a second application would fail the test), and the optimizer starts from its lr."""
    built, real_build = [], train_folds.build
    monkeypatch.setattr(train_folds, "build", lambda *a, **kw: built.append(real_build(*a, **kw)) or built[-1])
    monkeypatch.setattr(engine, "scaled", lambda recipe: pytest.fail("the batch rule applied a second time"))
    args = ["--model", "baseline_cnn", "--folds", "0", "--epochs", "1", "--no-estimate", *FAST]
    assert train_folds.main(args) == 0
    recipe = get_recipe("strong", "baseline_cnn", parse_overrides(["batch_size=16", "epochs=1"]))
    config = artifacts.read_config(artifacts.FoldFiles("baseline_cnn", 0))
    assert config.step == scaled(recipe) and config.step.lr == pytest.approx(recipe.lr * math.sqrt(16 / 128))
    assert [g["initial_lr"] for g in built[0].optimizer.param_groups] == [config.step.lr] * 2
