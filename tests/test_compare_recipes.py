"""scripts/compare_recipes.sh without training: a stand-in Python records the train_folds command each setting
would run and writes a done.json, so the settings, the work folders, EXTRA, resuming and the table are checked
in a second.

    .venv/bin/python -m pytest -q tests/test_compare_recipes.py
"""
import json
import os
import subprocess
import sys

import pytest

from competition.recipes import get_recipe, parse_overrides
from tests.conftest import REPO

SCRIPT = REPO / "scripts" / "compare_recipes.sh"

# A stand-in for the venv's Python: `-m competition.train_folds ...` appends its arguments and FER_WORKDIR to
# $CALLS and writes the fold's done.json (val_acc from $FAKE_ACC, or exits 3 if FAKE_FAIL names the setting);
# anything else (the table's reader) runs the real Python.
FAKE_PY = f"""#!/usr/bin/env bash
if [ "$1" = -m ]; then
  echo "$FER_WORKDIR $*" >> "$CALLS"
  case " $FAKE_FAIL " in *" $(basename "$FER_WORKDIR") "*) echo boom; exit 3;; esac
  [ -f "$FER_WORKDIR/data/fer2013.npz" ] && [ -f "$FER_WORKDIR/folds/folds.csv" ] || exit 4
  mkdir -p "$FER_WORKDIR/folds/bn_cnn/fold0"
  printf '{{"best_epoch": 9, "val_acc": %s, "val_acc_plain": 0.6, "train_acc": 0.65, "seconds": 1234.5}}' "$FAKE_ACC" \\
    > "$FER_WORKDIR/folds/bn_cnn/fold0/done.json"
  exit 0
fi
exec {sys.executable} "$@"
"""


@pytest.fixture
def env(tmp_path):
    src = tmp_path / "src"
    (src / "data").mkdir(parents=True)
    (src / "folds").mkdir()
    (src / "data" / "fer2013.npz").write_bytes(b"npz")
    (src / "folds" / "folds.csv").write_text("row,label,group,fold\n")
    fake = tmp_path / "python"
    fake.write_text(FAKE_PY)
    fake.chmod(0o755)
    return {**os.environ, "SRC": str(src), "ROOT": str(tmp_path / "compared"), "PY": str(fake),
            "CALLS": str(tmp_path / "calls"), "FAKE_ACC": "0.6123", "FAKE_FAIL": "", "EPOCHS": "3"}


def run(env, **more):
    return subprocess.run(["bash", str(SCRIPT)], env={**env, **more}, capture_output=True, text=True, timeout=60)


def calls(env) -> list[str]:
    path = env["CALLS"]
    return open(path).read().splitlines() if os.path.exists(path) else []


def table(stdout: str) -> dict[str, list[str]]:
    lines = stdout.splitlines()
    head = next(i for i, line in enumerate(lines) if line.split()[:2] == ["setting", "overrides"])
    return {line.split()[0]: line.split() for line in lines[head + 1:] if line.strip()}


def test_every_setting_is_a_change_the_real_recipe_accepts(env):
    """The stand-in takes any --set; the real train_folds parses them: each setting but strong must name
    knobs of the recipe, with values of their types, that change the strong recipe."""
    assert run(env).returncode == 0
    strong = get_recipe("strong", "bn_cnn")
    for line in calls(env):
        name, args = os.path.basename(line.split()[0]), line.split()[1:]
        pairs = [args[i + 1] for i, arg in enumerate(args) if arg == "--set"]
        changed = get_recipe("strong", "bn_cnn", parse_overrides(pairs))
        assert (changed != strong) == (name != "strong"), name


def test_each_setting_trains_in_its_own_folder_with_its_overrides_then_one_table(env, tmp_path):
    done = run(env, EXTRA="--device cpu --seed 7")
    assert done.returncode == 0, done.stderr
    made = calls(env)
    assert [line.split()[0] for line in made] == [str(tmp_path / "compared" / n) for n in
                                                   ("strong", "mixup", "sgd", "cutmix", "no_smoothing", "no_erase")]
    by_name = {os.path.basename(line.split()[0]): line.split()[1:] for line in made}
    for args in by_name.values():
        assert args[:11] == ["-m", "competition.train_folds", "--model", "bn_cnn", "--folds", "0", "--epochs", "3",
                             "--aug", "tensor", "--threads"]
        assert args[-4:] == ["--device", "cpu", "--seed", "7"]  # EXTRA, word by word
    assert "--set" not in by_name["strong"]
    assert by_name["sgd"][12:-4] == ["--set", "opt=sgd", "--set", "lr=0.01", "--set", "weight_decay=5e-4"]
    assert by_name["mixup"][12:-4] == ["--set", "mixup=0.2"]
    link = tmp_path / "compared" / "cutmix" / "data" / "fer2013.npz"
    assert link.is_symlink() and link.resolve() == (tmp_path / "src" / "data" / "fer2013.npz").resolve()
    rows = table(done.stdout)
    assert list(rows) == ["strong", "mixup", "sgd", "cutmix", "no_smoothing", "no_erase"]
    assert rows["strong"] == ["strong", "(none)", "0.6123", "0.6000", "0.6500", "9", "1234"]
    assert rows["sgd"][1:4] == ["opt=sgd", "lr=0.01", "weight_decay=5e-4"]


def test_a_finished_setting_is_skipped_and_a_failed_one_is_listed_as_not_finished(env):
    first = run(env, SETTINGS="strong mixup", FAKE_FAIL="mixup")
    assert first.returncode == 1
    assert "mixup: training failed" in first.stderr and "boom" in first.stderr
    assert table(first.stdout)["mixup"][-2:] == ["not", "finished"]
    again = run(env, SETTINGS="strong mixup", FAKE_ACC="0.7")
    assert again.returncode == 0, again.stderr
    assert "strong: finished earlier, skipped" in again.stdout
    assert [os.path.basename(line.split()[0]) for line in calls(env)] == ["strong", "mixup", "mixup"]
    rows = table(again.stdout)
    assert rows["strong"][2] == "0.6123" and rows["mixup"][2] == "0.7000"


def test_an_unknown_setting_or_missing_data_stops_before_training(env, tmp_path):
    unknown = run(env, SETTINGS="strong adam")
    assert unknown.returncode == 2 and "unknown setting 'adam'" in unknown.stderr
    (tmp_path / "src" / "folds" / "folds.csv").unlink()
    missing = run(env)
    assert missing.returncode == 2 and "folds/folds.csv is missing" in missing.stderr
    assert calls(env) == []
