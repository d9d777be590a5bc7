"""The speed-first member and airbench's ingredients: whitening, identity init, bias lr, alternating flips,
and the time-to-accuracy script that measures them."""
import re
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import timm
import torch

import models  # noqa: F401  (registers air_fer)
from competition import folds
from competition.engine import BatchSource, build, param_groups, prepare_net
from competition.errors import SettingsError
from competition.recipes import get_recipe, scaled
from tests.conftest import REPO
from tests.fake_runs import make_dataset

CPU = torch.device("cpu")


def faces(n=64, seed=0):
    """Smooth random images (neighbouring pixels correlate, as in faces), normalised."""
    x = torch.randn(n, 1, 12, 12, generator=torch.Generator().manual_seed(seed))
    return torch.nn.functional.interpolate(x, size=48, mode="bilinear", align_corners=False)


def test_whitening_decorrelates_the_patches_and_freezes_the_first_conv():
    net = timm.create_model("air_fer_s")
    images = faces()
    patches = torch.nn.functional.unfold(images, 2).transpose(1, 2).reshape(-1, 4)
    assert torch.corrcoef(patches.T)[0, 1] > 0.9  # raw neighbours are nearly the same pixel
    net.init_whitening(images)
    out = torch.nn.functional.conv2d(images, net.whiten.weight)  # (n, 8, 47, 47), no bias
    first = out[:, :4].permute(0, 2, 3, 1).reshape(-1, 4)
    cov = torch.cov(first.T)
    assert torch.allclose(cov - torch.diag(cov.diag()), torch.zeros(4, 4), atol=0.01)  # no correlation left
    assert cov.diag().min() > 0.5 and cov.diag().max() < 1.05  # about unit variance (eps damps the faintest)
    assert torch.equal(out[:, 4:], -out[:, :4])  # with their negatives, so GELU keeps both signs
    assert not net.whiten.weight.requires_grad


def test_dirac_init_passes_the_input_channels_through():
    net = timm.create_model("air_fer_s")
    net.dirac_init()
    conv = net.stages[0].conv2  # 32 -> 32
    x = torch.randn(2, 32, 11, 11)
    assert torch.allclose(conv(x), x, atol=1e-6)


def test_prepare_net_follows_the_recipe():
    recipe = replace(get_recipe("strong", "air_fer_s"), dirac=True)
    assert recipe.whiten and recipe.alt_flip and recipe.opt == "muon"
    net = timm.create_model("air_fer_s")
    with pytest.raises(SettingsError, match="whiten"):
        prepare_net(net, recipe, None)
    prepare_net(net, replace(recipe, whiten=False), None)  # dirac only: no images needed
    assert net.whiten.weight.requires_grad
    assert torch.equal(net.stages[1].conv1.weight[:32, :, 1, 1], torch.eye(32))


def test_norm_biases_learn_at_bias_lr_times_the_rate():
    recipe = replace(get_recipe("strong", "air_fer_s"), opt="sgd", bias_lr=64.0, warmup_epochs=0)
    parts = build("air_fer_s", recipe, steps_per_epoch=10, device=CPU, sample=faces(8))
    norm_biases = {id(m.bias) for m in parts.model.modules() if isinstance(m, torch.nn.BatchNorm2d)}
    trained = [p for g in parts.optimizer.param_groups for p in g["params"]]
    assert not any(p is parts.model.whiten.weight for p in trained)  # frozen by the whitening
    parts.scheduler.step_update(num_updates=3)
    for group in parts.optimizer.param_groups:
        mine = {id(p) for p in group["params"]} <= norm_biases
        assert group["lr"] == pytest.approx(scaled(recipe).lr * (64.0 if mine else 1.0), rel=0.05)
    assert sum(1 for g in param_groups(parts.model, recipe) if g.get("lr_scale") == 64.0) >= 1


def test_alternating_flip_mirrors_each_image_in_exactly_one_of_two_epochs():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (40, 48, 48), dtype=np.uint8)
    plain = dict(pad=0, rotate=0.0, scale=0.0, brightness=0.0, contrast=0.0, erase=0.0, batch_size=40)
    recipe = replace(get_recipe("strong", "air_fer_s"), **plain)
    source = BatchSource(images, np.arange(40) % 7, recipe, CPU, aug="tensor")
    x0, _ = next(source.epoch(seed=5, epoch=0))
    x1, _ = next(source.epoch(seed=5, epoch=1))
    order = np.random.default_rng(5).permutation(40)  # the same seed, the same order
    originals = torch.as_tensor(images[order]).float()[:, None]
    mirror0 = ~torch.isclose(x0, (originals / 255 - 0.5) / 0.25, atol=1e-3).flatten(1).all(1)
    mirror1 = ~torch.isclose(x1, (originals / 255 - 0.5) / 0.25, atol=1e-3).flatten(1).all(1)
    assert torch.all(mirror0 ^ mirror1)  # every image mirrored in exactly one of the two epochs
    assert 5 < int(mirror0.sum()) < 35  # about half each epoch


def test_time_to_accuracy_trains_through_the_harness_and_reports_seconds(tmp_path):
    make_dataset(tmp_path, n_train=210)
    folds.main(["--k", "3"])
    out = tmp_path / "curve.csv"
    cmd = [sys.executable, "scripts/time_to_accuracy.py", "--model", "air_fer_s", "--epochs", "2",
           "--set", "batch_size=16", "--threads", "1", "--target", "0.0", "--out", str(out)]
    run = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    curve = pd.read_csv(out)
    assert list(curve.epoch) == [1, 2] and (curve.train_s.diff().dropna() > 0).all()
    assert curve.val_acc_tta.between(0, 1).all()
    row = [line for line in run.stdout.splitlines() if re.match(r"air_fer_s\.ttacc +\d+ +\d+", line)][0].split()
    assert row[1] == "2" and row[4] == "1"  # target 0: reached after the first epoch
    again = subprocess.run(cmd[:-2] + ["--target", "1.01", "--out", str(out)], cwd=REPO, capture_output=True,
                           text=True, timeout=300)
    assert "never" in again.stdout and "resuming" not in again.stdout  # read back, not trained again
