"""The training step's parts, in one place: model, optimizer, schedule, EMA, loss, one epoch, evaluation.

`train_folds` (per-fold runs) and `bench` (speed) both build from here, so what is measured is what trains.
Which device, and its autocast, is competition.device's (apart, so that infer can use it too).
The data stay one uint8 array (a tensor on the GPU when there is one); each batch is gathered by index,
augmented (albumentations on the host or tensor ops on the device, see competition.augment), normalised
and sent through the network in channels_last, under the autocast of competition.device.pick_precision (bf16
on recent GPUs, fp16 with a GradScaler on older ones such as Kaggle's T4 and P100; on the CPU bf16 where it is
native, else fp32).

On CUDA the step loop never waits for the GPU (airbench): the epoch's shuffle order goes to the device once,
loss and accuracy add up in device tensors that are read once at the end of the epoch, the optimizer is
fused and the EMA a foreach lerp. So the host queues steps ahead of the GPU instead of waiting on each.
"""
import functools
import time
from dataclasses import dataclass, replace

import numpy as np
import timm
import torch
import torch.nn.functional as F
from timm.data import Mixup
from timm.loss import SoftTargetCrossEntropy
from timm.optim import create_optimizer_v2, muon, param_groups_weight_decay
from timm.scheduler import create_scheduler_v2
from timm.utils import ModelEmaV3
from tqdm import tqdm

import models
from competition.augment import normalize, tensor_augment
from competition.device import autocast_for, grad_scaler, newton_schulz_dtype, pick_precision
from competition.errors import SettingsError
from competition.infer import infer
from competition.recipes import Recipe, StepSettings, scaled
from models.fer import IMAGE_SIZE, IN_CHANS, NUM_CLASSES


@dataclass
class EpochStats:
    loss: float
    acc: float
    seconds: float
    images_per_s: float


@dataclass
class TrainParts:
    """What one training run steps: built by `build`, stepped by `train_one_epoch`, saved by the caller."""
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: object  # a timm scheduler: step_update(num_updates) per step, step(epoch) per epoch
    ema: ModelEmaV3 | None
    loss_fn: torch.nn.Module
    mixup: Mixup | None
    clip_grad: float
    precision: str = "fp32"  # competition.device.pick_precision: bf16 | fp16 | fp32
    scaler: torch.amp.GradScaler | None = None  # loss scaling, enabled for fp16 only

    @property
    def judged(self) -> torch.nn.Module:
        """The weights that are validated and kept: the EMA's when there is one."""
        return self.ema.module if self.ema is not None else self.model


# ---------------------------------------------------------------- model

def create_model(name: str, drop_rate: float | None = None) -> torch.nn.Module:
    """One of ours (models/) or any timm architecture, with 1 input channel and 7 classes; checked at 48x48."""
    if name not in models.MODEL_NAMES and not timm.is_model(name):
        raise SettingsError(f"unknown model {name!r}: not one of ours ({', '.join(models.MODEL_NAMES)}) "
                            f"nor a timm architecture (see timm.list_models()).")
    try:  # create_model drops None kwargs: drop_rate=None keeps the architecture's own default
        model = timm.create_model(name, num_classes=NUM_CLASSES, in_chans=IN_CHANS, drop_rate=drop_rate)
    except (TypeError, ValueError, RuntimeError) as err:
        raise SettingsError(f"timm cannot build {name!r} with in_chans=1, num_classes=7: {err}") from err
    if name not in models.MODEL_NAMES:
        check_fits_fer(name, model)
    return model


