"""Ensemble: fold logits -> one submission, with a local leaderboard row.

    python -m competition.ensemble                                   # every model with a finished fold
    python -m competition.ensemble --models bn_cnn,resnet_cbam --weights oof --average probs
    python -m competition.ensemble --models bn_cnn --allow-missing   # use the folds that are done

Each model's test logits are the mean over its folds (TTA already applied by competition.train_folds);
models are then combined with equal weights, or with weights fitted on out-of-fold predictions only:
fit_weights sees OOF logits and Training labels and nothing else, so test labels cannot leak into it.
A model with an unfinished fold (no done.json) is refused unless --allow-missing.

Writes submissions/<UTC time>_<models>.csv and submissions/submission.csv (validated first, written
atomically) and appends a row to submissions/leaderboard.csv: OOF accuracy, and accuracy on PublicTest
(the first 3,589 test rows) and PrivateTest (the last 3,589) where those labels are known, else n/a.
"""
import argparse
import csv
import io
import json
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import log_softmax, softmax

from competition import paths
from competition.atomic import atomic_write_text
from competition.data import DataError, FerData, load_dataset
from competition.submission import SubmissionError, format_submission, write_submission

AVERAGES = ("logits", "probs")
LEADERBOARD_COLUMNS = ("file", "models", "weights", "average", "oof", "public", "private", "time")


@dataclass
class ModelLogits:
    model: str
    folds: list[int]  # the folds included
    oof_rows: np.ndarray  # (n,) int64 Training rows (folds.csv `row`), sorted
    oof_labels: np.ndarray  # (n,) int64
    oof_logits: np.ndarray  # (n, 7) with TTA
    oof_logits_plain: np.ndarray  # (n, 7) without TTA
    test_logits: np.ndarray  # (M, 7) mean over folds, with TTA
    test_logits_plain: np.ndarray  # (M, 7) mean over folds, without TTA
    test_logits_per_fold: np.ndarray  # (F, M, 7) with TTA
    fold_val_acc: dict[int, float]
    done: dict[int, dict]  # each fold's done.json


# ---------------------------------------------------------------- loading finished folds

def fold_count() -> int:
    """k, the number of folds: folds.csv's largest fold + 1."""
    path = paths.folds_csv()
    if not path.exists():
        raise DataError(f"{path}: no folds file. Run `./run.sh folds`, then train, first.")
    return int(pd.read_csv(path, usecols=["fold"])["fold"].max()) + 1


def finished_folds(model: str, k: int) -> list[int]:
    return [f for f in range(k) if (paths.fold_dir(model, f) / "done.json").exists()]


def available_models() -> list[str]:
    """Every model folder under folds/ with at least one finished fold."""
    if not paths.folds_dir().is_dir():
        return []
    k = fold_count()
    return sorted(d.name for d in paths.folds_dir().iterdir() if d.is_dir() and finished_folds(d.name, k))


def _npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as z:
        return {name: z[name] for name in z.files}


def load_model(model: str, allow_missing: bool = False) -> ModelLogits:
    """The finished folds of `model`; refuses unfinished folds unless allow_missing (then needs at least one)."""
    k = fold_count()
    folds = finished_folds(model, k)
    missing = sorted(set(range(k)) - set(folds))
    where = paths.folds_dir() / model
    if not folds:
        raise ValueError(f"{model}: no finished fold (no done.json under {where}). "
                         f"Train it: ./run.sh train --model {model}")
    if missing and not allow_missing:
        raise ValueError(f"{model}: fold(s) {missing} of {k} are not finished (no done.json in {where}/fold<k>). "
                         f"Finish them (./run.sh train --model {model} resumes), or pass --allow-missing to use "
                         f"fold(s) {folds} only.")
    oof = [_npz(paths.fold_dir(model, f) / "oof.npz") for f in folds]
    test = [_npz(paths.fold_dir(model, f) / "test.npz") for f in folds]
    if len({t["logits"].shape for t in test}) > 1:
        raise ValueError(f"{model}: folds {folds} have test logits of different shapes "
                         f"{[t['logits'].shape for t in test]}; were they trained on different data?")
    rows = np.concatenate([o["rows"] for o in oof]).astype(np.int64)
    if len(np.unique(rows)) != len(rows):
        raise ValueError(f"{model}: folds {folds} share OOF rows; folds.csv changed after training. Train again.")
    order = np.argsort(rows)
    stack = lambda key: np.concatenate([o[key] for o in oof])[order]
    per_fold = np.stack([t["logits"] for t in test])
    done = {f: json.loads((paths.fold_dir(model, f) / "done.json").read_text()) for f in folds}
    return ModelLogits(model, folds, rows[order], stack("labels").astype(np.int64), stack("logits"),
                       stack("logits_plain"), per_fold.mean(0), np.stack([t["logits_plain"] for t in test]).mean(0),
                       per_fold, {f: float(d["val_acc"]) for f, d in done.items()}, done)


