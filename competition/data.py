"""The FER2013 dataset: parse the competition files once into a validated uint8 cache, and load it.

    python -m competition.data --from PATH     # parse a zip / tar.gz / csv / folder into data/fer2013.npz
    python -m competition.data --report        # counts per split and class, and FER2013's known quirks

Accepted inputs (`--from`): the competition zip as Kaggle delivers it, `fer2013.tar.gz`, `fer2013.csv`
(emotion,pixels,Usage), `icml_face_data.csv` (emotion, Usage, pixels: note the spaces), `train.csv`,
`test.csv`, or a folder holding any of these. The test rows are the rows of `test.csv` in file order
(PublicTest then PrivateTest, the submission order); their labels are filled in wherever a labelled file
carries them, and are -1 (unknown) otherwise, as for PrivateTest in the developers' copy.

Parsing is vectorised (one numpy pass over all pixel text), so the 300 MB csv loads in seconds. Bad input
raises DataError naming the file, the line and what to do; the cache is written atomically, so a crash
leaves either the old cache or the new one, never half of one. An input is untrusted: it is read within the
bounds below (MAX_MEMBER_BYTES, MAX_TOTAL_BYTES, MAX_NESTING), each member's size checked before it is read,
and messages quote at most errors.QUOTE_CHARS characters of it.
"""
import argparse
import hashlib
import io
import json
import re
import sys
import tarfile
import time
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from competition import CLASSES, IMAGE_SIZE, NUM_CLASSES, paths
from competition.atomic import atomic_open
from competition.errors import QUOTE_CHARS, UserError, quote, run_command
from competition.submission import example_rows

CACHE_VERSION = 1
PIXELS = IMAGE_SIZE * IMAGE_SIZE
USAGES = ("Training", "PublicTest", "PrivateTest")
NOT_PIXEL_TEXT = np.ones(256, dtype=bool)  # byte -> True unless a digit, a space or the row separator
NOT_PIXEL_TEXT[[ord(c) for c in "0123456789 \n"]] = False
KNOWN_FILES = ("fer2013.csv", "icml_face_data.csv", "train.csv", "test.csv", "example_submission.csv")
_DIGITS = re.compile(r"\d+")
# Bounds on reading an input (`--from`, or the download), well above the real files: the developers' zip
# holds fer2013.tar.gz (85 MB) whose fer2013.csv inflates to 271 MB, and test.csv (60 MB); Kaggle's full zip
# also has train.csv and icml_face_data.csv, about 0.9 GB in all. Past these the input is refused, naming the
# file, the member and its size, before memory runs out (issue #20: a 14 MB zip inflating to 3 GiB took 16.5 GB).
MAX_MEMBER_BYTES = 1 << 30  # one file read from the input: 1 GiB
MAX_TOTAL_BYTES = 2 << 30  # all files read from one input together: 2 GiB
MAX_NESTING = 1  # archives inside the input: the zip holds fer2013.tar.gz; nothing deeper is read
REAL_CSV_BYTES, REAL_TOTAL_BYTES = 270_979_535, 900_000_000  # the figures the messages compare with
HEADER_BYTES = 4096  # read of a csv's first line to recognise it (the real headers are under 30 bytes)
REBUILD = "Run `./run.sh download --force` (or `./run.sh download --from PATH --force`) to rebuild it."


class DataError(UserError):
    """Bad input: the message names the file, the line and what to do."""


@dataclass
class FerData:
    train_images: np.ndarray  # (N, 48, 48) uint8, the Training rows
    train_labels: np.ndarray  # (N,) int64, 0..6
    test_images: np.ndarray  # (M, 48, 48) uint8, test.csv order = submission order
    test_labels: np.ndarray  # (M,) int64, 0..6 or -1 where the label is unknown
    test_usage: np.ndarray  # (M,) str, PublicTest or PrivateTest
    example_submission: str | None  # the text of example_submission.csv when the download had it

    @property
    def public(self) -> np.ndarray:
        return self.test_usage == "PublicTest"

    @property
    def private(self) -> np.ndarray:
        return self.test_usage == "PrivateTest"


