"""The study, regenerated: report.md with figures, computed from the logits training and ensembling left.

    python -m competition.report                                    # reports/latest/report.md
    python -m competition.report --out reports/example              # the README's example report
    python -m competition.report --members bn_cnn,resnet_cbam48      # only these members
    python -m competition.report --members bn_cnn,bn_cnn.s1,bn_cnn.s2,bn_cnn.student   # seeds, a student

Nothing is retrained. Every number and figure comes from folds/<member>/fold<k>/ and folds/<member>/refit/
(oof.npz, test.npz, log.csv, done.json, config.json) through competition.artifacts, plus each architecture's
registry entry for parameters and multiply-adds; report.json beside report.md holds every table's numbers.
Missing work is reported, never skipped: a member without complete folds, or a fold without done.json, is
listed under "Missing". The report is built in a temp folder and renamed into place, so a crash leaves the old
report or the new one. confident_mistakes.png is made of FER2013 images: keep it out of git. This module
computes the numbers, draws the figures and publishes the folder; report.md's wording and tables are
competition.report_markdown.

The ladder climbs, for each member that is not another's seed: one fold -> k-fold average -> + TTA -> + seeds
(its members `<member>.s<N>` with every fold, equal-weight logits) -> + refit (blending.with_refit: test logits
only, a refit has no OOF; with its refit-only seeds', artifacts.refits_of); then the ensemble of every complete member with refits mixed in (equal, OOF-fitted,
stacked); then each distilled student on its own row, never in an ensemble (its OOF saw its teacher's labels).
Each row costs the training seconds of every run it needs (done.json "seconds": epoch times only), counted in
full, on the devices config.json names.
"""
import argparse
import functools
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure  # no pyplot: figures are drawn by Agg straight to PNG, no display, no state
from matplotlib.ticker import MaxNLocator
from scipy.special import softmax
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support
from torch.utils.flop_counter import FlopCounterMode

from competition import CLASSES, NUM_CLASSES, artifacts, blending, paths
from competition.data import FerData, load_dataset
from competition.errors import OldSpelling, UserError, run_command
from competition.folds import load_folds
from competition.report_markdown import MISTAKES_PNG, render
from models import MODEL_NAMES, STUDY_MODELS, facts  # importing models registers them with timm
from competition.engine import create_model
from models.fer import IMAGE_SIZE, IN_CHANS

AVERAGE = "logits"  # how the ensemble combines models, as competition.ensemble's default
MISTAKES = 16  # images in the confident-mistakes grid
LEADERBOARD_ROWS = 10  # the last rows of the local leaderboard that the report shows
OPTIMISTIC = "optimistic: its soft targets came from a teacher whose folds saw these labels"


class ReportError(UserError):
    """Nothing to report: the message says what to run first."""


# ---------------------------------------------------------------- numbers from the logits

@functools.lru_cache(maxsize=None)
def size_of(model_name: str) -> tuple[int, int]:
    """(parameters, multiply-adds) for one 1x48x48 image; torch counts FLOPs = 2 x MACs."""
    model = create_model(model_name).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, IN_CHANS, IMAGE_SIZE, IMAGE_SIZE))
    return sum(p.numel() for p in model.parameters()), counter.get_total_flops() // 2


def ladder_row(name: str, oof: np.ndarray, labels: np.ndarray, test: np.ndarray, data: FerData,
         runs: list[tuple[str, int | None]], note: str = "") -> dict:
    """One ladder row: OOF accuracy over `labels`' rows, PublicTest and PrivateTest accuracy (None: unknown),
    what its training cost (`runs`), and a note on its OOF figure where it is not a plain one."""
    return {"step": name, "oof_rows": len(labels), **blending.score(oof, labels, test, data),
            **({"oof_note": note} if note else {}), **cost(runs)}


def per_class(logits: np.ndarray, labels: np.ndarray) -> dict:
    pred = logits.argmax(1)
    p, r, f, support = precision_recall_fscore_support(labels, pred, labels=range(NUM_CLASSES), zero_division=0)
    return {"precision": p.tolist(), "recall": r.tolist(), "f1": f.tolist(), "support": support.tolist(),
            "confusion": confusion_matrix(labels, pred, labels=range(NUM_CLASSES)).tolist()}


