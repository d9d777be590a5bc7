"""Fit training into a time budget: measure each architecture's speed on this machine, size its epochs, print
the plan, and stop a fold at its deadline if the measurement was optimistic.

    python -m competition.train_folds --model bn_cnn,baseline_cnn,resnet_cbam --folds 0 --budget 26
    ./run.sh all --quick --from <zip>          # the quick profile: a 30-minute budget for the whole job

How the minutes are spent. A short timed run (a warm-up batch, then MEASURE_STEPS batches, and one inference
batch) gives each model's training and inference images/s here, on this machine's threads. A fold's cost is
  epochs x (train rows / train img/s + validation rows / inference img/s)  +  its final inference
  (validation and test rows with and without TTA, and the clean-train-accuracy sample);
a refit's (the quick run's fold 0 + refit) is its folds' epochs x every Training row / train img/s, and its
final inference of the test rows: one epoch count per model, for its folds and its refit alike.
The training budget (the budget less the final inferences) is shared among the models by each one's
`budget_share` (models.facts, from its model file): bn_cnn's 0.8 against 0.1 goes where the accuracy comes
from on a CPU (bn_cnn: 62.6% OOF in 12 one-thread epochs, against 49.8% for baseline_cnn and
50.7% for resnet_cbam, which then got weight 0 in the ensemble). Every model gets at least
one epoch, so all stay in the run and the report, which calls a model with fewer than JUDGE_EPOCHS epochs
"not trained long enough to judge".

Planning again. The first measurement (a few batches) is often pessimistic or optimistic, so each fold plans its
epochs again from its own epoch time after REPLAN_EPOCH epochs (`Slot.epochs`): the minutes left to the end, less the
final inferences still to come, plus its own so far, are shared between it and the jobs after it in the plan's
proportions. So the first fold does not take all the slack of a pessimistic plan (the 30-minute run at 8d394a9,
planning against its deadline only: folds 0, 1, 2 got 14, 11 and 12 epochs), and each later fold, planning again in
turn, has what the earlier ones left. A fold still stops at its deadline (the end less
the later jobs' planned cost) if even that was optimistic.

train_folds' side of it is here too (`fit_budget`, `measure_jobs`, `print_estimate`, `job_slots`): they take
its jobs (train_folds.Job: arch, fold, files) and its resident data, and give back recipes and slots.
"""
import time
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import numpy as np
import torch

import models
from competition import artifacts
from competition.augment import view_count
from competition.engine import BatchSource, build, train_one_epoch
from competition.infer import infer
from competition.recipes import Recipe
from competition.report_markdown import JUDGE_EPOCHS

TRAIN_ACC_ROWS = 4096  # "clean train accuracy" on a fixed sample of the fold's training rows: it says the same
# as all ~23,000 of them (a standard error under 0.8 points at 65%) for about a sixth of the inference
MEASURE_STEPS = 3  # timed training batches per model, after one warm-up batch
EPOCH_OVERHEAD = 1.08  # whole epochs ran 8% slower than the timed batches predict (the 30-minute CPU run)
LONG_S = 3600  # an estimate past this many seconds (without a budget) comes with a hint
REPLAN_EPOCH = 2  # a budget-sized fold plans its epochs again from its own epoch time after this many epochs


@dataclass(frozen=True)
class Speed:
    train_ips: float  # training images/s (augmentation, forward, backward, optimizer, EMA)
    infer_ips: float  # inference images/s, one view


@dataclass(frozen=True)
class Slot:
    """One budget-sized job's place in its run: what was planned for it and after it, and so when it must stop."""
    end: float  # the budget's end (time.monotonic())
    epoch_s: float = 1.0  # this job's planned epoch
    finish_s: float = 0.0  # this job's planned final inference
    later_train_s: float = 0.0  # the planned training of the jobs after it
    later_finish_s: float = 0.0  # and their final inferences

    @property
    def deadline(self) -> float:
        """No epoch may end past it: the end less the later jobs' planned cost and this job's final inference."""
        return self.end - self.later_train_s - self.later_finish_s - self.finish_s

    def epochs(self, done: int, planned: int, epoch_s: float, now: float) -> int:
        """This job's epochs, planned again after `done` of `planned` epochs that took `epoch_s` each: the
        training time left (less every final inference still to come) and its own so far, shared with the later
        jobs in the plan's proportions, at the speed measured now."""
        mine = planned * self.epoch_s
        left = max(0.0, self.end - now - self.finish_s - self.later_finish_s)
        return max(done, int((left + done * epoch_s) * mine / (mine + self.later_train_s) / epoch_s))


