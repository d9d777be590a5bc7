"""Safe outputs: atomic writes (a crash, even SIGKILL, leaves the old file or the new one, never half of
one; the new file gets the mode open() would give it, 0666 less the umask) and exclusive locks (two processes
never write the same outputs at once)."""
import fcntl
import json
import os
import socket
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from competition.errors import UserError


class LockedError(UserError):
    """Another live process holds the lock; the message says which."""


_UMASK_AT_IMPORT = os.umask(0o022)  # the only way to read it without /proc: set it, then put it back at once
os.umask(_UMASK_AT_IMPORT)


def _umask() -> int:
    """The process's umask now, read without changing it (Linux: /proc/self/status); elsewhere, the one at import."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return _UMASK_AT_IMPORT


@contextmanager
def atomic_open(path: Path, mode: str = "wb", **kwargs):
    """Open a temp file beside `path`; on success it replaces `path` in one rename, on error it vanishes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, **kwargs) as f:
            os.fchmod(f.fileno(), 0o666 & ~_umask())  # mkstemp makes it 0600; give it the mode open() would
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    with atomic_open(path, "w", newline="") as f:
        f.write(text)


@contextmanager
def file_lock(path: Path, blocking: bool = True, what: str = ""):
    """Hold an exclusive fcntl lock on `path` (created if needed) for the block; the kernel frees it when
    the process dies, so a SIGKILL never leaves a stale lock. Non-blocking: LockedError naming the holder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            raise LockedError(f"{what or path} is in use by {holder} (lock {path}). Wait for it to finish, "
                              f"or stop that process.") from None
        f.seek(0)
        f.truncate()
        f.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                            "since": time.strftime("%Y-%m-%dT%H:%M:%S")}))
        f.flush()
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
