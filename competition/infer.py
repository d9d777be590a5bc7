"""Inference: logits for a set of uint8 images, averaged over test-time-augmentation views.

Scoring and ensembling happen elsewhere, on the saved logits (airbench's infer/evaluate split).
All views of a batch go through the network in one pass, in large batches.
"""
import numpy as np
import torch

from competition.augment import normalize, tta_views


@torch.no_grad()
def infer(model: torch.nn.Module, images_u8, tta: int = 1, batch_size: int = 512,
          device: torch.device | str = "cpu", autocast=None) -> np.ndarray:
    """(N,48,48) uint8 (numpy or tensor) -> (N,7) float32 logits, the mean over the TTA views."""
    model.eval()
    images = torch.as_tensor(images_u8)
    out = []
    for start in range(0, len(images), batch_size):
        x = normalize(images[start:start + batch_size].to(device, non_blocking=True))
        views = tta_views(x, tta)
        with autocast() if autocast else torch.autocast("cpu", enabled=False):
            logits = model(torch.cat(views).contiguous(memory_format=torch.channels_last))
        out.append(logits.float().reshape(len(views), len(x), -1).mean(0).cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, 7), np.float32)

