"""Train one architecture per fold and keep its out-of-fold and test logits.

    python -m competition.train_folds --model bn_cnn                      # all folds, strong recipe
    python -m competition.train_folds --model bn_cnn --folds 0 --epochs 20 --recipe study
    python -m competition.train_folds --model all --device cuda --set batch_size=1024
    python -m competition.train_folds --model resnet18                    # any timm architecture too
    python -m competition.train_folds --model bn_cnn,baseline_cnn --folds 0 --budget 20   # epochs sized to 20 min
    torchrun --nproc_per_node 4 -m competition.train_folds --model all    # (model, fold) jobs over 4 processes

For each fold k: train on the other folds, validate on fold k after every epoch, keep the epoch with the best
fold-validation accuracy (the only score used for choosing; test labels are never read here), then write the
fold folder that competition.artifacts describes (config.json, log.csv, state.pt, best.pt, oof.npz, test.npz,
done.json). Killed at any moment and started again, a run resumes from its last checkpoint (state.pt, written
at most every --checkpoint-every seconds and at the end). Every epoch's shuffling, augmentation and dropout
are seeded from (seed, fold, epoch), so on CPU a resumed run ends with the same logits as an uninterrupted one.

Processes share nothing: under torchrun each one takes its share of the jobs, dealt by expected cost (longest
first, to the least loaded), with no process group and no barrier, so several processes can share one GPU.
Each fold is locked while it trains: a second process on the same fold stops with exit 2 naming the holder.
With --budget MINUTES, competition.budget measures each model's speed here, sizes its epochs to fit, prints
the plan, and stops a fold at its deadline if the measurement was optimistic (done.json says so).
"""
import argparse
import json
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from importlib import metadata

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

import models
from competition import artifacts, budget
from competition.artifacts import BEST, CONFIG, DONE, LOG, LOG_COLUMNS, OOF, STATE, TEST, FoldFiles
from competition.atomic import atomic_write_text
from competition.augment import view_count
from competition.data import load_dataset
from competition.device import pick_device, tune_for
from competition.engine import BatchSource, build, create_model, evaluate, train_one_epoch
from competition.errors import SettingsError, run_command
from competition.folds import load_folds
from competition.infer import infer
from competition.recipes import RECIPES, Recipe, as_dict, get_recipe, parse_overrides, scaled

TRAIN_ACC_ROWS = 4096  # "clean train accuracy" on a fixed sample of the fold's training rows: it says the same
# Relative cost of one training image, for dealing jobs to processes (measured: CPU epoch seconds on 2 cores;
# GPU bare-step img/s at batch 512 on an H200, issue #9). Unknown architectures count as the dearest known.
IMAGE_COST = {"cpu": {"baseline_cnn": 1, "bn_cnn": 4, "resnet_cbam": 10, "resnet_cbam48": 108},
              "cuda": {"baseline_cnn": 1, "bn_cnn": 2, "resnet_cbam": 9, "resnet_cbam48": 15}}


def epoch_seed(seed: int, fold: int, epoch: int) -> int:
    return (seed * 1_000_003 + fold * 10_007 + epoch) % 2**31


@dataclass
class Resident:
    """The dataset where training reads it: device tensors on the tensor-augmentation path, host arrays else."""
    train_images: object
    train_labels: np.ndarray
    test_images: object

    @classmethod
    def place(cls, data, device: torch.device, aug: str) -> "Resident":
        on_device = aug == "tensor" or (aug == "auto" and device.type == "cuda")
        put = (lambda a: torch.from_numpy(a).to(device)) if on_device else (lambda a: a)  # noqa: E731
        return cls(put(data.train_images), data.train_labels, put(data.test_images))

    def train_rows(self, rows: np.ndarray):
        images = self.train_images
        return images[torch.from_numpy(rows).to(images.device)] if torch.is_tensor(images) else images[rows]


