"""Precision by what the GPU can do (competition.device): bf16 at compute capability >= 8.0, fp16 with a
GradScaler below (T4 7.5, V100 7.0, P100 6.0), fp32 by flag or on the CPU. The capability is faked here (no GPU);
the fp16 and bf16 training steps run for real on the CPU, where torch runs both autocasts.

    .venv/bin/python -m pytest -q tests/test_precision.py
"""
import json

import numpy as np
import pytest
import torch

from competition import device as dev
from competition import engine, folds, paths, train_folds
from competition.errors import SettingsError
from competition.recipes import get_recipe, scaled
from tests.fake_runs import make_dataset

CUDA = torch.device("cuda", 0)  # only an object here: nothing below touches a GPU


@pytest.mark.parametrize("capability, expected", [((9, 0), "bf16"), ((8, 0), "bf16"), ((8, 6), "bf16"),
                                                  ((7, 5), "fp16"), ((7, 0), "fp16"), ((6, 0), "fp16")])
def test_auto_precision_follows_the_compute_capability(monkeypatch, capability, expected):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    assert dev.pick_precision(CUDA, "auto") == expected
    assert dev.pick_precision(CUDA, "fp32") == "fp32"  # the flag wins
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla T4")
    line = dev.describe_precision(CUDA, expected)
    assert expected in line and f"{capability[0]}.{capability[1]}" in line
    assert ("GradScaler" in line) == (expected == "fp16")


def test_cpu_auto_is_bf16_only_where_native_and_unknown_precision_is_refused(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(dev, "cpu_has_bf16", lambda: False)
    assert dev.pick_precision(cpu) == "fp32"
    monkeypatch.setattr(dev, "cpu_has_bf16", lambda: True)
    assert dev.pick_precision(cpu) == "bf16"
    assert dev.pick_precision(cpu, "bf16") == "bf16"
    with pytest.raises(SettingsError, match="fp8"):
        dev.pick_precision(cpu, "fp8")


@pytest.fixture
def fresh_newton_schulz_dtype():
    dev.newton_schulz_dtype.cache_clear()
    yield
    dev.newton_schulz_dtype.cache_clear()


@pytest.mark.parametrize("native, expected", [(False, torch.float32), (True, torch.bfloat16)])
def test_muons_newton_schulz_runs_in_bf16_only_where_bf16_is_native(monkeypatch, fresh_newton_schulz_dtype,
                                                                     native, expected):
    """timm's Muon, made by the harness's optimizer factory and stepped: its iterations take the CPU's dtype
    (emulated bf16 made them 15x slower than fp32 on an AVX2 CPU), and the step still moves the weights."""
    monkeypatch.setattr(dev, "cpu_has_bf16", lambda: native)
    seen, timm_iterations = [], engine._TIMM_NEWTON_SCHULZ
    monkeypatch.setattr(engine, "_TIMM_NEWTON_SCHULZ",
                        lambda G, *args, dtype, **kwargs: seen.append(dtype) or timm_iterations(G, *args, dtype=dtype,
                                                                                                 **kwargs))
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, bias=False), torch.nn.Flatten(), torch.nn.Linear(8, 7))
    optimizer = engine.create_optimizer_v2(net, opt="muon", lr=0.02, weight_decay=0)
    before = net[0].weight.detach().clone()
    net(torch.randn(4, 1, 3, 3)).square().mean().backward()
    optimizer.step()
    assert seen and set(seen) == {expected}
    assert torch.isfinite(net[0].weight).all() and not torch.equal(net[0].weight, before)


@pytest.mark.parametrize("capability, expected", [((9, 0), torch.bfloat16), ((7, 5), torch.float32)])
def test_newton_schulz_dtype_on_a_gpu_follows_its_precision(monkeypatch, fresh_newton_schulz_dtype,
                                                            capability, expected):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    assert dev.newton_schulz_dtype(CUDA) == expected


