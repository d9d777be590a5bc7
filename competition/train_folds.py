"""Train one architecture per fold and keep its out-of-fold and test logits.

    python -m competition.train_folds --model bn_cnn                      # all folds, strong recipe
    python -m competition.train_folds --model bn_cnn --folds 0 --epochs 20 --recipe seed
    python -m competition.train_folds --model all --device cuda --set lr=0.001
    torchrun --nproc_per_node 2 -m competition.train_folds --model all    # (model, fold) jobs spread over 2 processes

For each fold k: train on the other folds, validate on fold k after every epoch, keep the epoch with the best
fold-validation accuracy (the only score used for choosing; test labels are never read here), then write
folds/<model>/fold<k>/:
  config.json   the resolved recipe, seed, device, package versions and git commit
  log.csv       epoch, train_loss, train_acc, val_loss, val_acc, lr, seconds, images_per_s
  state.pt      the full state after the last finished epoch (model, optimizer, scheduler, EMA, best so far)
  best.pt       the best epoch's weights, self-describing: model name and kwargs travel inside
  oof.npz       rows, labels, logits (TTA), logits_plain: the held-out fold's predictions
  test.npz      logits (TTA), logits_plain: every test row, in test.csv order
  done.json     written last; a fold with done.json is finished and is skipped on the next run
Killed at any moment and started again, a run resumes from the last finished epoch. Every epoch's shuffling,
augmentation and dropout are seeded from (seed, fold, epoch), so on CPU a resumed run ends with the same logits
as an uninterrupted one.
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import timm
import torch
import torch.distributed as dist
from timm.data import Mixup
from timm.loss import SoftTargetCrossEntropy
from timm.optim import create_optimizer_v2
from timm.scheduler import create_scheduler_v2
from timm.utils import ModelEmaV3
from tqdm import tqdm

import models
from competition import paths
from competition.atomic import atomic_open, atomic_write_text
from competition.data import DataError, load_dataset
from competition.engine import BatchSource, autocast_for, evaluate, train_one_epoch
from competition.folds import load_folds
from competition.infer import infer
from competition.recipes import Recipe, as_dict, get_recipe, parse_overrides

LOG_COLUMNS = ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds", "images_per_s"]


def epoch_seed(seed: int, fold: int, epoch: int) -> int:
    return (seed * 1_000_003 + fold * 10_007 + epoch) % 2**31


def build(model_name: str, recipe: Recipe, steps_per_epoch: int, device: torch.device):
    """Model, optimizer, scheduler and EMA from timm's factories."""
    kwargs = {} if recipe.drop_rate < 0 else {"drop_rate": recipe.drop_rate}
    model = timm.create_model(model_name, num_classes=7, in_chans=1, **kwargs)
    model = model.to(device, memory_format=torch.channels_last)
    optimizer = create_optimizer_v2(model, opt=recipe.opt, lr=recipe.lr, weight_decay=recipe.weight_decay,
                                    momentum=recipe.momentum)
    scheduler, _ = create_scheduler_v2(optimizer, sched=recipe.sched, num_epochs=recipe.epochs,
                                       warmup_epochs=recipe.warmup_epochs, warmup_lr=recipe.warmup_lr,
                                       min_lr=recipe.min_lr, decay_epochs=recipe.decay_epochs,
                                       decay_rate=recipe.decay_rate, step_on_epochs=False,
                                       updates_per_epoch=steps_per_epoch)
    ema = ModelEmaV3(model, decay=recipe.ema_decay, use_warmup=True) if recipe.ema_decay else None
    return model, kwargs, optimizer, scheduler, ema


def run_config(model_name, fold, k, recipe, seed, device, aug) -> dict:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=paths.REPO, capture_output=True,
                                text=True, timeout=10).stdout.strip() or "unknown"
    except OSError:
        commit = "unknown"
    import albumentations
    versions = {"python": platform.python_version(), "torch": torch.__version__, "timm": timm.__version__,
                "albumentations": albumentations.__version__, "numpy": np.__version__}
    return {"model": model_name, "fold": fold, "k": k, "recipe": recipe.name, "seed": seed,
            "epochs": recipe.epochs, "device": str(device), "aug": aug, "threads": torch.get_num_threads(),
            "settings": as_dict(recipe), "versions": versions, "git_commit": commit}


def save_torch(obj, path) -> None:
    with atomic_open(path) as f:
        torch.save(obj, f)


def save_npz(path, **arrays) -> None:
    with atomic_open(path) as f:
        np.savez(f, **arrays)