def model_numbers(ml, data: FerData) -> dict:
    """What the study reported (an architecture's own member only), size, train vs fold-validation accuracy
    (done.json, per fold), OOF and test accuracy, per class."""
    arch = artifacts.arch_of(ml.member)
    params, macs = size_of(arch)
    train = np.array([ml.done[f].train_acc for f in ml.folds])
    val = np.array([ml.done[f].val_acc for f in ml.folds])
    return {"arch": arch, "study": facts(ml.member).study, "folds": list(ml.folds), "params": params, "macs": macs,
            "best_epoch": [ml.done[f].best_epoch for f in ml.folds],
            "epochs_run": [ml.done[f].epochs_run for f in ml.folds],
            "train_acc_folds": train.tolist(), "val_acc_folds": val.tolist(),
            "train_acc": float(train.mean()), "train_acc_std": float(train.std()),
            "val_acc": float(val.mean()), "val_acc_std": float(val.std()), "gap": float(train.mean() - val.mean()),
            **blending.score(ml.oof_logits, ml.oof_labels, ml.test_logits, data),
            "per_class": per_class(ml.oof_logits, ml.oof_labels)}


# ---------------------------------------------------------------- what a ladder row costs

def run_cost(member: str, fold: int | None) -> tuple[float | None, str]:
    """(training-loop seconds from done.json, device type from config.json) of one finished fold or refit."""
    files = artifacts.FoldFiles(member, fold)
    device = (artifacts.read_config(files) or artifacts.RunConfig()).device
    return artifacts.read_done(files).seconds, str(device or "unknown").split(":")[0]


def cost(runs: list[tuple[str, int | None]]) -> dict:
    """A row's price: minutes summed over its distinct runs, in all and per device (None where a run has no
    seconds), the devices, and how many runs."""
    paid = [run_cost(member, fold) for member, fold in dict.fromkeys(runs)]
    devices = sorted({d for _, d in paid})
    by_device = {d: minutes_of([s for s, on in paid if on == d]) for d in devices}
    return {"minutes": minutes_of([s for s, _ in paid]), "devices": devices, "minutes_by_device": by_device,
            "runs": len(paid)}


def minutes_of(seconds: list[float | None]) -> float | None:
    return None if None in seconds else sum(seconds) / 60


def member_runs(ml) -> list[tuple[str, int | None]]:
    """The runs behind a member's logits: its finished folds, and its refits when they are mixed in."""
    return [(ml.member, f) for f in ml.folds] + ([(r, None) for r in artifacts.refits_of(ml.member)]
                                                 if ml.refit_share else [])


def group_runs(models: list) -> list[tuple[str, int | None]]:
    return [run for ml in models for run in member_runs(ml)]


# ---------------------------------------------------------------- the ladder

def model_ladder(ml, data: FerData, fold_of_row: np.ndarray) -> list[dict]:
    """One fold -> fold average -> with TTA, for one member. The first two steps use the plain logits; TTA
    costs no training, so its row costs what the fold average does."""
    first = ml.folds[0]
    in_first = fold_of_row[ml.oof_rows] == first
    first_test = artifacts.read_npz(artifacts.FoldFiles(ml.member, first) / artifacts.TEST)["logits_plain"]
    runs = member_runs(ml)
    return [ladder_row(f"{ml.member}: one fold (fold {first})", ml.oof_logits_plain[in_first], ml.oof_labels[in_first],
                 first_test, data, [(ml.member, first)]),
            ladder_row(f"{ml.member}: {len(ml.folds)}-fold average", ml.oof_logits_plain, ml.oof_labels,
                 ml.test_logits_plain, data, runs),
            ladder_row(f"{ml.member}: + TTA", ml.oof_logits, ml.oof_labels, ml.test_logits, data, runs)]


def seed_groups(loaded: dict, k: int) -> tuple[dict[str, list], list[str]]:
    """({base member: its seed members with all k folds}, lines on seed members left out): `bn_cnn.s1` joins
    `bn_cnn` when both are loaded; any other member is a base of its own."""
    bases = {name: artifacts.Member.parse(name).seed_base for name in loaded}
    base_of = {name: base.name for name, base in bases.items() if base and base.name in loaded}
    groups = {name: [] for name in loaded if name not in base_of}
    missing = []
    for name, base in base_of.items():
        if len(loaded[name].folds) == k:
            groups[base].append(loaded[name])
        else:
            missing.append(f"{name}: left out of {base}'s seeds step (incomplete folds)")
    return groups, missing


