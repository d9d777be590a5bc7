"""The benchmark runs from a fresh clone (synthetic images) and prints its table; no timing is asserted.

    .venv/bin/python -m pytest -q tests/test_bench.py
"""
import os

import torch

from competition import bench


def test_bench_prints_a_row_whose_ratios_are_its_figures(capsys):
    threads = torch.get_num_threads()
    assert bench.main(["--synthetic", "256", "--steps", "2", "--models", "baseline_cnn", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("| baseline_cnn |"))
    h_train, r_train, train_ratio, h_infer, r_infer, infer_ratio = [float(c) for c in row.strip("|").split("|")[1:]]
    assert min(h_train, r_train, h_infer, r_infer) > 0
    # each ratio is harness / reference of the figures beside it, as far as their rounding (0.5, 0.005) allows
    for ratio, h, r in ((train_ratio, h_train, r_train), (infer_ratio, h_infer, r_infer)):
        assert (h - 0.5) / (r + 0.5) - 0.005 <= ratio <= (h + 0.5) / max(r - 0.5, 1e-9) + 0.005, (ratio, h, r)
    # one model: the geometric means are its own ratios
    assert f"geometric mean of the ratios over 1 model(s): training {train_ratio:.2f}x, " \
           f"TTA inference {infer_ratio:.2f}x" in out
    assert "training 2 batches (harness 128, reference 128) after 2 warm-up, inference 256 rows" in out
    assert "command: python -m competition.bench --synthetic 256 --steps 2" in out
    assert "machine: " in out and f"torch {torch.__version__}" in out and f"threads: {os.cpu_count()} on both" in out
    assert torch.get_num_threads() == threads  # the threads are given back


def test_bench_refuses_unknown_models(capsys):
    assert bench.main(["--synthetic", "8", "--models", "nope"]) == 2
    assert "unknown: nope" in capsys.readouterr().err


def test_an_optional_import_that_fails_in_any_way_is_reported_and_skipped(monkeypatch, capsys):
    def broken(recipe):
        raise SystemError("pydantic-core does not match pydantic")  # what a mismatched carried wheel raises
    monkeypatch.setattr(bench, "albumentations_pipeline", broken)
    assert bench.reference_pipeline(bench.harness_recipe("bn_cnn", torch.device("cpu"))) is None
    assert "SystemError" in capsys.readouterr().err


def test_no_update_check_over_the_network():
    """Importing the package sets the variable albumentations reads before its update check (its real name,
    read from its source)."""
    import importlib.util
    import os

    import competition  # noqa: F401
    source = open(importlib.util.find_spec("albumentations").origin).read()
    assert 'os.getenv("NO_ALBUMENTATIONS_UPDATE"' in source and os.environ["NO_ALBUMENTATIONS_UPDATE"] == "1"