class FoldRun:
    """Everything about training one (model, fold): resume, epochs, best checkpoint, final logits."""

    def __init__(self, model_name, fold, data, fold_of_row, recipe, seed, device, aug, progress):
        self.name, self.fold, self.recipe, self.seed, self.device = model_name, fold, recipe, seed, device
        self.out = paths.fold_dir(model_name, fold)
        self.data, self.progress = data, progress
        self.train_rows = np.flatnonzero(fold_of_row != fold)
        self.val_rows = np.flatnonzero(fold_of_row == fold)
        self.source = BatchSource(data.train_images[self.train_rows], data.train_labels[self.train_rows],
                                  recipe, device, aug)
        self.config = run_config(model_name, fold, int(fold_of_row.max()) + 1, recipe, seed, device,
                                 self.source.aug)

    def run(self) -> dict:
        self.check_same_settings()
        if (self.out / "done.json").exists():
            print(f"{self.name} fold {self.fold}: finished earlier, skipped ({self.out / 'done.json'})")
            return json.loads((self.out / "done.json").read_text())
        self.out.mkdir(parents=True, exist_ok=True)
        for stale in self.out.glob(".*.tmp"):  # left by a SIGKILL during an atomic write
            stale.unlink()
        atomic_write_text(self.out / "config.json", json.dumps(self.config, indent=2))
        torch.manual_seed(epoch_seed(self.seed, self.fold, 0))  # the initial weights
        model, kwargs, optimizer, scheduler, ema = build(self.name, self.recipe, self.source.steps, self.device)
        state = self.resume(model, optimizer, scheduler, ema)
        with tqdm(total=self.recipe.epochs, initial=state["epoch"], desc=f"{self.name} fold {self.fold} epochs",
                  disable=not self.progress) as bar:
            while not state["finished"]:
                self.one_epoch(state, model, kwargs, optimizer, scheduler, ema)
                bar.update(1)
        return self.finish(kwargs)

    def check_same_settings(self) -> None:
        """A fold resumes, or counts as done, only with the settings it started with."""
        old = self.out / "config.json"
        if old.exists() and ((self.out / "state.pt").exists() or (self.out / "done.json").exists()):
            before = json.loads(old.read_text())
            if (before["settings"], before["seed"]) != (self.config["settings"], self.config["seed"]):
                changed = sorted(k for k in self.config["settings"]
                                 if before["settings"].get(k) != self.config["settings"][k])
                raise ValueError(f"{self.out} was started with other settings ({', '.join(changed) or 'seed'} "
                                 f"differ). Run again with the same ones, or delete that folder to start over.")

    def resume(self, model, optimizer, scheduler, ema) -> dict:
        path = self.out / "state.pt"
        if not path.exists():
            return {"epoch": 0, "best_acc": -1.0, "best_epoch": 0, "log": [], "finished": False}
        saved = torch.load(path, map_location=self.device, weights_only=False)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        if ema is not None:
            ema.load_state_dict(saved["ema"])
        print(f"{self.name} fold {self.fold}: resuming after epoch {saved['state']['epoch']}")
        return saved["state"]

    def one_epoch(self, state, model, kwargs, optimizer, scheduler, ema) -> None:
        epoch, r = state["epoch"] + 1, self.recipe
        seed = epoch_seed(self.seed, self.fold, epoch)
        torch.manual_seed(seed)  # dropout
        np.random.seed(seed)  # timm's Mixup draws from numpy
        mixup = (Mixup(mixup_alpha=r.mixup, cutmix_alpha=r.cutmix, label_smoothing=r.label_smoothing,
                       num_classes=7) if r.mixup or r.cutmix else None)
        loss_fn = SoftTargetCrossEntropy() if mixup else torch.nn.CrossEntropyLoss(label_smoothing=r.label_smoothing)
        stats = train_one_epoch(model, self.source, seed, optimizer, scheduler, loss_fn, ema, mixup, r.clip_grad,
                                start_step=(epoch - 1) * self.source.steps,
                                desc=f"{self.name} f{self.fold} e{epoch}/{r.epochs}", progress=self.progress)
        scheduler.step(epoch)
        judged = ema.module if ema is not None else model
        val_loss, val_acc = evaluate(judged, self.data.train_images[self.val_rows],
                                     self.data.train_labels[self.val_rows], self.device)
        lr = optimizer.param_groups[0]["lr"]
        state["log"].append(dict(zip(LOG_COLUMNS, [epoch, stats.loss, stats.acc, val_loss, val_acc, lr,
                                                   stats.seconds, stats.images_per_s])))
        if val_acc > state["best_acc"]:
            state.update(best_acc=val_acc, best_epoch=epoch)
            save_torch({"model": self.name, "model_kwargs": kwargs, "state_dict": judged.state_dict(),
                        "epoch": epoch, "val_acc": val_acc, "recipe": as_dict(r)}, self.out / "best.pt")
        stale = epoch - state["best_epoch"]
        state.update(epoch=epoch, finished=epoch >= r.epochs or bool(r.patience and stale >= r.patience))
        atomic_write_text(self.out / "log.csv", pd.DataFrame(state["log"], columns=LOG_COLUMNS).to_csv(index=False))
        save_torch({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(), "ema": ema.state_dict() if ema is not None else None,
                    "state": state}, self.out / "state.pt")
        tqdm.write(f"{self.name} fold {self.fold} epoch {epoch}/{r.epochs}: loss {stats.loss:.4f} "
                   f"train_acc {stats.acc:.4f} val_loss {val_loss:.4f} val_acc {val_acc:.4f} lr {lr:.2e} "
                   f"{stats.seconds:.1f}s {stats.images_per_s:.0f} img/s" + (" *" if state["best_epoch"] == epoch else ""))
        sys.stdout.flush()

    def finish(self, kwargs) -> dict:
        """Best weights -> OOF and test logits (plain and TTA), clean train accuracy, then done.json."""
        best = torch.load(self.out / "best.pt", map_location=self.device, weights_only=False)
        model = timm.create_model(self.name, num_classes=7, in_chans=1, **kwargs)
        model.load_state_dict(best["state_dict"])
        model = model.to(self.device, memory_format=torch.channels_last)
        run = lambda images, tta: infer(model, images, tta, device=self.device,  # noqa: E731
                                        autocast=autocast_for(self.device))
        val_images, val_labels = self.data.train_images[self.val_rows], self.data.train_labels[self.val_rows]
        oof, oof_plain = run(val_images, self.recipe.tta), run(val_images, 0)
        save_npz(self.out / "oof.npz", rows=self.val_rows, labels=val_labels, logits=oof, logits_plain=oof_plain)
        save_npz(self.out / "test.npz", logits=run(self.data.test_images, self.recipe.tta),
                 logits_plain=run(self.data.test_images, 0))
        train_logits = run(self.data.train_images[self.train_rows], 0)
        log = pd.read_csv(self.out / "log.csv")
        done = {"best_epoch": int(best["epoch"]), "epochs_run": int(log["epoch"].max()),
                "val_acc": float((oof.argmax(1) == val_labels).mean()),
                "val_acc_plain": float((oof_plain.argmax(1) == val_labels).mean()),
                "train_acc": float((train_logits.argmax(1) == self.data.train_labels[self.train_rows]).mean()),
                "seconds": float(log["seconds"].sum()), "images_per_s": float(log["images_per_s"].mean())}
        atomic_write_text(self.out / "done.json", json.dumps(done, indent=2))
        print(f"{self.name} fold {self.fold}: best epoch {done['best_epoch']}, val_acc {done['val_acc']:.4f} "
              f"(no TTA {done['val_acc_plain']:.4f}), clean train_acc {done['train_acc']:.4f}")
        return done


