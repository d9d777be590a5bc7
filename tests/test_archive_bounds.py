"""Untrusted archives are read within bounds (issue #20): each member's declared size is checked before it is
read, a member never yields more than it declares, nesting stops at the real download's depth (a tar.gz inside
the zip), and a refusal names the file, the member and its size, with memory bounded (peak RSS measured)."""
import io
import subprocess
import sys
import tarfile
import zipfile

import pytest

from competition import data
from competition.data import DataError
from tests.conftest import REPO, kaggle_zip, synthetic_rows

MiB = 1 << 20


def zeros_zip(path, size, member="fer2013.csv"):
    """A zip whose `member` inflates to `size` bytes of zeros, written from a stream (a few hundred KB)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf, zf.open(member, "w") as f:
        for _ in range(size // MiB):
            f.write(bytes(MiB))
    return path


class Zeros(io.RawIOBase):
    def readable(self):
        return True

    def readinto(self, buffer):
        buffer[:] = bytes(len(buffer))
        return len(buffer)


def zeros_tar_gz(size, member="fer2013/fer2013.csv") -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz", compresslevel=1) as tf:
        info = tarfile.TarInfo(member)
        info.size = size
        tf.addfile(info, io.BufferedReader(Zeros()))
    return out.getvalue()


PEAK_RSS = """
import resource, sys
from pathlib import Path
from competition import data
data.MAX_MEMBER_BYTES = int(sys.argv[2])
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    data.read_members(Path(sys.argv[1]))
    outcome = "read"
except data.DataError as err:
    outcome = str(err)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024)
print(outcome)
"""


def refuse_measuring_memory(path, limit) -> tuple[int, str]:
    """(peak RSS growth in bytes, the refusal) of reading `path` under MAX_MEMBER_BYTES = limit, in a process
    of its own so the peak is this read's."""
    run = subprocess.run([sys.executable, "-c", PEAK_RSS, str(path), str(limit)], cwd=REPO, capture_output=True,
                         text=True, timeout=600)  # (imports torch: slow on a busy machine)
    assert run.returncode == 0, run.stderr
    grew, outcome = run.stdout.split("\n", 1)
    return int(grew), outcome.strip()


def test_an_oversized_member_is_refused_before_it_is_read_in_bounded_memory(tmp_path):
    path = zeros_zip(tmp_path / "bomb.zip", 64 * MiB)
    assert path.stat().st_size < MiB
    grew, refusal = refuse_measuring_memory(path, MiB)
    assert refusal.startswith(f"{path}: 'fer2013.csv' is 67,108,864 bytes, past the limit of 1,048,576")
    assert grew < 8 * MiB, grew  # reading it whole grows the peak by 64 MiB or more


def test_a_member_that_inflates_past_its_declared_size_is_read_only_as_far_as_declared(tmp_path):
    path = zeros_zip(tmp_path / "liar.zip", 64 * MiB)
    blob = bytearray(path.read_bytes())
    central = blob.index(b"PK\x01\x02")
    blob[central + 24:central + 28] = (1000).to_bytes(4, "little")  # the central directory now says 1000 bytes
    path.write_bytes(bytes(blob))
    grew, refusal = refuse_measuring_memory(path, MiB)
    assert refusal.startswith(f"{path}: not a readable zip") and "CRC" in refusal
    assert grew < 8 * MiB, grew


def test_an_oversized_member_of_the_tar_gz_inside_the_zip_is_refused_naming_both(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "MAX_MEMBER_BYTES", MiB)
    path = tmp_path / "c.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("fer2013.tar.gz", zeros_tar_gz(8 * MiB))
    with pytest.raises(DataError, match=rf"^{path}:fer2013.tar.gz: 'fer2013/fer2013.csv' is 8,388,608 bytes"):
        data.read_members(path)
    alone = tmp_path / "fer2013.tar.gz"
    alone.write_bytes(zeros_tar_gz(8 * MiB))
    with pytest.raises(DataError, match=rf"^{alone}: 'fer2013/fer2013.csv' is 8,388,608 bytes"):
        data.read_members(alone)


def test_plain_files_and_folders_are_bounded_too(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "MAX_MEMBER_BYTES", 1000)
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "fer2013.csv").write_text("emotion,pixels,Usage\n" + "0," + "1 " * 1000 + ",Training\n")
    for source in (folder, folder / "fer2013.csv"):
        with pytest.raises(DataError, match=r"fer2013.csv: 'fer2013.csv' is 2,\d{3} bytes, past the limit of 1,000"):
            data.read_members(source)


def test_all_members_together_are_bounded(tmp_path, monkeypatch):
    path = kaggle_zip(tmp_path / "c.zip", *synthetic_rows())
    sizes = {i.filename: i.file_size for i in zipfile.ZipFile(path).infolist()}
    monkeypatch.setattr(data, "MAX_TOTAL_BYTES", sizes["train.csv"] + sizes["test.csv"] - 1)
    with pytest.raises(DataError, match=r"past \d[\d,]* bytes in all"):
        data.read_members(path)


def test_archives_nest_no_deeper_than_the_real_download(tmp_path):
    inner = kaggle_zip(tmp_path / "c.zip", *synthetic_rows())
    assert "fer2013.csv" in data.read_members(inner)  # the real layout: fer2013.tar.gz inside the zip
    outer = tmp_path / "outer.zip"
    with zipfile.ZipFile(outer, "w") as zf:
        zf.write(inner, "c.zip")
    with pytest.raises(DataError, match=rf"^{outer}:c.zip: 'fer2013.tar.gz' is an archive 2 levels deep"):
        data.read_members(outer)
