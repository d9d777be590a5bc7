"""scripts/compare_tta.py on a tiny synthetic run: one fold of baseline_cnn, trained for 1 epoch on the CPU.

    .venv/bin/python -m pytest -q tests/test_compare_tta.py
"""
import importlib.util
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from competition import folds, paths, train_folds
from tests.conftest import REPO
from tests.fake_runs import FAST, make_dataset


def script():
    """scripts/compare_tta.py as a module (it is a script, not in a package)."""
    spec = importlib.util.spec_from_file_location("compare_tta", REPO / "scripts" / "compare_tta.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def compare(*args):
    return subprocess.run([sys.executable, "scripts/compare_tta.py", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=300)


def test_four_levels_from_a_finished_fold_and_level_1_matches_the_saved_logits(tmp_path):
    make_dataset(tmp_path, n_train=210)
    folds.main(["--k", "3"])
    assert train_folds.main(["--model", "baseline_cnn", "--folds", "1", "--epochs", "1", *FAST]) == 0
    done = compare("baseline_cnn", "--device", "cpu", "--threads", "1")
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert "over 70 Training rows" in lines[0]  # fold 1 of 210 rows
    head = lines.index(next(line for line in lines if line.split()[:2] == ["level", "views"]))
    rows = [line.split() for line in lines[head + 1:head + 5]]
    assert [(int(level), int(views)) for level, views, _ in rows] == [(0, 1), (1, 2), (2, 10), (3, 10)]
    assert lines[head + 5] == ""  # exactly four rows
    accuracy = {int(level): float(acc) for level, _, acc in rows}
    assert all(0.0 <= a <= 1.0 for a in accuracy.values())
    saved = json.loads((paths.fold_dir("baseline_cnn", 1) / "done.json").read_text())["val_acc"]  # recipe tta 1
    assert accuracy[1] == pytest.approx(saved, abs=1e-4)
    assert float(lines[-1].rsplit(" ", 1)[1]) == pytest.approx(saved, abs=1e-4)


def test_an_unfinished_fold_is_named(tmp_path):
    make_dataset(tmp_path, n_train=210)
    folds.main(["--k", "3"])
    assert compare("baseline_cnn").returncode == 2  # nothing trained
    assert train_folds.main(["--model", "baseline_cnn", "--folds", "0", "--epochs", "1", *FAST]) == 0
    done = compare("baseline_cnn", "--folds", "0,2", "--device", "cpu", "--threads", "1")
    assert done.returncode == 2 and "fold(s) [2] are not finished" in done.stderr


def test_recomputed_logits_are_the_saved_ones_at_levels_0_and_1(tmp_path):
    make_dataset(tmp_path, n_train=210)
    folds.main(["--k", "3"])
    assert train_folds.main(["--model", "baseline_cnn", "--folds", "0,2", "--epochs", "1", *FAST]) == 0
    by_level, labels, _ = script().oof_logits_by_level("baseline_cnn", None, torch.device("cpu"), 512)
    saved = {f: np.load(paths.fold_dir("baseline_cnn", f) / "oof.npz") for f in (0, 2)}
    rows = np.concatenate([saved[f]["rows"] for f in (0, 2)])
    order = np.argsort(rows)  # the script's rows are sorted
    assert np.array_equal(labels, np.concatenate([saved[f]["labels"] for f in (0, 2)])[order])
    for level, key in ((0, "logits_plain"), (1, "logits")):
        expected = np.concatenate([saved[f][key] for f in (0, 2)])[order]
        np.testing.assert_allclose(by_level[level], expected, rtol=0, atol=1e-5)
    assert not np.allclose(by_level[3], by_level[1])  # ten-crop is another view of the faces
