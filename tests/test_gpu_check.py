"""scripts/pack_data.py and scripts/gpu_check.sh on a small synthetic dataset, on the CPU.

The pack travels to the GPU machine in place of the 83 MB cache; gpu_check.sh is the one command run there.
Here it runs end to end with tiny settings: unpack, run_all --quick on one model, a one-step bench, results;
and it is killed mid-training as the GPU machine kills a command (its whole session, SIGKILL): the log and the
finished folds are in $OUT, no training process survives, and a rerun finishes.
"""
import importlib.util
import os
import signal
import subprocess
import sys
import tarfile
import time

import numpy as np
import pytest

from competition import data, paths
from pathlib import Path

from tests.conftest import REPO, kaggle_zip, synthetic_rows

PACK_SCRIPT = REPO / "scripts" / "pack_data.py"


@pytest.fixture()
def cache(tmp_path):
    """A synthetic dataset cache in this test's FER_WORKDIR: 200 training rows, 80 test rows."""
    data.prepare(kaggle_zip(tmp_path / "c.zip", *synthetic_rows(200, 40, 40)))
    return paths.cache_path()


@pytest.fixture()
def pack_data():
    """scripts/pack_data.py as a module (it is a script, not in a package)."""
    spec = importlib.util.spec_from_file_location("pack_data", PACK_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def arrays(path):
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def pack_cli(*args):
    return subprocess.run([sys.executable, str(PACK_SCRIPT), *args], cwd=REPO, capture_output=True, text=True,
                          timeout=120)


def test_pack_then_unpack_gives_the_same_arrays(cache, tmp_path, pack_data, capsys):
    """pack through the command line (unpack's is run by the end-to-end test below), unpack in-process."""
    before = arrays(cache)
    pack = tmp_path / "gpu_data" / "fer2013.npz.xz"
    done = pack_cli("pack", "--out", str(pack))
    assert done.returncode == 0, done.stderr
    assert pack.is_file() and (tmp_path / "gpu_data" / "fer2013.npz.xz.json").is_file()
    cache.unlink()
    assert pack_data.main(["unpack", "--from", str(pack)]) == 0
    assert "unpacked in" in capsys.readouterr().out
    after = arrays(cache)
    assert sorted(after) == sorted(before)
    for key in before:
        assert after[key].dtype == before[key].dtype and np.array_equal(after[key], before[key]), key
    assert data.load_dataset().train_images.shape == (200, 48, 48)


def test_unpack_and_pack_skip_when_up_to_date(cache, tmp_path, pack_data, capsys):
    pack = tmp_path / "p.xz"
    assert pack_data.main(["pack", "--out", str(pack)]) == 0
    assert pack_data.main(["pack", "--out", str(pack)]) == 0
    assert "kept" in capsys.readouterr().out
    mtime = cache.stat().st_mtime_ns
    assert pack_data.main(["unpack", "--from", str(pack)]) == 0
    assert "already holds" in capsys.readouterr().out and cache.stat().st_mtime_ns == mtime
    cache.write_bytes(cache.read_bytes()[:-1] + b"x")  # same size, other bytes: written again
    assert pack_data.main(["unpack", "--from", str(pack)]) == 0
    assert "unpacked in" in capsys.readouterr().out
    assert cache.read_bytes() == pack_data.lzma.decompress(pack.read_bytes())


def test_refusals_name_the_file(cache, tmp_path, pack_data, capsys, monkeypatch):
    missing = tmp_path / "nothing.xz"
    assert pack_data.main(["unpack", "--from", str(missing)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(missing) in err and "pack_data.py pack" in err
    monkeypatch.setattr(pack_data, "LIMIT", 1000)  # the synthetic pack is ~0.6 MiB
    out = tmp_path / "big.xz"
    assert pack_data.main(["pack", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(out) in err and "over" in err and not out.exists()
    cache.unlink()
    assert pack_data.main(["pack", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(cache) in err and "download" in err


def test_unpack_refuses_a_pack_that_does_not_match_its_sidecar(cache, tmp_path, pack_data, capsys):
    pack = tmp_path / "p.xz"
    assert pack_data.main(["pack", "--out", str(pack)]) == 0
    sidecar = pack_data.sidecar(pack)
    sidecar.write_text(sidecar.read_text().replace('"sha256": "', '"sha256": "0'))
    cache.unlink()
    assert pack_data.main(["unpack", "--from", str(pack)]) == 2
    assert "sha256" in capsys.readouterr().err and not cache.exists()


def test_gpu_check_runs_end_to_end_on_cpu(cache, tmp_path, pack_data):
    """The GPU machine's one command, with tiny settings: exit 0, a results tarball, the bench table."""
    pack = tmp_path / "gpu_data" / "fer2013.npz.xz"
    assert pack_data.main(["pack", "--out", str(pack)]) == 0
    cache.unlink()
    out = tmp_path / "out"
    env = os.environ | {"PY": sys.executable, "DEVICE": "cpu", "MODELS": "baseline_cnn", "BENCH_STEPS": "1",
                        "EXTRA": "--quick --nproc 1 --epochs 3", "PACK": str(pack), "OUT": str(out),
                        "WHEELS": str(tmp_path / "no_wheels"),  # the repo's gpu_data/wheels: for the GPU's Python
                        "GPU_CHECK_LIMIT_S": "3000", "BENCH_LIMIT_S": "600"}  # a busy CPU: no cut here
    done = subprocess.run(["bash", "scripts/gpu_check.sh"], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=3000)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    log = (out / "gpu_check.log").read_text()
    assert "| baseline_cnn |" in log and "total wall time" in log and "=== unpack:" in log
    assert log == done.stdout  # the tee holds what the caller saw
    with tarfile.open(out / "gpu_check_results.tar.gz") as tar:
        names = tar.getnames()
    for name in ["done.json", "log.csv", "config.json", "oof.npz", "test.npz"]:
        assert f"folds/baseline_cnn/fold0/{name}" in names
    assert "submissions/submission.csv" in names and "reports/quick/report.md" in names
    assert not any(n.endswith(".pt") or n.startswith("data/") for n in names)  # no checkpoints, no dataset


def gpu_check_env(out, **settings):
    return os.environ | {"PY": sys.executable, "DEVICE": "cpu", "MODELS": "baseline_cnn", "OUT": str(out),
                         "PACK": "/nonexistent.xz", "WHEELS": "/nonexistent", "BENCH_LIMIT_S": "0",
                         "GPU_CHECK_LIMIT_S": "3000", **settings}  # a busy 2-core machine: no deadline here


def tar_names(path):
    try:
        with tarfile.open(path) as tar:
            return tar.getnames()
    except (OSError, tarfile.TarError):
        return []


def processes_of(workdir) -> list[int]:
    """Live processes (not zombies) that run a competition module with this FER_WORKDIR."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes()
            environ = (proc / "environ").read_bytes().split(b"\0")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if b"competition." in cmdline and f"FER_WORKDIR={workdir}".encode() in environ and state != "Z":
            pids.append(int(proc.name))
    return pids


def kill_session(sid: int) -> None:
    """What the GPU machine does at a command's limit: SIGKILL to every process of the command's session."""
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and int((proc / "stat").read_text().rsplit(")", 1)[1].split()[3]) == sid:
                os.kill(int(proc.name), signal.SIGKILL)
        except (OSError, IndexError, ValueError):
            pass


def test_gpu_check_killed_mid_training_brings_back_what_finished_and_a_rerun_finishes(cache, tmp_path):
    out, workdir = tmp_path / "out", paths.workdir()
    env = gpu_check_env(out, FOLDS="all", EXTRA="--k 5 --nproc 2 --epochs 30")
    check = subprocess.Popen(["bash", "scripts/gpu_check.sh"], cwd=REPO, env=env, start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 1200
        while not any(n.endswith("done.json") for n in tar_names(out / "gpu_check_results.tar.gz")):
            assert check.poll() is None and time.monotonic() < deadline, "no fold finished and packed"
            time.sleep(0.5)
        assert processes_of(workdir), "training had already ended: the kill would test nothing"
    finally:
        kill_session(check.pid)
        check.wait()
    end = time.monotonic() + 20  # a worker outside the session would still be here (torchrun's were)
    while processes_of(workdir) and time.monotonic() < end:
        time.sleep(0.5)
    assert processes_of(workdir) == []
    assert "=== run_all" in (out / "gpu_check.log").read_text()
    names = tar_names(out / "gpu_check_results.tar.gz")
    finished = [f for f in range(5) if f"folds/baseline_cnn/fold{f}/done.json" in names]
    assert finished and all(f"folds/baseline_cnn/fold{f}/test.npz" in names for f in finished)

    again = subprocess.run(["bash", "scripts/gpu_check.sh"], cwd=REPO, env=env, capture_output=True, text=True,
                           timeout=3000)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "in use" not in again.stdout and "finished earlier, skipped" in again.stdout
    names = tar_names(out / "gpu_check_results.tar.gz")
    assert all(f"folds/baseline_cnn/fold{f}/oof.npz" in names for f in range(5)), names
    assert "submissions/submission.csv" in names
