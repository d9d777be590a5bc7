"""One epoch of training and one pass of validation: the inner loops, shared by training and the benchmark.

The data stay one uint8 array (on the GPU when there is one); each batch is gathered by index, augmented
(albumentations on the host or tensor ops on the device, see competition.augment), normalised and sent
through the network in channels_last, under bf16 autocast on CUDA.
"""
import time
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from competition.augment import AlbumentationsAugment, normalize, tensor_augment
from competition.infer import infer
from competition.recipes import Recipe


@dataclass
class EpochStats:
    loss: float
    acc: float
    seconds: float
    images_per_s: float


def autocast_for(device: torch.device):
    """bf16 autocast on CUDA; a no-op context on CPU (no `if` at the call sites)."""
    if device.type == "cuda":
        return lambda: torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext


class BatchSource:
    """Shuffled, augmented training batches of a fixed set of rows, the same for the same epoch seed."""

    def __init__(self, images_u8: np.ndarray, labels: np.ndarray, recipe: Recipe, device: torch.device,
                 aug: str = "auto"):
        self.recipe, self.device = recipe, device
        self.aug = ("tensor" if device.type == "cuda" else "albumentations") if aug == "auto" else aug
        on_device = self.aug == "tensor"
        self.images = torch.from_numpy(images_u8).to(device) if on_device else images_u8
        self.labels = torch.from_numpy(labels).to(device)
        self.albu = AlbumentationsAugment(recipe) if self.aug == "albumentations" else None
        self.steps = len(labels) // recipe.batch_size  # drop the last partial batch (BatchNorm1d needs >1)

    def epoch(self, seed: int):
        """Yield (x normalised float, y) for one epoch."""
        order = np.random.default_rng(seed).permutation(len(self.labels))
        gen = torch.Generator(device=self.device).manual_seed(seed)
        if self.albu:
            self.albu.seed(seed)
        bs = self.recipe.batch_size
        for step in range(self.steps):
            idx = order[step * bs:(step + 1) * bs]
            idx_dev = torch.from_numpy(idx).to(self.device)
            if self.albu:
                x = self.albu(self.images[idx]).to(self.device, non_blocking=True)
            else:
                x = tensor_augment(self.images[idx_dev], self.recipe, gen)
            yield normalize(x), self.labels[idx_dev]


def train_one_epoch(model, source: BatchSource, seed: int, optimizer, scheduler, loss_fn, ema=None,
                    mixup=None, clip_grad: float = 0.0, start_step: int = 0, desc: str = "train",
                    progress: bool = True) -> EpochStats:
    model.train()
    autocast = autocast_for(source.device)
    total_loss, correct, seen, step = 0.0, 0, 0, start_step
    start = time.perf_counter()
    bar = tqdm(source.epoch(seed), total=source.steps, desc=desc, leave=False, disable=not progress)
    for x, y in bar:
        targets = y
        if mixup is not None:
            x, targets = mixup(x, y)
        with autocast():
            logits = model(x)
            loss = loss_fn(logits, targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if clip_grad:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad)
        optimizer.step()
        step += 1
        scheduler.step_update(num_updates=step)
        if ema is not None:
            ema.update(model, step=step)
        total_loss += loss.item() * len(y)
        correct += (logits.argmax(1) == y).sum().item()
        seen += len(y)
        bar.set_postfix(loss=f"{total_loss / seen:.3f}", acc=f"{correct / seen:.3f}",
                        img_s=f"{seen / (time.perf_counter() - start):.0f}")
    seconds = time.perf_counter() - start
    return EpochStats(total_loss / max(seen, 1), correct / max(seen, 1), seconds, seen / max(seconds, 1e-9))


def evaluate(model, images_u8, labels: np.ndarray, device: torch.device, batch_size: int = 512):
    """(loss, accuracy) without augmentation, scored from competition.infer's logits."""
    logits = torch.from_numpy(infer(model, images_u8, tta=0, batch_size=batch_size, device=device,
                                    autocast=autocast_for(device)))
    y = torch.as_tensor(labels)
    return F.cross_entropy(logits, y).item(), (logits.argmax(1) == y).float().mean().item()