def test_autocast_and_scaler_per_precision():
    cpu = torch.device("cpu")
    with dev.autocast_for(cpu, "fp32"):
        assert not torch.is_autocast_enabled("cpu")
    for precision, dtype in dev.DTYPES.items():
        with dev.autocast_for(cpu, precision):
            assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == dtype
    assert dev.grad_scaler(cpu, "fp16").is_enabled()
    assert not dev.grad_scaler(cpu, "bf16").is_enabled() and not dev.grad_scaler(cpu, "fp32").is_enabled()


@pytest.mark.parametrize("precision", ["fp16", "bf16", "fp32"])
def test_a_real_training_step_in_each_precision_on_cpu(precision):
    cpu = torch.device("cpu")
    recipe = get_recipe("strong", "baseline_cnn", {"batch_size": 8, "epochs": 2, "clip_grad": 1.0})
    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 256, (64, 48, 48), dtype=np.uint8), rng.integers(0, 7, 64)
    source = engine.BatchSource(images, labels, recipe, cpu, "tensor")
    torch.manual_seed(0)
    parts = engine.build("baseline_cnn", recipe, source.steps, cpu, precision=precision)
    assert parts.precision == precision and parts.scaler.is_enabled() == (precision == "fp16")
    before = [p.detach().clone() for p in parts.model.parameters()]
    stats = engine.train_one_epoch(parts, source, seed=0, progress=False)
    assert np.isfinite(stats.loss)
    assert all(p.dtype == torch.float32 for p in parts.model.parameters())  # autocast: fp32 master weights
    changed = sum(not torch.equal(a, b) for a, b in zip(before, parts.model.parameters()))
    # fp16: the scaler skips the steps that overflow at its first scales (65536, halved each time); of 8, some apply
    assert changed > 0


def test_train_folds_records_and_prints_the_precision(tmp_path, capsys):
    make_dataset(tmp_path, n_train=140)
    folds.main(["--k", "2"])
    assert train_folds.main(["--model", "baseline_cnn", "--folds", "0", "--epochs", "1", "--precision", "bf16",
                             "--set", "batch_size=32"]) == 0
    assert "precision bf16" in capsys.readouterr().out
    config = json.loads((paths.fold_dir("baseline_cnn", 0) / "config.json").read_text())
    assert config["precision"] == "bf16"
    state = torch.load(paths.fold_dir("baseline_cnn", 0) / "state.pt", weights_only=True)
    assert "scaler" in state


def test_the_ema_decay_is_timms_warm_up_for_the_whole_run_as_docs_gpu_says():
    """ModelEmaV3's warm-up gives decay 1-(1+s)^(-2/3) at step s, capped by the recipe's (batch-scaled) decay.
    The cap is reached only after ~31,600 steps at 0.999 (batch 128) or ~3,950 at 0.996 (batch 512), while a
    40-epoch fold has ~7,200 or ~1,800: in every run here the decay is the warm-up's, so the batch rule's EMA
    part changes nothing (docs/gpu.md says so)."""
    for batch, steps in ((128, 7_200), (512, 1_800)):
        recipe = get_recipe("strong", "bn_cnn", {"batch_size": batch})
        parts = engine.build("bn_cnn", recipe, 180, torch.device("cpu"))
        cap = scaled(recipe).ema_decay
        for s in (10, 100, steps):
            assert parts.ema.get_decay(s) == pytest.approx(1 - s ** (-2 / 3))  # timm counts from step - 1
            assert parts.ema.get_decay(s) < cap
        assert parts.ema.get_decay(round((1 - cap) ** -1.5) + 2) == pytest.approx(cap)


def test_compile_is_in_place_so_checkpoints_keep_their_keys():
    recipe = get_recipe("strong", "baseline_cnn")
    plain = engine.build("baseline_cnn", recipe, 10, torch.device("cpu"))
    compiled = engine.build("baseline_cnn", recipe, 10, torch.device("cpu"), compile_model=True)
    assert compiled.model._compiled_call_impl is not None and plain.model._compiled_call_impl is None
    assert list(compiled.model.state_dict()) == list(plain.model.state_dict())  # no "_orig_mod." prefix
    assert compiled.ema.module._compiled_call_impl is None  # the EMA copy is made before compiling