# ---------------------------------------------------------------- reading the input files

def read_members(source: Path, bounds: "Bounds | None" = None) -> dict[str, bytes]:
    """Return {known file name: bytes} from a zip, tar.gz, csv or folder, read within `Bounds`."""
    source, bounds = Path(source), bounds or Bounds()
    if not source.exists():
        raise DataError(f"{source}: no such file or folder. Give the competition zip, fer2013.tar.gz, "
                        f"fer2013.csv, icml_face_data.csv or a folder holding them.")
    if source.is_dir():
        members = {}
        for path in sorted(source.rglob("*")):
            if path.is_file() and _is_archive(path.name):
                members.update(read_members(path, bounds))
            elif path.is_file() and path.name in KNOWN_FILES:
                members[path.name] = _read_file(path, path.name, bounds)
        return members
    if source.name.endswith(".zip"):
        return _read_zip(source, str(source), 0, bounds)
    if source.name.endswith((".tar.gz", ".tgz")):
        with open(source, "rb") as f:
            return _read_tar(f, str(source), 0, bounds)
    if source.name.endswith(".csv"):
        name = source.name if source.name in KNOWN_FILES else _guess_csv_name(source)
        return {name: _read_file(source, name, bounds)}
    raise DataError(f"{source}: unknown kind of file; expected .zip, .tar.gz, .csv or a folder.")


class Bounds:
    """What one --from input may make us read: each file at most MAX_MEMBER_BYTES (checked on its declared
    size before reading, and the read itself never takes more than it declared + 1 byte, so a lying header
    cannot blow it up), all of them together at most MAX_TOTAL_BYTES, archives at most MAX_NESTING deep."""

    def __init__(self):
        self.total = 0

    @staticmethod
    def check_size(declared: int, where: str, member: str) -> None:
        if declared > MAX_MEMBER_BYTES:
            raise DataError(f"{where}: {quote(member)} is {declared:,} bytes, past the limit of {MAX_MEMBER_BYTES:,} "
                            f"bytes on one file read from the input (the largest real one, fer2013.csv, is "
                            f"{REAL_CSV_BYTES:,}). This is not the competition download: check the file.")

    def read(self, f, declared: int, where: str, member: str) -> bytes:
        self.check_size(declared, where, member)
        if self.total + declared > MAX_TOTAL_BYTES:
            raise DataError(f"{where}: {quote(member)} ({declared:,} bytes) takes what is read from this input "
                            f"past {MAX_TOTAL_BYTES:,} bytes in all (the whole competition download holds about "
                            f"{REAL_TOTAL_BYTES:,}). This is not the competition download: check the file.")
        blob = f.read(declared + 1)  # bounded whatever the stream really holds
        if len(blob) > declared:
            raise DataError(f"{where}: {quote(member)} holds more than the {declared:,} bytes its archive declares "
                            f"(damaged or crafted); refused. Download it again.")
        self.total += len(blob)
        return blob

    def nest(self, depth: int, where: str, member: str) -> int:
        if depth + 1 > MAX_NESTING:
            raise DataError(f"{where}: {quote(member)} is an archive {depth + 1} levels deep; the competition "
                            f"download nests at most {MAX_NESTING} (fer2013.tar.gz inside the zip). Extract the "
                            f"outer archive and give --from the inner one.")
        return depth + 1


def _is_archive(name: str) -> bool:
    return name.endswith((".zip", ".tar.gz", ".tgz"))


def _read_file(path: Path, name: str, bounds: Bounds) -> bytes:
    with open(path, "rb") as f:
        return bounds.read(f, path.stat().st_size, str(path), name)