def blend_step(name: str, models: list, data: FerData, note: str = "") -> dict:
    """Equal-weight logit average of `models` as a ladder row, OOF on the rows they all predicted."""
    _, labels, _ = blending.common_oof(models)
    oof, test = blending.combine(models, np.full(len(models), 1 / len(models)), AVERAGE)
    return {**ladder_row(name, oof, labels, test, data, group_runs(models), note), "models": [m.member for m in models]}


def with_refit(ml):
    """The member with its finished refits mixed in at the ensemble's default share (blending.with_refit)."""
    return blending.with_refit(ml, artifacts.refit_logits(ml.member, len(ml.test_logits)))


def share_text(share: float) -> str:
    return {0.5: "½", 2 / 3: "⅔", 3 / 4: "¾"}.get(share, f"{share:.3g}")


def seeds_and_refit(base, seeds: list, data: FerData) -> list[dict]:
    """'+ seeds' when the base has complete seed members, then '+ refit' when any of them has a finished
    refit: blending.with_refit's test logits, the OOF unchanged (a refit has none)."""
    group = [base, *seeds]
    rows = [blend_step(f"{base.member}: + seeds, {len(group)} averaged", group, data)] if seeds else []
    mixed = [with_refit(ml) for ml in group]
    refits = [ml for ml in mixed if ml.refit_share]
    if refits:
        some = "" if len(refits) == len(group) else f", {len(refits)} of {len(group)} members"
        runs = [r for ml in refits for r in artifacts.refits_of(ml.member)]  # with refit-only seeds
        what = "refit" if len(runs) == len(refits) else f"{len(runs)} refits"
        rows.append({**blend_step(f"{base.member}: + {what} (share {share_text(refits[0].refit_share)}{some})", mixed,
                                  data, "the folds' OOF: a refit has none"), "refits": runs})
    return rows


def ensemble_ladder(complete: list, data: FerData) -> list[dict]:
    """Ladder rows of the ensemble of complete members (refits mixed in): equal weights and, with two members or
    more, OOF-fitted weights and the stacked logistic regression."""
    weightings = {"equal weights": np.full(len(complete), 1 / len(complete))}
    if len(complete) > 1:
        weightings["OOF-fitted weights"] = np.asarray(blending.fit_weights(complete, AVERAGE))
    _, labels, _ = blending.common_oof(complete)
    runs, names = group_runs(complete), [ml.member for ml in complete]
    refits = {"refits": [r for ml in complete if ml.refit_share for r in artifacts.refits_of(ml.member)]}
    rows = []
    for label, weights in weightings.items():
        oof, test = blending.combine(complete, weights, AVERAGE)
        rows.append({**ladder_row(f"ensemble, {label}", oof, labels, test, data, runs), "models": names,
                     "weights": weights.tolist(), **refits})
    if len(complete) > 1:
        oof, test = blending.stack(complete)
        rows.append({**ladder_row("ensemble, stacked (logistic regression)", oof, labels, test, data, runs),
                     "models": names, "weights": None, **refits})
    return rows


def teacher_runs(student: str, k: int) -> tuple[list[tuple[str, int]], str]:
    """(the fold runs of the ensemble a student learned from, what the row says of it), read from
    submissions/teacher.npz when that file is still its teacher (the sha1 in the student's config.json)."""
    sha1 = artifacts.member_config(student, k).teacher_sha1
    path = artifacts.teacher_path()
    if not path.exists() or artifacts.teacher_sha1(path) != sha1:
        return [], f"its teacher's runs are not counted: {artifacts.TEACHER} is no longer its teacher"
    members = [str(m) for m in artifacts.read_npz(path)["members"]]
    return [(m, f) for m in members for f in artifacts.finished_folds(m, k)], "teacher: " + " + ".join(members)


def student_row(name: str, k: int, fold_of_row: np.ndarray, data: FerData) -> dict | None:
    """A distilled student's own row (None: nothing finished): with folds, their OOF marked optimistic and its
    refit mixed in; refit only, PublicTest from the refit and no OOF. Its teacher's runs count in its cost."""
    teacher, said = teacher_runs(name, k)
    if artifacts.finished_folds(name, k):
        ml = with_refit(artifacts.load_member(name, allow_missing=True, fold_of_row=fold_of_row))
        artifacts.check_against(ml, data)
        refit = f" + refit (share {share_text(ml.refit_share)})" if ml.refit_share else ""
        label = f"distilled student {name}{refit}"
        row = ladder_row(label, ml.oof_logits, ml.oof_labels, ml.test_logits, data, member_runs(ml) + teacher,
                         OPTIMISTIC)
        return {**row, "teacher": said}
    test = artifacts.refit_test_logits(name, len(data.test_labels))
    if test is None:
        return None
    row = ladder_row(f"distilled student {name}", test[:0], np.zeros(0, np.int64), test, data, [(name, None)] + teacher,
               "refit only")
    return {**row, "teacher": said}


