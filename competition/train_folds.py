"""Train one architecture per fold and keep its out-of-fold and test logits.

    python -m competition.train_folds --model bn_cnn                      # all folds, strong recipe
    python -m competition.train_folds --model bn_cnn --folds 0 --epochs 20 --recipe study
    python -m competition.train_folds --model all --device cuda --set batch_size=1024
    python -m competition.train_folds --model resnet18                    # any timm architecture too
    python -m competition.train_folds --model bn_cnn,baseline_cnn --folds 0 --budget 20   # epochs sized to 20 min
    python -m competition.train_folds --model bn_cnn --seeds 0,1,2 --folds all,refit  # 3 members, each + a refit
    python -m competition.train_folds --model bn_cnn --seeds 1 --folds refit  # a refit-only seed of bn_cnn
    python -m competition.train_folds --model bn_cnn --teacher submissions/teacher.npz --folds refit  # a student

For each fold k: train on the other folds, validate on fold k after every epoch, keep the epoch with the best
fold-validation accuracy (the only score used for choosing; test labels are never read here), then write the
fold folder that competition.artifacts describes (config.json, log.csv, state.pt, best.pt, oof.npz, test.npz,
done.json). Each seed is a member of its own (folds/bn_cnn.s1/...). `--folds refit` trains the member on every
Training row with the same recipe and schedule, and stops at the median best epoch of its folds (rounded up):
the epoch count is chosen on the folds, never on test labels; a refit whose folds are not all finished is
refused, naming them. `--teacher` trains a student (member <model>.student) against soft targets: the teacher's
OOF probabilities mixed with the labels (--teacher-weight); a student without folds of its own stops where
its architecture's plain member was best; another seed's refit without folds of its own (a refit-only seed)
follows its seed-0 member's folds, and the ensemble mixes it in with that member's refit. Killed at any moment
and started again, a run resumes from its last checkpoint (state.pt, written at most every --checkpoint-every
seconds and at the end). Every epoch's shuffling, augmentation and dropout are seeded from (seed, fold, epoch), so
on CPU a resumed run ends with the same logits as an uninterrupted one.

This command trains its jobs one after the other in one process (`train`, a function with typed arguments:
`Settings`). Spreading jobs over processes, GPUs and machines, in the order their inputs allow, is the job
graph's (competition.graph, run by competition.runner: local processes or Ray). Each fold is locked while it
trains: a second process on the same fold stops with exit 2 naming the holder, so two runs can't mix.
With --budget MINUTES, competition.budget measures each model's speed here, sizes its epochs to fit, prints
the plan, and stops a fold at its deadline if the measurement was optimistic (done.json says so).
--stop-at UNIX_SECONDS is a hard end that every process honours (the GPU check's window): a running fold
finishes with the epochs it has when one more would end past it (done.json: stopped_by_deadline), a job not
started by then is skipped and listed, and its fold folder is left as it was, to resume later.
"""
import argparse
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

import models
from competition import artifacts, budget, paths
from competition.artifacts import LOG_COLUMNS, OOF, STATE, TEST, FoldFiles
from competition.data import load_dataset
from competition.device import add_precision_arg, describe_precision, pick_device, pick_precision, tune_for
from competition.engine import BatchSource, build, create_model, evaluate, make_scheduler, train_one_epoch
from competition.errors import OldSpelling, SettingsError, run_command
from competition.folds import load_folds
from competition.infer import infer
from competition.recipes import RECIPES, Recipe, get_recipe, light_off, parse_overrides, scaled


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
    stopped_by_deadline: bool = False  # --stop-at: the run's hard end, not this fold's budget share
    planned_epochs: int = 0  # the epochs this fold trains: the recipe's, a refit's, or a budget's replan (the one
    # live plan; 0 in a state.pt of an older version that was not replanned: the recipe's then)
    log: list = field(default_factory=list)


@dataclass(frozen=True)
class Job:
    """One thing to train: an architecture's fold (or its refit, fold None) for one seed and tag."""
    arch: str
    fold: int | None
    seed: int = 0
    tag: str = ""

    @property
    def member(self) -> str:
        """The member's name (its folder under folds/)."""
        return artifacts.Member(self.arch, self.seed, self.tag).name

    @property
    def files(self) -> FoldFiles:
        return FoldFiles(self.member, self.fold)