def check_against(model: ModelLogits, data: FerData) -> None:
    """Refuse logits that were not made from this dataset (other test rows, other Training labels)."""
    if len(model.test_logits) != len(data.test_labels):
        raise ValueError(f"{model.model}: {len(model.test_logits)} test rows of logits, the dataset has "
                         f"{len(data.test_labels)}. Train again on the current data.")
    if model.oof_rows.max() >= len(data.train_labels) or \
            not np.array_equal(model.oof_labels, data.train_labels[model.oof_rows]):
        raise ValueError(f"{model.model}: OOF rows and labels do not match the dataset's Training rows. "
                         f"Train again on the current data.")


# ---------------------------------------------------------------- combining and scoring

def accuracy(logits: np.ndarray, labels: np.ndarray) -> float | None:
    """Accuracy over rows with a known label (>= 0); None when no label is known."""
    known = labels >= 0
    return float((logits[known].argmax(1) == labels[known]).mean()) if known.any() else None


def common_oof(models: list[ModelLogits]) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """(rows, labels, per-model OOF logits) over the Training rows that every model predicted."""
    rows = models[0].oof_rows
    for m in models[1:]:
        rows = np.intersect1d(rows, m.oof_rows)
    if len(rows) == 0:
        raise ValueError(f"models {[m.model for m in models]} share no OOF rows (their folds do not overlap).")
    picks = [np.searchsorted(m.oof_rows, rows) for m in models]
    return rows, models[0].oof_labels[picks[0]], [m.oof_logits[p] for m, p in zip(models, picks)]


def blend(logits: list[np.ndarray], weights: np.ndarray, average: str) -> np.ndarray:
    """Weighted mean of logits, or log of the weighted mean of softmax probabilities."""
    if average not in AVERAGES:
        raise ValueError(f"average must be one of {AVERAGES}, got {average!r}")
    stack = np.stack(logits).astype(np.float64)
    if average == "logits":
        return np.tensordot(weights, stack, axes=1)
    return np.log(np.tensordot(weights, softmax(stack, axis=-1), axes=1) + 1e-12)


def _fit_on_oof(oof_logits: list[np.ndarray], oof_labels: np.ndarray, average: str) -> np.ndarray:
    """Non-negative weights summing to 1 that minimise OOF log loss (SLSQP from equal weights)."""
    n = len(oof_logits)
    if n == 1:
        return np.ones(1)
    pick = (np.arange(len(oof_labels)), oof_labels)
    loss = lambda w: -log_softmax(blend(oof_logits, w, average), axis=-1)[pick].mean()
    result = minimize(loss, np.full(n, 1 / n), method="SLSQP", bounds=[(0, 1)] * n,
                      constraints={"type": "eq", "fun": lambda w: w.sum() - 1})
    weights = np.clip(result.x, 0, None)
    return weights / weights.sum()


def fit_weights(models: list[ModelLogits], average: str = "logits") -> np.ndarray:
    """Weights fitted on OOF predictions only (ModelLogits carries no test labels), on rows common to all."""
    _, labels, logits = common_oof(models)
    return _fit_on_oof(logits, labels, average)


def combine(models: list[ModelLogits], weights: np.ndarray, average: str = "logits"):
    """(OOF logits over common_oof's rows, test logits): the weighted ensemble; log-probs when average='probs'."""
    _, _, oof = common_oof(models)
    return blend(oof, weights, average), blend([m.test_logits for m in models], weights, average)


def score(oof_logits, oof_labels, test_logits, data: FerData) -> dict[str, float | None]:
    """OOF accuracy, and PublicTest / PrivateTest accuracy where labels are known (else None)."""
    return {"oof": accuracy(oof_logits, oof_labels),
            "public": accuracy(test_logits[data.public], data.test_labels[data.public]),
            "private": accuracy(test_logits[data.private], data.test_labels[data.private])}