@dataclass
class Progress:
    """Where a fold's training stands; saved in state.pt, so a killed run resumes from it."""
    epoch: int = 0
    best_acc: float = -1.0
    best_epoch: int = 0
    finished: bool = False
    stopped_by_budget: bool = False
    log: list = field(default_factory=list)


def versions() -> dict:
    def version(package):
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return None
    return {"python": platform.python_version(), "torch": torch.__version__, "timm": version("timm"),
            "albumentations": version("albumentations"), "numpy": np.__version__}


class FoldRun:
    """Everything about training one (model, fold): lock, resume, epochs, checkpoints, final logits."""

    def __init__(self, model_name, fold, data: Resident, fold_of_row, recipe: Recipe, seed, device, aug,
                 progress=False, checkpoint_every=30.0, provenance=None, deadline=None):
        self.name, self.fold, self.recipe, self.seed, self.device = model_name, fold, recipe, seed, device
        self.files, self.data, self.show_progress = FoldFiles(model_name, fold), data, progress
        self.checkpoint_every, self.deadline = checkpoint_every, deadline
        self.train_rows = np.flatnonzero(fold_of_row != fold)
        self.val_rows = np.flatnonzero(fold_of_row == fold)
        self.source = BatchSource(data.train_rows(self.train_rows), data.train_labels[self.train_rows],
                                  recipe, device, aug)
        self.val_images = data.train_rows(self.val_rows)
        self.val_labels = data.train_labels[self.val_rows]
        self.config = {"model": model_name, "fold": fold, "recipe": recipe.name, "seed": seed,
                       "epochs": recipe.epochs, "device": str(device), "aug": self.source.aug,
                       "threads": torch.get_num_threads(), "settings": as_dict(recipe),
                       "step": asdict(scaled(recipe)), **(provenance or {})}
        self.parts, self.progress, self.best_weights, self.saved_at = None, Progress(), None, 0.0

    def run(self) -> dict:
        with self.files.lock():
            artifacts.check_same_run(self.files, self.config)
            if self.files.is_done():
                print(f"{self.name} fold {self.fold}: finished earlier, skipped ({self.files / DONE})")
                return artifacts.read_done(self.files)
            self.files.remove_stale_temps()
            artifacts.write_config_once(self.files, self.config)
            torch.manual_seed(epoch_seed(self.seed, self.fold, 0))  # the initial weights
            self.parts = build(self.name, self.recipe, self.source.steps, self.device)
            self.resume()
            with tqdm(total=self.recipe.epochs, initial=self.progress.epoch, disable=not self.show_progress,
                      desc=f"{self.name} fold {self.fold} epochs") as bar:
                while not self.progress.finished:
                    self.one_epoch()
                    bar.update(1)
            return self.finish()

    def resume(self) -> None:
        path = self.files / STATE
        if not path.exists():
            return
        saved = artifacts.load_torch(path, "train this fold from scratch")
        self.parts.model.load_state_dict(saved["model"])
        self.parts.optimizer.load_state_dict(saved["optimizer"])
        self.parts.scheduler.load_state_dict(saved["scheduler"])
        if self.parts.ema is not None:
            self.parts.ema.load_state_dict(saved["ema"])
        self.best_weights = {k: v.to(self.device) for k, v in saved["best_weights"].items()}
        self.progress = Progress(**saved["progress"])
        print(f"{self.name} fold {self.fold}: resuming after epoch {self.progress.epoch}")

    def one_epoch(self) -> None:
        p, r, parts = self.progress, self.recipe, self.parts
        epoch, started = p.epoch + 1, time.monotonic()
        seed = epoch_seed(self.seed, self.fold, epoch)
        torch.manual_seed(seed)  # dropout
        np.random.seed(seed)  # timm's Mixup draws from numpy
        stats = train_one_epoch(parts, self.source, seed, start_step=(epoch - 1) * self.source.steps,
                                desc=f"{self.name} f{self.fold} e{epoch}/{r.epochs}", progress=self.show_progress)
        parts.scheduler.step(epoch)
        val_loss, val_acc = evaluate(parts.judged, self.val_images, self.val_labels, self.device)
        lr = parts.optimizer.param_groups[0]["lr"]
        p.log.append(dict(zip(LOG_COLUMNS, [epoch, stats.loss, stats.acc, val_loss, val_acc, lr,
                                            stats.seconds, stats.images_per_s])))
        if val_acc > p.best_acc:
            p.best_acc, p.best_epoch = val_acc, epoch
            self.best_weights = {k: v.detach().clone() for k, v in parts.judged.state_dict().items()}
        p.epoch = epoch
        p.finished = epoch >= r.epochs or bool(r.patience and epoch - p.best_epoch >= r.patience)
        if not p.finished and budget.deadline_passed(self.deadline, time.monotonic() - started):
            p.finished = p.stopped_by_budget = True
            tqdm.write(f"{self.name} fold {self.fold}: stopped after epoch {epoch} of {r.epochs}: another would end "
                       f"past this fold's share of the --budget")
        atomic_write_text(self.files / LOG, pd.DataFrame(p.log, columns=LOG_COLUMNS).to_csv(index=False))
        if p.finished or time.monotonic() - self.saved_at >= self.checkpoint_every:
            self.checkpoint()
        tqdm.write(f"{self.name} fold {self.fold} epoch {epoch}/{r.epochs}: loss {stats.loss:.4f} "
                   f"train_acc {stats.acc:.4f} val_loss {val_loss:.4f} val_acc {val_acc:.4f} lr {lr:.2e} "
                   f"{stats.seconds:.1f}s {stats.images_per_s:.0f} img/s" + (" *" if p.best_epoch == epoch else ""))
        sys.stdout.flush()

    def checkpoint(self) -> None:
        parts = self.parts
        artifacts.save_torch({"model": parts.model.state_dict(), "optimizer": parts.optimizer.state_dict(),
                              "scheduler": parts.scheduler.state_dict(),
                              "ema": parts.ema.state_dict() if parts.ema is not None else None,
                              "best_weights": self.best_weights, "progress": asdict(self.progress)},
                             self.files / STATE)
        self.saved_at = time.monotonic()

    def finish(self) -> dict:
        """Best weights -> best.pt, OOF and test logits (plain and TTA), clean train accuracy, then done.json."""
        p = self.progress
        model = create_model(self.name, self.recipe.drop_rate)
        model.load_state_dict(self.best_weights)
        model = model.to(self.device, memory_format=torch.channels_last)
        artifacts.save_torch({"model": self.name, "drop_rate": self.recipe.drop_rate, "state_dict": self.best_weights,
                              "epoch": p.best_epoch, "val_acc": p.best_acc, "recipe": as_dict(self.recipe)},
                             self.files / BEST)
        run = lambda images, tta: infer(model, images, tta, device=self.device)  # noqa: E731
        oof, oof_plain = run(self.val_images, self.recipe.tta), run(self.val_images, 0)
        artifacts.save_npz(self.files / OOF, rows=self.val_rows, labels=self.val_labels, logits=oof,
                           logits_plain=oof_plain)
        artifacts.save_npz(self.files / TEST, logits=run(self.data.test_images, self.recipe.tta),
                           logits_plain=run(self.data.test_images, 0))
        sample = np.sort(np.random.default_rng(self.fold).permutation(len(self.train_rows))[:TRAIN_ACC_ROWS])
        train_logits = run(self.data.train_rows(self.train_rows[sample]), 0)
        done = {"best_epoch": p.best_epoch, "epochs_run": p.epoch,
                "val_acc": float((oof.argmax(1) == self.val_labels).mean()),
                "val_acc_plain": float((oof_plain.argmax(1) == self.val_labels).mean()),
                "train_acc": float((train_logits.argmax(1) == self.data.train_labels[self.train_rows[sample]]).mean()),
                "train_acc_rows": len(sample), "stopped_by_budget": p.stopped_by_budget,
                "seconds": float(sum(row["seconds"] for row in p.log)),
                "images_per_s": float(np.mean([row["images_per_s"] for row in p.log]))}
        atomic_write_text(self.files / DONE, json.dumps(done, indent=2))
        print(f"{self.name} fold {self.fold}: best epoch {done['best_epoch']}, val_acc {done['val_acc']:.4f} "
              f"(no TTA {done['val_acc_plain']:.4f}), clean train_acc {done['train_acc']:.4f}")
        return done


