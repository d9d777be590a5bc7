"""The local runner, the default: the job graph (competition.graph) in worker processes on this machine.

Stage by stage in the graph's order: a stage's nodes run at most `workers` at a time, each in a process of its
own (`python -m competition.runner`, handed the pickled node on stdin: the call and its typed arguments), and
the next stage starts when the stage has ended. Nothing polls and no process waits for another's files. Worker
slot i trains on GPU i mod the GPU count, so each GPU gets --jobs-per-gpu workers. Cheap nodes (the ensemble)
run in this process.

A worker that dies loses only its own job: the others of its stage finish, then the run stops with that
worker's exit status, and a rerun resumes the job from its last checkpoint (the fold folder's state.pt). Workers
stay in this process's group and session, and get SIGTERM when it dies, however it dies (PR_SET_PDEATHSIG):
a time limit that kills the session, or one that terminates only run_all, leaves no worker training and holding
its fold lock. Retrying, balancing across machines and surviving a lost machine are Ray's
(competition.ray_runner), not this module's.
"""
import ctypes
import itertools
import os
import pickle
import platform
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from competition import graph, paths
from competition.errors import run_command


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
        env = os.environ | {"OMP_NUM_THREADS": str(node.cpus), "FER_RUNNER_PARENT": str(os.getpid())}
        start = time.perf_counter()
        with self.lock:
            if self.closed:  # the run is ending: start nothing more
                return 128 + signal.SIGTERM
            proc = subprocess.Popen([sys.executable, "-m", "competition.runner"], cwd=paths.REPO, env=env,
                                    stdin=subprocess.PIPE)
            self.live.add(proc)
        print(f"=== {node.key}: started (worker {self.slot.index}, pid {proc.pid})", flush=True)
        try:
            proc.stdin.write(pickle.dumps((node, place)))
            proc.stdin.close()
        except BrokenPipeError:  # it died at once: its exit status says why
            pass
        code = proc.wait()
        code = 128 - code if code < 0 else code  # killed by a signal: the shell's status
        with self.lock:
            self.live.discard(proc)
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


def stop(procs: list[subprocess.Popen], grace_s: float = 10.0) -> None:
    """SIGTERM to those still running, then SIGKILL to any left after grace_s."""
    alive = [p for p in procs if p.poll() is None]
    for p in alive:
        p.terminate()
    end = time.monotonic() + grace_s
    for p in alive:
        try:
            p.wait(max(0.1, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def die_with_parent() -> None:
    """SIGTERM to this process when the runner that started it dies, however it dies (Linux); if it is gone
    already, end now."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if str(os.getppid()) != os.environ.get("FER_RUNNER_PARENT", str(os.getppid())):
        sys.exit(128 + signal.SIGTERM)


def _worker(argv=None) -> int:
    node, place = pickle.load(sys.stdin.buffer)
    node.run(place)
    return 0


if __name__ == "__main__":
    die_with_parent()
    sys.exit(run_command(_worker))