def pick_device(name: str, local_rank: int) -> torch.device:
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise SystemExit("error: --device cuda, but no CUDA device is available (use --device cpu).")
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device("cpu")


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, help=f"one of {', '.join(models.MODEL_NAMES)}, a comma list, or all")
    p.add_argument("--folds", default="all", help="comma list of fold indices, or all")
    p.add_argument("--recipe", default="strong", choices=["seed", "strong", "quick"])
    p.add_argument("--epochs", type=int, help="override the recipe's number of epochs")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a recipe knob")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--aug", default="auto", choices=["auto", "albumentations", "tensor"],
                   help="augmentation path: auto = tensor on CUDA, albumentations on CPU")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0,
                   help="CPU threads per process; 0 = the cores shared out among the processes")
    return p.parse_args(argv)


def plan_jobs(args, k: int) -> list[tuple[str, int]]:
    names = list(models.MODEL_NAMES) if args.model == "all" else args.model.split(",")
    unknown = [n for n in names if n not in models.MODEL_NAMES]
    if unknown:
        raise ValueError(f"unknown model {unknown}; choose from {', '.join(models.MODEL_NAMES)} or all")
    folds = list(range(k)) if args.folds == "all" else [int(f) for f in args.folds.split(",")]
    bad = [f for f in folds if not 0 <= f < k]
    if bad:
        raise ValueError(f"fold {bad} out of range: folds/folds.csv has folds 0..{k - 1}")
    return [(n, f) for n in names for f in folds]


def main(argv=None) -> int:
    args = parse_args(argv)
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    try:
        overrides = parse_overrides(args.set) | ({"epochs": args.epochs} if args.epochs else {})
        data = load_dataset()
        fold_of_row = load_folds(len(data.train_labels))
        jobs = plan_jobs(args, int(fold_of_row.max()) + 1)
        recipes = {n: get_recipe(args.recipe, n, overrides) for n in {n for n, _ in jobs}}
    except (DataError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    device = pick_device(args.device, int(os.environ.get("LOCAL_RANK", 0)))
    if world > 1:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    torch.set_num_threads(args.threads or max(1, (os.cpu_count() or 1) // world))
    progress = sys.stderr.isatty()
    start = time.perf_counter()
    for name, fold in jobs[rank::world]:
        try:
            FoldRun(name, fold, data, fold_of_row, recipes[name], args.seed, device, args.aug, progress).run()
        except ValueError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
    print(f"rank {rank}: {len(jobs[rank::world])} job(s) done in {time.perf_counter() - start:.0f} s")
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