def check_fits_fer(name: str, model: torch.nn.Module) -> None:
    """A timm model built for 224 px may not run on 48x48 faces (too many downsamplings, fixed position
    embeddings): try one tiny forward pass and say why when it fails."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, IN_CHANS, IMAGE_SIZE, IMAGE_SIZE))
    except (RuntimeError, ValueError, AssertionError) as err:
        raise SettingsError(f"{name} does not work on 48x48 images: {str(err).splitlines()[0]} "
                            f"(it downsamples too far or needs a fixed input size; try a CNN such as "
                            f"resnet18 or vgg13_bn, or one of ours).") from err
    finally:
        model.train(was_training)


def net_from_best(saved: dict, device: torch.device) -> torch.nn.Module:
    """A best.pt's dict (artifacts.load_best: arch and kwargs inside) -> its net on device, channels_last."""
    net = create_model(saved["model"], saved.get("drop_rate"))
    net.load_state_dict(saved["state_dict"])
    return net.to(device, memory_format=torch.channels_last)


# ---------------------------------------------------------------- the parts of a run

_TIMM_NEWTON_SCHULZ = getattr(muon.zeropower_via_newtonschulz, "__wrapped__", muon.zeropower_via_newtonschulz)


@functools.wraps(_TIMM_NEWTON_SCHULZ)
def newton_schulz(G: torch.Tensor, *args, dtype: torch.dtype | None = None, **kwargs) -> torch.Tensor:
    """timm's Newton-Schulz iterations in the dtype that is fast on G's device (newton_schulz_dtype), unless the
    caller names one. timm's Muon calls it by its module's name, with no dtype, so it is set there once, below."""
    return _TIMM_NEWTON_SCHULZ(G, *args, dtype=dtype or newton_schulz_dtype(G.device), **kwargs)


muon.zeropower_via_newtonschulz = newton_schulz


def build(model_name: str, recipe: Recipe, steps_per_epoch: int, device: torch.device,
          soft_targets: bool = False, sample=None, precision: str = "auto",
          compile_model: bool = False, step: StepSettings | None = None) -> TrainParts:
    """Model, optimizer, scheduler, EMA, loss and mixup from timm's factories.
    soft_targets: the batches carry (batch, 7) target probabilities (a teacher's) instead of class indices;
    the loss is then the cross-entropy against them, and label smoothing is the teacher's to give.
    sample: normalised training images for a data-dependent init (`prepare_net`).
    step: lr, warm-up and EMA decay at the recipe's batch, as the run recorded them (a fold's RunConfig.step);
    the batch rule (`scaled`) is applied here only for a caller that has none (the bench, the budget's probe)."""
    if soft_targets and (recipe.mixup or recipe.cutmix):
        raise SettingsError("training against a teacher's soft targets with mixup or cutmix is not supported: "
                            "--set mixup=0 --set cutmix=0")
    step = step or scaled(recipe)
    model = create_model(model_name, recipe.drop_rate).to(device, memory_format=torch.channels_last)
    prepare_net(model, recipe, sample)
    fused = {"fused": True} if device.type == "cuda" and recipe.opt.lower() in ("adam", "adamw", "sgd") else {}
    groups = {"param_group_fn": lambda net: param_groups(net, recipe)} if recipe.bias_lr != 1 else {}
    optimizer = create_optimizer_v2(model, opt=recipe.opt, lr=step.lr, weight_decay=recipe.weight_decay,
                                    momentum=recipe.momentum, **fused, **groups)
    scheduler = make_scheduler(optimizer, recipe, steps_per_epoch, step=step)
    ema = ModelEmaV3(model, decay=step.ema_decay, use_warmup=True) if step.ema_decay else None
    mixup = (Mixup(mixup_alpha=recipe.mixup, cutmix_alpha=recipe.cutmix, label_smoothing=recipe.label_smoothing,
                   num_classes=NUM_CLASSES) if recipe.mixup or recipe.cutmix else None)
    loss_fn = (SoftTargetCrossEntropy() if mixup or soft_targets
               else torch.nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing))
    precision = pick_precision(device, precision)
    if compile_model:  # in place (nn.Module.compile): state_dict keys, the EMA's copy and checkpoints stay as they are
        model.compile()
    return TrainParts(model, optimizer, scheduler, ema, loss_fn, mixup, recipe.clip_grad, precision,
                      grad_scaler(device, precision))


