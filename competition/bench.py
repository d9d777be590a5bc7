"""Benchmark: training and TTA-inference images/s, the harness's path against a plain PyTorch loop.

    python -m competition.bench                                  # baseline_cnn, bn_cnn, resnet_cbam on data/fer2013.npz
    python -m competition.bench --synthetic 4096                 # random uint8 images: runs from a fresh clone
    python -m competition.bench --models bn_cnn --steps 5        # a quick look at one model
    python -m competition.bench --ablate                         # + where the speed comes from, one change at a time
    python -m competition.bench --device cuda                    # the same two paths on the GPU

It prints figures, it is not a test. In one run, on the same machine and the same rows, each model is timed on
  harness    competition.engine.train_one_epoch on a BatchSource (aug='auto': albumentations per image on CPU,
             batched tensor ops on CUDA), channels_last, bf16 autocast on CUDA, torch threads as train_folds
             sets them for one process (all cores), and the strong recipe's whole step:
             timm AdamW, cosine schedule, label smoothing and the EMA of the weights (so the harness does
             *more* work per step than the reference). Inference: competition.infer.infer, all TTA views of a
             512-image batch in one pass.
  reference  what a plain PyTorch script does: a DataLoader with default settings (num_workers=0, shuffle,
             batch 128) over a Dataset of the uint8 arrays applying the same albumentations pipeline per sample,
             fp32, contiguous, torch.set_num_threads(os.cpu_count()), torch.optim.AdamW, CrossEntropyLoss.
             Inference: DataLoader batches of 128, one forward per TTA view.
Training is timed over --steps batches after 2 warm-up batches (rows drawn once, shared by both paths);
inference over every test row (7,178, or the --synthetic count) with TTA level 1 (image + mirror), after a
warm-up of 2 batches. resnet_cbam48 (~15 s per batch on CPU) is left out unless named in --models.
The tables are markdown, ready for the README's speed table; the machine and the exact command come with them.
"""
import argparse
import math
import os
import platform
import shlex
import sys
import time

import numpy as np
import timm
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

import models
from competition.augment import MEAN, STD, albumentations_pipeline
from competition.data import DataError, load_dataset
from competition.engine import BatchSource, autocast_for, train_one_epoch
from competition.infer import infer
from competition.recipes import get_recipe
from competition.train_folds import build, pick_device

DEFAULT_MODELS = "baseline_cnn,bn_cnn,resnet_cbam"
RECIPE = "strong"  # the heavier augmentation of the two recipes; its batch size is 128, the reference's too
HARNESS_THREADS = os.cpu_count() or 1  # train_folds --threads default for one process
WARMUP = 2  # batches before the clock starts
TTA = 1  # image + horizontal mirror


def reference_threads() -> int:
    return os.cpu_count() or 1


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ---------------------------------------------------------------- the harness's path

