"""Fit training into a time budget: measure each architecture's speed on this machine, size its epochs, print
the plan, and stop a fold at its deadline if the measurement was optimistic.

    python -m competition.train_folds --model bn_cnn,baseline_cnn,resnet_cbam --folds 0 --budget 26
    ./run.sh all --quick --from <zip>          # the quick profile: a 30-minute budget for the whole job

How the minutes are spent. A short timed run (a warm-up batch, then MEASURE_STEPS batches, and one inference
batch) gives each model's training and inference images/s here, on this machine's threads. A fold's cost is
  epochs x (train rows / train img/s + validation rows / inference img/s)  +  its final inference
  (validation and test rows with and without TTA, and the clean-train-accuracy sample).
The training budget (the budget less the final inferences) is shared among the models by each one's
`budget_share` (models.facts, from its model file): bn_cnn's 0.8 against 0.1 goes where the accuracy comes
from on a CPU (bn_cnn: 62.6% OOF in 12 one-thread epochs, against 49.8% for baseline_cnn and
50.7% for resnet_cbam, which then got weight 0 in the ensemble). Every model gets at least
one epoch, so all stay in the run and the report, which calls a model with fewer than JUDGE_EPOCHS epochs
"not trained long enough to judge".
"""
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

import torch

import models
from competition.engine import BatchSource, build, train_one_epoch
from competition.infer import infer
from competition.recipes import Recipe
from competition.report_markdown import JUDGE_EPOCHS

MEASURE_STEPS = 3  # timed training batches per model, after one warm-up batch
EPOCH_OVERHEAD = 1.08  # whole epochs ran 8% slower than the timed batches predict (the 30-minute CPU run)
LONG_S = 3600  # an estimate past this many seconds (without a budget) comes with a hint
REPLAN_EPOCH = 2  # a budget-sized fold plans its epochs again from its own epoch time after this many epochs


@dataclass(frozen=True)
class Speed:
    train_ips: float  # training images/s (augmentation, forward, backward, optimizer, EMA)
    infer_ips: float  # inference images/s, one view


@dataclass(frozen=True)
class JobPlan:
    model: str
    folds: int  # this process's folds of the model
    epochs: int
    epoch_s: float  # one epoch of one fold: training and validation
    finish_s: float  # one fold's final inference
    speed: Speed

    @property
    def seconds(self) -> float:
        return self.folds * (self.epochs * self.epoch_s + self.finish_s)


def measure(name: str, recipe: Recipe, images, labels, device: torch.device, aug: str) -> Speed:
    """Training and inference images/s of `name` here, from a few batches of the real rows."""
    n = recipe.batch_size * (MEASURE_STEPS + 1)
    source = BatchSource(images[:n], labels[:n], recipe, device, aug)
    torch.manual_seed(0)
    parts = build(name, recipe, source.steps, device, sample=source.sample())
    warm = BatchSource(images[:recipe.batch_size], labels[:recipe.batch_size], recipe, device, aug)
    train_one_epoch(parts, warm, seed=0, progress=False)
    stats = train_one_epoch(parts, source, seed=1, progress=False)
    batch = images[:512]
    start = time.perf_counter()
    infer(parts.model, batch, tta=0, device=device)
    return Speed(stats.images_per_s, len(batch) / max(time.perf_counter() - start, 1e-9))


def plan(budget_s: float, jobs: dict[str, int], speeds: dict[str, Speed], rows: dict[str, int],
         tta_views: dict[str, int], max_epochs: dict[str, int], fixed: dict[str, int] | None = None,
         by_cost: bool = False) -> list[JobPlan]:
    """Epochs per model so that all jobs (model -> number of folds here) end within budget_s.
    rows: one fold's train, val and test row counts, and train_sample, the clean-train-accuracy rows.
    max_epochs: the recipe's epochs, never exceeded (a small data set does not train for hours).
    fixed: models whose epochs are already set (a started fold resumes with the epochs it started with).
    by_cost: share the training time by each model's cost at its recipe's epochs, so every model gets the same
    fraction of its epochs (on a GPU, where the CPU finding behind budget_share does not hold: resnet_cbam48 is
    the best there); else by each architecture's budget_share (models.facts)."""
    fixed = fixed or {}
    drafts = {}
    for name, folds in jobs.items():
        s = speeds[name]
        epoch_s = EPOCH_OVERHEAD * (rows["train"] / s.train_ips + rows["val"] / s.infer_ips)
        views = tta_views[name] + 1  # the TTA pass (that many views) and the plain pass
        finish_s = ((rows["val"] + rows["test"]) * views + rows["train_sample"]) / s.infer_ips
        drafts[name] = (folds, epoch_s, finish_s)
    training_s = budget_s - sum(f * fin for f, _, fin in drafts.values())
    training_s -= sum(drafts[n][0] * drafts[n][1] * epochs for n, epochs in fixed.items() if n in drafts)
    share = ({n: f * e * max_epochs[n] for n, (f, e, _) in drafts.items()} if by_cost
             else {n: models.facts(n).budget_share for n in drafts})
    total_share = sum(share[name] for name in jobs if name not in fixed) or 1.0
    plans = []
    for name, (folds, epoch_s, finish_s) in drafts.items():
        mine = training_s * share[name] / total_share
        epochs = fixed.get(name) or min(max_epochs[name], max(1, int(min(mine / (folds * epoch_s), 1e9))))
        plans.append(JobPlan(name, folds, epochs, epoch_s, finish_s, speeds[name]))
    return plans


def describe(plans: list[JobPlan], budget_s: float | None) -> str:
    """The plan as a table, then the expected end (a clock time) and, for a long run without a budget, a hint."""
    head = f"plan for a budget of {budget_s / 60:.1f} min" if budget_s else "plan at the recipe's epochs (no --budget)"
    lines = [f"{head} (speeds measured here in a few batches):",
             f"{'model':14s} {'folds':>5s} {'train img/s':>11s} {'epoch s':>8s} {'epochs':>6s} {'minutes':>7s}"]
    for p in plans:
        note = f"  (< {JUDGE_EPOCHS} epochs: too short to judge)" if p.epochs < JUDGE_EPOCHS else ""
        lines.append(f"{p.model:14s} {p.folds:5d} {p.speed.train_ips:11.0f} {p.epoch_s:8.1f} {p.epochs:6d} "
                     f"{p.seconds / 60:7.1f}{note}")
    total = sum(p.seconds for p in plans)
    lines.append(f"{'total':14s} {'':5s} {'':11s} {'':8s} {'':6s} {total / 60:7.1f}")
    ends = (datetime.now() + timedelta(seconds=total)).strftime("%a %H:%M")
    lines.append(f"expected to end about {ends} ({hours(total)} from now)")
    if not budget_s and total > LONG_S:
        lines.append(f"hint: that is long. `./run.sh all --quick` trains fold 0 in 30 minutes; `--budget MINUTES` "
                     f"sizes every model's epochs to fit; --epochs N or --folds 0 make it shorter.")
    return "\n".join(lines)


def hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 5400 else f"{seconds / 60:.0f} min"


def deadline_passed(deadline: float | None, epoch_s: float) -> bool:
    """Would one more epoch end past the deadline (time.monotonic() seconds)?"""
    return deadline is not None and time.monotonic() + epoch_s > deadline