# ---------------------------------------------------------------- jobs

def parse_models(spec: str) -> list[str]:
    """'all', our names, or timm names (checked by building each once, on the CPU)."""
    names = list(models.MODEL_NAMES) if spec == "all" else [n.strip() for n in spec.split(",") if n.strip()]
    for name in names:
        if name not in models.MODEL_NAMES:
            create_model(name)  # raises SettingsError saying why it can't be used
    return list(dict.fromkeys(names))


def plan_jobs(names: list[str], fold_spec: str, k: int) -> list[tuple[str, int]]:
    try:
        folds = list(range(k)) if fold_spec == "all" else [int(f) for f in fold_spec.split(",")]
    except ValueError:
        raise SettingsError(f"--folds {fold_spec!r}: expected a comma list of fold numbers, or all") from None
    bad = [f for f in folds if not 0 <= f < k]
    if bad:
        raise SettingsError(f"fold {bad} out of range: folds/folds.csv has folds 0..{k - 1}")
    return list(dict.fromkeys((n, f) for n in names for f in folds))  # --folds 0,0 trains fold 0 once


def deal(jobs: list[tuple[str, int]], costs: dict, world: int) -> list[list[tuple[str, int]]]:
    """Longest job first to the least loaded process (LPT): the processes end close together."""
    shares, loads = [[] for _ in range(world)], [0.0] * world
    for job in sorted(jobs, key=lambda j: -costs[j]):
        least = loads.index(min(loads))
        shares[least].append(job)
        loads[least] += costs[job]
    return shares


