"""Inference: logits for a set of uint8 images, averaged over test-time-augmentation views.

Scoring and ensembling happen elsewhere, on the saved logits (airbench's infer/evaluate split).
All views of a batch go through the network in one pass, in large batches, under the device's autocast.
"""
import numpy as np
import torch

from competition.augment import normalize, tta_views
from competition.device import autocast_for
from models.fer import NUM_CLASSES


@torch.no_grad()
def infer(model: torch.nn.Module, images_u8, tta: int = 1, batch_size: int = 512,
          device: torch.device | str = "cpu") -> np.ndarray:
    """(N,48,48) uint8 (numpy, or a tensor already on the device) -> (N,7) float32 logits, the mean over the
    TTA views. The result stays on the device until the one copy back at the end."""
    model.eval()
    device = torch.device(device)
    images = torch.as_tensor(images_u8)
    out = []
    for start in range(0, len(images), batch_size):
        x = normalize(images[start:start + batch_size].to(device, non_blocking=True))
        views = tta_views(x, tta)
        with autocast_for(device):
            logits = model(torch.cat(views).contiguous(memory_format=torch.channels_last))
        out.append(logits.float().reshape(len(views), len(x), -1).mean(0))
    return torch.cat(out).cpu().numpy() if out else np.zeros((0, NUM_CLASSES), np.float32)