def _read_zip(source, where: str, depth: int, bounds: Bounds) -> dict[str, bytes]:
    """Known members of a zip (a path, or a file object for a zip inside an archive); reading checks each CRC.
    A member's declared size is checked before it is read; a nested tar.gz is streamed, never held whole."""
    try:
        with zipfile.ZipFile(source) as zf:
            members = {}
            for info in zf.infolist():
                name, inner = Path(info.filename).name, f"{where}:{info.filename}"
                if name.endswith((".tar.gz", ".tgz")):
                    bounds.check_size(info.file_size, where, info.filename)
                    with zf.open(info) as f:
                        members.update(_read_tar(f, inner, bounds.nest(depth, where, info.filename), bounds))
                elif name.endswith(".zip"):
                    level = bounds.nest(depth, where, info.filename)
                    with zf.open(info) as f:
                        blob = bounds.read(f, info.file_size, where, info.filename)
                    members.update(_read_zip(io.BytesIO(blob), inner, level, bounds))
                elif name in KNOWN_FILES:
                    with zf.open(info) as f:
                        members[name] = bounds.read(f, info.file_size, where, info.filename)
            return members
    except (zipfile.BadZipFile, EOFError, OSError, zlib.error) as err:
        raise DataError(f"{where}: not a readable zip ({quote(str(err))}). The download may be truncated or "
                        f"corrupt: run `./run.sh download` again.") from err


def _read_tar(fileobj, where: str, depth: int, bounds: Bounds) -> dict[str, bytes]:
    """Known members of a tar(.gz), streamed (mode r|*): each member's declared size is checked before it is
    read, and nothing but the known members is held in memory."""
    try:
        members = {}
        with tarfile.open(fileobj=fileobj, mode="r|*") as tf:
            for m in tf:
                name = Path(m.name).name
                if m.isfile() and _is_archive(name):
                    bounds.nest(depth, where, m.name)  # the download has no archive inside its tar.gz
                elif m.isfile() and name in KNOWN_FILES:
                    members[name] = bounds.read(tf.extractfile(m), m.size, where, m.name)
        return members
    except (tarfile.TarError, EOFError, OSError, zlib.error) as err:
        raise DataError(f"{where}: not a readable tar.gz ({quote(str(err))}). Download it again.") from err


def _guess_csv_name(path: Path) -> str:
    with open(path, "rb") as f:
        header = [c.strip() for c in f.readline(HEADER_BYTES).decode("utf-8", "replace").strip().split(",")]
    if header == ["emotion", "Usage", "pixels"]:
        return "icml_face_data.csv"
    if header == ["emotion", "pixels", "Usage"]:
        return "fer2013.csv"
    if header == ["emotion", "pixels"]:
        return "train.csv"
    if header == ["pixels"]:
        return "test.csv"
    raise DataError(f"{path}: unrecognised header {quote(header)}. Expected the columns of fer2013.csv "
                    f"(emotion,pixels,Usage), icml_face_data.csv, train.csv or test.csv.")


# ---------------------------------------------------------------- parsing and validating

