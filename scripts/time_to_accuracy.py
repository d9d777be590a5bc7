"""Time to accuracy: training seconds until fold-0 OOF accuracy (with the recipe's TTA) first reaches a target.

    python scripts/time_to_accuracy.py --model air_fer_s,bn_cnn --epochs 8 --target 0.65
    python scripts/time_to_accuracy.py --model air_fer_s --epochs 6 --set whiten=false --tag no_whiten

Accuracy per minute is what a scarce CPU or GPU lease buys, so members are compared by it, not by accuracy
alone. Each member trains fold 0 through the harness's own path (train_folds.FoldRun: the same recipe, data,
augmentation and checkpoints; member folder folds/<model>.<tag>/), and after every epoch its judged weights
(the EMA's) score the fold's held-out rows with the recipe's TTA. That scoring is not counted as training
time: the seconds are the training loop's own (log.csv), summed. Only Training rows are read, so a member or an
ingredient may be chosen on this table. Prints one row per member and writes every epoch to --out (CSV).
A finished member is not trained again: its curve is read back from --out.
"""
import argparse
import sys
import time
from pathlib import Path

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from competition import artifacts, paths  # noqa: E402
from competition.atomic import atomic_write_text  # noqa: E402
from competition.data import load_dataset  # noqa: E402
from competition.device import pick_device, tune_for  # noqa: E402
from competition.errors import run_command  # noqa: E402
from competition.folds import load_folds  # noqa: E402
from competition.infer import infer  # noqa: E402
from competition.recipes import get_recipe, parse_overrides  # noqa: E402
from competition.train_folds import FoldRun, Job, Resident, RunContext, parse_models  # noqa: E402


class TimedRun(FoldRun):
    """A fold run that also scores its held-out rows with TTA after every epoch (untimed)."""
    curve: list

    def one_epoch(self) -> None:
        super().one_epoch()
        logits = infer(self.parts.judged, self.val_images, self.recipe.tta, device=self.device)
        log = self.progress.log
        self.curve.append({"member": self.job.member, "epoch": log[-1]["epoch"],
                           "train_s": float(sum(row["seconds"] for row in log)), "val_acc": log[-1]["val_acc"],
                           "val_acc_tta": float((logits.argmax(1) == self.val_labels).mean())})


def first_reaching(curve: pd.DataFrame, target: float) -> tuple[float | None, int | None]:
    """(training seconds, epoch) of the first epoch whose TTA accuracy reaches target; (None, None) if none."""
    hit = curve[curve.val_acc_tta >= target]
    return (float(hit.train_s.iloc[0]), int(hit.epoch.iloc[0])) if len(hit) else (None, None)


def summary(curves: pd.DataFrame, target: float, where: str) -> str:
    lines = [f"time to {target:.1%} fold-0 OOF (TTA), training seconds ({where}):",
             f"{'member':24s} {'epochs':>6s} {'seconds':>8s} {'to target':>10s} {'at epoch':>8s} {'best OOF':>8s}"]
    for member, curve in curves.groupby("member", sort=False):
        seconds, epoch = first_reaching(curve, target)
        reached = f"{seconds:10.0f} {epoch:8d}" if seconds is not None else f"{'never':>10s} {'':8s}"
        lines.append(f"{member:24s} {int(curve.epoch.max()):6d} {curve.train_s.max():8.0f} {reached} "
                     f"{curve.val_acc_tta.max():8.2%}")
    return "\n".join(lines)


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, help="comma list of architectures")
    p.add_argument("--epochs", type=int, help="override the recipe's epochs (the schedule is sized to them)")
    p.add_argument("--recipe", default="strong")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--tag", default="ttacc", help="member folder suffix: folds/<model>.<tag>")
    p.add_argument("--target", type=float, default=0.65)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--aug", default="tensor", choices=["auto", "albumentations", "tensor"])
    p.add_argument("--threads", type=int, default=0, help="CPU threads; 0 = every core")
    p.add_argument("--out", type=Path, default=None, help="CSV of every epoch (default: <work>/time_to_accuracy.csv)")
    return p.parse_args(argv)


def _main(argv=None) -> int:
    args = parse_args(argv)
    out = args.out or paths.workdir() / "time_to_accuracy.csv"
    device = pick_device(args.device)
    tune_for(device)
    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = parse_overrides(args.set) | ({"epochs": args.epochs} if args.epochs else {})
    data = load_dataset()
    fold_of_row = load_folds(len(data.train_labels))
    provenance = artifacts.run_provenance(data, artifacts.fold_count())
    context = RunContext(Resident.place(data, device, args.aug), fold_of_row, device, args.aug,
                         provenance=provenance, progress=sys.stderr.isatty())
    old = pd.read_csv(out) if out.exists() else pd.DataFrame(columns=["member"])
    for name in parse_models(args.model):
        job = Job(name, 0, 0, args.tag)
        if job.files.is_done() and job.member in set(old.member):
            continue
        run = TimedRun(job, get_recipe(args.recipe, name, overrides, device.type), context)
        run.curve = []
        started = time.perf_counter()
        run.run()
        print(f"{job.member}: {time.perf_counter() - started:.0f} s in all", flush=True)
        old = pd.concat([old[old.member != job.member], pd.DataFrame(run.curve)], ignore_index=True)
        atomic_write_text(out, old.to_csv(index=False))
    mine = old[old.member.isin([Job(n, 0, 0, args.tag).member for n in parse_models(args.model)])]
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(summary(mine, args.target, where))
    return 0


def main(argv=None) -> int:
    return run_command(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
