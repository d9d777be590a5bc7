"""Training augmentations and test-time views, from the uint8 images straight to normalised tensors.

Two interchangeable paths give the same kinds of augmentation from the same Recipe knobs:
  albumentations  per image, on the host (`AlbumentationsAugment`). The default on CPU, where the
                  network is the bottleneck, not the ~0.3 ms per image this costs.
  tensor          per batch, on the device (`tensor_augment`): one affine grid_sample for flip, crop,
                  rotation and zoom, then brightness/contrast and erasing as broadcasts. The default on
                  CUDA, where per-image host work would starve the GPU (the airbench trick).
Both are seeded per epoch, so a resumed run sees exactly the augmentations it would have seen.
albumentations is imported only by the host path, so a GPU machine without it trains.
"""
import math

import numpy as np
import torch
import torch.nn.functional as F

from competition.recipes import Recipe
from models.fer import IMAGE_SIZE, MEAN, STD

S = IMAGE_SIZE


def normalize(images_u8: torch.Tensor) -> torch.Tensor:
    """(B,48,48) or (B,1,48,48) uint8 -> (B,1,48,48) float32, channels_last."""
    x = images_u8.reshape(images_u8.shape[0], 1, *images_u8.shape[-2:]).float()
    return ((x / 255.0 - MEAN) / STD).contiguous(memory_format=torch.channels_last)


def albumentations_pipeline(recipe: Recipe):
    """An albumentations Compose with the recipe's augmentations, per image (the CPU path)."""
    import albumentations as A
    import cv2
    border = dict(border_mode=cv2.BORDER_CONSTANT, fill=0)
    steps = [A.HorizontalFlip(p=0.5 if recipe.flip else 0.0)]
    if recipe.pad:
        steps += [A.PadIfNeeded(S + 2 * recipe.pad, S + 2 * recipe.pad, **border), A.RandomCrop(S, S)]
    if recipe.rotate or recipe.scale:
        steps.append(A.Affine(rotate=(-recipe.rotate, recipe.rotate), scale=(1 - recipe.scale, 1 + recipe.scale),
                              p=0.5, **border))
    if recipe.brightness or recipe.contrast:
        steps.append(A.RandomBrightnessContrast(recipe.brightness, recipe.contrast, p=0.5))
    if recipe.erase:
        steps.append(A.CoarseDropout(num_holes_range=(1, 1), hole_height_range=(8, 16),
                                     hole_width_range=(8, 16), fill=0, p=recipe.erase))
    return A.Compose(steps)


class AlbumentationsAugment:
    """Per-image albumentations on host uint8 arrays; returns a uint8 tensor batch."""

    def __init__(self, recipe: Recipe):
        self.pipeline = albumentations_pipeline(recipe)

    def seed(self, seed: int) -> None:
        self.pipeline.set_random_seed(seed)

    def __call__(self, images_u8: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.stack([self.pipeline(image=im)["image"] for im in images_u8]))


def tensor_augment(x_u8: torch.Tensor, recipe: Recipe, gen: torch.Generator) -> torch.Tensor:
    """Batched augmentation on the device: (B,48,48) uint8 -> (B,1,48,48) float in 0..255."""
    b, dev = x_u8.shape[0], x_u8.device
    rand = lambda *shape: torch.rand(*shape, generator=gen, device=dev)  # noqa: E731
    x = x_u8.reshape(b, 1, S, S).float()
    flip = torch.where(rand(b) < 0.5, -1.0, 1.0) if recipe.flip else torch.ones(b, device=dev)
    rotating = rand(b) < 0.5
    angle = torch.where(rotating, (rand(b) * 2 - 1) * math.radians(recipe.rotate), torch.zeros(b, device=dev))
    zoom = torch.where(rotating, 1 + (rand(b) * 2 - 1) * recipe.scale, torch.ones(b, device=dev))
    shift = (torch.randint(-recipe.pad, recipe.pad + 1, (b, 2), generator=gen, device=dev).float() * 2 / S
             if recipe.pad else torch.zeros(b, 2, device=dev))
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack([torch.stack([cos * flip, -sin, shift[:, 0]], 1),
                         torch.stack([sin * flip, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, (b, 1, S, S), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if recipe.brightness or recipe.contrast:
        on = (rand(b, 1, 1, 1) < 0.5).float()
        alpha = 1 + on * (rand(b, 1, 1, 1) * 2 - 1) * recipe.contrast
        beta = on * (rand(b, 1, 1, 1) * 2 - 1) * recipe.brightness * 255
        x = (x * alpha + beta).clamp(0, 255)
    if recipe.erase:
        x = x * (1 - erase_mask(b, recipe.erase, rand, dev))
    return x


def erase_mask(b: int, p: float, rand, dev) -> torch.Tensor:
    """One 8..16 px rectangle per image with probability p: (B,1,48,48), 1 inside the rectangle."""
    h, w = 8 + (rand(b) * 9).long(), 8 + (rand(b) * 9).long()
    top, left = (rand(b) * (S + 1 - h)).long(), (rand(b) * (S + 1 - w)).long()
    ys, xs = torch.arange(S, device=dev), torch.arange(S, device=dev)
    in_y = (ys[None] >= top[:, None]) & (ys[None] < (top + h)[:, None])
    in_x = (xs[None] >= left[:, None]) & (xs[None] < (left + w)[:, None])
    on = rand(b) < p
    return (in_y[:, :, None] & in_x[:, None, :] & on[:, None, None]).float()[:, None]


TEN_CROP = 44  # side of the ten-crop views, px: 4 px less than the face, resized back to 48


def tta_views(x: torch.Tensor, level: int) -> list[torch.Tensor]:
    """Views of a normalised batch: level 0 the image, 1 + its mirror, 2 + shifts of 2 px of both (10 views),
    3 ten-crop instead (10 views: `ten_crop` of the image, then of its mirror)."""
    if level == 3:
        return ten_crop(x) + ten_crop(torch.flip(x, dims=[3]))
    views = [x]
    if level >= 1:
        views.append(torch.flip(x, dims=[3]))
    if level >= 2:
        for base in list(views):
            for dy, dx in ((2, 0), (-2, 0), (0, 2), (0, -2)):
                views.append(shifted(base, dy, dx))
    return views


def shifted(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """The batch moved by (dy, dx) pixels, with black pixels (-MEAN/STD once normalised) shifted in."""
    pad = max(abs(dy), abs(dx))
    padded = F.pad(x, (pad, pad, pad, pad), value=-MEAN / STD)
    h, w = x.shape[-2:]
    return padded[:, :, pad - dy:pad - dy + h, pad - dx:pad - dx + w]


def view_count(level: int) -> int:
    """How many views tta_views makes at this level (what an inference pass costs, in forward passes)."""
    return len(tta_views(torch.zeros(1, 1, S, S), level))


def ten_crop(x: torch.Tensor, size: int = TEN_CROP) -> list[torch.Tensor]:
    """Corner crops (top-left, top-right, bottom-left, bottom-right) and the centre crop of size x size, each
    resized back to the batch's own size (bilinear), since some models need exactly 48x48."""
    h, w = x.shape[-2:]
    corners = ((0, 0), (0, w - size), (h - size, 0), (h - size, w - size), ((h - size) // 2, (w - size) // 2))
    return [F.interpolate(x[:, :, top:top + size, left:left + size], size=(h, w), mode="bilinear",
                          align_corners=False) for top, left in corners]