def ladder(loaded: dict, complete: list, students: list[str], k: int, data: FerData,
           fold_of_row: np.ndarray) -> tuple[list[dict], list[dict], list[str]]:
    """(every ladder row, the ensemble's rows, lines on what was left out): each base member's climb, the
    ensemble of complete members, then each student alone."""
    groups, missing = seed_groups(loaded, k)
    rows = [row for base, seeds in groups.items()
            for row in model_ladder(loaded[base], data, fold_of_row) + seeds_and_refit(loaded[base], seeds, data)]
    ensemble = ensemble_ladder(complete, data) if complete else []
    alone, unfinished = student_rows(students, k, fold_of_row, data)
    return rows + ensemble + alone, ensemble, missing + unfinished


def student_rows(students: list[str], k: int, fold_of_row: np.ndarray,
                 data: FerData) -> tuple[list[dict], list[str]]:
    """(each student's row, lines on its unfinished work): a student may have a refit and no folds, but a
    student with some folds is reported for the others, as any member is."""
    rows, missing = [], []
    for name in students:
        row, done = student_row(name, k, fold_of_row, data), artifacts.finished_folds(name, k)
        rows += [row] if row else []
        missing += [] if row else [f"{name}: a student with no finished fold or refit"]
        missing += [f"{name} fold {f}: {fold_problem(name, f)}" for f in range(k) if done and f not in done]
    return rows, missing


def mistakes_source(loaded: dict, complete: list, numbers: dict) -> tuple[str, np.ndarray, np.ndarray, np.ndarray]:
    """(name, OOF logits, labels, Training rows): the equal-weight ensemble, else the best single model."""
    if complete:
        rows, labels, _ = blending.common_oof(complete)
        oof, _ = blending.combine(complete, np.full(len(complete), 1 / len(complete)), AVERAGE)
        return f"ensemble of {len(complete)}, equal weights", oof, labels, rows
    best = max(loaded.values(), key=lambda ml: numbers[ml.member]["oof"])
    return f"{best.member}, TTA", best.oof_logits, best.oof_labels, best.oof_rows


def confident_mistakes(logits: np.ndarray, labels: np.ndarray, rows: np.ndarray) -> list[dict]:
    """The wrong OOF predictions with the highest softmax probability, most confident first."""
    prob = softmax(logits.astype(np.float64), axis=1)
    pred, conf = prob.argmax(1), prob.max(1)
    wrong = np.flatnonzero(pred != labels)
    top = wrong[np.argsort(-conf[wrong], kind="stable")][:MISTAKES]
    return [{"row": int(rows[i]), "true": int(labels[i]), "pred": int(pred[i]), "confidence": float(conf[i])}
            for i in top]


# ---------------------------------------------------------------- what is there, what is missing

def default_models() -> list[str]:
    """The study's three models always (so an absent one shows as missing), other registered ones with runs,
    then every other member folder under folds/ (seeds, tags, students, timm architectures)."""
    names = [m for m in MODEL_NAMES if m in STUDY_MODELS or (paths.folds_dir() / m).is_dir()]
    folders = sorted(d.name for d in paths.folds_dir().iterdir()
                     if d.is_dir() and not d.name.startswith(".")) if paths.folds_dir().is_dir() else []
    return names + [name for name in folders if name not in names]


def fold_problem(model: str, fold: int) -> str:
    folder = artifacts.FoldFiles(model, fold).dir
    return "not started" if not folder.is_dir() else "started, no done.json (interrupted or running)"


def load_members(names: list[str], k: int, fold_of_row: np.ndarray) -> tuple[dict, list[str]]:
    """({member: MemberLogits} for members with at least one complete fold, lines saying what is missing)."""
    loaded, missing = {}, []
    for name in names:
        if not artifacts.finished_folds(name, k):
            missing.append(f"{name}: no complete fold of {k} (train it: `./run.sh train --model {name}`)")
            continue
        loaded[name] = ml = artifacts.load_member(name, allow_missing=True, fold_of_row=fold_of_row)
        missing += [f"{name} fold {f}: {fold_problem(name, f)}" for f in range(k) if f not in ml.folds]
    return loaded, missing


