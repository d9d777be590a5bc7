"""Training recipes: every knob in one block, one per line, saved with each run's config.json.

Three recipes:
  study   what the student's study did: Adam, StepLR every 20 epochs, weight decay 1e-4, gradient
          clipping, early stopping on fold-validation accuracy, light augmentation (flip, small rotation).
  strong  what the best FER2013 results use: AdamW, warm-up then cosine decay, label smoothing, an EMA of
          the weights, random crops with padding, flips, small rotations/scaling, brightness/contrast,
          random erasing; optional mixup/cutmix.
  quick   the strong recipe with one warm-up epoch, for `./run.sh all --quick`: fold 0 and a refit, each model's
          epochs (at most `epochs`) sized by competition.budget to end within the run's --budget minutes.

Short schedules get light augmentation. A model's facts may say `light_below` (air_fer's: 9 epochs): a schedule
of fewer epochs (the budget's plan, --epochs, or the recipe's) trains with flips and translation only (LIGHT),
since a short one underfits and rotation, zoom, brightness, contrast and erasing then cost it accuracy; a longer
one overfits without them. The knobs the user sets with --set keep their values.

Batch size and the rule that goes with it. `lr`, `warmup_epochs` and `ema_decay` are stated for
`base_batch` (128) images per step. `batch_size` 0 means "by device": 128 on CPU, `GPU_BATCH` on CUDA, where
128 leaves most of the GPU idle. At any other batch B the step uses (`scaled`):
  lr            x sqrt(B / base_batch) for the Adam family (square-root rule; Malladi et al. 2022),
                x B / base_batch for SGD (linear rule; Goyal et al. 2017)
  warm-up       the same factor as the lr: a larger step size gets a longer ramp (never past a quarter of the run)
  ema_decay     ** (B / base_batch): the same horizon in images, with B/base_batch times fewer updates
Measured on CPU for bn_cnn, fold 0, 10 epochs (docs/measurements.md, "batch size"): 61.44% at 128, 60.96% at
256 and 60.16% at 512 under this rule: 1.3 points lost at 512 in so short a run (`--set batch_size=256` is the
fallback).

Override any knob from the command line with `--set key=value` (unknown keys are refused; an Optional
knob also takes `none`):
    python -m competition.train_folds --model bn_cnn --recipe strong --set lr=0.001 --set batch_size=512
"""
import math
import typing
from dataclasses import dataclass, fields, replace

import models
from competition.errors import SettingsError, quote

GPU_BATCH = 512  # bare-step img/s on an H200 grows 3-4x from 128 to 512 for our models (measured on an H200)


@dataclass(frozen=True)
class Recipe:
    name: str = "strong"
    epochs: int = 40  # full passes over the fold's training rows
    batch_size: int = 0  # images per optimizer step; 0 = by device (128 on CPU, GPU_BATCH on CUDA)
    base_batch: int = 128  # the batch at which lr, warmup_epochs and ema_decay below are stated
    # optimizer and schedule (timm's create_optimizer_v2 / create_scheduler_v2)
    opt: str = "adamw"  # timm optimizer name: adamw, adam, sgd (nesterov momentum), ...
    lr: float = 2e-3  # peak learning rate at base_batch
    momentum: float = 0.9  # for sgd
    weight_decay: float = 0.05  # timm skips biases and norm weights
    sched: str = "cosine"  # timm scheduler: cosine (per step) | step (decay_rate every decay_epochs)
    warmup_epochs: int = 2  # linear warm-up from warmup_lr, at base_batch
    warmup_lr: float = 1e-5
    min_lr: float = 1e-5  # floor of the cosine
    decay_epochs: int = 20  # step schedule: epochs between decays
    decay_rate: float = 0.1  # step schedule: lr multiplier at each decay
    clip_grad: float = 0.0  # max gradient norm; 0 = off
    patience: int = 0  # early stopping: epochs without a better fold-validation accuracy; 0 = off
    # regularisation
    label_smoothing: float = 0.1
    ema_decay: float = 0.999  # per-step EMA of the weights at base_batch (timm ModelEmaV3, warm-up); 0 = off
    mixup: float = 0.0  # mixup alpha; 0 = off
    cutmix: float = 0.0  # cutmix alpha; 0 = off
    drop_rate: float | None = None  # classifier dropout; None = the architecture's own default
    # augmentation, in pixels of the 48x48 image and degrees
    flip: bool = True  # horizontal flip, p=0.5
    pad: int = 4  # random crop of 48x48 from the image padded by this many pixels; 0 = off
    rotate: float = 10.0  # random rotation in [-rotate, rotate] degrees, p=0.5; 0 = off
    scale: float = 0.1  # random zoom in [1-scale, 1+scale], with the rotation
    brightness: float = 0.2  # random brightness/contrast change, p=0.5; 0 = off
    contrast: float = 0.2
    erase: float = 0.25  # probability of erasing one 8..16 px rectangle (random erasing); 0 = off
    alt_flip: bool = False  # mirror each image on alternate epochs (a fixed random half first) instead of at random
    tta: int = 1  # test-time views: 0 image, 1 + mirror, 2 + shifts of 2 px (10 views), 3 ten-crop of 44 px (10)
    # net preparation and per-group learning rates (airbench's ingredients; nets without the hooks ignore them)
    whiten: bool = False  # first conv set from the training patches' covariance, then frozen (net.init_whitening)
    dirac: bool = False  # convs start as identity maps on their first channels (net.dirac_init)
    bias_lr: float = 1.0  # lr multiplier of the norm layers' biases (airbench: 64 with sgd)


