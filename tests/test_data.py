"""The dataset cache: every accepted input form, each kind of bad input, atomic and idempotent writes."""
import io
import tarfile
import zipfile

import numpy as np
import pytest

from competition import data, paths
from competition.data import DataError
from tests.conftest import SHARED_ZIP, fer_csv, kaggle_zip, needs_shared, pixels_text, synthetic_rows


@pytest.fixture
def rows():
    return synthetic_rows()


def check(fd, labels, usage, images, private_known=True):
    train = usage == "Training"
    assert np.array_equal(fd.train_images, images[train]) and np.array_equal(fd.train_labels, labels[train])
    assert np.array_equal(fd.test_images, images[~train])
    assert list(fd.test_usage) == list(usage[~train])
    expected = labels[~train].copy()
    if not private_known:
        expected[usage[~train] == "PrivateTest"] = -1
    assert np.array_equal(fd.test_labels, expected)


def test_competition_zip_with_all_five_members(tmp_path, rows):
    fd = data.prepare(kaggle_zip(tmp_path / "c.zip", *rows))
    check(fd, *rows)
    assert fd.example_submission.startswith("Emotion\n")
    check(data.load_dataset(), *rows)


def test_zip_without_private_labels_leaves_them_unknown(tmp_path, rows):
    fd = data.prepare(kaggle_zip(tmp_path / "c.zip", *rows, with_private_labels=False))
    check(fd, *rows, private_known=False)
    assert (fd.test_labels[fd.private] == -1).all() and (fd.test_labels[fd.public] >= 0).all()


@pytest.mark.parametrize("form", ["tar", "fer_csv", "icml_csv", "folder"])
def test_other_input_forms(tmp_path, rows, form):
    labels, usage, images = rows
    fer = fer_csv(*rows)
    if form == "tar":
        source = tmp_path / "fer2013.tar.gz"
        with tarfile.open(source, "w:gz") as tf:
            info = tarfile.TarInfo("fer2013/fer2013.csv")
            info.size = len(fer.encode())
            tf.addfile(info, io.BytesIO(fer.encode()))
    elif form == "fer_csv":
        source = tmp_path / "fer2013.csv"
        source.write_text(fer)
    elif form == "icml_csv":
        source = tmp_path / "icml_face_data.csv"
        source.write_text("emotion, Usage, pixels\n" + "".join(
            f"{l},{u},{pixels_text(im)}\n" for l, u, im in zip(*rows)))
    else:
        source = tmp_path / "unzipped"
        with zipfile.ZipFile(kaggle_zip(tmp_path / "c.zip", *rows)) as zf:
            zf.extractall(source)
    check(data.prepare(source), *rows)


def test_rerun_on_same_input_does_nothing(tmp_path, rows, capsys):
    source = kaggle_zip(tmp_path / "c.zip", *rows)
    data.prepare(source)
    mtime = paths.cache_path().stat().st_mtime_ns
    data.prepare(source)
    assert "up to date" in capsys.readouterr().out
    assert paths.cache_path().stat().st_mtime_ns == mtime


def bad_csv(tmp_path, rows, edit):
    lines = fer_csv(*rows).splitlines()
    lines = edit(lines)
    path = tmp_path / "fer2013.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def replace_line(lines, i, new_line):
    return lines[:i] + [new_line] + lines[i + 1:]


def edit_pixels(line, edit):
    label, pixels, usage = line.split(",")
    return f"{label},{edit(pixels.strip(chr(34)))!r},{usage}".replace("'", '"')


