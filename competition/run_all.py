"""The main job: data, folds, the three models, the ensemble and the report, in one resumable command.

    ./run.sh all --from <competition zip>                              # strong recipe, 5 folds (GPU-sized)
    ./run.sh all --quick --from <zip>                                  # fold 0 + a refit, sized to end in 30 min
                                                                       # (air_fer, or air_fer_s on a slow machine)
    ./run.sh all --quick --budget 60 --from <zip>                      # the same, sized to an hour
    ./run.sh all --device cuda          # the study's three + resnet_cbam48, 5 folds; 4 jobs share each GPU
    ./run.sh all --device cuda --seeds 0,1,2 --refit --distill bn_cnn   # more members, then one student
    ./run.sh all --runner ray --address HEAD:6379  # the same jobs as Ray tasks on a cluster (docs/ray.md)

Every stage skips what is already done (the dataset cache, folds.csv, finished folds, each fold's last
finished epoch), so running the same command again after an interruption finishes the work without
redoing it. Training is a job graph (competition.graph: folds, then each member's refit, the ensemble, the
student), run by the local runner (competition.runner: worker processes in the graph's order; two on a 2-core
CPU, one with a CPU budget, --jobs-per-gpu (4) on each GPU, because one process at its batch leaves much of the
GPU idle between steps and four side by side kept an H200 98-100% busy; they die with run_all) or, with
--runner ray, by Ray (competition.ray_runner). --stop-at (a wall-clock end, `date +%s`) reaches every job; the
ensemble and report then use what finished (see competition.train_folds).

More members: --seeds trains each architecture once per seed (a member each), --refit adds each
member's refit on every Training row (mixed into its test logits by the ensemble's stated --refit-share rule),
--refit-seeds adds refits of other seeds without folds of their own (more refits of the seed-0 member), and --distill MODEL trains one student of that architecture against the ensemble's OOF probabilities after
the ensemble; the student gets a dated submission and a leaderboard row of its own (PublicTest; no OOF),
while submissions/submission.csv stays the ensemble's.
"""
import argparse
import os
import sys
import time
from pathlib import Path

import torch

from competition import artifacts, download, folds, graph, paths, ray_runner, report, runner, train_folds
from competition.blending import accuracy
from competition.device import add_precision_arg, wants_cuda
from competition.errors import SettingsError, run_command
from models import default_archs

QUICK_BUDGET = 30  # minutes: the newcomer's first run on a laptop-class CPU
# --quick trains one member on fold 0 (its OOF, the run's honest score) and then refits it on every Training row,
# both for the epochs the budget plans: on held-out Training rows (fold 4, never trained on) a fold model + its
# refit matched three fold models in the same minutes, and in fewer at 11 epochs; three fold models beat three seeds
# of one fold (docs/accuracy-per-minute.md, "Three folds" and "A fold and its refit").
# Two refits (seeds 0 and 1) beside fold 0 did not pay there: at equal minutes (9 epochs each) 67.15% against 67.75%.
QUICK_FOLDS = "0"
# Where the budget gives air_fer fewer epochs than this here (its folds and refits alike), --quick trains its
# cheaper sibling air_fer_s (half its cost) for about twice the epochs. On a CPU without native bf16 (AVX2 only),
# fold-0 OOF at equal minutes: air_fer_s 64.92% at 6 epochs against air_fer 63.18% at 3; 66.82% at 8 against
# 65.55% at 4; level at 12 against 6 (two seeds: means 67.05% against 66.67%, within noise). So air_fer from 6 epochs
# on (docs/accuracy-per-minute.md, "A CPU without native bf16"); above 6 (the bf16 CPU's 30-minute runs give it 16-19)
# it is kept unmeasured.
QUICK_MIN_EPOCHS = 6
QUICK_REFIT_SEEDS = "0"
AFTER_TRAINING_S = 60  # kept back for the ensemble and report (6 s in the 30-minute run) and start-ups
JOBS_PER_GPU = 4  # processes sharing one GPU (measured by the host: 4 kept an H200 98-100% busy)


def stage(title: str, fn, *args) -> None:
    print(f"\n=== {title}", flush=True)
    start = time.perf_counter()
    code = fn(*args)
    if code:
        raise SystemExit(code)
    print(f"=== {title}: {time.perf_counter() - start:.0f} s", flush=True)