@dataclass(frozen=True, eq=False)
class RunContext:
    """What every job of one `train` call shares (FoldRun's inputs other than the job, its recipe and its
    budget): the resident data and split, where and how it trains, provenance, the teacher, the run's end."""
    data: Resident
    fold_of_row: np.ndarray
    device: torch.device
    aug: str = "auto"
    precision: str = "auto"
    provenance: dict | None = None  # artifacts.run_provenance: of the data and code
    teacher: artifacts.Teacher | None = None
    stop_at: float | None = None  # time.monotonic() of the run's hard end (--stop-at), or None
    checkpoint_every: float = 30.0
    compile: bool = False
    node: str = ""  # where done.json says it ran (default: this host)
    progress: bool = False  # tqdm bars


class FoldRun:
    """Everything about training one (member, fold) or refit: lock, resume, epochs, checkpoints, final logits."""

    def __init__(self, job: Job, recipe: Recipe, context: RunContext, slot: budget.Slot | None = None,
                 max_epochs: int | None = None):
        """`slot`: this job's place in a --budget (its deadline, and what a replan shares); `max_epochs`: the most
        a replan may give a budget-sized fold (the recipe's epochs before sizing)."""
        c, fold_of_row = context, context.fold_of_row
        self.job, self.arch, self.fold, self.seed, self.recipe = job, job.arch, job.fold, job.seed, recipe
        self.files, self.data, self.device, self.teacher = job.files, c.data, c.device, c.teacher
        self.stop_at = c.stop_at
        self.show_progress, self.checkpoint_every, self.node = c.progress, c.checkpoint_every, c.node or platform.node()
        self.compile_model, self.precision = c.compile, pick_precision(c.device, c.precision)
        self.slot, self.max_epochs, self.refit = slot, max_epochs, job.fold is None
        self.k = int(fold_of_row.max()) + 1
        self.train_rows = np.flatnonzero(fold_of_row >= 0 if self.refit else fold_of_row != job.fold)
        self.val_rows = np.flatnonzero(fold_of_row == job.fold) if not self.refit else self.train_rows[:0]
        labels = c.data.train_labels[self.train_rows]
        self.source = BatchSource(c.data.train_rows(self.train_rows),
                                  c.teacher.targets(self.train_rows, labels) if c.teacher else labels,
                                  recipe, c.device, c.aug)
        self.val_images = c.data.train_rows(self.val_rows)
        self.val_labels = c.data.train_labels[self.val_rows]
        self.config = artifacts.RunConfig(
            arch=job.arch, fold=job.fold, recipe=recipe.name, seed=job.seed, epochs=recipe.epochs,
            device=str(c.device), aug=self.source.aug, threads=torch.get_num_threads(), precision=self.precision,
            settings=asdict(recipe), step=scaled(recipe), **(c.provenance or {}),
            teacher=c.teacher.provenance() if c.teacher else None)
        self.parts, self.best_weights, self.saved_at = None, None, 0.0
        self.progress = Progress(planned_epochs=recipe.epochs)

    def run(self) -> artifacts.Done:
        if self.refit and not self.files.is_done():  # a finished refit is read back as it is
            self.plan_refit()
        with self.files.lock():
            artifacts.check_same_run(self.files, self.config)
            if self.files.is_done():
                print(f"{self.files.what}: finished earlier, skipped ({self.files.dir})")
                return artifacts.read_done(self.files)
            self.files.remove_stale_temps()
            artifacts.write_config_once(self.files, self.config)
            torch.manual_seed(epoch_seed(self.seed, self.seed_fold, 0))  # the initial weights
            self.parts = build(self.arch, self.recipe, self.source.steps, self.device,
                               soft_targets=self.teacher is not None, sample=self.source.sample(),
                               precision=self.precision, compile_model=self.compile_model, step=self.config.step)
            self.resume()
            with tqdm(total=self.progress.planned_epochs, initial=self.progress.epoch, disable=not self.show_progress,
                      desc=f"{self.files.what} epochs") as bar:
                while not self.progress.finished:
                    self.one_epoch()
                    bar.update(1)
            return self.finish()

    @property
    def deadline(self) -> float | None:
        """When this fold must stop (its --budget slot's deadline), or None."""
        return self.slot.deadline if self.slot else None

    @property
    def seed_fold(self) -> int:
        return self.k if self.refit else self.fold  # the refit draws its own shuffles, not fold 0's

    def plan_refit(self) -> None:
        """The refit's epochs: the median best epoch of its folds (`fold_source`), trained with the same recipe,
        so with the same schedule. Under a --budget, the epochs its folds were planned (its slot's; replanned like
        theirs), so it needs only the folds it has."""
        source = self.fold_source()
        if self.slot is not None:
            self.plan_budget_refit(source)
            return
        missing = [f for f in range(self.k) if not FoldFiles(source, f).is_done()]
        if missing and self.stop_at is not None:  # cut or skipped at --stop-at: the refit waits for a rerun
            raise PastStopAt(f"{self.files.what}: fold(s) {missing} of {source} not finished by --stop-at")
        if missing:
            artifacts.refit_epochs(source, self.k)  # raises, naming the folds to train first
        self.check_recipe_of(source, 0)
        self.progress.planned_epochs, best = artifacts.refit_epochs(source, self.k)
        self.config = replace(self.config, refit=artifacts.Refit(self.progress.planned_epochs, source, best))
        print(f"{self.files.what}: {self.progress.planned_epochs} of {self.recipe.epochs} epochs on all "
              f"{len(self.train_rows)} Training rows (median best epoch of {source}'s folds: {best})")

    def fold_source(self) -> str:
        """The member whose folds a refit follows: its own; without folds of its own, a student's is the plain
        member of its seed, another seed's (a refit-only seed, `--refit-seeds`) its seed-0 member."""
        member = artifacts.Member(self.job.arch, self.job.seed, self.job.tag)
        if artifacts.folds_started(member.name, self.k):
            return member.name
        if member.tag:
            return artifacts.Member(member.arch, member.seed).name
        return member.seed_base.name if member.seed_base else member.name

    def check_recipe_of(self, source: str, fold: int) -> None:
        """A refit repeats its folds' recipe: refused when `source`'s `fold` was trained with other settings."""
        differ = artifacts.settings_differ(artifacts.read_config(FoldFiles(source, fold)), self.config,
                                           whole_run=False)
        if differ:
            raise SettingsError(f"{self.files.what}: its folds ({source}) were trained with other settings "
                                f"({', '.join(differ)} differ); a refit repeats their recipe. Use the same "
                                f"--recipe/--set/--epochs as for the folds.")

    def plan_budget_refit(self, source: str) -> None:
        """A budget-sized refit (the quick run's fold 0 + refit): the budget's epochs, planned with its folds'."""
        folds = artifacts.finished_folds(source, self.k)
        if folds:
            self.check_recipe_of(source, folds[0])
        best = [int(artifacts.read_done(FoldFiles(source, f)).best_epoch) for f in folds]
        self.config = replace(self.config, refit=artifacts.Refit(self.recipe.epochs, source, best))
        print(f"{self.files.what}: {self.recipe.epochs} epochs (the --budget's) on all {len(self.train_rows)} "
              f"Training rows; {source}'s finished folds were best at epochs {best}")

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
        if saved.get("scaler"):
            self.parts.scaler.load_state_dict(saved["scaler"])
        best = saved["best_weights"]  # None in a refit's: it keeps its last epoch, chosen at the end
        self.best_weights = {k: v.to(self.device) for k, v in best.items()} if best is not None else None
        planned, self.progress = self.progress.planned_epochs, Progress(**saved["progress"])
        self.progress.planned_epochs = self.progress.planned_epochs or planned
        print(f"{self.files.what}: resuming after epoch {self.progress.epoch}")

    def one_epoch(self) -> None:
        p, r, parts = self.progress, self.recipe, self.parts
        epoch, started = p.epoch + 1, time.monotonic()
        seed = epoch_seed(self.seed, self.seed_fold, epoch)
        torch.manual_seed(seed)  # dropout
        np.random.seed(seed)  # timm's Mixup draws from numpy
        stats = train_one_epoch(parts, self.source, seed, start_step=(epoch - 1) * self.source.steps,
                                desc=f"{self.files.what} e{epoch}/{p.planned_epochs}", progress=self.show_progress)
        parts.scheduler.step(epoch)
        val_loss, val_acc = (evaluate(parts.judged, self.val_images, self.val_labels, self.device)
                             if not self.refit else (float("nan"), float("nan")))  # a refit has nothing held out
        lr = parts.optimizer.param_groups[0]["lr"]
        p.log.append(dict(zip(LOG_COLUMNS, [epoch, stats.loss, stats.acc, val_loss, val_acc, lr,
                                            stats.seconds, stats.images_per_s])))
        p.epoch = epoch
        if not self.refit and val_acc > p.best_acc:
            p.best_acc, p.best_epoch = val_acc, epoch
            self.best_weights = {k: v.detach().clone() for k, v in parts.judged.state_dict().items()}
        if epoch == budget.REPLAN_EPOCH and self.slot is not None and self.max_epochs:
            self.replan(epoch, time.monotonic() - started)
        p.finished = epoch >= p.planned_epochs or bool(
            not self.refit and r.patience and epoch - p.best_epoch >= r.patience)
        if not p.finished and budget.deadline_passed(self.stop_at, time.monotonic() - started):
            p.finished = p.stopped_by_deadline = True
            tqdm.write(f"{self.files.what}: cut after epoch {epoch} of {p.planned_epochs}: another would end "
                       f"past --stop-at")
        elif not p.finished and budget.deadline_passed(self.deadline, time.monotonic() - started):
            p.finished = p.stopped_by_budget = True
            tqdm.write(f"{self.files.what}: stopped after epoch {epoch} of {p.planned_epochs}: another would end "
                       f"past its share of the --budget")
        if self.refit and p.finished:  # nothing held out to choose an epoch: its last
            p.best_epoch = epoch
            self.best_weights = {k: v.detach().clone() for k, v in parts.judged.state_dict().items()}
        artifacts.write_log(self.files, p.log)
        if p.finished or time.monotonic() - self.saved_at >= self.checkpoint_every:
            self.checkpoint()
        tqdm.write(f"{self.files.what} epoch {epoch}/{p.planned_epochs}: loss {stats.loss:.4f} "
                   f"train_acc {stats.acc:.4f} val_loss {val_loss:.4f} val_acc {val_acc:.4f} lr {lr:.2e} "
                   f"{stats.seconds:.1f}s {stats.images_per_s:.0f} img/s" + (" *" if p.best_epoch == epoch else ""))
        sys.stdout.flush()

    def replan(self, epoch: int, epoch_s: float) -> None:
        """Plan this fold's epochs again from its own epoch time (budget.Slot.epochs): the budget's first
        measurement (a few batches) can be pessimistic (the 30-minute CPU run: 562 img/s measured, 650-690 run,
        7 minutes left unused) or optimistic. The cosine gets its new length now, while it has barely decayed."""
        fit = self.slot.epochs(epoch, self.progress.planned_epochs, max(epoch_s, 1e-9), time.monotonic())
        epochs = max(epoch, min(self.max_epochs, fit))
        if epochs != self.progress.planned_epochs:
            tqdm.write(f"{self.files.what}: planned again after epoch {epoch} ({epoch_s:.1f} s per epoch here): "
                       f"{self.progress.planned_epochs} -> {epochs} epochs")
            self.progress.planned_epochs = epochs
            self.parts.scheduler = make_scheduler(self.parts.optimizer, self.recipe, self.source.steps, epochs,
                                                  step=self.config.step)

    def checkpoint(self) -> None:
        parts = self.parts
        artifacts.save_torch({"model": parts.model.state_dict(), "optimizer": parts.optimizer.state_dict(),
                              "scheduler": parts.scheduler.state_dict(),
                              "ema": parts.ema.state_dict() if parts.ema is not None else None,
                              "scaler": parts.scaler.state_dict(),
                              "best_weights": self.best_weights, "progress": asdict(self.progress)},
                             self.files / STATE)
        self.saved_at = time.monotonic()

    def finish(self) -> artifacts.Done:
        """Best weights -> best.pt, OOF (not for a refit) and test logits (plain and TTA), clean train accuracy,
        then done.json."""
        p = self.progress
        net = create_model(self.arch, self.recipe.drop_rate)
        net.load_state_dict(self.best_weights)
        net = net.to(self.device, memory_format=torch.channels_last)
        artifacts.save_best(self.files, self.arch, self.recipe.drop_rate, self.best_weights, p.best_epoch, p.best_acc,
                            asdict(self.recipe))
        run = lambda images, tta: infer(net, images, tta, device=self.device)  # noqa: E731
        scores = {}
        if not self.refit:
            oof, oof_plain = run(self.val_images, self.recipe.tta), run(self.val_images, 0)
            artifacts.save_npz(self.files / OOF, rows=self.val_rows, labels=self.val_labels, logits=oof,
                               logits_plain=oof_plain)
            scores = {"val_acc": float((oof.argmax(1) == self.val_labels).mean()),
                      "val_acc_plain": float((oof_plain.argmax(1) == self.val_labels).mean())}
        artifacts.save_npz(self.files / TEST, logits=run(self.data.test_images, self.recipe.tta),
                           logits_plain=run(self.data.test_images, 0))
        order = np.random.default_rng(self.seed_fold).permutation(len(self.train_rows))
        sample = np.sort(order[:budget.TRAIN_ACC_ROWS])
        train_logits = run(self.data.train_rows(self.train_rows[sample]), 0)
        done = artifacts.Done(
            best_epoch=p.best_epoch, epochs_run=p.epoch, refit=self.refit, **scores,
            train_acc=float((train_logits.argmax(1) == self.data.train_labels[self.train_rows[sample]]).mean()),
            train_acc_rows=len(sample), stopped_by_budget=p.stopped_by_budget,
            stopped_by_deadline=p.stopped_by_deadline, node=self.node, seconds=float(sum(row["seconds"] for row in p.log)),
            images_per_s=float(np.mean([row["images_per_s"] for row in p.log])))
        artifacts.write_done(self.files, done)
        scores = "" if self.refit else f", val_acc {done.val_acc:.4f} (no TTA {done.val_acc_plain:.4f})"
        print(f"{self.files.what}: best epoch {done.best_epoch}{scores}, clean train_acc {done.train_acc:.4f}")
        return done


