"""Ensemble: fold logits -> one submission, with a local leaderboard row.

    python -m competition.ensemble                                   # every model with a finished fold
    python -m competition.ensemble --models bn_cnn,resnet_cbam --weights oof --average probs
    python -m competition.ensemble --models bn_cnn --allow-missing   # use the folds that are done
    python -m competition.ensemble --combiner auto                   # average or stack, the higher OOF

Each model's test logits are the mean over its folds (TTA already applied by competition.train_folds);
models are then combined with equal weights, or with weights fitted on out-of-fold predictions only:
fit_weights sees OOF logits and Training labels and nothing else, so test labels cannot leak into it.
`--combiner stack` replaces the average by a logistic regression on the models' logits (competition.blending's
stack, fitted the same way: OOF logits and Training labels only; its OOF score from cross_val_predict), and
`--combiner auto` keeps whichever of the two has the higher OOF accuracy (the average on a tie), saying both.
A model with an unfinished fold (no done.json) is refused unless --allow-missing; so is a fold whose OOF rows
are not that fold's rows in the current folds.csv, or whose logits hold NaN or inf. Loading is
competition.artifacts', combining competition.blending's; this module is the command.

Writes submissions/<UTC time>_<models>.csv and submissions/submission.csv (validated first, written
atomically) and appends a row to submissions/leaderboard.csv: OOF accuracy, and accuracy on PublicTest
(the first 3,589 test rows) and PrivateTest (the last 3,589) where those labels are known, else n/a. A stacked
row says `stack` under average and n/a under weights.
"""
import argparse
import csv
import io
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from competition import artifacts, paths
from competition.artifacts import ModelLogits
from competition.atomic import atomic_write_text, file_lock
from competition.blending import AVERAGES, COMBINERS, accuracy, combine, common_oof, fit_weights, score, stack
from competition.data import load_dataset
from competition.errors import SettingsError, run_command
from competition.folds import load_folds
from competition.submission import format_submission, write_submission

LEADERBOARD_COLUMNS = ("file", "models", "weights", "average", "oof", "public", "private", "time")


def fmt(acc: float | None) -> str:
    return "n/a" if acc is None else f"{acc:.4f}"


def leaderboard_row(file: str, models: list[str], weights, average: str, scores: dict, time: str) -> dict:
    """weights None: the stacker, which has none."""
    weights = "n/a" if weights is None else " ".join(f"{w:.4f}" for w in weights)
    return {"file": file, "models": "+".join(models), "weights": weights,
            "average": average, **{k: fmt(scores[k]) for k in ("oof", "public", "private")}, "time": time}


# ---------------------------------------------------------------- the command

def table(models: list[ModelLogits], weights, scores: list[dict], ensemble: dict) -> str:
    lines = [f"{'model':16s} {'folds':>9s} {'weight':>7s} {'oof':>7s} {'public':>7s} {'private':>7s}"]
    weights = [None] * len(models) if weights is None else weights
    named = [(m.model, ",".join(map(str, m.folds)), "-" if w is None else f"{w:.4f}", s)
             for m, w, s in zip(models, weights, scores)]
    for name, folds, weight, s in named + [("ensemble", "", "", ensemble)]:
        lines.append(f"{name:16s} {folds:>9s} {weight:>7s} {fmt(s['oof']):>7s} {fmt(s['public']):>7s} "
                     f"{fmt(s['private']):>7s}")
    return "\n".join(lines)


def append_leaderboard(row: dict) -> Path:
    """Read, add a row, write atomically, under a lock: two ensembles at once both keep their rows."""
    path = paths.submissions_dir() / "leaderboard.csv"
    with file_lock(path.with_name(".leaderboard.lock")):
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


def choose_combiner(models: list[ModelLogits], combiner: str, oof, test, labels, average: str):
    """(OOF, test, average column) of the combiner asked for; auto compares the two on OOF accuracy only."""
    if combiner == "average":
        return oof, test, average
    stack_oof, stack_test = stack(models)
    if combiner == "auto":
        mean_acc, stack_acc = accuracy(oof, labels), accuracy(stack_oof, labels)
        chose = "stack" if stack_acc > mean_acc else "average"
        print(f"combiner auto: OOF accuracy average {mean_acc:.4f}, stack {stack_acc:.4f} -> {chose}")
        if chose == "average":
            return oof, test, average
    return stack_oof, stack_test, "stack"


def run(names: list[str], weighting: str, average: str, allow_missing: bool, combiner: str = "average") -> Path:
    data = load_dataset()
    fold_of_row = load_folds(len(data.train_labels))
    models = [artifacts.load_model(name, allow_missing, fold_of_row) for name in names]
    for m in models:
        artifacts.check_against(m, data)
        for f in m.folds:
            print(f"in: {m.model} fold{f}  val_acc {m.fold_val_acc[f]:.4f}  "
                  f"best epoch {m.done[f].get('best_epoch')} of {m.done[f].get('epochs_run')}")
    weights = fit_weights(models, average) if weighting == "oof" else np.full(len(models), 1 / len(models))
    rows, labels, _ = common_oof(models)
    oof, test = combine(models, weights, average)
    oof, test, average = choose_combiner(models, combiner, oof, test, labels, average)
    weights = None if average == "stack" else weights
    ensemble = score(oof, labels, test, data)
    per_model = [score(m.oof_logits, m.oof_labels, m.test_logits, data) for m in models]
    how = ("stacked: logistic regression on the logits" if weights is None
           else f"{weighting} weights, averaging {average}")
    print(f"\n{how}; ensemble OOF over {len(rows)} Training rows\n")
    print(table(models, weights, per_model, ensemble))
    now = datetime.now(timezone.utc)
    path = new_submission_path(names, now)
    text = format_submission(test.argmax(1), data.example_submission)
    write_submission(text, len(data.test_labels), path, paths.submissions_dir() / "submission.csv")
    row = leaderboard_row(path.name, names, weights, average, ensemble, now.isoformat(timespec="seconds"))
    board = append_leaderboard(row)
    print(f"\nwrote {path} and {path.parent / 'submission.csv'} ({len(test)} rows); appended a row to {board}")
    return path


def _main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", help="comma-separated model names (default: every model with a finished fold)")
    parser.add_argument("--weights", choices=("equal", "oof"), default="equal", help="equal, or fitted on OOF log loss")
    parser.add_argument("--average", choices=AVERAGES, default="logits", help="average logits or probabilities")
    parser.add_argument("--combiner", choices=COMBINERS, default="average",
                        help="weighted average, logistic-regression stack, or auto: the higher OOF accuracy")
    parser.add_argument("--allow-missing", action="store_true", help="use the finished folds of incomplete models")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.models.split(",") if n.strip()] if args.models else artifacts.available_models()
    if not names:
        raise SettingsError(f"no model under {paths.folds_dir()} has a finished fold. Train one: ./run.sh train")
    run(names, args.weights, args.average, args.allow_missing, args.combiner)
    return 0


def main(argv=None) -> int:
    return run_command(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
