"""The Ray runner, `run_all --runner ray [--address ADDR]`: the job graph (competition.graph) as Ray tasks.

Each node is one task: its share of a GPU (`num_gpus` 1/--jobs-per-gpu), its cores (`num_cpus`), and the
nodes it needs as object references (a refit task is handed its folds' results; the ensemble every member's;
a student the ensemble's). Ray places the tasks on the cluster's machines as resources free up, and reruns a
task whose worker or machine was lost (`max_retries`); the rerun resumes from the fold's last checkpoint
(state.pt), as any rerun does. The dashboard (http://<head>:8265) shows what runs where.

Every machine reads and writes the same work folder: FER_WORKDIR (the driver's, handed to every task) must be
a shared filesystem mounted at the same path on every node, and the repository must be at the same path too
(Ray hands the driver's sys.path to its workers, which import our modules from there). Before the first job
the driver writes a marker into the work folder and a small task on each node reads it; a node that can't see
it is refused by name (SettingsError), and a node that joins later checks the marker before each task it runs,
so nothing is written anywhere else. The dashboard needs `ray[default]` on the head.
Ray is optional: `pip install -r requirements-ray.txt`.
"""
import os
import platform
import secrets
import time
from pathlib import Path

from competition import graph, paths
from competition.atomic import atomic_write_text
from competition.errors import SettingsError

RETRIES = 3  # a task whose worker or node dies is run again, at most this often
MARKER = ".ray_runner"  # in the work folder while a Ray run lasts: the token every node must read


def import_ray():
    try:
        import ray
    except ImportError:
        raise SettingsError("--runner ray needs Ray: pip install -r requirements-ray.txt (or drop --runner ray "
                            "for the local runner)") from None
    return ray


def run_ray(nodes: list[graph.Node], address: str | None) -> None:
    """Every node as a task, each after the tasks it needs; returns when all have finished."""
    ray = import_ray()
    workdir = str(paths.workdir().resolve())
    started = time.perf_counter()
    ray.init(address=address, log_to_driver=True)  # the tasks import this repository from the driver's sys.path
    try:
        token = secrets.token_hex(8)
        atomic_write_text(Path(workdir) / MARKER, token)
        check_nodes(ray, workdir, token)
        print(f"ray: up in {time.perf_counter() - started:.1f} s (connected, every node checked)", flush=True)
        task = ray.remote(run_task)
        refs = {}
        for node in nodes:  # a node's `after` names earlier nodes only
            refs[node.key] = task.options(name=node.key, num_cpus=node.cpus, num_gpus=node.gpus,
                                          max_retries=RETRIES).remote(node, workdir, token,
                                                                      *(refs[a] for a in node.after))
        try:
            ray.get(list(refs.values()))
        except ray.exceptions.RayTaskError as err:
            raise (err.cause if isinstance(err.cause, Exception) else err) from None
    finally:
        (Path(workdir) / MARKER).unlink(missing_ok=True)
        ray.shutdown()


def node_name() -> str:
    """This task's machine and Ray node (several nodes may share a host)."""
    import ray
    return f"{platform.node()}/{ray.get_runtime_context().get_node_id()[:8]}"


def sees_workdir(workdir: str, token: str) -> tuple[str, bool]:
    """(this node's name, whether it sees the run's marker in `workdir`); the work folder of this process from
    now on is `workdir` (a Ray worker serves one run)."""
    os.environ["FER_WORKDIR"] = workdir
    marker = paths.workdir() / MARKER
    return node_name(), marker.is_file() and marker.read_text() == token


def check_nodes(ray, workdir: str, token: str) -> None:
    """A tiny task pinned to each live node reads the marker; nodes that can't are refused, by name."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
    probe = ray.remote(sees_workdir)
    alive = [n["NodeID"] for n in ray.nodes() if n["Alive"]]
    seen = ray.get([probe.options(num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(n, soft=False))
                    .remote(workdir, token) for n in alive])
    blind = [name for name, ok in seen if not ok]
    if blind:
        raise SettingsError(f"node(s) {', '.join(blind)} can't see the work folder {workdir}: mount it (a shared "
                            f"filesystem) at the same path on every node, or start those nodes elsewhere; "
                            f"nothing was trained")
    print(f"ray: {len(alive)} node(s) see the work folder {workdir}", flush=True)


def run_task(node: graph.Node, workdir: str, token: str, *needs):
    """One node in a Ray worker; `needs`: the results of the nodes it waited for (Ray resolved them)."""
    name, ok = sees_workdir(workdir, token)
    if not ok:
        raise SettingsError(f"node {name} can't see the work folder {workdir} (no {MARKER} of this run there): "
                            f"mount the shared work folder at that path")
    return node.run(graph.Place(0, name))