def make_scheduler(optimizer, recipe: Recipe, steps_per_epoch: int, epochs: int | None = None,
                   step: StepSettings | None = None):
    """timm's scheduler for the recipe, over `epochs` (default the recipe's): a budget that plans again after
    the first epochs gives the cosine its new length before it has decayed far. `step`: as in `build`."""
    return create_scheduler_v2(optimizer, sched=recipe.sched, num_epochs=epochs or recipe.epochs,
                               warmup_epochs=(step or scaled(recipe)).warmup_epochs, warmup_lr=recipe.warmup_lr,
                               min_lr=recipe.min_lr, decay_epochs=recipe.decay_epochs, decay_rate=recipe.decay_rate,
                               step_on_epochs=False, updates_per_epoch=steps_per_epoch)[0]


def prepare_net(net: torch.nn.Module, recipe: Recipe, sample) -> None:
    """The recipe's inits that a net offers (airbench's): identity convs, then a first conv that whitens the
    sample's patches. A resumed run prepares the same way, then loads its weights over these."""
    if recipe.dirac and hasattr(net, "dirac_init"):
        net.dirac_init()
    if recipe.whiten and hasattr(net, "init_whitening"):
        if sample is None:
            raise SettingsError("whiten=true needs training images to set the first conv from")
        net.init_whitening(torch.as_tensor(sample).to(next(net.parameters()).device))


def param_groups(net: torch.nn.Module, recipe: Recipe) -> list[dict]:
    """timm's weight-decay groups, with the norm layers' biases apart at `bias_lr` times the lr (timm's
    schedulers honour a group's lr_scale)."""
    norm_biases = {id(m.bias) for m in net.modules()
                   if isinstance(m, torch.nn.modules.batchnorm._NormBase) and m.bias is not None}
    groups = []
    for group in param_groups_weight_decay(net, recipe.weight_decay):
        mine = [p for p in group["params"] if id(p) in norm_biases]
        rest = [p for p in group["params"] if id(p) not in norm_biases]
        groups += [g for g in ({**group, "params": rest}, {**group, "params": mine, "lr_scale": recipe.bias_lr})
                   if g["params"]]
    return groups


class BatchSource:
    """Shuffled, augmented training batches of a fixed set of rows, the same for the same epoch seed.
    `labels`: class indices (n,), or soft targets (n, 7) that sum to 1 per row."""

    def __init__(self, images_u8, labels, recipe: Recipe, device: torch.device, aug: str = "auto"):
        self.device = device
        self.recipe = replace(recipe, flip=False) if recipe.alt_flip else recipe  # the mirror is chosen here
        self.aug = ("tensor" if device.type == "cuda" else "albumentations") if aug == "auto" else aug
        if self.aug == "albumentations":
            from competition.augment import AlbumentationsAugment  # host-only: the GPU path never imports it
            self.albu = AlbumentationsAugment(self.recipe)
            self.images = np.asarray(images_u8.cpu() if torch.is_tensor(images_u8) else images_u8)
        else:
            self.albu, self.images = None, torch.as_tensor(images_u8).to(device)
        self.labels = torch.as_tensor(labels).to(device)
        self.batch = recipe.batch_size
        self.steps = len(labels) // self.batch  # drop the last partial batch (BatchNorm1d needs >1)
        # alt_flip (airbench): a fixed random half of the rows is mirrored on even epochs, the other half on odd
        self.half = (np.random.default_rng(0).random(len(labels)) < 0.5) if recipe.alt_flip else None

    def sample(self, n: int = 5000) -> torch.Tensor:
        """The first n rows, normalised, unaugmented: what a data-dependent init looks at."""
        images = self.images[:n]
        return normalize(images if torch.is_tensor(images) else torch.from_numpy(np.asarray(images)))

    def mirrored(self, x, host_idx: np.ndarray, epoch: int):
        """alt_flip: this epoch's half of the rows, mirrored (uint8 rows, host or device)."""
        flip = self.half[host_idx] ^ bool(epoch % 2)
        if torch.is_tensor(x):
            return torch.where(torch.from_numpy(flip).to(x.device)[:, None, None], x.flip(-1), x)
        return np.where(flip[:, None, None], x[..., ::-1], x)

    def epoch(self, seed: int, epoch: int = 0):
        """Yield (x normalised float, y) for one epoch; on the tensor path no step copies from the host
        (with alt_flip, one small mask per step)."""
        order = np.random.default_rng(seed).permutation(len(self.labels))
        gen = torch.Generator(device=self.device).manual_seed(seed)
        if self.albu:
            self.albu.seed(seed)
        order_dev = torch.from_numpy(order).to(self.device)  # once per epoch
        for step in range(self.steps):
            idx = order_dev[step * self.batch:(step + 1) * self.batch]
            host_idx = order[step * self.batch:(step + 1) * self.batch]
            rows = self.images[host_idx] if self.albu else self.images[idx]
            if self.half is not None:
                rows = self.mirrored(rows, host_idx, epoch)
            x = self.albu(np.ascontiguousarray(rows)).to(self.device, non_blocking=True) if self.albu else \
                tensor_augment(rows, self.recipe, gen)
            yield normalize(x), self.labels[idx]


