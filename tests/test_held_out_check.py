"""scripts/held_out_check.py: members trained without the last fold, scored on it, and groups averaged."""
import re
import subprocess
import sys

import numpy as np
import pytest
from scipy.special import softmax

from competition import artifacts, paths
from competition.errors import SettingsError
from tests.conftest import REPO
from tests.fake_runs import make_dataset, make_folds

sys.path.insert(0, str(REPO / "scripts"))
import held_out_check  # noqa: E402


def test_the_last_fold_is_the_test_set_and_the_rest_keep_their_folds(tmp_path):
    fd = make_dataset(tmp_path, n_train=60)
    fold = make_folds(fd, k=3)
    rest, rest_folds = held_out_check.held_out(fd, fold)
    assert np.array_equal(rest.test_images, fd.train_images[fold == 2])
    assert np.array_equal(rest.test_labels, fd.train_labels[fold == 2])
    assert np.array_equal(rest.train_images, fd.train_images[fold != 2]) and set(rest_folds) == {0, 1}
    assert held_out_check.parse_member("refit:3", 2) == (None, 3) and held_out_check.parse_member("1:0", 2) == (1, 0)
    for bad in ("2:0", "0", "x:1"):  # fold 2 is the held-out one
        with pytest.raises(SettingsError, match="FOLD:SEED"):
            held_out_check.parse_member(bad, 2)


def test_members_train_then_groups_score_the_held_out_rows(tmp_path):
    fd = make_dataset(tmp_path, n_train=120)
    fold = make_folds(fd, k=3)
    cmd = [sys.executable, "scripts/held_out_check.py", "--model", "baseline_cnn", "--epochs", "1", "--threads", "1",
           "--set", "batch_size=16", "--group", "seeds=0:0,0:1", "--group", "folds=0:0,1:0,refit:0"]
    run = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    labels = fd.train_labels[fold == 2]
    probs = {}
    for spec, member, f in (("0:0", "baseline_cnn.heldout", 0), ("0:1", "baseline_cnn.heldout.s1", 0),
                            ("1:0", "baseline_cnn.heldout", 1), ("refit:0", "baseline_cnn.heldout", None)):
        logits = artifacts.read_npz(paths.fold_dir(member, f) / artifacts.TEST)["logits"]
        assert len(logits) == len(labels)  # the held-out rows, not the competition's test rows
        probs[spec] = softmax(logits.astype(np.float64), axis=1)
        shown = re.search(rf"member {re.escape(spec)} +([\d.]+)%", run.stdout).group(1)
        assert float(shown) == pytest.approx(100 * (probs[spec].argmax(1) == labels).mean(), abs=0.006)
    folds_avg = (probs["0:0"] + probs["1:0"] + probs["refit:0"]) / 3
    shown, rule = re.search(r"group  folds +([\d.]+)% .*; ([\d.]+)% by the ensemble's rule", run.stdout).groups()
    assert float(shown) == pytest.approx(100 * (folds_avg.argmax(1) == labels).mean(), abs=0.006)
    logits = {s: np.log(p) for s, p in probs.items()}  # log-softmax: the same argmax as the logits, shifted per row
    ensemble = 0.5 * (logits["0:0"] + logits["1:0"]) / 2 + 0.5 * logits["refit:0"]
    assert float(rule) == pytest.approx(100 * (ensemble.argmax(1) == labels).mean(), abs=0.006)
    oof = artifacts.read_npz(paths.fold_dir("baseline_cnn.heldout", 1) / artifacts.OOF)
    assert len(oof["rows"]) == (fold[fold != 2] == 1).sum()  # validated on fold 1 of the rest only
    again = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and again.stdout.count("finished earlier, skipped") == 4
