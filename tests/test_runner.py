"""The job graph and the local runner: the graph's order (folds, then each member's refit, the ensemble after
every member, the student after the ensemble), kept by the worker processes; a dead worker loses only its job.

    .venv/bin/python -m pytest -q tests/test_runner.py
"""
import json
import multiprocessing.forkserver
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from competition import graph, runner
from competition.train_folds import Job, Settings
from tests.fake_jobs import record

REPO = Path(__file__).resolve().parents[1]
SHAPE = graph.Shape(workers=2, cpus=1)


def full_graph(archs=("baseline_cnn", "bn_cnn"), seeds=(0, 1), folds=(0, 1, 2), **changes):
    kwargs = dict(refit=True, distill="baseline_cnn") | changes
    return graph.build(list(archs), list(seeds), list(folds), Settings(), SHAPE, **kwargs)


def recorded(nodes, log, seconds=0.2, dies=()):
    return [replace(n, call=record, args=(n.key, str(log), -1 if n.key in dies else seconds)) for n in nodes]


def read_log(log):
    starts, ends, pids = {}, {}, {}
    for line in log.read_text().splitlines():
        row = json.loads(line)
        if "start" in row:
            starts[row["key"]], pids[row["key"]] = row["start"], row["pid"]
        else:
            ends[row["key"]] = row["end"]
    return starts, ends, pids


def test_the_graph_states_each_jobs_inputs():
    nodes = {n.key: n for n in full_graph()}
    folds = [k for k in nodes if " fold " in k]
    assert len(folds) == 2 * 2 * 3 and all(nodes[k].after == () for k in folds)
    assert set(nodes["bn_cnn.s1 refit"].after) == {"bn_cnn.s1 fold 0", "bn_cnn.s1 fold 1", "bn_cnn.s1 fold 2"}
    assert set(nodes["ensemble"].after) == set(folds) | {k for k in nodes if k.endswith(" refit")}
    assert nodes["baseline_cnn.student (student)"].after == ("ensemble",)
    student = nodes["baseline_cnn.student (student)"].args
    assert student[0] == (Job("baseline_cnn", None, 0, "student"),) and student[1].teacher.name == "teacher.npz"
    assert nodes["baseline_cnn.student submission"].inline and nodes["ensemble"].inline
    assert nodes["bn_cnn fold 0"].cost > nodes["baseline_cnn fold 0"].cost  # the architecture's image cost
    assert nodes["bn_cnn refit"].cost == pytest.approx(nodes["bn_cnn fold 0"].cost * graph.REFIT_ROWS)
    depth = {n.key: d for d, stage in enumerate(graph.stages(list(nodes.values()))) for n in stage}
    assert all(depth[a] < depth[k] for k, n in nodes.items() for a in n.after)


def test_a_refit_only_seed_follows_its_seed_0_members_folds():
    nodes = {n.key: n for n in full_graph(seeds=(0,), distill=None, refit_seeds=(0, 2))}
    assert set(nodes["bn_cnn.s2 refit"].after) == {"bn_cnn fold 0", "bn_cnn fold 1", "bn_cnn fold 2"}
    assert nodes["bn_cnn.s2 refit"].args[0] == (Job("bn_cnn", None, 2),) and "bn_cnn.s2 fold 0" not in nodes
    assert {"bn_cnn refit", "baseline_cnn.s2 refit"} <= set(nodes["ensemble"].after)
    assert nodes["ensemble"].args[0] == ("baseline_cnn", "bn_cnn")  # members: a refit-only seed joins its refit
    one = graph.build(["bn_cnn"], [0], [0], Settings(budget=10), graph.Shape(1, one_call=True), refit=True,
                      refit_seeds=(0, 1))
    assert [n.args[0] for n in one if n.call is graph.train_node] == [
        (Job("bn_cnn", 0), Job("bn_cnn", None), Job("bn_cnn", None, 1))]  # its refits after the folds


def test_a_cpu_budget_is_one_call_and_a_gpu_budget_is_shared_by_cost():
    one = graph.build(["baseline_cnn", "bn_cnn"], [0], [0, 1], Settings(budget=10), graph.Shape(1, one_call=True))
    assert [len(n.args[0]) for n in one if n.call is graph.train_node] == [4]  # fit_budget shares the 10 minutes
    refits = graph.build(["bn_cnn"], [0], [0], Settings(budget=10), graph.Shape(1, one_call=True), refit=True)
    assert [n.args[0] for n in refits if n.call is graph.train_node] == [(Job("bn_cnn", 0), Job("bn_cnn", None))]
    gpu = graph.build(["baseline_cnn", "bn_cnn"], [0], [0], Settings(budget=10), graph.Shape(1, 0.25),
                      device_type="cuda")  # one worker: the jobs run one after the other, 10 minutes in all
    budgets = {n.key: n.args[1].budget for n in gpu if n.call is graph.train_node}
    assert budgets["bn_cnn fold 0"] > budgets["baseline_cnn fold 0"]
    assert sum(budgets.values()) == pytest.approx(10)
    assert all(n.gpus == 0.25 for n in gpu if n.call is graph.train_node)