@dataclass(frozen=True)
class JobPlan:
    model: str
    folds: int  # this process's folds of the model
    epochs: int
    epoch_s: float  # one epoch of one fold: training and validation
    finish_s: float  # one fold's final inference
    speed: Speed
    refits: int = 0  # this process's refits of the model (every Training row, the folds' epochs, nothing held out)
    refit_epoch_s: float = 0.0
    refit_finish_s: float = 0.0  # test rows and the clean-train-accuracy sample only

    @property
    def per_epoch_s(self) -> float:
        """One epoch of every fold and refit of the model here."""
        return self.folds * self.epoch_s + self.refits * self.refit_epoch_s

    @property
    def finishes_s(self) -> float:
        """Their final inferences."""
        return self.folds * self.finish_s + self.refits * self.refit_finish_s

    @property
    def seconds(self) -> float:
        return self.epochs * self.per_epoch_s + self.finishes_s

    def costs(self, refit: bool) -> tuple[float, float]:
        """(epoch_s, finish_s) of one of its folds, or of its refit."""
        return (self.refit_epoch_s, self.refit_finish_s) if refit else (self.epoch_s, self.finish_s)


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
         by_cost: bool = False, refits: dict[str, int] | None = None) -> list[JobPlan]:
    """Epochs per model so that all jobs (model -> number of folds here; refits: model -> its refits here, each
    with its folds' epochs) end within budget_s.
    rows: one fold's train, val and test row counts, all (every Training row: a refit's), and train_sample, the
    clean-train-accuracy rows.
    max_epochs: the recipe's epochs, never exceeded (a small data set does not train for hours).
    fixed: models whose epochs are already set (a started fold resumes with the epochs it started with).
    by_cost: share the training time by each model's cost at its recipe's epochs, so every model gets the same
    fraction of its epochs (on a GPU, where the CPU finding behind budget_share does not hold: resnet_cbam48 is
    the best there); else by each architecture's budget_share (models.facts)."""
    fixed, refits = fixed or {}, refits or {}
    drafts = {}
    for name in {**jobs, **refits}:
        s = speeds[name]
        views = tta_views[name] + 1  # the TTA pass (that many views) and the plain pass
        drafts[name] = JobPlan(
            name, jobs.get(name, 0), 0, EPOCH_OVERHEAD * (rows["train"] / s.train_ips + rows["val"] / s.infer_ips),
            ((rows["val"] + rows["test"]) * views + rows["train_sample"]) / s.infer_ips, s, refits.get(name, 0),
            EPOCH_OVERHEAD * rows["all"] / s.train_ips, (rows["test"] * views + rows["train_sample"]) / s.infer_ips)
    training_s = budget_s - sum(d.finishes_s for d in drafts.values())
    training_s -= sum(drafts[n].per_epoch_s * epochs for n, epochs in fixed.items() if n in drafts)
    share = ({n: d.per_epoch_s * max_epochs[n] for n, d in drafts.items()} if by_cost
             else {n: models.facts(n).budget_share for n in drafts})
    total_share = sum(share[name] for name in drafts if name not in fixed) or 1.0
    return [replace(d, epochs=fixed.get(name) or min(max_epochs[name], max(1, int(min(
        training_s * share[name] / total_share / d.per_epoch_s, 1e9))))) for name, d in drafts.items()]


def describe(plans: list[JobPlan], budget_s: float | None) -> str:
    """The plan as a table, then the expected end (a clock time) and, for a long run without a budget, a hint."""
    head = f"plan for a budget of {budget_s / 60:.1f} min" if budget_s else "plan at the recipe's epochs (no --budget)"
    lines = [f"{head} (speeds measured here in a few batches):",
             f"{'model':14s} {'folds':>9s} {'train img/s':>11s} {'epoch s':>8s} {'epochs':>6s} {'minutes':>7s}"]
    for p in plans:
        note = f"  (< {JUDGE_EPOCHS} epochs: too short to judge)" if p.epochs < JUDGE_EPOCHS else ""
        folds = f"{p.folds}" + (f"+{p.refits} refit" if p.refits else "")
        lines.append(f"{p.model:14s} {folds:>9s} {p.speed.train_ips:11.0f} {p.epoch_s:8.1f} {p.epochs:6d} "
                     f"{p.seconds / 60:7.1f}{note}")
    total = sum(p.seconds for p in plans)
    lines.append(f"{'total':14s} {'':9s} {'':11s} {'':8s} {'':6s} {total / 60:7.1f}")
    ends = (datetime.now() + timedelta(seconds=total)).strftime("%a %H:%M")
    lines.append(f"expected to end about {ends} ({hours(total)} from now)")
    if not budget_s and total > LONG_S:
        lines.append(f"hint: that is long. `./run.sh all --quick` trains fold 0 and a refit in 30 minutes; `--budget MINUTES` "
                     f"sizes every model's epochs to fit; --epochs N or --folds 0 make it shorter.")
    return "\n".join(lines)


def hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 5400 else f"{seconds / 60:.0f} min"


def deadline_passed(deadline: float | None, epoch_s: float) -> bool:
    """Would one more epoch end past the deadline (time.monotonic() seconds)?"""
    return deadline is not None and time.monotonic() + epoch_s > deadline


# ---------------------------------------------------------------- train_folds' budget glue: its jobs (train_folds.Job)

