"""Benchmark: training and TTA-inference images/s, the harness's path against a plain PyTorch loop.

    python -m competition.bench                                  # baseline_cnn, bn_cnn, resnet_cbam on data/fer2013.npz
    python -m competition.bench --synthetic 4096                 # random uint8 images: runs from a fresh clone
    python -m competition.bench --models bn_cnn --steps 5        # a quick look at one model
    python -m competition.bench --ablate                         # + where the speed comes from, one change at a time
    python -m competition.bench --device cuda                    # the same paths on the GPU, + the ceiling

It prints figures, it is not a test. In one run, on the same machine and the same rows, each model is timed on
  harness    competition.engine.train_one_epoch on a BatchSource (aug='auto': albumentations per image on CPU,
             batched tensor ops on CUDA), channels_last, bf16 autocast on CUDA, torch threads as train_folds
             sets them for one process (all cores), and the strong recipe's whole step:
             timm AdamW, cosine schedule, label smoothing and the EMA of the weights (so the harness does
             *more* work per step than the reference). Inference: competition.infer.infer, all TTA views of a
             512-image batch in one pass. Its batch is the recipe's for the device: 128 on CPU, 512 on CUDA
             (competition.recipes.GPU_BATCH), with lr, warm-up and EMA scaled by the recipe's rule.
  reference  what a plain PyTorch script does: a DataLoader with default settings (num_workers=0, shuffle,
             batch 128) over a Dataset of the uint8 arrays applying the same albumentations pipeline per sample,
             fp32, contiguous, torch.set_num_threads(os.cpu_count()), torch.optim.AdamW, CrossEntropyLoss.
             Inference: DataLoader batches of 128, one forward per TTA view.
  ceiling    (CUDA only) a bare training step of the same model at the harness's batch: one batch already on
             the GPU, forward + backward + torch.optim.AdamW(fused=True), bf16 autocast, channels_last, no
             augmentation, no EMA, no host sync per step. The harness's fraction of it says what the loop costs.
Training is timed over --steps batches after 2 warm-up batches (rows drawn once, shared by both paths);
inference over every test row (7,178, or the --synthetic count) with TTA level 1 (image + mirror), timed on a
second pass after an untimed one (cuDNN tunes each batch shape, the last shorter one too, on its first pass). resnet_cbam48 (~15 s per batch on CPU) is left out unless named in --models.
The tables are markdown, ready for docs/measurements.md's speed table; the machine and the exact command come
with them.
"""
import argparse
import os
import platform
import shlex
import statistics
import sys
import time

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

import models
from competition.augment import albumentations_pipeline
from competition.data import DataError, load_dataset
from competition.device import autocast_for, pick_device, tune_for
from competition.engine import BatchSource, build, create_model, train_one_epoch
from competition.errors import SettingsError, run_command
from competition.infer import infer
from competition.recipes import get_recipe
from models.fer import IMAGE_SIZE, MEAN, NUM_CLASSES, STD

DEFAULT_MODELS = ",".join(models.default_archs("cpu"))
RECIPE = "strong"  # the heavier augmentation of the recipes; on CPU its batch is 128, the reference's too
REFERENCE_BATCH = 128
THREADS = os.cpu_count() or 1  # both paths: train_folds' --threads default for one process, the plain loop's
WARMUP = 2  # batches before the clock starts
TTA = 1  # image + horizontal mirror


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ---------------------------------------------------------------- the harness's path

def harness_recipe(name: str, device: torch.device):
    return get_recipe(RECIPE, name, device_type=device.type)


def harness_train(name, images, labels, device, steps, aug="auto", channels_last=True):
    """Images/s of train_one_epoch over `steps` batches, and the trained model (channels_last unless told)."""
    torch.set_num_threads(THREADS)
    torch.manual_seed(0)
    recipe = harness_recipe(name, device)
    bs = recipe.batch_size
    warm = BatchSource(images[:WARMUP * bs], labels[:WARMUP * bs], recipe, device, aug)
    timed = BatchSource(images[:steps * bs], labels[:steps * bs], recipe, device, aug)
    parts = build(name, recipe, timed.steps, device, sample=timed.sample())
    if not channels_last:  # the ablation's "before": weights (and so activations) in NCHW
        for module in (parts.model, parts.ema.module if parts.ema is not None else None):
            if module is not None:
                module.to(memory_format=torch.contiguous_format)
    train_one_epoch(parts, warm, 1, progress=False)
    stats = train_one_epoch(parts, timed, 2, progress=False)  # ends by reading the device sums: GPU work done
    return stats.images_per_s, parts.model


def harness_infer(model, images, device) -> float:
    """Images/s of a timed pass after an untimed one over the same rows: cudnn.benchmark tunes each new batch
    shape once (the last, shorter batch too), and that tuning is not inference."""
    torch.set_num_threads(THREADS)
    infer(model, images, TTA, device=device)
    start = time.perf_counter()
    infer(model, images, TTA, device=device)  # returns host numpy: synchronised
    return len(images) / (time.perf_counter() - start)