class PastStopAt(Exception):
    """The run's --stop-at came before this job could start (or before the folds a refit needs)."""


# ---------------------------------------------------------------- jobs

def parse_models(spec: str) -> list[str]:
    """'all', our names, or timm names (checked by building each once, on the CPU)."""
    names = list(models.MODEL_NAMES) if spec == "all" else [n.strip() for n in spec.split(",") if n.strip()]
    for name in names:
        if name not in models.MODEL_NAMES:
            create_model(name)  # raises SettingsError saying why it can't be used
    return list(dict.fromkeys(names))


def parse_list(spec: str, what: str) -> list[int]:
    try:
        return [int(x) for x in spec.split(",") if x.strip()]
    except ValueError:
        raise SettingsError(f"{what} {spec!r}: expected a comma list of whole numbers") from None


def parse_folds(spec: str, k: int) -> tuple[list[int], bool]:
    """(the fold numbers, whether the refit too) of a comma list of fold numbers, `all` and `refit`."""
    parts = [p.strip() for p in spec.split(",") if p.strip()]
    folds = [f for p in parts if p != "refit" for f in (range(k) if p == "all" else parse_list(p, "--folds"))]
    bad = [f for f in folds if not 0 <= f < k]
    if bad:
        raise SettingsError(f"fold {bad} out of range: folds/folds.csv has folds 0..{k - 1}")
    if not parts:
        raise SettingsError(f"--folds {spec!r}: name fold numbers, all, or refit")
    return list(dict.fromkeys(folds)), "refit" in parts  # --folds 0,0 trains fold 0 once