def ensemble_members(loaded: dict, k: int, allow_missing: bool) -> tuple[list, list[str]]:
    """(the members with all k folds, or every loaded one with allow_missing, each with its refit mixed in as
    blending.with_refit does; lines on what is left out or partial)."""
    complete = [with_refit(ml) for ml in loaded.values() if allow_missing or len(ml.folds) == k]
    partial = [name for name, ml in loaded.items() if len(ml.folds) < k]
    missing = ([f"{name}: in the ensemble with its finished folds only (--allow-missing)" for name in partial]
               if allow_missing else [f"{name}: left out of the ensemble (incomplete folds)" for name in partial])
    return complete, missing + ([] if complete else
                                [f"ensemble: no model has all {k} folds (--allow-missing uses finished ones)"])


# ---------------------------------------------------------------- figures

def plot_curves(model: str, folds: list[int], path: Path) -> None:
    """Loss and accuracy per epoch, one colour per fold; solid = train (augmented batches), dashed = val."""
    fig = Figure(figsize=(10, 4))
    loss_ax, acc_ax = fig.subplots(1, 2)
    for i, fold in enumerate(folds):
        log = artifacts.read_log(artifacts.FoldFiles(model, fold))
        for ax, key in ((loss_ax, "loss"), (acc_ax, "acc")):
            ax.plot(log["epoch"], log[f"train_{key}"], color=f"C{i}", label=f"fold {fold} train")
            ax.plot(log["epoch"], log[f"val_{key}"], color=f"C{i}", linestyle="--", label=f"fold {fold} val")
    for ax, title in ((loss_ax, "loss"), (acc_ax, "accuracy")):
        ax.set(xlabel="epoch", title=f"{model}: {title}")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    acc_ax.legend(fontsize=7)
    save(fig, path)


def plot_confusion(model: str, counts: np.ndarray, path: Path) -> None:
    """Row-normalised confusion matrix: row = true class, each row sums to 1 (its recall on the diagonal)."""
    totals = counts.sum(1, keepdims=True)
    rates = np.divide(counts, totals, out=np.zeros(counts.shape), where=totals > 0)
    fig = Figure(figsize=(6, 5))
    ax = fig.subplots()
    image = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    for (t, p), rate in np.ndenumerate(rates):
        ax.text(p, t, f"{rate:.2f}", ha="center", va="center", fontsize=8, color="white" if rate > 0.5 else "black")
    ax.set(xticks=range(NUM_CLASSES), yticks=range(NUM_CLASSES), xlabel="predicted", ylabel="true",
           title=f"{model}: out-of-fold confusion (row-normalised)")
    ax.set_xticklabels(CLASSES, rotation=45, ha="right")
    ax.set_yticklabels(CLASSES)
    fig.colorbar(image, ax=ax)
    save(fig, path)