def fmt(acc: float | None) -> str:
    return "n/a" if acc is None else f"{acc:.4f}"


def leaderboard_row(file: str, models: list[str], weights, average: str, scores: dict, time: str) -> dict:
    return {"file": file, "models": "+".join(models), "weights": " ".join(f"{w:.4f}" for w in weights),
            "average": average, **{k: fmt(scores[k]) for k in ("oof", "public", "private")}, "time": time}


# ---------------------------------------------------------------- the command

def table(models: list[ModelLogits], weights, scores: list[dict], ensemble: dict) -> str:
    lines = [f"{'model':16s} {'folds':>9s} {'weight':>7s} {'oof':>7s} {'public':>7s} {'private':>7s}"]
    named = [(m.model, ",".join(map(str, m.folds)), f"{w:.4f}", s) for m, w, s in zip(models, weights, scores)]
    for name, folds, weight, s in named + [("ensemble", "", "", ensemble)]:
        lines.append(f"{name:16s} {folds:>9s} {weight:>7s} {fmt(s['oof']):>7s} {fmt(s['public']):>7s} "
                     f"{fmt(s['private']):>7s}")
    return "\n".join(lines)


def append_leaderboard(row: dict) -> Path:
    path = paths.submissions_dir() / "leaderboard.csv"
    old = path.read_text() if path.exists() else ""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, LEADERBOARD_COLUMNS, lineterminator="\n")
    if not old:
        writer.writeheader()
    writer.writerow(row)
    atomic_write_text(path, old + buffer.getvalue())
    return path


def new_submission_path(models: list[str], now: datetime) -> Path:
    stem = f"{now:%Y%m%dT%H%M%SZ}_{'+'.join(models)}"
    path, n = paths.submissions_dir() / f"{stem}.csv", 1
    while path.exists():  # two runs in one second
        path, n = paths.submissions_dir() / f"{stem}_{n}.csv", n + 1
    return path


def run(names: list[str], weighting: str, average: str, allow_missing: bool) -> Path:
    data = load_dataset()
    models = [load_model(name, allow_missing) for name in names]
    for m in models:
        check_against(m, data)
        for f in m.folds:
            print(f"in: {m.model} fold{f}  val_acc {m.fold_val_acc[f]:.4f}  "
                  f"best epoch {m.done[f].get('best_epoch')} of {m.done[f].get('epochs_run')}")
    weights = fit_weights(models, average) if weighting == "oof" else np.full(len(models), 1 / len(models))
    rows, labels, _ = common_oof(models)
    oof, test = combine(models, weights, average)
    ensemble = score(oof, labels, test, data)
    per_model = [score(m.oof_logits, m.oof_labels, m.test_logits, data) for m in models]
    print(f"\n{weighting} weights, averaging {average}; ensemble OOF over {len(rows)} Training rows\n")
    print(table(models, weights, per_model, ensemble))
    now = datetime.now(timezone.utc)
    path = new_submission_path(names, now)
    text = format_submission(test.argmax(1), data.example_submission)
    write_submission(text, len(data.test_labels), path, paths.submissions_dir() / "submission.csv")
    row = leaderboard_row(path.name, names, weights, average, ensemble, now.isoformat(timespec="seconds"))
    board = append_leaderboard(row)
    print(f"\nwrote {path} and {path.parent / 'submission.csv'} ({len(test)} rows); appended a row to {board}")
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", help="comma-separated model names (default: every model with a finished fold)")
    parser.add_argument("--weights", choices=("equal", "oof"), default="equal", help="equal, or fitted on OOF log loss")
    parser.add_argument("--average", choices=AVERAGES, default="logits", help="average logits or probabilities")
    parser.add_argument("--allow-missing", action="store_true", help="use the finished folds of incomplete models")
    args = parser.parse_args(argv)
    try:
        names = [n.strip() for n in args.models.split(",") if n.strip()] if args.models else available_models()
        if not names:
            raise ValueError(f"no model under {paths.folds_dir()} has a finished fold. Train one: ./run.sh train")
        run(names, args.weights, args.average, args.allow_missing)
    except (DataError, ValueError, SubmissionError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