def plan_jobs(names: list[str], fold_spec: str, k: int, seeds: list[int] = (0,), tag: str = "") -> list[Job]:
    """Every (architecture, seed, fold) asked for, folds before refits."""
    folds, refit = parse_folds(fold_spec, k)
    targets = folds + ([None] if refit else [])
    return list(dict.fromkeys(Job(n, f, s, tag) for n in names for s in seeds for f in targets))


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True,
                   help=f"one of {', '.join(models.MODEL_NAMES)}, any timm architecture, a comma list, or all")
    p.add_argument("--folds", default="all",
                   help="comma list of fold numbers, all, and refit (every Training row; after the folds)")
    p.add_argument("--recipe", default="strong", choices=sorted(RECIPES))
    p.add_argument("--epochs", type=int, help="override the recipe's number of epochs")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a recipe knob")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--aug", default="auto", choices=["auto", "albumentations", "tensor"],
                   help="augmentation path: auto = tensor on CUDA, albumentations on CPU")
    p.add_argument("--seeds", default="0", help="a seed or a comma list; each seed other than 0 is a member of "
                                                  "its own (folds/<model>.s<seed>)")
    p.add_argument("--seed", dest="seeds", action=OldSpelling, new="--seeds", help=argparse.SUPPRESS)
    p.add_argument("--tag", default="", help="member name suffix: folds/<model>.<tag> (e.g. to compare settings)")
    p.add_argument("--teacher", type=Path, default=None, metavar="NPZ",
                   help="train against this teacher's soft targets (python -m competition.ensemble writes "
                        "submissions/teacher.npz); the member is <model>.student unless --tag says otherwise")
    p.add_argument("--teacher-weight", type=float, default=0.5,
                   help="soft target = w x teacher probabilities + (1 - w) x one-hot label")
    p.add_argument("--threads", type=int, default=0,
                   help="CPU threads; 0 = every core of this machine (run_all gives each job its share)")
    p.add_argument("--checkpoint-every", type=float, default=30.0, metavar="SECONDS",
                   help="write state.pt at most this often (and at the end); 0 = after every epoch")
    p.add_argument("--budget", type=float, default=0, metavar="MINUTES",
                   help="size each model's epochs to end within this many minutes (measured here); 0 = the recipe's")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the training model (scripts/compile_bench.py measures whether it pays)")
    p.add_argument("--no-estimate", action="store_true",
                   help="start training without first measuring speeds and printing the expected end")
    add_precision_arg(p)
    p.add_argument("--stop-at", type=float, default=0, metavar="UNIX_SECONDS",
                   help="hard end (seconds since the epoch, as `date +%%s` prints): running folds end with the "
                        "epochs they have, jobs not started are skipped; 0 = none")
    return p.parse_args(argv)


