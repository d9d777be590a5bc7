"""competition.atomic: an atomic write's file gets the mode open() would give it (0666 less the umask), not
mkstemp's 0600.

    .venv/bin/python -m pytest -q tests/test_atomic.py
"""
import os
import stat

import pytest

from competition.atomic import atomic_open, atomic_write_text


@pytest.fixture
def umask():
    """Set the process umask for one test, and put the old one back."""
    old = os.umask(0o022)
    yield lambda mask: os.umask(mask)
    os.umask(old)


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_an_atomic_write_gets_the_mode_of_the_umask(tmp_path, umask, mask, mode):
    umask(mask)
    atomic_write_text(tmp_path / "a.txt", "text\n")
    with atomic_open(tmp_path / "b.npz") as f:
        f.write(b"bytes")
    for name in ("a.txt", "b.npz"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == mode
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.npz"]


def test_a_rewrite_gets_the_mode_again(tmp_path, umask):
    path = tmp_path / "folds.csv"
    path.write_text("old\n")
    path.chmod(0o600)  # as an earlier version of atomic_open left it
    atomic_write_text(path, "new\n")
    assert stat.S_IMODE(path.stat().st_mode) == 0o644 and path.read_text() == "new\n"