def read_table(blob: bytes, name: str, columns: tuple[str, ...]) -> pd.DataFrame:
    """Read a csv as strings, with stripped column names; check the columns are there."""
    try:
        df = pd.read_csv(io.BytesIO(blob), dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError as err:
        raise DataError(f"{name}: the file is empty. Download it again.") from err
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise DataError(f"{name}: not a readable csv ({quote(str(err))}).") from err
    df.columns = [c.strip() for c in df.columns]
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DataError(f"{name}: missing column(s) {missing}; found {quote(list(df.columns))}. "
                        f"Expected {list(columns)}.")
    if len(df) == 0:
        raise DataError(f"{name}: no data rows below the header.")
    return df


def _line(row: int) -> str:
    return f"line {row + 2} (data row {row + 1})"


def parse_pixels(texts: pd.Series, name: str) -> np.ndarray:
    """Space-separated pixel strings -> (N, 48, 48) uint8, checked in one vectorised pass."""
    texts = texts.str.strip()
    lengths = texts.str.len().to_numpy()
    empty = np.flatnonzero(lengths == 0)
    if empty.size:
        raise DataError(f"{name}: {_line(int(empty[0]))}: no pixel values. Fix or remove that row.")
    joined = "\n".join(texts.tolist())
    raw = np.frombuffer(joined.encode("utf-8"), dtype=np.uint8)
    starts = np.concatenate([[0], np.cumsum(lengths + 1)[:-1]])  # byte offset of each row
    row_at = lambda pos: int(np.searchsorted(starts, pos, side="right") - 1)
    is_space = raw == 32
    bad = np.flatnonzero(NOT_PIXEL_TEXT[raw])
    if bad.size:
        raise DataError(f"{name}: {_line(row_at(bad[0]))}: pixel text holds a non-integer character "
                        f"{chr(raw[bad[0]])!r}. Pixels must be 2304 integers 0..255 separated by spaces.")
    doubled = np.flatnonzero(is_space[1:] & is_space[:-1])
    if doubled.size:
        raise DataError(f"{name}: {_line(row_at(doubled[0]))}: two spaces in a row (an empty pixel value).")
    tokens = np.array([t.count(" ") + 1 for t in texts.tolist()])  # str.count is C speed, ~0.1 s in all
    wrong = np.flatnonzero(tokens != PIXELS)
    if wrong.size:
        row = int(wrong[0])
        raise DataError(f"{name}: {_line(row)}: {int(tokens[row])} pixel values, expected {PIXELS} (48x48). "
                        f"Fix or remove that row.")
    is_digit = raw >= 48  # only digits, spaces and newlines are left
    long = is_digit[:-3] & is_digit[1:-2]
    long &= is_digit[2:-1]
    long &= is_digit[3:]
    long = np.flatnonzero(long)  # where a run of 4+ digits is found: int16 could overflow there ("99999" -> 159)
    for start in long[(long == 0) | ~is_digit[long - 1]]:  # the first digit of each long value
        value = _DIGITS.match(joined, int(start)).group()
        digits = value.lstrip("0")  # leading zeros ("0255") are harmless
        if len(digits) > 3 or int(digits or "0") > 255:  # (int() of thousands of digits would raise)
            shown = value if len(value) <= QUOTE_CHARS else quote(value)
            raise DataError(f"{name}: {_line(row_at(start))}: pixel value {shown} is outside 0..255.")
    values = np.fromstring(joined, dtype=np.int16, sep=" ")  # whitespace in sep also matches the newlines
    over = np.flatnonzero(values > 255)
    if over.size:
        raise DataError(f"{name}: {_line(int(over[0] // PIXELS))}: pixel value {values[over[0]]} is outside 0..255.")
    return values.astype(np.uint8).reshape(-1, IMAGE_SIZE, IMAGE_SIZE)


def parse_labels(texts: pd.Series, name: str) -> np.ndarray:
    labels = pd.to_numeric(texts.str.strip(), errors="coerce")
    bad = np.flatnonzero(labels.isna().to_numpy() | ~labels.isin(range(NUM_CLASSES)).to_numpy())
    if bad.size:
        row = int(bad[0])
        raise DataError(f"{name}: {_line(row)}: emotion {quote(texts.iloc[row])} is not an integer 0..6 "
                        f"({', '.join(f'{i} {c}' for i, c in enumerate(CLASSES))}).")
    return labels.to_numpy().astype(np.int64)


def parse_usage(texts: pd.Series, name: str) -> np.ndarray:
    usage = texts.str.strip().to_numpy().astype(str)
    bad = np.flatnonzero(~np.isin(usage, USAGES))
    if bad.size:
        raise DataError(f"{name}: {_line(int(bad[0]))}: Usage {quote(usage[bad[0]])} is not one of {list(USAGES)}.")
    return usage


def parse_labelled(members: dict[str, bytes]):
    """(name, images, labels, usage) from the most complete labelled file, or None."""
    for name in ("icml_face_data.csv", "fer2013.csv"):
        if name in members:
            df = read_table(members[name], name, ("emotion", "pixels", "Usage"))
            return (name, parse_pixels(df["pixels"], name), parse_labels(df["emotion"], name),
                    parse_usage(df["Usage"], name))
    if "train.csv" in members:
        df = read_table(members["train.csv"], "train.csv", ("emotion", "pixels"))
        images = parse_pixels(df["pixels"], "train.csv")
        return "train.csv", images, parse_labels(df["emotion"], "train.csv"), np.full(len(df), "Training")
    return None


def build_dataset(members: dict[str, bytes]) -> FerData:
    labelled = parse_labelled(members)
    if labelled is None:
        raise DataError(f"no labelled file found (had: {sorted(members) or 'nothing'}). Need fer2013.csv, "
                        f"fer2013.tar.gz, icml_face_data.csv or train.csv.")
    name, images, labels, usage = labelled
    train = usage == "Training"
    public, private = usage == "PublicTest", usage == "PrivateTest"
    if "test.csv" in members:
        test_images = parse_pixels(read_table(members["test.csv"], "test.csv", ("pixels",))["pixels"], "test.csv")
    else:
        test_images = np.concatenate([images[public], images[private]])
    n_public = int(public.sum()) if public.any() else len(test_images) // 2
    test_labels = np.full(len(test_images), -1, dtype=np.int64)
    for known, start in ((public, 0), (private, n_public)):
        if known.any():
            stop = start + int(known.sum())
            if stop > len(test_images) or not np.array_equal(test_images[start:stop], images[known]):
                raise DataError(f"test.csv: rows {start + 1}..{stop} do not match the {int(known.sum())} "
                                f"{'PublicTest' if start == 0 else 'PrivateTest'} rows of {name} in order. "
                                f"Were the files taken from different downloads?")
            test_labels[start:stop] = labels[known]
    test_usage = np.where(np.arange(len(test_images)) < n_public, "PublicTest", "PrivateTest")
    example = members.get("example_submission.csv")
    example = example.decode("utf-8", "replace") if example is not None else None
    check_test_rows(len(test_images), example, "test.csv" if "test.csv" in members else name)
    return FerData(images[train], labels[train], test_images, test_labels, test_usage, example)


def check_test_rows(n_test: int, example: str | None, where: str) -> None:
    """The test set is what a submission answers: never empty, and as long as example_submission.csv."""
    if n_test == 0:
        raise DataError(f"{where}: no test rows (test.csv is missing, and no PublicTest or PrivateTest rows). "
                        f"A submission needs them: get the complete competition zip with "
                        f"`./run.sh download --force`, or give --from a folder that also holds test.csv.")
    expected = example_rows(example) if example is not None else None
    if expected is not None and n_test != expected:
        raise DataError(f"{where}: {n_test} test rows, but example_submission.csv has {expected}: the files come "
                        f"from different or incomplete downloads. Run `./run.sh download --force`.")


# ---------------------------------------------------------------- the cache

def fingerprint(source: Path) -> str:
    """Names, sizes and mtimes of the input: a rerun on the same input does nothing."""
    source = Path(source).resolve()
    files = sorted(source.rglob("*")) if source.is_dir() else [source]
    stats = [(str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files if f.is_file()]
    return hashlib.sha1(json.dumps([CACHE_VERSION, stats]).encode()).hexdigest()


def save_cache(data: FerData, path: Path, source_fingerprint: str) -> None:
    meta = {"version": CACHE_VERSION, "fingerprint": source_fingerprint,
            "example_submission": data.example_submission}
    with atomic_open(path) as f:
        np.savez(f, train_images=data.train_images, train_labels=data.train_labels,
                 test_images=data.test_images, test_labels=data.test_labels,
                 test_usage=data.test_usage, meta=np.array(json.dumps(meta)))


_UNREADABLE = (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile, zlib.error)  # a corrupt npz raises these


def cache_meta(path: Path) -> dict | None:
    """The cache's metadata; None if it cannot be read (a corrupt cache is then rebuilt, never an error)."""
    try:
        with np.load(path) as z:
            return json.loads(str(z["meta"]))
    except _UNREADABLE:
        return None


def load_dataset(path: Path | None = None) -> FerData:
    path = Path(path or paths.cache_path())
    if not path.exists():
        raise DataError(f"{path}: no prepared dataset. Run `./run.sh download` "
                        f"(or `./run.sh download --from PATH`) first.")
    try:
        with np.load(path) as z:
            meta = json.loads(str(z["meta"]))
            data = FerData(z["train_images"], z["train_labels"], z["test_images"], z["test_labels"],
                           z["test_usage"].astype(str), meta.get("example_submission"))
    except _UNREADABLE as err:
        raise DataError(f"{path}: the prepared dataset is corrupt ({type(err).__name__}: {quote(str(err))}). {REBUILD}") from err
    check_test_rows(len(data.test_labels), data.example_submission, str(path))
    return data


def prepare(source: Path, cache: Path | None = None, force: bool = False) -> FerData:
    """Parse `source` into the cache unless the cache already holds exactly this input."""
    cache = Path(cache or paths.cache_path())
    fp = fingerprint(source)
    meta = cache_meta(cache) if cache.exists() else None
    if not force and meta and meta.get("fingerprint") == fp:
        print(f"{cache}: up to date with {source}; nothing to do.")
        return load_dataset(cache)
    start = time.perf_counter()
    data = build_dataset(read_members(source))
    save_cache(data, cache, fp)
    print(f"parsed {source} in {time.perf_counter() - start:.1f} s -> {cache}")
    print(summary(data))
    return data


# ---------------------------------------------------------------- the report

def class_counts(labels: np.ndarray) -> str:
    counts = np.bincount(labels[labels >= 0], minlength=NUM_CLASSES)
    return " ".join(f"{c[:3]}={n}" for c, n in zip(CLASSES, counts))


def summary(data: FerData) -> str:
    lines = [f"Training     {len(data.train_labels):6d} rows  {class_counts(data.train_labels)}"]
    for usage in ("PublicTest", "PrivateTest"):
        mask = data.test_usage == usage
        known = int((data.test_labels[mask] >= 0).sum())
        lines.append(f"{usage:12s} {int(mask.sum()):6d} rows  labels known: {known}"
                     + (f"  {class_counts(data.test_labels[mask])}" if known else ""))
    return "\n".join(lines)


def duplicate_groups(images: np.ndarray) -> np.ndarray:
    """Group id per image; byte-identical images share an id."""
    flat = np.ascontiguousarray(images.reshape(len(images), -1))
    _, inverse = np.unique(flat.view(np.dtype((np.void, flat.shape[1]))).ravel(), return_inverse=True)
    return inverse.ravel()


def quirks(data: FerData) -> dict:
    images = np.concatenate([data.train_images, data.test_images])
    labels = np.concatenate([data.train_labels, data.test_labels])
    split = np.concatenate([np.full(len(data.train_labels), "Training"), data.test_usage])
    black = images.reshape(len(images), -1).max(axis=1) == 0
    groups = duplicate_groups(images)
    sizes = np.bincount(groups)
    dup = sizes[groups] > 1
    conflicting = sum(len(set(labels[(groups == g) & (labels >= 0)])) > 1 for g in np.flatnonzero(sizes > 1))
    train_groups = set(groups[split == "Training"])
    in_train = np.array([g in train_groups for g in groups])
    return {"all_black": {s: int((black & (split == s)).sum()) for s in USAGES},
            "duplicate_groups": int((sizes > 1).sum()), "duplicate_rows": int(dup.sum()),
            "conflicting_label_groups": int(conflicting),
            "test_in_training": {s: int((in_train & (split == s)).sum()) for s in ("PublicTest", "PrivateTest")}}


def report(data: FerData) -> str:
    q = quirks(data)
    return "\n".join([summary(data), "", "Known FER2013 quirks:",
                      f"  all-black images: {q['all_black']}",
                      f"  byte-identical groups: {q['duplicate_groups']} covering {q['duplicate_rows']} rows "
                      f"({q['conflicting_label_groups']} with conflicting labels)",
                      f"  test images also in Training: {q['test_in_training']}"])


def _main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--from", dest="source", type=Path, help="file or folder to parse into the cache")
    parser.add_argument("--force", action="store_true", help="parse again even if the cache is up to date")
    parser.add_argument("--report", action="store_true", help="print counts and FER2013's quirks")
    args = parser.parse_args(argv)
    data = prepare(args.source, force=args.force) if args.source else load_dataset()
    if args.report:
        print(report(data))
    return 0


def main(argv=None) -> int:
    return run_command(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