@dataclass(frozen=True)
class Settings:
    """What every training job of one call shares (train_folds' flags, or what competition.run_all sets): the
    typed arguments of `train`, so a runner hands them to a worker process or a Ray task as they are."""
    recipe: str = "strong"
    overrides: tuple = ()  # (knob, value) pairs: --set, and --epochs as ("epochs", n)
    device: str = "auto"
    aug: str = "auto"
    checkpoint_every: float = 30.0
    budget: float = 0.0  # minutes for this call's jobs (0: the recipe's epochs)
    stop_at: float = 0.0  # the run's hard end, time.time() seconds (0: none)
    precision: str = "auto"
    compile: bool = False
    teacher: Path | None = None
    teacher_weight: float = 0.5
    threads: int = 0  # 0: every core of this machine
    estimate: bool = True


def train(jobs: list[Job], s: Settings, gpu: int = 0, node: str = "") -> list[dict]:
    """Train `jobs` one after the other in this process (folds before the refits that need them), and return
    their done.json records. `gpu`: which of this machine's GPUs (the runner's placement); `node`: the name
    done.json records for where it ran (default: this host's)."""
    device = pick_device(s.device, gpu)
    tune_for(device)
    precision = pick_precision(device, s.precision)
    print(describe_precision(device, precision), flush=True)
    stop_at = time.monotonic() + (s.stop_at - time.time()) if s.stop_at else None
    if stop_at is not None and time.monotonic() >= stop_at and not all(j.files.is_done() for j in jobs):
        return skipped_at_stop([j for j in jobs if not j.files.is_done()])  # no data loaded for nothing
    data = load_dataset()
    fold_of_row = load_folds(len(data.train_labels))
    k = artifacts.fold_count()
    teacher = artifacts.load_teacher(s.teacher, s.teacher_weight) if s.teacher else None
    names = list(dict.fromkeys(j.arch for j in jobs))
    recipes = {n: get_recipe(s.recipe, n, dict(s.overrides), device.type) for n in names}
    torch.set_num_threads(s.threads or os.cpu_count() or 1)
    provenance = artifacts.run_provenance(data, k)
    resident = Resident.place(data, device, s.aug)
    slots, caps = [None] * len(jobs), {n: r.epochs for n, r in recipes.items()}
    if s.budget > 0:
        sized, slots = budget.fit_budget(s.budget, jobs, recipes, resident, fold_of_row, device, s.aug)
        recipes = {n: get_recipe(s.recipe, n, dict(s.overrides), device.type, r.epochs) for n, r in sized.items()}
    elif s.estimate:
        budget.print_estimate(jobs, recipes, resident, fold_of_row, device, s.aug)
    print_light(recipes, dict(s.overrides))
    context = RunContext(resident, fold_of_row, device, s.aug, precision, provenance, teacher, stop_at,
                         s.checkpoint_every, s.compile, node, sys.stderr.isatty())
    start, skipped, done = time.perf_counter(), [], []
    for job, slot in zip(jobs, slots):
        if stop_at is not None and time.monotonic() >= stop_at and not job.files.is_done():
            skipped.append(job)
            continue
        try:
            done.append(FoldRun(job, recipes[job.arch], context, slot,
                                caps[job.arch] if s.budget > 0 else None).run())
        except PastStopAt as err:
            print(f"{err}: skipped", flush=True)
            skipped.append(job)
    print(f"{len(done)} job(s) done or checked in {time.perf_counter() - start:.0f} s", flush=True)
    return done + skipped_at_stop(skipped)


