"""Augmentation paths: seeded (so resumed runs match), identity when switched off, TTA views right."""
from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F

from competition.augment import AlbumentationsAugment, normalize, tensor_augment, tta_views
from competition.recipes import STRONG

OFF = replace(STRONG, flip=False, pad=0, rotate=0.0, scale=0.0, brightness=0.0, contrast=0.0, erase=0.0)


def images(n=16, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (n, 48, 48), dtype=np.uint8))


def test_tensor_augment_is_identity_when_every_knob_is_off():
    x = images()
    out = tensor_augment(x, OFF, torch.Generator().manual_seed(0))
    assert torch.allclose(out[:, 0], x.float(), atol=1e-3)


def test_tensor_flip_alone_mirrors_some_images_exactly():
    x = images()
    out = tensor_augment(x, replace(OFF, flip=True), torch.Generator().manual_seed(0))[:, 0]
    mirrored = [torch.allclose(o, im.float().flip(-1), atol=1e-3) for o, im in zip(out, x)]
    same = [torch.allclose(o, im.float(), atol=1e-3) for o, im in zip(out, x)]
    assert all(m or s for m, s in zip(mirrored, same)) and any(mirrored) and any(same)


def test_both_paths_repeat_with_the_same_seed_and_differ_with_another():
    x = images()
    t = lambda seed: tensor_augment(x, STRONG, torch.Generator().manual_seed(seed))  # noqa: E731
    assert torch.equal(t(1), t(1)) and not torch.equal(t(1), t(2))
    albu = AlbumentationsAugment(STRONG)
    runs = []
    for seed in (1, 1, 2):
        albu.seed(seed)
        runs.append(albu(x.numpy()))
    assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], runs[2])
    assert runs[0].dtype == torch.uint8 and runs[0].shape == x.shape


def test_tta_views():
    x = normalize(images(4))
    assert x.shape == (4, 1, 48, 48) and x.is_contiguous(memory_format=torch.channels_last)
    assert len(tta_views(x, 0)) == 1 and len(tta_views(x, 2)) == 10
    plain, flipped = tta_views(x, 1)
    assert torch.equal(flipped, x.flip(3))
    shifted = tta_views(x, 2)[2]  # moved down by 2 px
    assert torch.equal(shifted[:, :, 2:], x[:, :, :-2])


def test_tta_level_3_is_ten_crop_resized_to_48():
    x = normalize(images(4))
    views = tta_views(x, 3)
    assert len(views) == 10 and all(v.shape == (4, 1, 48, 48) for v in views)
    resized = lambda crop: F.interpolate(crop, size=(48, 48), mode="bilinear", align_corners=False)  # noqa: E731
    assert torch.allclose(views[0], resized(x[:, :, :44, :44]))  # top-left
    assert torch.allclose(views[3], resized(x[:, :, 4:, 4:]))  # bottom-right
    assert torch.allclose(views[4], resized(x[:, :, 2:46, 2:46]))  # centre
    assert torch.allclose(views[9], resized(x.flip(3)[:, :, 2:46, 2:46]))  # centre of the mirror
    assert not torch.allclose(views[4], x, atol=0.1)  # a crop, not the image
    constant = torch.full((2, 1, 48, 48), 0.7)
    assert torch.allclose(tta_views(constant, 3)[4], constant)


def test_ten_crop_of_a_mirrored_face_is_the_mirror_of_its_views():
    x = normalize(images(4))
    views, mirrored = tta_views(x, 3), tta_views(x.flip(3), 3)
    # order: image's top-left, top-right, bottom-left, bottom-right, centre, then the same of the mirror;
    # mirroring swaps left and right corners and the two halves
    order = [1, 0, 3, 2, 4, 6, 5, 8, 7, 9]
    for view, k in zip(mirrored, order):
        torch.testing.assert_close(view, views[k].flip(3), rtol=0, atol=1e-4)  # float rounding of the resize
    for view, original in zip(mirrored[5:], views[:5]):  # the mirror of the mirror is the image
        assert torch.equal(view, original)