BAD = {  # case: (edit of the csv lines, where the error must point); line 1 is the header
    "short row": (lambda L: replace_line(L, 3, edit_pixels(L[3], lambda p: p.rsplit(" ", 1)[0])), "line 4"),
    "non-integer": (lambda L: replace_line(L, 5, edit_pixels(L[5], lambda p: "1.5" + p[1:])), "line 6"),
    "out of range": (lambda L: replace_line(L, 2, edit_pixels(L[2], lambda p: "300 " + p.split(" ", 1)[1])),
                     "line 3"),
    "label": (lambda L: replace_line(L, 7, "9" + L[7][1:]), "line 8"),
    "usage": (lambda L: replace_line(L, 9, L[9].rsplit(",", 1)[0] + ",Validation"), "line 10"),
    "missing column": (lambda L: ["emotion,pixels,Split"] + L[1:], "missing column"),
    "empty file": (lambda L: [], "empty"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_input_names_file_and_line_and_writes_nothing(tmp_path, rows, case):
    edit, where = BAD[case]
    path = bad_csv(tmp_path, rows, edit)
    with pytest.raises(DataError) as err:
        data.prepare(path)
    assert "fer2013.csv" in str(err.value) and where in str(err.value)
    assert not paths.cache_path().exists()
    assert not list(paths.cache_path().parent.glob(".*.tmp")) if paths.cache_path().parent.exists() else True


def test_wrong_pixel_count_is_reported_with_the_count(tmp_path, rows):
    path = bad_csv(tmp_path, rows, lambda L: L[:3] + [L[3].replace('"', '"7 ', 1)] + L[4:])
    with pytest.raises(DataError, match=r"line 4 .*2305 pixel values, expected 2304"):
        data.prepare(path)


@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
def test_corrupt_archives(tmp_path, rows, kind):
    good = kaggle_zip(tmp_path / "c.zip", *rows).read_bytes()
    path = tmp_path / f"bad.{kind}"
    path.write_bytes(good[: len(good) // 2])
    with pytest.raises(DataError, match=r"(truncated|not a readable)"):
        data.prepare(path)


def test_a_failed_rewrite_keeps_the_old_cache(tmp_path, rows, monkeypatch):
    data.prepare(kaggle_zip(tmp_path / "c.zip", *rows))
    before = paths.cache_path().read_bytes()

    def crash(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", crash)
    with pytest.raises(KeyboardInterrupt):
        data.prepare(kaggle_zip(tmp_path / "d.zip", *synthetic_rows(seed=1)))
    assert paths.cache_path().read_bytes() == before
    assert not list(paths.cache_path().parent.glob(".*.tmp"))


def test_quirks_finds_black_images_and_duplicates(rows):
    labels, usage, images = rows
    images = images.copy()
    images[0] = 0
    images[1] = images[2]  # a duplicate pair inside Training (labels 1 and 2: conflicting)
    images[80] = images[5]  # a PublicTest image that also occurs in Training
    fd = data.build_dataset({"fer2013.csv": fer_csv(labels, usage, images).encode()})
    q = data.quirks(fd)
    assert q["all_black"] == {"Training": 1, "PublicTest": 0, "PrivateTest": 0}
    assert q["duplicate_groups"] == 2 and q["duplicate_rows"] == 4
    assert q["conflicting_label_groups"] == 2 - (labels[80] == labels[5])
    assert q["test_in_training"] == {"PublicTest": 1, "PrivateTest": 0}


@needs_shared
def test_shared_copy_of_the_real_download():
    fd = data.prepare(SHARED_ZIP)
    assert len(fd.train_labels) == 28709
    assert np.bincount(fd.train_labels).tolist() == [3995, 436, 4097, 7215, 4830, 3171, 4965]
    assert len(fd.test_labels) == 7178 and fd.public.sum() == 3589 and fd.private.sum() == 3589
    assert (fd.test_labels[:3589] >= 0).all() and (fd.test_labels[3589:] == -1).all()
    assert np.bincount(fd.test_labels[:3589]).tolist() == [467, 56, 496, 895, 653, 415, 607]
    q = data.quirks(fd)
    assert q["all_black"]["Training"] == 11 and q["duplicate_groups"] == 1516 and q["duplicate_rows"] == 3369
    assert q["test_in_training"] == {"PublicTest": 280, "PrivateTest": 288}


# ---------------------------------------------------------------- the test set, pinned

def test_train_csv_alone_is_refused_for_lack_of_test_rows(tmp_path, rows, capsys):
    labels, usage, images = rows
    train = usage == "Training"
    path = tmp_path / "train.csv"
    path.write_text("emotion,pixels\n" + "".join(f'{l},"{pixels_text(im)}"\n'
                                                 for l, im in zip(labels[train], images[train])))
    with pytest.raises(DataError, match=r"^train.csv: no test rows .*test.csv"):
        data.prepare(path)
    assert data.main(["--from", str(path)]) == 2
    assert capsys.readouterr().err.startswith("error: train.csv: no test rows")
    assert not paths.cache_path().exists()


@pytest.mark.parametrize("change", [-1, +1])
def test_test_rows_must_equal_the_example_submission_rows(tmp_path, rows, change):
    source = tmp_path / "unzipped"
    with zipfile.ZipFile(kaggle_zip(tmp_path / "c.zip", *rows)) as zf:
        zf.extractall(source)
    example = source / "example_submission.csv"
    lines = example.read_text().splitlines(keepends=True)
    example.write_text("".join(lines[:change] if change < 0 else lines + ["0\n"]))
    n_test = int((rows[1] != "Training").sum())
    with pytest.raises(DataError, match=rf"^test.csv: {n_test} test rows, but example_submission.csv has "
                                        rf"{n_test + change}"):
        data.prepare(source)
    assert not paths.cache_path().exists()


# ---------------------------------------------------------------- pixel values that overflow int16

@pytest.mark.parametrize("value", ["99999", "70000", "32768", "1000", "000000000000000000000000000000256",
                                   "123456789012345678901234567890"])
def test_pixel_values_too_big_for_int16_are_refused(tmp_path, rows, value):
    path = bad_csv(tmp_path, rows, lambda L: replace_line(L, 4, edit_pixels(L[4], lambda p: p.rsplit(" ", 1)[0]
                                                                             + " " + value)))
    with pytest.raises(DataError, match=rf"^fer2013.csv: line 5 \(data row 4\): pixel value {value} is outside "
                                        rf"0\.\.255"):
        data.prepare(path)
    assert not paths.cache_path().exists()


def test_leading_zeros_in_pixel_values_are_harmless(tmp_path, rows):
    labels, usage, images = rows
    images = images.copy()
    images[3, 0, 0] = 255
    path = bad_csv(tmp_path, (labels, usage, images), lambda L: replace_line(L, 4, edit_pixels(
        L[4], lambda p: "000255 " + p.split(" ", 1)[1])))
    check(data.prepare(path), labels, usage, images)


# ---------------------------------------------------------------- a corrupt cache

@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_corrupt_cache_is_named_on_load_and_rebuilt_with_force(tmp_path, rows, damage, capsys):
    source = kaggle_zip(tmp_path / "c.zip", *rows)
    data.prepare(source)
    cache = paths.cache_path()
    good = cache.read_bytes()
    cache.write_bytes(b"\x00garbage, not a zip\xff" * 100 if damage == "garbage" else good[: len(good) // 2])
    with pytest.raises(DataError, match=rf"^{cache}: the prepared dataset is corrupt .*"
                                        r"Run `./run.sh download --force`"):
        data.load_dataset()
    assert data.main(["--report"]) == 2
    assert capsys.readouterr().err.startswith(f"error: {cache}: the prepared dataset is corrupt")
    check(data.prepare(source, force=True), *rows)
    check(data.load_dataset(), *rows)