def affordable(arch: str, s: Settings, folds: int, refits: int, min_epochs: int) -> str:
    """`arch`, or the first of its cheaper siblings (models.facts(...).cheaper) that the budget `s.budget` gives
    `min_epochs` epochs on this machine (`folds` folds and `refits` refits each), by the budget's own probe and
    plan; the cheapest when none is given as many. A recipe capped below min_epochs (--epochs) asks no more than
    its cap. A sibling that has started folds in the work folder is the choice already made: a rerun resumes it."""
    chain = [arch]
    while models.facts(chain[-1]).cheaper:
        chain.append(models.facts(chain[-1]).cheaper)
    k = artifacts.fold_count()
    started = [name for name in chain if artifacts.folds_started(name, k)]
    if started or len(chain) == 1:
        return (started or chain)[0]
    device = pick_device(s.device)
    torch.set_num_threads(s.threads or os.cpu_count() or 1)
    data = load_dataset()
    fold_of_row = load_folds(len(data.train_labels))
    resident = Resident.place(data, device, s.aug)
    for name in chain[:-1]:
        recipe = get_recipe(s.recipe, name, dict(s.overrides), device.type)
        epochs, speed = budget.planned_epochs(name, recipe, s.budget, folds, refits, resident, fold_of_row, device,
                                              s.aug)
        asked = min(min_epochs, recipe.epochs)
        print(f"{name}: {speed.train_ips:.0f} training img/s here, so {epochs} epoch(s) in {s.budget:g} min"
              + ("" if epochs >= asked else f": fewer than {asked}, so the cheaper {models.facts(name).cheaper}"),
              flush=True)
        if epochs >= asked:
            return name
    return chain[-1]