@dataclass(frozen=True)
class StepSettings:
    """What one optimizer step really uses at the recipe's batch size (see the module docstring's rule)."""
    batch_size: int
    lr: float
    warmup_epochs: int
    ema_decay: float


STUDY = Recipe(name="study", epochs=60, batch_size=128, opt="adam", lr=1e-3, weight_decay=1e-4, sched="step",
               warmup_epochs=0, decay_epochs=20, decay_rate=0.1, clip_grad=1.0, patience=10, label_smoothing=0.0,
               ema_decay=0.0, pad=0, scale=0.0, brightness=0.0, contrast=0.0, erase=0.0)
STRONG = Recipe()
QUICK = replace(STRONG, name="quick", warmup_epochs=1)

RECIPES = {"study": STUDY, "strong": STRONG, "quick": QUICK}
LIGHT = dict(rotate=0.0, scale=0.0, brightness=0.0, contrast=0.0, erase=0.0)  # airbench's: flips and translation


def get_recipe(name: str, model: str, overrides: dict | None = None, device_type: str = "cpu",
               epochs: int = 0) -> Recipe:
    """The named recipe for a model, with the model's departures, the user's overrides and a concrete batch.
    `epochs`: the schedule a --budget planned (else the recipe's, or --epochs'). Under the model's `light_below`
    epochs the augmentation is LIGHT, except for the knobs the user set."""
    if name not in RECIPES:
        raise SettingsError(f"unknown recipe {name!r}; choose one of {sorted(RECIPES)}")
    overrides = overrides or {}
    recipe = replace(RECIPES[name], **models.facts(model).recipe_overrides.get(name, {}))  # its file's departures
    recipe = replace(recipe, **{**overrides, **({"epochs": epochs} if epochs else {})})
    recipe = replace(recipe, **{k: LIGHT[k] for k in light_off(model, recipe, overrides)})
    if recipe.batch_size <= 0:
        recipe = replace(recipe, batch_size=GPU_BATCH if device_type == "cuda" else recipe.base_batch)
    return recipe


def is_light(model: str, recipe: Recipe) -> bool:
    """Is the recipe's schedule short enough for `model`'s light augmentation (its facts' `light_below`)?"""
    return recipe.epochs < models.facts(model).light_below


def light_off(model: str, recipe: Recipe, overrides: dict) -> list[str]:
    """The augmentation knobs the light augmentation turns off for `model`'s schedule: LIGHT's, less those the user
    set (`overrides`); none where the schedule is not short (is_light)."""
    return [k for k in LIGHT if k not in overrides] if is_light(model, recipe) else []


def scaled(recipe: Recipe) -> StepSettings:
    """lr, warm-up and EMA decay at the recipe's batch size, by the rule in the module docstring."""
    ratio = recipe.batch_size / recipe.base_batch
    lr_factor = ratio if recipe.opt.lower().endswith("sgd") else math.sqrt(ratio)
    warmup = min(round(recipe.warmup_epochs * max(lr_factor, 1.0)), max(recipe.epochs // 4, recipe.warmup_epochs))
    ema = recipe.ema_decay ** ratio if recipe.ema_decay else 0.0
    return StepSettings(recipe.batch_size, recipe.lr * lr_factor, warmup, ema)


BOOLS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
NONE = ("none", "null")  # what `--set key=none` says for an Optional knob (drop_rate=none: the model's default)


def parse_value(kind, text: str):
    """`text` as a value of the Recipe field type `kind`: int, float, bool, str, or an Optional of one of them
    (`X | None`, which also takes none). Raises ValueError saying what was expected."""
    arms = typing.get_args(kind) or (kind,)  # `float | None` -> (float, NoneType); `int` -> (int,)
    concrete = [arm for arm in arms if arm is not type(None)]
    if len(concrete) != 1 or concrete[0] not in (int, float, bool, str):
        raise TypeError(f"parse_value: no rule for a recipe field of type {kind}")  # a new kind of knob: add it
    base, optional = concrete[0], len(arms) > 1
    if optional and text.strip().lower() in NONE:
        return None
    if base is bool:
        if text.strip().lower() not in BOOLS:
            raise ValueError("expected true or false")
        return BOOLS[text.strip().lower()]
    try:
        return base(text)
    except ValueError:
        raise ValueError(f"expected a {base.__name__}" + (" or none" if optional else "")) from None


def parse_overrides(pairs: list[str]) -> dict:
    """['lr=0.01', 'flip=false', 'drop_rate=none'] -> typed values; unknown keys raise SettingsError naming the
    known ones."""
    types_of = {f.name: f.type for f in fields(Recipe)}
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or key not in types_of or key == "name":
            raise SettingsError(f"--set {quote(pair)}: expected key=value with key one of "
                                f"{sorted(k for k in types_of if k != 'name')}")
        try:
            out[key] = parse_value(types_of[key], value)
        except ValueError as err:
            raise SettingsError(f"--set {quote(pair)}: {quote(value)} is not valid for {key} ({err})") from None
    return out