def get_data(source: Path | None) -> None:
    if source is None and paths.cache_path().exists():
        print(f"{paths.cache_path()}: present; pass --from PATH or run ./run.sh download --force to refresh")
        return
    download.run(source)


def make_folds(k: int) -> None:
    if paths.folds_csv().exists():
        print(f"{paths.folds_csv()}: present, kept")
        return
    folds.run(k, folds.SPLIT_SEED)


def architectures(spec: str | None, device: str, quick: bool = False) -> list[str]:
    """The comma list given, else the default set for the run (models.default_archs): with --quick the most
    fold-0 accuracy per CPU minute (air_fer), else the study's three, with resnet_cbam48 and air_fer_l where
    they are affordable (CUDA)."""
    if spec:
        return [m.strip() for m in spec.split(",") if m.strip()]
    return list(default_archs("quick" if quick else "cuda" if wants_cuda(device) else "cpu"))


def workers(device: str, jobs_per_gpu: int) -> int:
    if wants_cuda(device):
        return max(1, torch.cuda.device_count()) * jobs_per_gpu
    return min(2, os.cpu_count() or 1)


def summary_table(members: list[str], wall_s: float, board_rows: int = 1, train_wall_s: float = 0.0,
                  nproc: int = 1, trained_since: float = float("inf")) -> str:
    """One table: per member its finished folds (+refit), epochs, img/s of one process, training seconds and
    OOF accuracy (TTA, over its finished folds); then the aggregate img/s (every image trained, over the
    training stage's wall time, counting the runs finished since `trained_since` (time.time()): with several
    processes sharing a GPU, the figure to set beside the bench's),
    and the ensemble's (and student's) OOF and PublicTest from the last `board_rows` leaderboard rows."""
    k = artifacts.fold_count()
    lines = [f"{'member':22s} {'folds':>7s} {'epochs':>6s} {'img/s/proc':>11s} {'train s':>8s} {'OOF':>7s}"]
    images = 0.0
    for name in members:
        folds = artifacts.finished_folds(name, k)
        refit = artifacts.FoldFiles(name, None).is_done()
        files = [artifacts.FoldFiles(name, f) for f in folds + ([None] if refit else [])]
        runs = [artifacts.read_done(f) for f in files]
        if not runs:
            lines.append(f"{name:22s} {0:7d}   (nothing finished)")
            continue
        ml = artifacts.load_member(name, allow_missing=True) if folds else None
        oof = f"{accuracy(ml.oof_logits, ml.oof_labels):7.4f}" if ml else f"{'n/a':>7s}"
        speed = sum(d.images_per_s for d in runs) / len(runs)
        images += sum(d.images_per_s * d.seconds for f, d in zip(files, runs)
                      if f.finished_at() >= trained_since)
        lines.append(f"{name:22s} {str(len(folds)) + ('+refit' if refit else ''):>7s} "
                     f"{sum(d.epochs_run for d in runs):6d} {speed:11.0f} {sum(d.seconds for d in runs):8.0f} {oof}")
    if train_wall_s > 0 and images:
        lines.append(f"training: {images:,.0f} images in {train_wall_s:.0f} s wall over {nproc} process(es): "
                     f"{images / train_wall_s:,.0f} img/s aggregate")
    for row in artifacts.leaderboard_rows(board_rows):
        lines.append(f"submission {row['file']} ({row['models']}): OOF {row['oof']}, PublicTest {row['public']}")
    lines.append(f"total wall time: {wall_s:.0f} s ({wall_s / 60:.1f} min)")
    return "\n".join(lines)