def fit_budget(minutes: float, mine: list, recipes: dict[str, Recipe], resident, fold_of_row,
               device, aug: str) -> tuple[dict[str, Recipe], list[Slot | None]]:
    """Epochs per model from speeds measured here, and each job's slot (its deadline, for planning again);
    finished jobs cost nothing, and a started fold keeps the epochs it started with. A refit among the jobs
    trains its folds' planned epochs on every Training row (the quick run's fold 0 + refit)."""
    end = time.monotonic() + minutes * 60  # the measuring comes out of the budget too
    started = [(j.arch, artifacts.read_config(j.files)) for j in mine]
    fixed = {arch: config.epochs for arch, config in started if config}  # an arch keeps its first started job's
    todo = [j for j in mine if not j.files.is_done()]
    if not todo:  # a rerun after the end: every fold is checked as done with its own epochs
        return {n: replace(r, epochs=fixed.get(n, r.epochs)) for n, r in recipes.items()}, [None] * len(mine)
    plans = job_plans(todo, recipes, resident, fold_of_row, device, aug, fixed, end)
    print(describe(plans, end - time.monotonic()), flush=True)
    by_name = {p.model: p for p in plans}
    recipes = {n: replace(r, epochs=by_name[n].epochs) if n in by_name else r for n, r in recipes.items()}
    return recipes, job_slots(mine, todo, by_name, end)


def job_plans(todo: list, recipes: dict[str, Recipe], resident, fold_of_row, device, aug: str,
              fixed: dict[str, int] | None = None, end: float | None = None) -> list[JobPlan]:
    """The plan of `todo` (train_folds.Job: folds and refits) from speeds measured here in a few batches: to
    end by `end` (time.monotonic(), counted after measuring), or at the recipes' epochs when None."""
    speeds = {n: measure_here(n, recipes[n], resident, fold_of_row, device, aug)
              for n in dict.fromkeys(j.arch for j in todo)}
    rows = row_counts(resident, fold_of_row)
    counts = {n: sum(1 for t in todo if t.arch == n and t.fold is not None) for n in speeds}
    refits = {n: sum(1 for t in todo if t.arch == n and t.fold is None) for n in speeds}
    views = {n: view_count(r.tta) for n, r in recipes.items()}
    epochs = {n: r.epochs for n, r in recipes.items()}
    if end is None:
        return plan(float("inf"), counts, speeds, rows, views, epochs, refits=refits)
    return plan(end - time.monotonic(), counts, speeds, rows, views, epochs, fixed, by_cost=device.type == "cuda",
                refits=refits)


def measure_here(name: str, recipe: Recipe, resident, fold_of_row, device, aug: str) -> Speed:
    """`measure` on the first Training rows as they are resident (train_folds.Resident)."""
    sample = np.arange(min(len(fold_of_row), 4 * 512))
    return measure(name, recipe, resident.train_rows(sample), resident.train_labels[sample], device, aug)


def row_counts(resident, fold_of_row) -> dict[str, int]:
    """`plan`'s rows: one fold's train, val and test rows, every Training row, and the clean-train-accuracy sample."""
    val = int(np.bincount(fold_of_row).max())
    return {"train": len(fold_of_row) - val, "val": val, "test": len(resident.test_images),
            "all": len(fold_of_row), "train_sample": min(len(fold_of_row) - val, TRAIN_ACC_ROWS)}


def planned_epochs(name: str, recipe: Recipe, minutes: float, folds: int, refits: int, resident, fold_of_row,
                   device, aug: str) -> tuple[int, Speed]:
    """The epochs a budget of `minutes` gives `folds` folds and `refits` refits of `name` alone here, and its
    speed, measured and planned as fit_budget does (never more than the recipe's epochs)."""
    speed = measure_here(name, recipe, resident, fold_of_row, device, aug)
    plans = plan(minutes * 60, {name: folds}, {name: speed}, row_counts(resident, fold_of_row),
                 {name: view_count(recipe.tta)}, {name: recipe.epochs}, refits={name: refits})
    return plans[0].epochs, speed


def print_estimate(mine: list, recipes: dict[str, Recipe], resident, fold_of_row, device,
                   aug: str) -> None:
    """Without a budget: this process's plan at the recipe's epochs and its expected end, from speeds measured
    in its first seconds, before the first epoch (a newcomer learns that a run takes 10 hours before it has)."""
    todo = [j for j in mine if not j.files.is_done()]
    if todo:
        print(describe(job_plans(todo, recipes, resident, fold_of_row, device, aug), None), flush=True)


def job_slots(mine: list, todo: list, by_name: dict, end: float) -> list[Slot | None]:
    """Each job's slot. Its deadline: the budget's end less the planned cost of the jobs after it and its own
    final inference; a job may so use what an earlier one saved, and is cut only when the whole budget is at risk
    (the 30-minute run showed per-job deadlines cutting epochs with minutes left over). Finished jobs: None."""
    costs = [by_name[j.arch].costs(j.fold is None) if j in todo else None for j in mine]
    epochs = [by_name[j.arch].epochs if j in todo else 0 for j in mine]
    train = [e * c[0] if c else 0.0 for e, c in zip(epochs, costs)]
    finish = [c[1] if c else 0.0 for c in costs]
    return [Slot(end, c[0], c[1], sum(train[i + 1:]), sum(finish[i + 1:])) if c else None
            for i, c in enumerate(costs)]
