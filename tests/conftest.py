"""Shared fixtures: a temp work folder per test, synthetic FER-shaped data, the shared real copy if present."""
import io
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_ZIP = (REPO.parent / "shared" / "data" / "fer2013" /
              "challenges-in-representation-learning-facial-expression-recognition-challenge.zip")
needs_shared = pytest.mark.skipif(not SHARED_ZIP.exists(), reason="../shared data is absent")


@pytest.fixture(autouse=True)
def workdir(tmp_path, monkeypatch):
    """Every test writes under its own FER_WORKDIR, never into the repository."""
    monkeypatch.setenv("FER_WORKDIR", str(tmp_path / "work"))
    return tmp_path / "work"


def synthetic_rows(n_train=70, n_public=14, n_private=14, seed=0):
    """(labels, usage, images) with every class present; images carry a class-dependent brightness."""
    rng = np.random.default_rng(seed)
    usage = ["Training"] * n_train + ["PublicTest"] * n_public + ["PrivateTest"] * n_private
    labels = np.concatenate([np.arange(n) % 7 for n in (n_train, n_public, n_private)])
    images = rng.integers(0, 256, size=(len(labels), 48, 48), dtype=np.uint8)
    images[:, :8, :8] = (labels * 36)[:, None, None]
    return labels, np.array(usage), images


def pixels_text(image) -> str:
    return " ".join(map(str, image.ravel()))


def fer_csv(labels, usage, images) -> str:
    rows = [f'{l},"{pixels_text(im)}",{u}' for l, u, im in zip(labels, usage, images)]
    return "emotion,pixels,Usage\n" + "\n".join(rows) + "\n"


def kaggle_zip(path: Path, labels, usage, images, with_private_labels=True) -> Path:
    """A competition zip with all five members, laid out as Kaggle delivers it."""
    keep = np.array([with_private_labels or u != "PrivateTest" for u in usage])
    fer = fer_csv(labels[keep], usage[keep], images[keep]).encode()
    tar_buf = io.BytesIO()
    with tarfile.open(fileobj=tar_buf, mode="w:gz") as tf:
        info = tarfile.TarInfo("fer2013/fer2013.csv")
        info.size = len(fer)
        tf.addfile(info, io.BytesIO(fer))
    train = usage == "Training"
    test = ~train
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("fer2013.tar.gz", tar_buf.getvalue())
        zf.writestr("train.csv", "emotion,pixels\r\n" + "".join(
            f'{l},"{pixels_text(im)}"\r\n' for l, im in zip(labels[train], images[train])))
        zf.writestr("test.csv", "pixels\r\n" + "".join(f'"{pixels_text(im)}"\r\n' for im in images[test]))
        if with_private_labels:  # icml_face_data.csv carries every label
            zf.writestr("icml_face_data.csv", "emotion, Usage, pixels\n" + "".join(
                f"{l},{u},{pixels_text(im)}\n" for l, u, im in zip(labels, usage, images)))
        zf.writestr("example_submission.csv", "Emotion\n" + "".join("0\n" for _ in range(int(test.sum()))))
    return path
