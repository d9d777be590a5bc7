"""Ensemble: fold logits -> one submission, with a local leaderboard row.

    python -m competition.ensemble                                   # every model with a finished fold
    python -m competition.ensemble --members bn_cnn,resnet_cbam --weights oof --average probs
    python -m competition.ensemble --members bn_cnn --allow-missing   # use the folds that are done
    python -m competition.ensemble --combiner auto                   # average or stack, the higher OOF
    python -m competition.ensemble --members bn_cnn,bn_cnn.s1 --refit-share 0.5   # seeds; refits mixed in
    python -m competition.ensemble --members bn_cnn.student           # a refit-only student, alone

Each model's test logits are the mean over its folds (TTA already applied by competition.train_folds);
models are then combined with equal weights, or with weights fitted on out-of-fold predictions only:
fit_weights sees OOF logits and Training labels and nothing else, so test labels cannot leak into it.
`--combiner stack` replaces the average by a logistic regression on the models' logits (competition.blending's
stack, fitted the same way: OOF logits and Training labels only; its OOF score from cross_val_predict), and
`--combiner auto` keeps whichever of the two has the higher OOF accuracy (the average on a tie), saying both.
A model with an unfinished fold (no done.json) is refused unless --allow-missing; so is a fold whose OOF rows
are not that fold's rows in the current folds.csv, or whose logits hold NaN or inf; a fold or refit trained on
other data or another split is refused even with --allow-missing (artifacts.check_provenance). Loading is
competition.artifacts', combining competition.blending's; this module is the command.

Members with a finished refit (folds/<member>/refit/) get it mixed into their test logits at --refit-share
(blending.with_refit's stated rule: the folds' mean weighs as one model, each refit as one; their OOF, and so their
weight, stay their folds'); a member's refit-only seeds (another seed's refit without folds, `run_all --refit-seeds`)
are refits of that member too.
A student (trained against a teacher) is
refused beside other members: its OOF saw the teacher's labels of every fold, so weights fitted on it would favour
it unfairly; alone it is submitted as it is (a refit-only student has no OOF: n/a). Every ensemble without a student also writes submissions/teacher.npz: its OOF probabilities per
Training row, the soft targets for `train_folds --teacher`.

Writes submissions/<UTC time>_<models>.csv and submissions/submission.csv (validated first, written
atomically) and appends a row to submissions/leaderboard.csv: OOF accuracy, and accuracy on PublicTest
(the first 3,589 test rows) and PrivateTest (the last 3,589) where those labels are known, else n/a. A stacked
row says `stack` under average and n/a under weights.
"""
import argparse
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from competition import artifacts, paths
from competition.artifacts import LEADERBOARD_COLUMNS, MemberLogits  # noqa: F401 (the row's columns, for readers)
from competition.blending import (AVERAGES, COMBINERS, accuracy, combine, common_oof, fit_weights,
                                  score, stack, with_refit)
from competition.data import load_dataset
from competition.errors import OldSpelling, SettingsError, run_command
from competition.folds import load_folds
from scipy.special import softmax

from competition.submission import format_submission, write_submission



def fmt(acc: float | None) -> str:
    return "n/a" if acc is None else f"{acc:.4f}"


def leaderboard_row(file: str, models: list[str], weights, average: str, scores: dict, time: str) -> dict:
    """weights None: the stacker, which has none."""
    weights = "n/a" if weights is None else " ".join(f"{w:.4f}" for w in weights)
    return {"file": file, "models": "+".join(models), "weights": weights,
            "average": average, **{k: fmt(scores[k]) for k in ("oof", "public", "private")}, "time": time}


# ---------------------------------------------------------------- the command

def table(models: list[MemberLogits], weights, scores: list[dict], ensemble: dict) -> str:
    lines = [f"{'member':20s} {'folds':>15s} {'weight':>7s} {'oof':>7s} {'public':>7s} {'private':>7s}"]
    weights = [None] * len(models) if weights is None else weights
    named = [(m.member, ",".join(map(str, m.folds)) + refit_text(m),
              "-" if w is None else f"{w:.4f}", s)
             for m, w, s in zip(models, weights, scores)]
    for name, folds, weight, s in named + [("ensemble", "", "", ensemble)]:
        lines.append(f"{name:20s} {folds:>15s} {weight:>7s} {fmt(s['oof']):>7s} {fmt(s['public']):>7s} "
                     f"{fmt(s['private']):>7s}")
    return "\n".join(lines)


def refit_text(m: MemberLogits) -> str:
    """'+refit', '+2 refits' (its own and a refit-only seed's: artifacts.refits_of), or '' when none is mixed in."""
    n = len(artifacts.refits_of(m.member)) if m.refit_share else 0
    return "" if not n else "+refit" if n == 1 else f"+{n} refits"


def new_submission_path(models: list[str], now: datetime) -> Path:
    stem = f"{now:%Y%m%dT%H%M%SZ}_{'+'.join(models)}"
    path, n = paths.submissions_dir() / f"{stem}.csv", 1
    while path.exists():  # two runs in one second
        path, n = paths.submissions_dir() / f"{stem}_{n}.csv", n + 1
    return path