def ceiling_train(name, images, labels, device, steps) -> float:
    """Images/s of the bare step at the harness's batch: one resident batch, fused AdamW, nothing else."""
    torch.manual_seed(0)
    recipe = harness_recipe(name, device)
    bs = recipe.batch_size
    x = ((torch.as_tensor(images[:bs]).to(device).float() / 255 - MEAN) / STD).reshape(bs, 1, IMAGE_SIZE, IMAGE_SIZE)
    x, y = x.contiguous(memory_format=torch.channels_last), torch.as_tensor(labels[:bs]).to(device)
    model = create_model(name).to(device, memory_format=torch.channels_last).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.lr, fused=device.type == "cuda")
    loss_fn = nn.CrossEntropyLoss()

    def run(n):
        for _ in range(n):
            with autocast_for(device):
                loss = loss_fn(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        sync(device)
    run(WARMUP)
    start = time.perf_counter()
    run(steps)
    return steps * bs / (time.perf_counter() - start)


# ---------------------------------------------------------------- the plain reference loop

class ArrayDataset(Dataset):
    """uint8 (N,48,48) rows -> ((1,48,48) normalised float32, label), augmented per sample when given a pipeline."""

    def __init__(self, images, labels, pipeline=None):
        self.images, self.labels, self.pipeline = images, labels, pipeline

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        image = self.images[i]
        if self.pipeline is not None:
            image = self.pipeline(image=image)["image"]
        x = (torch.from_numpy(np.ascontiguousarray(image)).float() / 255.0 - MEAN) / STD
        return x.unsqueeze(0), int(self.labels[i])


def reference_epoch(model, loader, optimizer, loss_fn, device) -> tuple[int, float]:
    """(images, seconds) of one pass of the textbook loop."""
    model.train()
    seen, total_loss = 0, 0.0
    start = time.perf_counter()
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        loss = loss_fn(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total_loss += loss.item()
        seen += len(y)
    sync(device)
    return seen, time.perf_counter() - start


def reference_pipeline(recipe):
    """The same augmentation work as the harness's CPU path; None where albumentations does not import (not
    installed on the GPU machine, or a carried wheel that breaks at import: pydantic raises SystemError on a
    core mismatch): the reference then trains without augmentation, and the tables say so."""
    try:
        return albumentations_pipeline(recipe)
    except Exception as err:  # an optional import: any failure is reported and skipped
        print(f"note: albumentations does not import ({type(err).__name__}: {err}); the reference loop trains "
              f"without augmentation", file=sys.stderr)
        return None


def reference_train(name, images, labels, device, steps):
    """Images/s of the plain loop over `steps` batches of 128, and the trained fp32 contiguous model."""
    torch.set_num_threads(THREADS)
    torch.manual_seed(0)
    recipe = get_recipe(RECIPE, name)
    bs = REFERENCE_BATCH
    pipeline = reference_pipeline(recipe)
    loader = lambda n: DataLoader(ArrayDataset(images[:n * bs], labels[:n * bs], pipeline),  # noqa: E731
                                  batch_size=bs, shuffle=True)
    model = create_model(name).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    loss_fn = nn.CrossEntropyLoss()
    reference_epoch(model, loader(WARMUP), optimizer, loss_fn, device)
    seen, seconds = reference_epoch(model, loader(steps), optimizer, loss_fn, device)
    return seen / seconds, model


@torch.no_grad()
def reference_predict(model, images, device) -> torch.Tensor:
    model.eval()
    loader = DataLoader(ArrayDataset(images, np.zeros(len(images), np.int64)), batch_size=128)
    out = []
    for x, _ in loader:
        x = x.to(device)
        views = (x, torch.flip(x, dims=[3]))
        out.append(torch.stack([model(v) for v in views]).mean(0).cpu())
    return torch.cat(out)


def reference_infer(model, images, device) -> float:
    torch.set_num_threads(THREADS)
    reference_predict(model, images, device)  # untimed, as for the harness
    start = time.perf_counter()
    reference_predict(model, images, device)
    return len(images) / (time.perf_counter() - start)


# ---------------------------------------------------------------- one change at a time

ABLATION = [  # (what changed, channels_last, aug); each row adds one change
    ("reference settings: all threads, contiguous, albumentations", False, "albumentations"),
    ("contiguous -> channels_last (the harness on CPU)", True, "albumentations"),
    ("albumentations -> tensor augmentation (the harness on CUDA)", True, "tensor"),
]


def ablate(name, images, labels, device, steps) -> list[str]:
    rows, first = [], None
    for what, channels_last, aug in ABLATION:
        print(f"  {name}: ablation '{what}'", file=sys.stderr, flush=True)
        ips, _ = harness_train(name, images, labels, device, steps, aug, channels_last)
        first = first or ips
        rows.append(f"| {name} | {what} | {ips:.0f} | {ips / first:.2f} |")
    return rows


# ---------------------------------------------------------------- the run

def load_images(synthetic: int):
    """(train images, train labels, test images, description); random uint8 when `synthetic` > 0."""
    if synthetic:
        rng = np.random.default_rng(0)
        images = rng.integers(0, 256, size=(synthetic, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
        return images, rng.integers(0, NUM_CLASSES, synthetic), images, f"synthetic: {synthetic} random uint8 images"
    data = load_dataset()
    return (data.train_images, data.train_labels, data.test_images,
            f"data/fer2013.npz: {len(data.train_labels)} training rows, {len(data.test_images)} test rows")


def draw_rows(images, labels, n: int):
    """n training rows drawn once (with replacement only when there are fewer than n), shared by both paths."""
    rows = np.random.default_rng(0).choice(len(labels), n, replace=n > len(labels))
    return np.ascontiguousarray(images[rows]), np.ascontiguousarray(labels[rows])


def machine(device: torch.device) -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    gpu = f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""
    return (f"{cpu}, {os.cpu_count()} logical cores, torch {torch.__version__}, device {device}{gpu}; "
            f"threads: {THREADS} on both paths")


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", default=DEFAULT_MODELS, help="comma list of registered models")
    p.add_argument("--steps", type=int, default=20, help="timed training batches per path, after 2 warm-up ones")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--synthetic", type=int, default=0, metavar="N",
                   help="N random uint8 images instead of data/fer2013.npz (0 = the real data)")
    p.add_argument("--ablate", action="store_true", help="also time the harness path one change at a time")
    return p.parse_args(argv)


def time_model(name, images, labels, test_images, device, args) -> tuple[list[float], list[str]]:
    """[harness train, reference train, harness infer, reference infer(, ceiling)], and the ablation rows."""
    print(f"{name}: harness train/infer, reference train/infer", file=sys.stderr, flush=True)
    h_train, model = harness_train(name, images, labels, device, args.steps)
    h_infer = harness_infer(model, test_images, device)
    r_train, model = reference_train(name, images, labels, device, args.steps)
    r_infer = reference_infer(model, test_images, device)
    figures = [h_train, r_train, h_infer, r_infer]
    if device.type == "cuda":
        print(f"{name}: ceiling (bare step)", file=sys.stderr, flush=True)
        figures.append(ceiling_train(name, images, labels, device, args.steps))
    return figures, ablate(name, images, labels, device, args.steps) if args.ablate else []


def print_tables(names, results, ablation, device, described, n_test, argv, args) -> None:
    batch = harness_recipe(names[0], device).batch_size
    ceiling = device.type == "cuda"
    print(f"machine: {machine(device)}")
    print(f"data: {described}; training {args.steps} batches (harness {batch}, reference {REFERENCE_BATCH}) after "
          f"{WARMUP} warm-up, inference {n_test} rows with TTA {TTA} (image + mirror)")
    print(f"command: python -m competition.bench {shlex.join(argv)}".rstrip())
    if reference_pipeline(harness_recipe(names[0], torch.device("cpu"))) is None:
        print("note: albumentations does not import here: the reference loop trains without augmentation")
    print()
    print("| model | train img/s harness | reference | ratio | TTA inference img/s harness | reference | ratio |"
          + (" ceiling img/s | harness / ceiling |" if ceiling else ""))
    print("|---|---:|---:|---:|---:|---:|---:|" + ("---:|---:|" if ceiling else ""))
    for name, f in zip(names, results):
        print(f"| {name} | {f[0]:.0f} | {f[1]:.0f} | {f[0] / f[1]:.2f} | {f[2]:.0f} | {f[3]:.0f} | {f[2] / f[3]:.2f} |"
              + (f" {f[4]:.0f} | {f[0] / f[4]:.0%} |" if ceiling else ""))
    print()
    geo = lambda i, j: statistics.geometric_mean(f[i] / f[j] for f in results)  # noqa: E731
    print(f"geometric mean of the ratios over {len(names)} model(s): training {geo(0, 1):.2f}x, "
          f"TTA inference {geo(2, 3):.2f}x" + (f", harness / ceiling {geo(0, 4):.0%}" if ceiling else ""))
    if ablation:
        print()
        print("| model | harness training path, one change at a time | img/s | x first row |")
        print("|---|---|---:|---:|")
        print("\n".join(ablation))


def _main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    names = args.models.split(",")
    unknown = [n for n in names if n not in models.MODEL_NAMES]
    if unknown or args.steps < 1 or args.synthetic < 0:
        raise SettingsError(f"need --steps >= 1, --synthetic >= 0 and models from {', '.join(models.MODEL_NAMES)}"
                            + (f" (unknown: {', '.join(unknown)})" if unknown else ""))
    try:
        train_images, train_labels, test_images, described = load_images(args.synthetic)
    except DataError as err:
        raise DataError(f"{err} (or run with --synthetic N)") from err
    device = pick_device(args.device, 0)
    tune_for(device)
    batch = max(harness_recipe(names[0], device).batch_size, REFERENCE_BATCH)
    images, labels = draw_rows(train_images, train_labels, max(args.steps, WARMUP) * batch)
    threads_before = torch.get_num_threads()
    results, ablation = [], []
    try:
        for name in names:
            figures, rows = time_model(name, images, labels, test_images, device, args)
            results.append(figures)
            ablation += rows
    finally:
        torch.set_num_threads(threads_before)
    print_tables(names, results, ablation, device, described, len(test_images), argv, args)
    return 0


def main(argv=None) -> int:
    return run_command(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
