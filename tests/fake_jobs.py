"""A stand-in for a job graph node's call (tests/test_runner.py): it records its start and end, so a test can
check the order a runner kept. In a module of the `tests` package, so a worker process can unpickle it."""
import json
import os
import signal
import time


def record(place, key, log, seconds, *needs):
    """Its start and end on the log (one JSON line each), `seconds` apart; seconds < 0: the worker dies."""
    with open(log, "a") as f:
        f.write(json.dumps({"key": key, "start": time.time(), "pid": os.getpid(), "gpu": place.gpu}) + "\n")
    if seconds < 0:
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(seconds)
    with open(log, "a") as f:
        f.write(json.dumps({"key": key, "end": time.time()}) + "\n")