def print_light(recipes: dict[str, Recipe], overrides: dict) -> None:
    """Say which models' short schedules get the light augmentation (recipes.get_recipe), and which knobs it
    turned off: none where --set chose them all."""
    for name, recipe in recipes.items():
        off = light_off(name, recipe, overrides)
        if off:
            print(f"{name}: {recipe.epochs} epochs, fewer than its {models.facts(name).light_below}: light "
                  f"augmentation ({', '.join(off)} off; flips and translation stay)", flush=True)


def skipped_at_stop(jobs: list[Job]) -> list:
    if jobs:
        print(f"skipped at --stop-at: {', '.join(j.files.what for j in jobs)}", flush=True)
    return []


def settings_of(args) -> Settings:
    overrides = parse_overrides(args.set) | ({"epochs": args.epochs} if args.epochs else {})
    return Settings(args.recipe, tuple(overrides.items()), args.device, args.aug, args.checkpoint_every,
                    args.budget, args.stop_at, args.precision, args.compile, args.teacher, args.teacher_weight,
                    args.threads, not args.no_estimate)


def _main(argv=None) -> int:
    args = parse_args(argv)
    names = parse_models(args.model)
    tag = args.tag or (artifacts.STUDENT if args.teacher else "")
    if not paths.cache_path().exists():
        load_dataset()  # raises, saying how to get the data (before the folds, which come after it)
    jobs = plan_jobs(names, args.folds, artifacts.fold_count(), parse_list(args.seeds, "--seeds"), tag)
    train(jobs, settings_of(args))
    return 0


def main(argv=None) -> int:
    return run_command(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