def _main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--from", dest="source", type=Path, help="import these competition files instead of downloading")
    p.add_argument("--quick", action="store_true",
                   help=f"fold {QUICK_FOLDS} and a refit on every Training row, quick recipe, tensor augmentation, "
                        f"one process, epochs sized to --budget (30 min); without --models, a model's cheaper "
                        f"sibling where the budget gives it fewer than {QUICK_MIN_EPOCHS} epochs here")
    p.add_argument("--budget", type=float, default=None, metavar="MINUTES",
                   help="the whole job ends within this many minutes (default: 30 with --quick, none otherwise)")
    p.add_argument("--models", default=None,
                   help=f"comma list of architectures (default: {','.join(default_archs('cpu'))}; on CUDA "
                        f"{','.join(default_archs('cuda'))}; with --quick {','.join(default_archs('quick'))})")
    p.add_argument("--folds", default=None, help=f"comma list of folds to train (default: all; {QUICK_FOLDS} with --quick)")
    p.add_argument("--k", type=int, default=5, help="number of folds, when folds.csv is made")
    p.add_argument("--recipe", default=None, help="study | strong | quick (default: strong, quick with --quick)")
    p.add_argument("--epochs", type=int, help="override the recipe's epochs (with a budget: the most it may plan)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--aug", default=None, choices=["auto", "albumentations", "tensor"],
                   help="augmentation path (default: tensor with --quick, else auto: tensor on CUDA, "
                        "albumentations on CPU)")
    p.add_argument("--nproc", type=int, default=0,
                   help="local runner: worker processes (default: 2 on CPU, 1 with a CPU budget, --jobs-per-gpu "
                        "for each GPU)")
    p.add_argument("--jobs-per-gpu", type=int, default=JOBS_PER_GPU,
                   help="jobs sharing one GPU (the local runner's workers per GPU; Ray: 1/N of a GPU per task)")
    p.add_argument("--cpus-per-job", type=int, default=0,
                   help="cores (torch threads) each training job holds; Ray's num_cpus per task (default: this "
                        "machine's cores over the local runner's workers)")
    p.add_argument("--runner", default="local", choices=["local", "ray"],
                   help="local: worker processes on this machine (default); ray: Ray tasks on a cluster "
                        "(pip install -r requirements-ray.txt; see docs/ray.md)")
    p.add_argument("--address", default=None,
                   help="with --runner ray: the cluster's address (ray start --head prints it; default: a "
                        "Ray instance started on this machine for the run)")
    p.add_argument("--report", default=None, help="report folder name under reports/ (default: quick or full)")
    p.add_argument("--seeds", default=None, help="comma list of seeds: one member per architecture and seed (default: 0)")
    p.add_argument("--refit", action="store_true", help="also train each member on every Training row (on with "
                   "--quick; with a CPU budget for the folds' planned epochs, else for their median best epoch)")
    p.add_argument("--refit-seeds", default=None, metavar="SEEDS",
                   help="comma list of seeds to refit: each seed not in --seeds trains only a refit, an extra refit "
                        f"of the seed-0 member (implies --refit; default with --quick: {QUICK_REFIT_SEEDS})")
    p.add_argument("--distill", default=None, metavar="MODEL",
                   help="after the ensemble, train one MODEL student against its OOF probabilities")
    p.add_argument("--checkpoint-every", type=float, default=None, metavar="SECONDS",
                   help="write each fold's state.pt at most this often (train_folds' default: 30)")
    p.add_argument("--compile", action="store_true", help="torch.compile each training model (see "
                   "scripts/compile_bench.py)")
    add_precision_arg(p)
    p.add_argument("--stop-at", type=float, default=0, metavar="UNIX_SECONDS",
                   help="training ends by then (`date +%%s`): running folds keep the epochs they have, jobs not "
                        "started are skipped; the ensemble and report use what finished")
    args = p.parse_args(argv)
    models = architectures(args.models, args.device, args.quick)
    seeds = train_folds.parse_list(args.seeds, "--seeds") if args.seeds else [0]
    refit_seeds = refit_seeds_of(args, seeds)
    fold_list = args.folds or (QUICK_FOLDS if args.quick else "all")
    minutes = args.budget if args.budget is not None else (QUICK_BUDGET if args.quick else 0)
    cuda = wants_cuda(args.device)
    # a CPU budget trains in one process (2 cores); on CUDA several share each GPU, each job with its share
    size = args.nproc or (1 if minutes and not cuda else workers(args.device, args.jobs_per_gpu))
    start = time.perf_counter()
    stage("data", get_data, args.source)
    stage("folds", make_folds, args.k)
    refit = args.refit or args.quick or bool(args.refit_seeds)
    if minutes and (args.distill or refit and cuda):
        raise SettingsError("--distill (and, on CUDA, --refit) train on every Training row with the folds' median "
                            "best epoch; they need all folds, so they don't combine with --quick/--budget there.")
    def left() -> float | None:  # the budget's minutes left for training
        return minutes - (time.perf_counter() - start) / 60 - AFTER_TRAINING_S / 60 if minutes else None
    settings = train_settings(args, left())
    folds, _ = train_folds.parse_folds(fold_list, artifacts.fold_count())
    if args.quick and not args.models and minutes:  # a slow machine: a cheaper sibling with more epochs
        models = [train_folds.affordable(m, settings, len(folds), 1 + len(refit_seeds), QUICK_MIN_EPOCHS)
                  for m in models]
        settings = train_settings(args, left())  # less the probe's seconds
    members = [artifacts.Member(m, s).name for s in seeds for m in models]
    cpus = args.cpus_per_job or max(1, (os.cpu_count() or 1) // size)  # this machine's cores over the workers
    shape = graph.Shape(size, 1 / args.jobs_per_gpu if cuda else 0.0, cpus, bool(minutes) and not cuda)
    partial = fold_list != "all" or bool(args.stop_at)
    nodes = graph.build(models, seeds, folds, settings, shape, refit, args.distill, partial,
                        "cuda" if cuda else "cpu", refit_seeds)
    train_start, trained_since = time.perf_counter(), time.time()
    print(f"\n=== {len(nodes)} jobs on the {args.runner} runner "
          f"({'Ray at ' + (args.address or 'a local instance') if args.runner == 'ray' else f'{size} worker(s)'})",
          flush=True)
    if args.runner == "ray":
        ray_runner.run_ray(nodes, args.address)
    else:
        runner.run_local(nodes, size, torch.cuda.device_count() if cuda else 0)
    train_wall_s = time.perf_counter() - train_start
    if args.stop_at:  # what finished by the deadline; a member with no finished fold is left out
        members = [m for m in members if artifacts.finished_folds(m, artifacts.fold_count())]
        if not members:
            print("\nno fold finished before --stop-at: no ensemble, no report")
            return 0
    if args.distill:
        members.append(artifacts.Member(args.distill, seeds[0], artifacts.STUDENT).name)
    out = paths.reports_dir() / (args.report or ("quick" if args.quick else "full"))
    stage("report", report.run, members, out, partial)
    print("\n" + summary_table(members + [artifacts.Member(m, s).name for s in refit_seeds for m in models],
                               time.perf_counter() - start, 2 if args.distill else 1, train_wall_s, size,
                               trained_since))
    print(f"\nall done in {(time.perf_counter() - start) / 60:.1f} min: submissions/submission.csv, {out}/report.md")
    return 0


def refit_seeds_of(args, seeds: list[int]) -> tuple[int, ...]:
    """The seeds whose refit alone is trained (--refit-seeds less --seeds); they need a seed-0 member."""
    spec = args.refit_seeds or (QUICK_REFIT_SEEDS if args.quick else "")
    extra = tuple(s for s in dict.fromkeys(train_folds.parse_list(spec, "--refit-seeds")) if s not in seeds)
    if extra and 0 not in seeds:
        raise SettingsError(f"--refit-seeds {spec}: seeds {list(extra)} refit after seed 0's folds; add 0 to --seeds")
    return extra


def train_settings(args, minutes: float | None) -> train_folds.Settings:
    """The training jobs' settings from run_all's flags; `minutes`: what is left for training (None: no budget)."""
    if minutes is not None and minutes <= 0:
        raise SettingsError(f"--budget {args.budget:g} min is spent before training starts; give more minutes.")
    return train_folds.Settings(
        recipe=args.recipe or ("quick" if args.quick else "strong"),
        overrides=(("epochs", args.epochs),) if args.epochs else (), device=args.device,
        aug=args.aug or ("tensor" if args.quick else "auto"),
        checkpoint_every=30.0 if args.checkpoint_every is None else args.checkpoint_every,
        budget=round(minutes, 2) if minutes else 0.0, stop_at=args.stop_at, precision=args.precision,
        compile=args.compile)


def main(argv=None) -> int:
    return run_command(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
