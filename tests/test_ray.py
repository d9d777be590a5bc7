"""The Ray runner on a two-node Ray cluster on loopback (Ray's own multi-node test utility,
ray.cluster_utils.Cluster: a head and a worker node, one CPU each), in a network namespace of its own.

Each test re-runs itself under `unshare -n` with only the loopback up, so Ray binds 127.0.0.1 and nothing
leaves the machine; afterwards no process is left in that namespace (no Ray process outlived the test). Where
unshare is not permitted, or Ray is not installed (requirements-ray.txt; ./run.sh test installs it), the tests
skip with the reason.

    .venv/bin/python -m pytest -q tests/test_ray.py
"""
import functools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from competition import paths, run_all
from tests.conftest import REPO, kaggle_zip, synthetic_rows

INSIDE = os.environ.get("FER_RAY_NETNS")  # set in the re-run inside the namespace: a file for its inode
RAY_BIN = Path(sys.executable).parent / "ray"
# 2 members x 2 folds + refits + the ensemble; epochs enough that a fold is still training when its node goes
RUN = ["--models", "baseline_cnn", "--seeds", "0,1", "--k", "2", "--epochs", "8", "--refit", "--nproc", "2",
       "--cpus-per-job", "1", "--checkpoint-every", "0"]


def unshare_refusal() -> str | None:
    try:
        done = subprocess.run(["unshare", "-n", "-m", "true"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"unshare: {err}"
    return None if done.returncode == 0 else f"unshare -n -m is not permitted here: {done.stderr.strip()}"


def processes_in_netns(inode: str) -> list[str]:
    left = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and os.readlink(proc / "ns" / "net") == inode:
                left.append(f"{proc.name} {(proc / 'cmdline').read_bytes()[:100]!r}")
        except OSError:
            pass
    return left


def in_own_netns(test):
    """Run the test in a fresh pytest process inside `unshare -n` (loopback only); then check that nothing
    is left running in that namespace."""
    @functools.wraps(test)
    def outside(tmp_path):
        if INSIDE:
            Path(INSIDE).write_text(os.readlink("/proc/self/ns/net"))
            return test(tmp_path)
        pytest.importorskip("ray", reason="Ray is optional: pip install -r requirements-ray.txt")
        if refusal := unshare_refusal():
            pytest.skip(refusal)
        inode_file = tmp_path / "netns"
        node_id = f"tests/test_ray.py::{test.__name__}"
        inner = f"ip link set lo up && exec {sys.executable} -m pytest -q -x -p no:cacheprovider {node_id}"
        done = subprocess.run(["unshare", "-n", "sh", "-c", inner], cwd=REPO, capture_output=True, text=True,
                              env=os.environ | {"FER_RAY_NETNS": str(inode_file)}, timeout=600)
        assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
        assert " passed" in done.stdout, done.stdout[-3000:]
        inode = inode_file.read_text()
        end = time.monotonic() + 30  # processes told to end by the cluster's shutdown, still exiting
        while processes_in_netns(inode) and time.monotonic() < end:
            time.sleep(0.5)
        assert processes_in_netns(inode) == []
    return outside


def run_all_ray(address: str, workdir: Path, log: Path, *args) -> subprocess.Popen:
    """The driver, its output to `log` (a pipe left unread while the test watches would fill and stall it)."""
    with open(log, "w") as out:
        return subprocess.Popen([sys.executable, "-m", "competition.run_all", "--runner", "ray", "--address",
                                 address, *args], cwd=REPO,
                                env=os.environ | {"FER_WORKDIR": str(workdir), "RAY_DEDUP_LOGS": "0"},
                                stdout=out, stderr=subprocess.STDOUT)


def descends_from(pid: int, ancestor: int) -> bool:
    while pid > 1:
        if pid == ancestor:
            return True
        try:
            pid = int((Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            return False
    return False


def fold_training_under(workdir: Path, raylet_pid: int) -> Path | None:
    """A fold folder with a checkpoint and no done.json whose lock holder is a worker of that raylet."""
    for lock in workdir.glob("folds/*/fold*/lock"):
        try:
            holder = json.loads(lock.read_text() or "{}").get("pid")
        except (OSError, ValueError):
            continue
        if holder and (lock.parent / "state.pt").exists() and not (lock.parent / "done.json").exists() \
                and descends_from(holder, raylet_pid):
            return lock.parent
    return None


def logits(workdir: Path) -> dict:
    return {str(f.relative_to(workdir)): np.load(f)["logits"] for f in sorted(workdir.glob("folds/*/*/*.npz"))}


@in_own_netns
def test_two_nodes_lose_one_mid_fold_and_end_as_the_local_runner(tmp_path):
    source = kaggle_zip(tmp_path / "c.zip", *synthetic_rows(n_train=280), with_private_labels=False)
    local = paths.workdir()
    assert run_all.main(["--from", str(source), *RUN]) == 0  # the local runner: the reference

    from ray.cluster_utils import Cluster
    started = time.monotonic()
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    driver = None
    try:
        worker = c.add_node(num_cpus=1)
        c.wait_for_nodes()
        print(f"two nodes up in {time.monotonic() - started:.1f} s at {c.address}")
        raylet = worker.all_processes["raylet"][0].process.pid
        workdir = tmp_path / "ray_work"
        driver = run_all_ray(c.address, workdir, tmp_path / "driver.log", "--from", str(source), *RUN)
        lost = None
        end = time.monotonic() + 300
        while lost is None and driver.poll() is None and time.monotonic() < end:
            lost = fold_training_under(workdir, raylet)
            time.sleep(0.02)
        assert lost is not None, "no fold was seen training on the worker node"
        removed_at = time.monotonic()
        c.remove_node(worker, allow_graceful=False)
        c.add_node(num_cpus=1)  # one comes back; the lost task may run there or on the head
        driver.wait(timeout=300)
        out = (tmp_path / "driver.log").read_text()
        print(out[-4000:])
        print(f"the run ended {time.monotonic() - removed_at:.1f} s after the node was removed")
    finally:
        if driver is not None and driver.poll() is None:  # the test failed while it ran: leave nothing behind
            driver.kill()
            driver.wait()
        c.shutdown()
    assert driver.returncode == 0, out[-4000:]
    assert "resuming after epoch" in out
    nodes = {p.parent.name + " " + p.parent.parent.name: json.loads(p.read_text())["node"]
             for p in workdir.glob("folds/*/*/done.json")}
    removed = worker.node_id[:8]
    assert len(nodes) == 2 * 3 and all(nodes.values())  # every job records where it ran
    assert not nodes[f"{lost.name} {lost.parent.name}"].endswith(removed)  # the lost fold (the worker node's:
    # jobs landed on both nodes) ended on another node
    ours, reference = logits(workdir), logits(local)
    assert sorted(ours) == sorted(reference) and len(ours) == 4 * 2 + 2  # oof + test per fold, test per refit
    for name in reference:
        assert np.array_equal(ours[name], reference[name]), name


@in_own_netns
def test_a_node_that_cannot_see_the_work_folder_is_refused(tmp_path):
    """The second node runs in a mount namespace where the work folder is an empty tmpfs: the run stops
    before any training, naming it."""
    source = kaggle_zip(tmp_path / "c.zip", *synthetic_rows(n_train=70), with_private_labels=False)
    from ray.cluster_utils import Cluster
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    workdir = paths.workdir()
    workdir.mkdir(parents=True, exist_ok=True)
    blind = subprocess.Popen(["unshare", "-m", "sh", "-c", f'mount -t tmpfs tmpfs "{workdir}" && exec "{RAY_BIN}" '
                              f'start --address {c.address} --num-cpus 1 --block'], start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        end = time.monotonic() + 120
        while len([n for n in c.global_state.node_table() if n["Alive"]]) < 2:
            assert blind.poll() is None and time.monotonic() < end, "the second node did not join"
            time.sleep(0.5)
        done = subprocess.run([sys.executable, "-m", "competition.run_all", "--runner", "ray", "--address",
                               c.address, "--from", str(source), "--models", "baseline_cnn", "--k", "2",
                               "--epochs", "1"], cwd=REPO, capture_output=True, text=True, timeout=300)
    finally:
        os.killpg(blind.pid, signal.SIGTERM)  # ray start --block stops the node's processes
        try:
            blind.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(blind.pid, signal.SIGKILL)
            blind.wait()
        c.shutdown()
    assert done.returncode == 2, done.stdout[-3000:] + done.stderr[-3000:]
    assert "can't see the work folder" in done.stderr and str(workdir) in done.stderr
    assert not list(workdir.glob("folds/baseline_cnn*"))  # nothing was trained anywhere
