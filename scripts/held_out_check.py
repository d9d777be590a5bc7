"""Held-out check: which set of members averages best on Training rows that none of them trained on.

    python scripts/held_out_check.py --model air_fer --epochs 11 --threads 1 \
        --group seeds=0:0,0:1,0:2 --group folds=0:0,1:0,2:0 [--group all=refit:0]

Fold-validation (OOF) scores one model per row, so it cannot compare ensembles whose members trained on
different rows: three fold models' average has no OOF of its own. This check can. The last fold of
folds/folds.csv is held out (never trained on) and plays the test set; the members are a k-1 fold split of the
rest (`FOLD:SEED`: trained on the other remaining folds, like `train_folds --folds FOLD --seeds SEED`;
`refit:SEED`: on every remaining row). Only Training labels are read, so a recipe choice (the quick run's three
folds rather than three seeds: docs/accuracy-per-minute.md) may be made on this table.

Each member trains through the harness's own path (train_folds.FoldRun: recipe, augmentation, checkpoints,
resume) into folds/<model>.heldout[.s<seed>]/; its test logits are the held-out rows'. A finished member is
read back, not trained again. Prints each member's held-out accuracy (with the recipe's TTA), then each group's:
the mean of its members' probabilities, and by the ensemble's rule (`ensemble_rule`: the folds' mean logits, the
refits' mean mixed in by blending.mix_refits), which is how the real run combines the same members.
"""
import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from scipy.special import softmax

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from competition import artifacts  # noqa: E402
from competition.blending import mix_refits  # noqa: E402
from competition.data import FerData, load_dataset  # noqa: E402
from competition.device import pick_device, tune_for  # noqa: E402
from competition.errors import SettingsError, run_command  # noqa: E402
from competition.folds import load_folds  # noqa: E402
from competition.recipes import get_recipe, parse_overrides  # noqa: E402
from competition.train_folds import FoldRun, Job, Resident, RunContext  # noqa: E402

TAG = "heldout"  # member folders apart from the real run's


class HeldOutRun(FoldRun):
    """A fold run on the rows outside the held-out fold; its 'refit' trains the recipe's epochs (no folds to ask)."""

    def plan_refit(self) -> None:
        pass


def held_out(data: FerData, fold_of_row: np.ndarray) -> tuple[FerData, np.ndarray]:
    """(the data with the last fold's rows as its test set, the folds of the remaining rows: 0..k-2)."""
    held = fold_of_row == fold_of_row.max()
    rest = FerData(data.train_images[~held], data.train_labels[~held], data.train_images[held],
                   data.train_labels[held], np.full(int(held.sum()), "PublicTest"), None)
    return rest, fold_of_row[~held]


def parse_member(spec: str, k_rest: int) -> tuple[int | None, int]:
    """`FOLD:SEED` or `refit:SEED` -> (fold or None, seed)."""
    fold, _, seed = spec.partition(":")
    if not seed.isdigit() or not (fold == "refit" or fold.isdigit() and int(fold) < k_rest):
        raise SettingsError(f"--group member {spec!r}: write FOLD:SEED with FOLD in 0..{k_rest - 1}, or refit:SEED")
    return (None if fold == "refit" else int(fold)), int(seed)


def parse_group(spec: str) -> tuple[str, list[str]]:
    name, _, members = spec.partition("=")
    if not name or not members:
        raise SettingsError(f"--group {spec!r}: write NAME=FOLD:SEED,FOLD:SEED,...")
    return name, members.split(",")


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="air_fer")
    p.add_argument("--group", action="append", required=True, metavar="NAME=FOLD:SEED,...")
    p.add_argument("--epochs", type=int, help="override the recipe's epochs")
    p.add_argument("--recipe", default="quick")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--threads", type=int, default=0, help="CPU threads; 0 = every core")
    return p.parse_args(argv)


def _main(argv=None) -> int:
    args = parse_args(argv)
    data = load_dataset()
    rest, fold_of_row = held_out(data, load_folds(len(data.train_labels)))
    groups = dict(parse_group(g) for g in args.group)
    k_rest = int(fold_of_row.max()) + 1
    specs = list(dict.fromkeys(m for members in groups.values() for m in members))
    jobs = {m: Job(args.model, *parse_member(m, k_rest), TAG) for m in specs}
    device = pick_device(args.device)
    tune_for(device)
    if args.threads:
        torch.set_num_threads(args.threads)
    context = RunContext(Resident.place(rest, device, "tensor"), fold_of_row, device, "tensor",
                         progress=sys.stderr.isatty())
    recipe = get_recipe(args.recipe, args.model, parse_overrides(args.set) | (
        {"epochs": args.epochs} if args.epochs else {}), device.type)
    logits = {}
    for spec, job in jobs.items():
        HeldOutRun(job, recipe, context).run()
        logits[spec] = artifacts.read_npz(job.files / artifacts.TEST)["logits"].astype(np.float64)
    labels = rest.test_labels
    print(f"held out: fold {k_rest} of folds/folds.csv, {len(labels)} Training rows; members trained on the rest")
    for spec in specs:
        print(f"  member {spec:10s} {(logits[spec].argmax(1) == labels).mean():.2%}  ({jobs[spec].files.dir})")
    for name, members in groups.items():
        average = sum(softmax(logits[m], axis=1) for m in members) / len(members)
        print(f"  group  {name:10s} {(average.argmax(1) == labels).mean():.2%}  (mean of {', '.join(members)}'s "
              f"probabilities); {(ensemble_rule(members, logits).argmax(1) == labels).mean():.2%} by the ensemble's rule")
    return 0


def ensemble_rule(members: list[str], logits: dict[str, np.ndarray]) -> np.ndarray:
    """The group as competition.ensemble combines one member: its folds' mean logits, its refits' mean mixed in
    by blending.mix_refits (with_refit's rule; refit-only seeds are refits too, artifacts.refits_of)."""
    folds = [logits[m] for m in members if not m.startswith("refit")]
    refits = [logits[m] for m in members if m.startswith("refit")]
    if not folds or not refits:
        return np.mean(folds or refits, axis=0)
    return mix_refits(np.mean(folds, axis=0), refits)[0]


def main(argv=None) -> int:
    return run_command(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