def choose_combiner(models: list[MemberLogits], combiner: str, oof, test, labels, average: str):
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


def load_members(names: list[str], students: list[str], allow_missing: bool, fold_of_row, data,
                 refit_share: float | None) -> list[MemberLogits]:
    if students and len(names) > 1:
        raise SettingsError(f"{students}: students (trained against a teacher) can't be weighted on OOF beside "
                            f"other members: their OOF saw the teacher's labels of every fold. Submit a student "
                            f"alone: --members {students[0]}")
    models = [artifacts.load_member(name, allow_missing, fold_of_row) for name in names]
    models = [with_refit(m, artifacts.refit_logits(m.member, len(m.test_logits)) if refit_share != 0 else [],
                         refit_share) for m in models]
    for m in models:
        artifacts.check_against(m, data)
        for f in m.folds:
            print(f"in: {m.member} fold{f}  val_acc {m.fold_val_acc[f]:.4f}  "
                  f"best epoch {m.done[f].best_epoch} of {m.done[f].epochs_run}")
        if m.refit_share:
            print(f"in: {m.member} refit ({', '.join(artifacts.refits_of(m.member))}: their mean), "
                  f"{m.refit_share:.3g} of its test logits (--refit-share)")
    return models


def member_label(m: MemberLogits) -> str:
    n = len(artifacts.refits_of(m.member)) if m.refit_share else 0
    return m.member + (f"[refit{'' if n == 1 else f' x{n}'} {m.refit_share:.3g}]" if n else "")


def refit_only(name: str, data) -> tuple[np.ndarray, dict]:
    """A member with a refit and no finished fold (a student): its test logits; no OOF score exists."""
    test = artifacts.refit_test_logits(name, len(data.test_labels))
    if test is None:
        artifacts.load_member(name)  # raises: no finished fold, and no refit either
    scores = score(test[:0], np.zeros(0, np.int64), test, data)
    print(f"{name}: refit only (no folds), so no OOF score; PublicTest {fmt(scores['public'])}")
    return test, scores


def run(names: list[str], weighting: str, average: str, allow_missing: bool, combiner: str = "average",
        refit_share: float | None = None, latest: bool = True) -> Path:
    data = load_dataset()
    fold_of_row = load_folds(len(data.train_labels))
    k = artifacts.fold_count()
    if len(names) == 1 and not artifacts.finished_folds(names[0], k) and artifacts.FoldFiles(names[0], None).is_done():
        test, ensemble = refit_only(names[0], data)
        weights, shown, average = None, names, "refit"
    else:
        students = [n for n in names if artifacts.is_student(n, k)]
        models = load_members(names, students, allow_missing, fold_of_row, data, refit_share)
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
        shown = [member_label(m) for m in models]  # the leaderboard row's members
        if not students:
            artifacts.save_teacher(artifacts.teacher_path(), rows,
                                   softmax(oof.astype(np.float64), axis=1), names)
    now = datetime.now(timezone.utc)
    path = new_submission_path(names, now)
    text = format_submission(test.argmax(1), data.example_submission)
    latest_path = artifacts.latest_submission()
    write_submission(text, len(data.test_labels), path, *([latest_path] if latest else []))
    row = leaderboard_row(path.name, shown, weights, average, ensemble, now.isoformat(timespec="seconds"))
    board = artifacts.append_leaderboard(row)
    print(f"\nwrote {path}{f' and {latest_path}' if latest else ''} ({len(test)} rows); appended a row to {board}")
    return path


def _main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--members", help="comma-separated members (default: every member with a finished fold, "
                                         "students excepted)")
    parser.add_argument("--weights", choices=("equal", "oof"), default="equal", help="equal, or fitted on OOF log loss")
    parser.add_argument("--average", choices=AVERAGES, default="logits", help="average logits or probabilities")
    parser.add_argument("--combiner", choices=COMBINERS, default="average",
                        help="weighted average, logistic-regression stack, or auto: the higher OOF accuracy")
    parser.add_argument("--allow-missing", action="store_true", help="use the finished folds of incomplete models")
    parser.add_argument("--refit-share", type=float, default=None,
                        help="the refits' share of their member's test logits (a stated rule, never fitted; default: "
                             "n/(n+1) for n refits, the folds' mean weighing as one model: ½ for one); 0 = ignore refits")
    parser.add_argument("--keep-latest", action="store_true",
                        help="leave submissions/submission.csv as it is (write only the dated file and the row)")
    parser.add_argument("--models", dest="members", action=OldSpelling, new="--members", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    names = ([n.strip() for n in args.members.split(",") if n.strip()] if args.members
             else [n for n in artifacts.available_members() if not artifacts.is_student(n)])  # students go alone
    if not names:
        raise SettingsError(f"no model under {paths.folds_dir()} has a finished fold. Train one: ./run.sh train")
    run(names, args.weights, args.average, args.allow_missing, args.combiner, args.refit_share, not args.keep_latest)
    return 0


def main(argv=None) -> int:
    return run_command(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