def plot_mistakes(mistakes: list[dict], images: np.ndarray, source: str, path: Path) -> None:
    """A grid of the images with true and predicted class and the predicted class's probability."""
    cols, rows = 4, max(1, -(-len(mistakes) // 4))
    fig = Figure(figsize=(2 * cols, 2.3 * rows + 0.4))
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, m in zip(axes.ravel(), mistakes):
        ax.imshow(images[m["row"]], cmap="gray", vmin=0, vmax=255)
        ax.set_title(f"true {CLASSES[m['true']]}\npred {CLASSES[m['pred']]} {m['confidence']:.0%}", fontsize=8)
    fig.suptitle(f"Most confidently wrong out-of-fold predictions ({source})", fontsize=9)
    save(fig, path)


def save(fig: Figure, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=100)


# ---------------------------------------------------------------- the command

def build(folder: Path, names: list[str], allow_missing: bool = False) -> dict:
    """Compute every number, draw every figure into `folder`, write report.json and report.md there."""
    data = load_dataset()
    fold_of_row = load_folds(len(data.train_labels))
    k = artifacts.fold_count()
    students = [name for name in names if artifacts.is_student(name, k)]  # their own ladder rows only
    loaded, missing = load_members([name for name in names if name not in students], k, fold_of_row)
    if not loaded:
        raise ReportError("no model has a complete fold:\n  " + "\n  ".join(missing))
    for ml in loaded.values():
        artifacts.check_against(ml, data)  # logits from another dataset would make every number wrong
    complete, left_out = ensemble_members(loaded, k, allow_missing)
    steps, ensemble, not_climbed = ladder(loaded, complete, students, k, data, fold_of_row)
    n = {"generated": time.strftime("%Y-%m-%d %H:%M"), "k": k, "classes": list(CLASSES),
         "train_rows": len(data.train_labels),
         "disgust_train": int((data.train_labels == CLASSES.index("Disgust")).sum()),
         "missing": missing + left_out + not_climbed,
         "models": {name: model_numbers(ml, data) for name, ml in loaded.items()}, "ensemble": ensemble,
         "ladder": steps}
    source, oof, labels, rows = mistakes_source(loaded, complete, n["models"])
    n["mistakes"] = {"source": source, "images": confident_mistakes(oof, labels, rows)}
    n["leaderboard"] = artifacts.leaderboard_rows(LEADERBOARD_ROWS)
    draw(folder, loaded, n, data.train_images)
    (folder / "report.json").write_text(json.dumps(n, indent=1) + "\n")  # the folder is what is atomic
    (folder / "report.md").write_text(render(n))
    return n


def draw(folder: Path, loaded: dict, n: dict, train_images: np.ndarray) -> None:
    for name, ml in loaded.items():
        plot_curves(name, ml.folds, folder / f"curves_{name}.png")
        plot_confusion(name, np.array(n["models"][name]["per_class"]["confusion"]), folder / f"confusion_{name}.png")
    plot_mistakes(n["mistakes"]["images"], train_images, n["mistakes"]["source"], folder / MISTAKES_PNG)


def publish(tmp: Path, out: Path) -> None:
    """Swap the finished folder into place: readers see the old report or the new one, never half of one."""
    old = out.with_name(f".{out.name}.old.{os.getpid()}")
    if out.exists():
        os.replace(out, old)
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)


def write_report(out: Path, names: list[str], allow_missing: bool = False) -> dict:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.new."))
    tmp.chmod(0o755)  # mkdtemp makes it private; a report is for reading
    try:
        numbers = build(tmp, names, allow_missing)
        publish(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone already after a successful publish
    return numbers


def check_out(out: Path) -> None:
    """--out is replaced as a whole: refuse anything but a new or empty folder or an earlier report."""
    if not out.exists() and not out.is_symlink():
        return
    if out.is_dir() and not any(out.iterdir()):
        return
    try:
        numbers = json.loads((out / "report.json").read_text())
    except (OSError, ValueError):
        numbers = None
    if not out.is_dir() or not (isinstance(numbers, dict) and {"generated", "models"} <= set(numbers)):
        raise ReportError(f"{out}: exists and is not a report folder (no report.json written by "
                          f"`./run.sh report`); --out replaces the whole folder, so it is left alone. Give --out a "
                          f"new or empty folder, or an earlier report's folder.")


def _main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=None, help="report folder (default reports/latest)")
    parser.add_argument("--members", default=None,
                        help=f"comma-separated members: {','.join(MODEL_NAMES)} or any folder under folds/ "
                             f"(default: the study's three and every member with runs)")
    parser.add_argument("--allow-missing", action="store_true",
                        help="build the ensemble from finished folds even where some are missing (listed anyway)")
    parser.add_argument("--models", dest="members", action=OldSpelling, new="--members", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    names = [m.strip() for m in args.members.split(",") if m.strip()] if args.members else default_models()
    unknown = [m for m in names if m not in MODEL_NAMES and not (paths.folds_dir() / m).is_dir()]
    if unknown:
        parser.error(f"unknown model(s) {unknown}: not {', '.join(MODEL_NAMES)} nor a member folder under "
                     f"{paths.folds_dir()}")
    return run(names, args.out or paths.reports_dir() / "latest", args.allow_missing)


def run(members: list[str], out: Path, allow_missing: bool = False) -> int:
    """The report of `members` into `out` (refused unless new, empty or an earlier report), then its summary."""
    check_out(out)
    numbers = write_report(out, members, allow_missing)
    print(f"wrote {out / 'report.md'} ({len(numbers['models'])} models, {len(numbers['missing'])} missing items)")
    for line in numbers["missing"]:
        print(f"  missing: {line}")
    return 0


def main(argv=None) -> int:
    return run_command(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