def job_costs(jobs, recipes: dict[str, Recipe], device_type: str) -> dict:
    table = IMAGE_COST[device_type]
    return {(n, f): recipes[n].epochs * table.get(n, max(table.values())) for n, f in jobs}


def fit_budget(minutes: float, mine, recipes: dict[str, Recipe], resident: Resident, fold_of_row, device,
               aug: str) -> tuple[dict[str, Recipe], list[float | None]]:
    """Epochs per model from speeds measured here, and each job's deadline (time.monotonic()); finished
    jobs cost nothing, and a started fold keeps the epochs it started with."""
    start = time.monotonic()
    fixed = {n: json.loads((FoldFiles(n, f) / CONFIG).read_text())["epochs"] for n, f in mine
             if (FoldFiles(n, f) / CONFIG).exists()}  # a model keeps the epochs its first started fold got
    todo = [(n, f) for n, f in mine if not FoldFiles(n, f).is_done()]
    if not todo:  # a rerun after the end: every fold is checked as done with its own epochs
        return {n: replace(r, epochs=fixed.get(n, r.epochs)) for n, r in recipes.items()}, [None] * len(mine)
    counts = {n: sum(1 for m, _ in todo if m == n) for n, _ in todo}
    sample = np.arange(min(len(fold_of_row), 4 * 512))
    speeds = {n: budget.measure(n, recipes[n], resident.train_rows(sample), resident.train_labels[sample], device, aug)
              for n in counts}
    val = int(np.bincount(fold_of_row).max())
    rows = {"train": len(fold_of_row) - val, "val": val, "test": len(resident.test_images),
            "train_sample": min(len(fold_of_row) - val, TRAIN_ACC_ROWS)}
    left_s = minutes * 60 - (time.monotonic() - start)  # the measuring came out of the budget too
    plans = budget.plan(left_s, counts, speeds, rows, {n: view_count(r.tta) for n, r in recipes.items()},
                        {n: r.epochs for n, r in recipes.items()}, fixed)
    print(budget.describe(plans, left_s), flush=True)
    by_name = {p.model: p for p in plans}
    recipes = {n: replace(r, epochs=by_name[n].epochs) if n in by_name else r for n, r in recipes.items()}
    return recipes, job_deadlines(mine, todo, by_name, time.monotonic() + left_s)


