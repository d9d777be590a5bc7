"""Test-time augmentation levels compared by fold-validation (OOF) accuracy, from a model's finished folds.

    python scripts/compare_tta.py bn_cnn                       # every finished fold, TTA levels 0..3
    python scripts/compare_tta.py bn_cnn --folds 0 --device cuda

For each finished fold k of the model, folds/<model>/fold<k>/best.pt predicts that fold's own rows
(folds/folds.csv) at each level of competition.augment's tta_views; the table gives the accuracy over all
those rows. Only Training rows and labels are read, so a level can be chosen on it (then train with
`--set tta=N`); test labels are never touched. The last line is the accuracy of the saved OOF logits (the
recipe's level), a check that the recomputation matches training's own. Slow on a CPU: levels 2 and 3 run
each image through the network 10 times.
"""
import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from competition import artifacts  # noqa: E402
from competition.augment import view_count  # noqa: E402
from competition.blending import accuracy  # noqa: E402
from competition.data import load_dataset  # noqa: E402
from competition.device import pick_device  # noqa: E402
from competition.engine import net_from_best  # noqa: E402
from competition.errors import SettingsError, run_command  # noqa: E402
from competition.folds import load_folds  # noqa: E402
from competition.infer import infer  # noqa: E402

LEVELS = (0, 1, 2, 3)


def oof_logits_by_level(name: str, folds: list[int] | None, device: torch.device, batch_size: int):
    """({level: OOF logits}, labels, saved OOF logits) over the rows of the model's finished folds (or `folds`)."""
    data = load_dataset()
    fold_of_row = load_folds(len(data.train_labels))
    saved = artifacts.load_member(name, allow_missing=True, fold_of_row=fold_of_row)  # checks rows vs folds.csv
    folds = saved.folds if folds is None else folds
    unfinished = sorted(set(folds) - set(saved.folds))
    if unfinished:
        raise SettingsError(f"{name}: fold(s) {unfinished} are not finished; finished: {saved.folds}.")
    rows = np.flatnonzero(np.isin(fold_of_row, folds))
    by_level = {level: np.zeros((len(rows), saved.oof_logits.shape[1]), np.float32) for level in LEVELS}
    for k in folds:
        model = net_from_best(artifacts.load_best(artifacts.FoldFiles(name, k)), device)
        mine = np.flatnonzero(fold_of_row[rows] == k)
        for level in LEVELS:
            by_level[level][mine] = infer(model, data.train_images[rows[mine]], level, batch_size, device)
    return by_level, data.train_labels[rows], saved.oof_logits[np.searchsorted(saved.oof_rows, rows)]


def table(by_level: dict, labels: np.ndarray) -> str:
    lines = [f"{'level':>5s} {'views':>5s} {'oof_accuracy':>12s}"]
    for level, logits in by_level.items():
        lines.append(f"{level:5d} {view_count(level):5d} {accuracy(logits, labels):12.4f}")
    return "\n".join(lines)


def _main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("model", help="a model with finished folds under folds/")
    p.add_argument("--folds", help="comma list of finished folds (default: all finished)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--batch-size", type=int, default=512, help="images per forward pass, all views together")
    p.add_argument("--threads", type=int, default=0, help="torch threads on CPU; 0 = torch's default")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        folds = [int(f) for f in args.folds.split(",")] if args.folds else None
    except ValueError:
        raise SettingsError(f"--folds {args.folds!r}: expected a comma list of fold numbers") from None
    by_level, labels, saved = oof_logits_by_level(args.model, folds, pick_device(args.device), args.batch_size)
    print(f"{args.model}: OOF accuracy over {len(labels)} Training rows at each TTA level\n")
    print(table(by_level, labels))
    print(f"\nsaved OOF logits (the recipe's level): {accuracy(saved, labels):.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(run_command(_main))