def test_the_local_runner_keeps_the_graph_order(tmp_path, capsys):
    """Two worker processes: a refit never starts before its member's folds have ended, the ensemble before
    every member, a student before the ensemble; the ensemble runs in the runner's own process."""
    log = tmp_path / "log.jsonl"
    nodes = recorded(full_graph(["baseline_cnn"], seeds=[0], folds=[0, 1]), log)
    runner.run_local(nodes, workers=2)
    starts, ends, pids = read_log(log)
    assert set(starts) == set(ends) == {n.key for n in nodes}
    for node in nodes:
        assert all(starts[node.key] >= ends[a] for a in node.after), node.key
    assert pids["ensemble"] == os.getpid() and pids["baseline_cnn fold 0"] != os.getpid()
    assert len({pids[n.key] for n in nodes if not n.inline}) == len([n for n in nodes if not n.inline])


def test_a_worker_that_dies_loses_only_its_own_job(tmp_path, capsys):
    log = tmp_path / "log.jsonl"
    nodes = recorded(full_graph(["baseline_cnn"], seeds=[0], folds=[0, 1], refit=False, distill=None), log,
                     seconds=1.0, dies={"baseline_cnn fold 1"})
    with pytest.raises(SystemExit) as stopped:
        runner.run_local(nodes, workers=2)
    assert stopped.value.code == 128 + signal.SIGKILL
    starts, ends, _ = read_log(log)
    folds = {n.key for n in nodes if " fold " in n.key}
    assert set(ends) == folds - {"baseline_cnn fold 1"}  # the other of its stage finished
    assert "ensemble" not in starts  # what needed it did not start
    assert "baseline_cnn fold 1 (exit 137)" in capsys.readouterr().out


def test_gpu_slots_spread_the_workers_over_the_gpus(tmp_path):
    log = tmp_path / "log.jsonl"
    nodes = recorded([n for n in full_graph(["baseline_cnn"], seeds=[0], folds=[0, 1], refit=False, distill=None)
                      if not n.inline], log, seconds=0.5)
    runner.run_local(nodes, workers=2, gpus=2)
    gpus = [json.loads(line)["gpu"] for line in log.read_text().splitlines() if "gpu" in line]
    assert sorted(set(gpus)) == [0, 1]


def test_a_runner_killed_alone_leaves_no_worker_running(tmp_path):
    """SIGKILL to the runner only (not its session): the forkserver sees its parent gone and ends, and the
    worker it forked gets SIGTERM (PR_SET_PDEATHSIG), so no job goes on training and holding its fold lock."""
    log = tmp_path / "log.jsonl"
    script = ("import sys; from competition import runner; from tests.fake_jobs import record; "
              "from competition import graph; "
              f"runner.run_local([graph.Node('sleeper', record, ('sleeper', {str(log)!r}, 60.0))], workers=1)")
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=REPO)
    try:
        deadline = time.monotonic() + 60
        while not (log.exists() and log.read_text()):
            assert proc.poll() is None and time.monotonic() < deadline, "the worker never started"
            time.sleep(0.1)
        worker = json.loads(log.read_text().splitlines()[0])["pid"]
        assert worker != proc.pid
    finally:
        proc.kill()
        proc.wait()
    end = time.monotonic() + 20
    while alive(worker) and time.monotonic() < end:
        time.sleep(0.1)
    assert not alive(worker)
    assert "end" not in log.read_text()  # it was stopped, not left to finish


def alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_workers_ending_together_each_get_their_own_exit_status(tmp_path, monkeypatch):
    """Process.start() polls every child multiprocessing knows (its _cleanup), from the starting thread, while
    another worker thread may be reading the same child's exit status; a second read finds the pipe empty, which
    multiprocessing reports as exit 255. A slowed read widens that window: every job must still end with 0."""
    read = multiprocessing.forkserver.read_signed
    monkeypatch.setattr(multiprocessing.forkserver, "read_signed", lambda fd: (time.sleep(0.05), read(fd))[1])
    log = tmp_path / "log.jsonl"
    nodes = [graph.Node(f"job {i}", record, (f"job {i}", str(log), 0.1)) for i in range(8)]
    runner.run_local(nodes, workers=2)
    assert set(read_log(log)[1]) == {n.key for n in nodes}
