"""Does torch.compile pay? Training images/s with and without it, compile seconds included, per model.

    .venv/bin/python scripts/compile_bench.py                          # CPU, baseline_cnn and bn_cnn, synthetic
    .venv/bin/python scripts/compile_bench.py --device cuda --models baseline_cnn,bn_cnn,resnet_cbam48 --steps 200

For each model, twice (eager, then compiled): engine.build (the strong recipe's whole step at the device's
batch) and train_one_epoch over --steps batches of random uint8 images, timed from the build to the end, so the
compiled run pays its compile time. It also prints the steady rate (the last half of the steps) and after how
many steps compiling has paid for itself (its break-even), to compare with a fold's steps (~180 per epoch at
batch 128, ~45 at 512). It prints figures; it is not a test.
"""
import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from competition.device import pick_device, tune_for  # noqa: E402
from competition.engine import BatchSource, build, train_one_epoch  # noqa: E402
from competition.recipes import get_recipe  # noqa: E402


def timed(name, device, steps, compile_model) -> tuple[float, float]:
    """(seconds for the whole run from build, seconds of its last half) at the recipe's batch."""
    recipe = get_recipe("strong", name, device_type=device.type)
    rng = np.random.default_rng(0)
    n = recipe.batch_size * steps
    images, labels = rng.integers(0, 256, (n, 48, 48), dtype=np.uint8), rng.integers(0, 7, n)
    half = steps // 2
    first = BatchSource(images[:half * recipe.batch_size], labels[:half * recipe.batch_size], recipe, device, "tensor")
    second = BatchSource(images[half * recipe.batch_size:], labels[half * recipe.batch_size:], recipe, device, "tensor")
    torch.manual_seed(0)
    start = time.perf_counter()
    parts = build(name, recipe, steps, device, sample=first.sample(), compile_model=compile_model)
    train_one_epoch(parts, first, 0, progress=False)
    middle = time.perf_counter()
    train_one_epoch(parts, second, 1, progress=False)
    end = time.perf_counter()
    return end - start, end - middle


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", default="baseline_cnn,bn_cnn")
    p.add_argument("--steps", type=int, default=40, help="training batches per run (compile is paid in the first)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    args = p.parse_args(argv)
    device = pick_device(args.device)
    tune_for(device)
    print(f"device {device}, torch {torch.__version__}, {os.cpu_count()} cores, {args.steps} steps per run")
    print("| model | batch | eager img/s (all) | compiled img/s (all, compile included) | eager steady | "
          "compiled steady | compile pays after |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name in args.models.split(","):
        batch = get_recipe("strong", name, device_type=device.type).batch_size
        eager_all, eager_half = timed(name, device, args.steps, False)
        comp_all, comp_half = timed(name, device, args.steps, True)
        half = args.steps - args.steps // 2
        per_step_gain = (eager_half - comp_half) / half  # seconds saved per step once compiled
        overhead = comp_all - eager_all + per_step_gain * args.steps  # what compiling cost up front
        pays = f"{overhead / per_step_gain:,.0f} steps" if per_step_gain > 0 else "never (slower)"
        rate = lambda seconds, steps: steps * batch / seconds  # noqa: E731
        print(f"| {name} | {batch} | {rate(eager_all, args.steps):.0f} | {rate(comp_all, args.steps):.0f} | "
              f"{rate(eager_half, half):.0f} | {rate(comp_half, half):.0f} | {pays} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