def harness_train(name, images, labels, device, steps, aug="auto", threads=HARNESS_THREADS, channels_last=True):
    """Images/s of train_one_epoch over `steps` batches, and the trained model (channels_last unless told)."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    recipe = get_recipe(RECIPE, name)
    bs = recipe.batch_size
    warm = BatchSource(images[:WARMUP * bs], labels[:WARMUP * bs], recipe, device, aug)
    timed = BatchSource(images[:steps * bs], labels[:steps * bs], recipe, device, aug)
    model, _, optimizer, scheduler, ema = build(name, recipe, timed.steps, device)
    if not channels_last:  # the ablation's "before": weights (and so activations) in NCHW
        for module in (model, ema.module if ema is not None else None):
            if module is not None:
                module.to(memory_format=torch.contiguous_format)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
    run = lambda source, seed: train_one_epoch(model, source, seed, optimizer, scheduler, loss_fn, ema,  # noqa: E731
                                               clip_grad=recipe.clip_grad, progress=False)
    run(warm, 1)
    stats = run(timed, 2)  # loss.item() every step: the clock sees finished GPU work
    return stats.images_per_s, model


def harness_infer(model, images, device, threads=HARNESS_THREADS) -> float:
    torch.set_num_threads(threads)
    autocast = autocast_for(device)
    infer(model, images[:WARMUP * 512], TTA, device=device, autocast=autocast)
    start = time.perf_counter()
    infer(model, images, TTA, device=device, autocast=autocast)  # returns host numpy: synchronised
    return len(images) / (time.perf_counter() - start)


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


def reference_train(name, images, labels, device, steps):
    """Images/s of the plain loop over `steps` batches of 128, and the trained fp32 contiguous model."""
    torch.set_num_threads(reference_threads())
    torch.manual_seed(0)
    recipe = get_recipe(RECIPE, name)
    bs = recipe.batch_size
    pipeline = albumentations_pipeline(recipe)  # the same augmentation work as the harness's CPU path
    loader = lambda n: DataLoader(ArrayDataset(images[:n * bs], labels[:n * bs], pipeline),  # noqa: E731
                                  batch_size=bs, shuffle=True)
    model = timm.create_model(name, num_classes=7, in_chans=1).to(device)
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
    torch.set_num_threads(reference_threads())
    reference_predict(model, images[:WARMUP * 128], device)
    start = time.perf_counter()
    reference_predict(model, images, device)
    return len(images) / (time.perf_counter() - start)


# ---------------------------------------------------------------- one change at a time

ABLATION = [  # (what changed, threads (None = os.cpu_count()), channels_last, aug); each row adds one change
    ("reference settings: all threads, contiguous, albumentations", None, False, "albumentations"),
    ("contiguous -> channels_last (the harness on CPU)", HARNESS_THREADS, True, "albumentations"),
    ("albumentations -> tensor augmentation (the harness on CUDA)", HARNESS_THREADS, True, "tensor"),
]


def ablate(name, images, labels, device, steps) -> list[str]:
    rows, first = [], None
    for what, threads, channels_last, aug in ABLATION:
        print(f"  {name}: ablation '{what}'", file=sys.stderr, flush=True)
        ips, _ = harness_train(name, images, labels, device, steps, aug, threads or reference_threads(),
                               channels_last)
        first = first or ips
        rows.append(f"| {name} | {what} | {ips:.0f} | {ips / first:.2f} |")
    return rows


# ---------------------------------------------------------------- the run

def load_images(synthetic: int):
    """(train images, train labels, test images, description); random uint8 when `synthetic` > 0."""
    if synthetic:
        rng = np.random.default_rng(0)
        images = rng.integers(0, 256, size=(synthetic, 48, 48), dtype=np.uint8)
        return images, rng.integers(0, 7, synthetic), images, f"synthetic: {synthetic} random uint8 images"
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
            f"threads: harness {HARNESS_THREADS}, reference {reference_threads()}")


def geomean(values) -> float:
    values = list(values)
    return math.exp(sum(math.log(v) for v in values) / len(values))


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", default=DEFAULT_MODELS, help="comma list of registered models")
    p.add_argument("--steps", type=int, default=20, help="timed training batches per path, after 2 warm-up ones")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--synthetic", type=int, default=0, metavar="N",
                   help="N random uint8 images instead of data/fer2013.npz (0 = the real data)")
    p.add_argument("--ablate", action="store_true", help="also time the harness path one change at a time")
    return p.parse_args(argv)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    names = args.models.split(",")
    unknown = [n for n in names if n not in models.MODEL_NAMES]
    if unknown or args.steps < 1 or args.synthetic < 0:
        print(f"error: need --steps >= 1, --synthetic >= 0 and models from {', '.join(models.MODEL_NAMES)}"
              + (f" (unknown: {', '.join(unknown)})" if unknown else ""), file=sys.stderr)
        return 2
    try:
        train_images, train_labels, test_images, described = load_images(args.synthetic)
    except DataError as err:
        print(f"error: {err} (or run with --synthetic N)", file=sys.stderr)
        return 2
    device = pick_device(args.device, 0)
    bs = get_recipe(RECIPE, names[0]).batch_size
    images, labels = draw_rows(train_images, train_labels, max(args.steps, WARMUP) * bs)
    threads_before = torch.get_num_threads()
    rows, ratios, ablation = [], [], []
    try:
        for name in names:
            print(f"{name}: harness train/infer, reference train/infer", file=sys.stderr, flush=True)
            h_train, model = harness_train(name, images, labels, device, args.steps)
            h_infer = harness_infer(model, test_images, device)
            r_train, model = reference_train(name, images, labels, device, args.steps)
            r_infer = reference_infer(model, test_images, device)
            ratios.append((h_train / r_train, h_infer / r_infer))
            rows.append(f"| {name} | {h_train:.0f} | {r_train:.0f} | {h_train / r_train:.2f} | "
                        f"{h_infer:.0f} | {r_infer:.0f} | {h_infer / r_infer:.2f} |")
            if args.ablate:
                ablation += ablate(name, images, labels, device, args.steps)
    finally:
        torch.set_num_threads(threads_before)
    print(f"machine: {machine(device)}")
    print(f"data: {described}; training {args.steps} batches of {bs} after {WARMUP} warm-up, "
          f"inference {len(test_images)} rows with TTA {TTA} (image + mirror)")
    print(f"command: python -m competition.bench {shlex.join(argv)}".rstrip())
    print()
    print("| model | train img/s harness | reference | ratio | TTA inference img/s harness | reference | ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    print("\n".join(rows))
    print()
    print(f"geometric mean of the ratios over {len(names)} model(s): training "
          f"{geomean(r[0] for r in ratios):.2f}x, TTA inference {geomean(r[1] for r in ratios):.2f}x")
    if ablation:
        print()
        print("| model | harness training path, one change at a time | img/s | x first row |")
        print("|---|---|---:|---:|")
        print("\n".join(ablation))
    return 0


if __name__ == "__main__":
    sys.exit(main())