# ---------------------------------------------------------------- training and evaluation

def train_one_epoch(parts: TrainParts, source: BatchSource, seed: int, start_step: int = 0,
                    desc: str = "train", progress: bool = True) -> EpochStats:
    """One pass over the source's batches; the only host sync is reading the sums after the last step."""
    model = parts.model
    model.train()
    loss_sum = torch.zeros((), device=source.device)
    correct = torch.zeros((), dtype=torch.long, device=source.device)
    step, start = start_step, time.perf_counter()
    batches = source.epoch(seed, start_step // max(source.steps, 1))  # the epoch's number, for alt_flip
    for x, y in tqdm(batches, total=source.steps, desc=desc, leave=False, disable=not progress,
                     unit="batch"):
        x, targets = parts.mixup(x, y) if parts.mixup is not None else (x, y)
        with autocast_for(source.device, parts.precision):
            logits = model(x)
            loss = parts.loss_fn(logits, targets)
        parts.optimizer.zero_grad(set_to_none=True)
        parts.scaler.scale(loss).backward()  # fp16: scaled; bf16 and fp32: as is
        if parts.clip_grad:
            parts.scaler.unscale_(parts.optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), parts.clip_grad, foreach=True)
        parts.scaler.step(parts.optimizer)  # fp16: skipped when a gradient overflowed
        parts.scaler.update()
        step += 1
        parts.scheduler.step_update(num_updates=step)
        if parts.ema is not None:
            parts.ema.update(model, step=step)
        loss_sum += loss.detach().float() * len(y)
        correct += (logits.detach().argmax(1) == (y if y.ndim == 1 else y.argmax(1))).sum()
    seen = source.steps * source.batch
    loss_value, acc_value = loss_sum.item() / max(seen, 1), correct.item() / max(seen, 1)  # the epoch's one sync
    seconds = time.perf_counter() - start
    return EpochStats(loss_value, acc_value, seconds, seen / max(seconds, 1e-9))


def evaluate(model, images_u8, labels, device: torch.device, batch_size: int = 1024) -> tuple[float, float]:
    """(loss, accuracy) without augmentation, scored from competition.infer's logits."""
    logits = torch.from_numpy(infer(model, images_u8, tta=0, batch_size=batch_size, device=device))
    y = torch.as_tensor(labels).cpu()
    return F.cross_entropy(logits, y).item(), (logits.argmax(1) == y).float().mean().item()