def job_deadlines(mine, todo, by_name: dict, end: float) -> list[float | None]:
    """When each job must stop training: the budget's end less the planned cost of the jobs after it and its
    own final inference. A job may so use what an earlier one saved, and is cut only when the whole budget
    is at risk (the 30-minute run showed per-job deadlines cutting epochs with minutes left over)."""
    cost = [by_name[n].seconds / by_name[n].folds if (n, f) in todo else 0.0 for n, f in mine]
    return [end - sum(cost[i + 1:]) - by_name[n].finish_s if (n, f) in todo else None
            for i, (n, f) in enumerate(mine)]


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True,
                   help=f"one of {', '.join(models.MODEL_NAMES)}, any timm architecture, a comma list, or all")
    p.add_argument("--folds", default="all", help="comma list of fold indices, or all")
    p.add_argument("--recipe", default="strong", choices=sorted(RECIPES))
    p.add_argument("--epochs", type=int, help="override the recipe's number of epochs")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a recipe knob")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--aug", default="auto", choices=["auto", "albumentations", "tensor"],
                   help="augmentation path: auto = tensor on CUDA, albumentations on CPU")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0,
                   help="CPU threads per process; 0 = the cores shared out among this machine's processes")
    p.add_argument("--checkpoint-every", type=float, default=30.0, metavar="SECONDS",
                   help="write state.pt at most this often (and at the end); 0 = after every epoch")
    p.add_argument("--budget", type=float, default=0, metavar="MINUTES",
                   help="size each model's epochs to end within this many minutes (measured here); 0 = the recipe's")
    return p.parse_args(argv)


def _main(argv=None) -> int:
    args = parse_args(argv)
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world))
    overrides = parse_overrides(args.set) | ({"epochs": args.epochs} if args.epochs else {})
    device = pick_device(args.device, int(os.environ.get("LOCAL_RANK", 0)))
    tune_for(device)
    names = parse_models(args.model)
    data = load_dataset()
    fold_of_row = load_folds(len(data.train_labels))
    k = artifacts.fold_count()
    jobs = plan_jobs(names, args.folds, k)
    recipes = {n: get_recipe(args.recipe, n, overrides, device.type) for n in names}
    mine = deal(jobs, job_costs(jobs, recipes, device.type), world)[rank]
    torch.set_num_threads(args.threads or max(1, (os.cpu_count() or 1) // local_world))
    provenance = {"k": k, "folds_sha1": artifacts.folds_sha1(),  # once per process, not per fold
                  "data_sha1": artifacts.data_sha1(data.train_images, data.train_labels, data.test_images),
                  "versions": versions(), "git_commit": artifacts.git_commit()}
    resident = Resident.place(data, device, args.aug)
    deadlines = [None] * len(mine)
    if args.budget > 0:
        recipes, deadlines = fit_budget(args.budget, mine, recipes, resident, fold_of_row, device, args.aug)
    start = time.perf_counter()
    for (name, fold), deadline in zip(mine, deadlines):
        FoldRun(name, fold, resident, fold_of_row, recipes[name], args.seed, device, args.aug,
                sys.stderr.isatty(), args.checkpoint_every, provenance, deadline).run()
    print(f"rank {rank}: {len(mine)} job(s) done in {time.perf_counter() - start:.0f} s")
    return 0


def main(argv=None) -> int:
    return run_command(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
