"""The job graph of one run, stated once: its jobs, what each needs finished before it starts, its share of a
device and its expected cost. competition.run_all builds it; a runner executes it (competition.runner: worker
processes on this machine, the default; or Ray tasks across machines), so the order lives here and nowhere
else: no process polls for another's files.

    fold jobs (member x fold) ──> each member's refit (after that member's folds; a refit-only seed's after its
            │                     seed-0 member's: --refit-seeds)
            └──────────────────────> the ensemble (after every member) ──> each student ──> its submission

A node is a function call with typed arguments (`Node.call(place, *args)`): a runner pickles it to a worker
process or a Ray task as it is. Training nodes call `train_folds.train` (its `Settings`); the ensemble nodes call
`ensemble.run`. Every training node writes only its own fold folders (competition.artifacts) and returns their
done.json records; a refit node is handed its folds' records (for Ray: object references), and reads the folds
themselves from the work folder, which every worker sees.
"""
from collections.abc import Callable
from dataclasses import dataclass, replace

import models
from competition import artifacts, ensemble
from competition.recipes import get_recipe
from competition.train_folds import Job, Settings, train

REFIT_ROWS = 1.25  # a refit trains on k/(k-1) as many rows as a fold (5 folds)


@dataclass(frozen=True)
class Place:
    """Where a runner put a node: which of the machine's GPUs, and the node's name for done.json."""
    gpu: int = 0
    node: str = ""


@dataclass(frozen=True)
class Node:
    """One job of the graph: `call(place, *args)` once every node named in `after` has finished."""
    key: str  # unique: the node's name in logs, in `after` and on Ray's dashboard
    call: Callable
    args: tuple
    after: tuple[str, ...] = ()
    gpus: float = 0.0  # the share of one GPU it holds (1/--jobs-per-gpu); 0 on the CPU
    cpus: int = 1  # the cores it holds (its torch threads)
    cost: float = 0.0  # expected cost: epochs x the architecture's cost per image x rows (0: cheap)
    inline: bool = False  # cheap: the local runner calls it in its own process, no worker

    def run(self, place: Place):
        return self.call(place, *self.args)


@dataclass(frozen=True)
class Shape:
    """How the run's training jobs sit on the devices."""
    workers: int  # jobs at once on this machine (the local runner's worker processes)
    gpu_share: float = 0.0  # of one GPU per training job; 0 on the CPU
    cpus: int = 1  # cores (torch threads) per training job
    one_call: bool = False  # a CPU budget: every fold job in one call, which shares its minutes out


def train_node(place: Place, jobs: tuple[Job, ...], settings: Settings, *needs) -> list[dict]:
    """A training node: `needs` are the done.json records of the nodes it waited for (unused: it reads them
    from the work folder)."""
    return train(list(jobs), settings, place.gpu, place.node)


def ensemble_node(place: Place, members: tuple[str, ...], allow_missing: bool, only_finished: bool, latest: bool,
                  *needs) -> tuple[str, ...]:
    """The ensemble of `members` (OOF weights and the better of average and stack when there are several);
    only_finished (a --stop-at run): of the members with a finished fold, none if none finished."""
    if only_finished:
        members = tuple(m for m in members if artifacts.finished_folds(m, artifacts.fold_count()))
        if not members:
            print("no fold finished before --stop-at: no ensemble", flush=True)
            return ()
    several = len(members) > 1
    ensemble.run(list(members), "oof" if several else "equal", "logits", allow_missing,
                 "auto" if several else "average", latest=latest)
    return members


def cost(job: Job, epochs: int, device_type: str) -> float:
    """Epochs x the architecture's cost per image on this device (models.facts) x the rows it trains."""
    return epochs * models.facts(job.arch).image_cost[device_type] * (REFIT_ROWS if job.fold is None else 1.0)


def build(archs: list[str], seeds: list[int], folds: list[int], settings: Settings, shape: Shape,
          refit: bool = False, distill: str | None = None, allow_missing: bool = False,
          device_type: str = "cpu", refit_seeds: tuple[int, ...] = ()) -> list[Node]:
    """The run's nodes, each after the nodes it needs (a node's `after` names only earlier nodes). refit_seeds:
    seeds not in `seeds` whose refit alone is trained, an extra refit of each architecture's seed-0 member."""
    settings = replace(settings, threads=shape.cpus)
    epochs = {a: get_recipe(settings.recipe, a, dict(settings.overrides), device_type).epochs
              for a in {*archs, *([distill] if distill else [])}}
    jobs = [Job(a, f, s) for s in seeds for a in archs for f in folds]
    costs = {j: cost(j, epochs[j.arch], device_type) for j in jobs}

    def training(key, these, s=settings, after=()):
        return Node(key, train_node, (tuple(these), s), tuple(after), shape.gpu_share, shape.cpus,
                    sum(costs.get(j) or cost(j, epochs[j.arch], device_type) for j in these))

    refits = [Job(j.arch, None, j.seed) for j in jobs if j.fold == folds[0]] if refit else []
    extra = [Job(a, None, s) for s in refit_seeds if s not in seeds for a in archs]  # refit-only seeds
    refits += extra
    folds_of = {r: Job(r.arch, None, 0).member if r in extra else r.member for r in refits}  # whose folds it follows
    if shape.one_call:  # one process trains them in sequence and shares the budget's minutes out (fit_budget),
        nodes = [training("train " + ", ".join(j.files.what for j in jobs + refits), jobs + refits)]  # refits last
    else:
        share = (lambda j: replace(settings, budget=min(settings.budget, settings.budget * shape.workers * costs[j]
                                                        / sum(costs.values())))) if settings.budget else None
        nodes = [training(j.files.what, [j], share(j) if share else settings) for j in jobs]
        nodes += [training(f"{r.member} refit", [r],  # each refit after the nodes that train its folds
                           after=[n.key for n in nodes if any(x.member == folds_of[r] for x in n.args[0])])
                  for r in refits]
    everything = tuple(n.key for n in nodes)
    members = tuple(dict.fromkeys(j.member for j in jobs))
    nodes.append(Node("ensemble", ensemble_node, (members, allow_missing, bool(settings.stop_at), True),
                      everything, inline=True))
    if distill:
        student = Job(distill, None, seeds[0], artifacts.STUDENT)
        teacher = replace(settings, teacher=artifacts.teacher_path(), budget=0.0)
        nodes.append(training(f"{student.member} (student)", [student], teacher, after=["ensemble"]))
        nodes.append(Node(f"{student.member} submission", ensemble_node, ((student.member,), False, False, False),
                          (nodes[-1].key,), inline=True))
    return nodes


def stages(nodes: list[Node]) -> list[list[Node]]:
    """The nodes by depth: each stage's nodes need only nodes of earlier stages (the local runner's order)."""
    depth = {}
    for node in nodes:
        depth[node.key] = 1 + max((depth[a] for a in node.after), default=-1)
    return [[n for n in nodes if depth[n.key] == d] for d in range(max(depth.values(), default=-1) + 1)]
