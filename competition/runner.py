"""The local runner, the default: the job graph (competition.graph) in worker processes on this machine.

Stage by stage in the graph's order: a stage's nodes run at most `workers` at a time, each in a process of its
own, handed the pickled node (the call and its typed arguments), and the next stage starts when the stage has
ended. Nothing polls and no process waits for another's files. Worker slot i trains on GPU i mod the GPU count,
so each GPU gets --jobs-per-gpu workers. Cheap nodes (the ensemble) run in this process.

The processes come from multiprocessing's forkserver, which imports torch, timm and the harness once (PRELOAD)
and forks a fresh process for each node: a new process per job, as before, without the 3-6 s of imports each
(the test suite starts dozens). The forkserver imports only; it never runs torch, so nothing it forks inherits
a thread pool or a CUDA context. Each process gets this process's environment and working folder as they are
when the node starts.

A worker that dies loses only its own job: the others of its stage finish, then the run stops with that
worker's exit status, and a rerun resumes the job from its last checkpoint (the fold folder's state.pt). Workers
stay in this process's group and session, and get SIGTERM when it dies, however it dies (a thread on its pidfd):
a time limit that kills the session, or one that terminates only run_all, leaves no worker training and holding
its fold lock. Retrying, balancing across machines and surviving a lost machine are Ray's
(competition.ray_runner), not this module's.
"""
import itertools
import multiprocessing
import multiprocessing.connection
import os
import platform
import select
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from competition import graph, paths
from competition.errors import run_command

PRELOAD = ["competition.graph"]  # imports torch, timm, models and train_folds: what every training node needs


def run_local(nodes: list[graph.Node], workers: int, gpus: int = 0) -> None:
    """Every node, stage by stage; raises SystemExit with the first failed worker's status after its stage."""
    pool = Workers(workers, gpus)
    previous = signal.signal(signal.SIGTERM, _exit_on_term) if threading.current_thread() is threading.main_thread() \
        else None
    try:
        for stage in graph.stages(nodes):
            codes = pool.run([n for n in stage if not n.inline])
            failed = [(n.key, c) for n, c in codes if c]
            if failed:
                print(f"failed: {', '.join(f'{key} (exit {c})' for key, c in failed)}", flush=True)
                raise SystemExit(failed[0][1])
            for node in (n for n in stage if n.inline):
                timed(node, lambda n=node: n.run(graph.Place(0, platform.node())))
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        pool.close()


def timed(node: graph.Node, fn):
    print(f"\n=== {node.key}", flush=True)
    start = time.perf_counter()
    result = fn()
    print(f"=== {node.key}: {time.perf_counter() - start:.0f} s", flush=True)
    return result


class Workers:
    """`size` worker slots; each node of a stage runs in a new process in a free slot."""

    def __init__(self, size: int, gpus: int):
        slots = itertools.count()
        self.slot = threading.local()
        self.gpus, self.live, self.lock, self.closed = gpus, set(), threading.Lock(), False
        self.pool = ThreadPoolExecutor(max(1, size), "worker",
                                       initializer=lambda: setattr(self.slot, "index", next(slots)))

    def run(self, nodes: list[graph.Node]) -> list[tuple[graph.Node, int]]:
        futures = [self.pool.submit(self.one, node) for node in nodes]
        return [(n, f.result()) for n, f in zip(nodes, futures)]

    def one(self, node: graph.Node) -> int:
        place = graph.Place(self.slot.index % self.gpus if self.gpus else 0, platform.node())
        env = dict(os.environ) | {"OMP_NUM_THREADS": str(node.cpus)}
        start = time.perf_counter()
        with self.lock:
            if self.closed:  # the run is ending: start nothing more
                return 128 + signal.SIGTERM
            proc = forkserver().Process(target=_worker, args=(node, place, env, os.getpid()), name=node.key)
            proc.start()
            self.live.add(proc)
        print(f"=== {node.key}: started (worker {self.slot.index}, pid {proc.pid})", flush=True)
        multiprocessing.connection.wait([proc.sentinel])  # its end, without reading its exit status yet:
        with self.lock:  # Process.start() reads the status of every ended child (multiprocessing's _cleanup), and
            proc.join()  # a status read twice is lost (exit 255), so it is read only under the lock start holds
            self.live.discard(proc)
        code = 128 - proc.exitcode if proc.exitcode < 0 else proc.exitcode  # a signal: the shell's status
        print(f"=== {node.key}: {'done' if code == 0 else f'exit {code}'} in {time.perf_counter() - start:.0f} s",
              flush=True)
        return code

    def close(self) -> None:
        with self.lock:
            self.closed = True
            stop(list(self.live))
        self.pool.shutdown(wait=True, cancel_futures=True)


def _exit_on_term(signum, frame):
    raise SystemExit(128 + signum)


def stop(procs: list[multiprocessing.Process], grace_s: float = 10.0) -> None:
    """SIGTERM to those still running, then SIGKILL to any left after grace_s."""
    alive = [p for p in procs if p.is_alive()]
    for p in alive:
        p.terminate()
    end = time.monotonic() + grace_s
    for p in alive:
        p.join(max(0.1, end - time.monotonic()))
        if p.is_alive():
            p.kill()
            p.join()


def forkserver() -> multiprocessing.context.BaseContext:
    """multiprocessing's forkserver context, importing PRELOAD once when it starts (at the first node)."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    return context


def die_with_runner(runner_pid: int) -> None:
    """SIGTERM to this process when the runner ends, however it ends (Linux): a thread waits on the runner's
    pidfd. (PR_SET_PDEATHSIG would watch the forkserver, which lives as long as its children.) If the runner is
    gone already, end now."""
    try:
        runner = os.pidfd_open(runner_pid)
    except ProcessLookupError:
        sys.exit(128 + signal.SIGTERM)
    except (OSError, AttributeError):  # no pidfds here: the worker outlives a runner killed on its own
        return

    def wait() -> None:
        select.select([runner], [], [])
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=wait, name="die_with_runner", daemon=True).start()


def _worker(node: graph.Node, place: graph.Place, env: dict, runner_pid: int) -> None:
    """A node's process: the runner's environment and folder as they are now, then the node's call; a user
    error ends it with the harness's message and status (errors.run_command), anything else with a traceback."""
    die_with_runner(runner_pid)
    os.environ.clear()
    os.environ.update(env)
    os.chdir(paths.REPO)

    def call(_argv) -> int:
        node.run(place)
        return 0

    sys.exit(run_command(call))
