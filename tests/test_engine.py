"""The training step's parts: the batch-size rule, job dealing, no host sync in the step loop, any timm model,
and a CUDA path that needs neither albumentations nor kaggle at import.

    .venv/bin/python -m pytest -q tests/test_engine.py
"""
import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from competition import engine
from competition.errors import SettingsError
from competition.recipes import get_recipe, scaled
from competition.train_folds import Job, deal, job_costs, plan_jobs
from tests.conftest import REPO


def test_batch_rule_scales_lr_warmup_and_ema_with_the_batch():
    base = get_recipe("strong", "bn_cnn", {"batch_size": 128})
    big = get_recipe("strong", "bn_cnn", {"batch_size": 512})
    assert scaled(base).lr == base.lr and scaled(base).warmup_epochs == base.warmup_epochs
    assert scaled(big).lr == pytest.approx(base.lr * 2)  # AdamW: square-root rule, 4x the batch -> 2x the lr
    assert scaled(big).warmup_epochs == 2 * base.warmup_epochs
    assert scaled(big).ema_decay == pytest.approx(base.ema_decay ** 4)  # same horizon in images
    sgd = get_recipe("strong", "bn_cnn", {"batch_size": 512, "opt": "sgd"})
    assert scaled(sgd).lr == pytest.approx(sgd.lr * 4)  # SGD: linear rule
    short = get_recipe("strong", "bn_cnn", {"batch_size": 2048, "epochs": 8})
    assert scaled(short).warmup_epochs <= max(8 // 4, short.warmup_epochs)  # never past a quarter of the run


def test_batch_zero_means_by_device():
    assert get_recipe("strong", "bn_cnn").batch_size == 128
    assert get_recipe("strong", "bn_cnn", device_type="cuda").batch_size == 512
    assert get_recipe("strong", "bn_cnn", {"batch_size": 64}, device_type="cuda").batch_size == 64
    assert get_recipe("study", "bn_cnn", device_type="cuda").batch_size == 128  # the study's own batch


def test_jobs_are_dealt_longest_first_to_the_least_loaded():
    jobs = plan_jobs(["baseline_cnn", "bn_cnn", "resnet_cbam", "resnet_cbam48"], "all", 5)
    recipes = {n: get_recipe("strong", n) for n in {j.arch for j in jobs}}
    costs = job_costs(jobs, recipes, "cuda")
    shares = deal(jobs, costs, 4)
    assert sorted((j for s in shares for j in s), key=str) == sorted(jobs, key=str)  # every job once
    loads = [sum(costs[j] for j in s) for s in shares]
    assert max(loads) <= sum(loads) / 4 + max(costs.values())  # LPT's bound: within one job of the mean
    round_robin = [sum(costs[j] for j in jobs[r::4]) for r in range(4)]
    assert max(loads) < max(round_robin)  # better than dealing in order
    assert plan_jobs(["bn_cnn"], "0,0,1", 3) == [Job("bn_cnn", 0), Job("bn_cnn", 1)]  # duplicates removed


def test_seeds_and_refits_are_jobs_of_their_own_members_and_refits_come_last():
    jobs = plan_jobs(["bn_cnn", "baseline_cnn"], "refit,all", 3, seeds=[0, 2])
    assert len(jobs) == 2 * 2 * 4 and jobs[3] == Job("bn_cnn", None, 0)  # folds first, then the refit
    assert {j.member for j in jobs} == {"bn_cnn", "bn_cnn.s2", "baseline_cnn", "baseline_cnn.s2"}
    assert Job("bn_cnn", None, 2, "student").files.dir.parts[-2:] == ("bn_cnn.student.s2", "refit")
    recipes = {n: get_recipe("strong", n) for n in ("bn_cnn", "baseline_cnn")}
    for share in deal(jobs, job_costs(jobs, recipes, "cpu"), 3):
        folds = [j.fold is None for j in share]
        assert folds == sorted(folds)  # each process trains its folds before its refits
    with pytest.raises(SettingsError, match="out of range"):
        plan_jobs(["bn_cnn"], "3", 3)
    with pytest.raises(SettingsError, match="--folds"):
        plan_jobs(["bn_cnn"], "x", 3)


def test_the_step_loop_reads_the_device_once_per_epoch(monkeypatch):
    """On CUDA every .item() waits for the GPU; the loop's own reads happen once, after the last step. (On CUDA
    the optimizer is fused and keeps its step counter on the device, so it reads nothing either.)"""
    recipe = get_recipe("strong", "baseline_cnn", {"batch_size": 8})
    images = np.random.default_rng(0).integers(0, 256, (64, 48, 48), dtype=np.uint8)
    labels = np.arange(64) % 7
    source = engine.BatchSource(images, labels, recipe, torch.device("cpu"), aug="tensor")
    parts = engine.build("baseline_cnn", recipe, source.steps, torch.device("cpu"))
    calls, real_item = [], torch.Tensor.item

    def item(self):  # who asked: the harness's own code, or the library (CPU AdamW reads its step counter)
        calls.append(sys._getframe(1).f_code.co_filename)
        return real_item(self)
    monkeypatch.setattr(torch.Tensor, "item", item)
    stats = engine.train_one_epoch(parts, source, seed=1, progress=False)
    ours = [f for f in calls if "/competition/" in f]
    assert source.steps == 8 and len(ours) == 2  # loss and accuracy sums, once, after the last step
    assert math.isfinite(stats.loss) and 0 <= stats.acc <= 1


def test_any_timm_architecture_and_a_clear_no_for_one_that_cannot_see_48px():
    model = engine.create_model("resnet18")
    assert model(torch.zeros(2, 1, 48, 48)).shape == (2, 7)
    with pytest.raises(SettingsError, match="does not work on 48x48"):
        engine.create_model("vit_tiny_patch16_224")
    with pytest.raises(SettingsError, match="unknown model 'vgg99'"):
        engine.create_model("vgg99")


def test_the_cuda_path_imports_neither_albumentations_nor_kaggle():
    code = ("import sys, competition.run_all, competition.train_folds, competition.bench, competition.report; "
            "bad = [m for m in ('albumentations', 'kaggle') if m in sys.modules]; assert not bad, bad")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-1500:]
