"""A run's files on disk, with one owner: the fold folder's layout, k, which folds are finished, the
members' fold logits, and the provenance that says whether a fold belongs to the current data and split.

A member is one trained variant of an architecture, in its own folder: `bn_cnn` (seed 0), `bn_cnn.s1` (seed 1),
`bn_cnn.student` (trained against a teacher's soft targets), `bn_cnn.mixup.s2` (a tag and a seed); config.json
names the architecture (`Member`, `arch_of`). Each member has k folds and, optionally, a refit: the same
recipe trained on every Training row and stopped at the median best epoch of its folds (`refit_epochs`). A
refit has no OOF predictions, only test logits. Another seed with a refit and no folds of its own (`bn_cnn.s1/refit`
only: `--refit-seeds`) is a refit-only seed: an extra refit of its seed-0 member, mixed into that member's test
logits with its own refit (`refits_of`).

    folds/<member>/fold<k>/   (and folds/<member>/refit/, without oof.npz)
      config.json  written once, at the first start: the recipe, the seed, and the provenance (folds.csv hash,
                   dataset fingerprint, k, augmentation path, git commit, device, package versions)
      log.csv      epoch, train_loss, train_acc, val_loss, val_acc, lr, seconds, images_per_s
      state.pt     the full training state at the last checkpoint (model, optimizer, scheduler, EMA, the best
                   epoch's weights, progress): what a killed run resumes from
      best.pt      the best epoch's weights, self-describing (model name and kwargs inside)
      oof.npz      rows, labels, logits (TTA), logits_plain: the held-out fold's predictions
      test.npz     logits (TTA), logits_plain: every test row, in test.csv order
      done.json    written last; a fold with done.json (and the same provenance) is finished
      lock         held (fcntl) by the one process that trains this fold

Every reader of a finished fold or refit goes through `check_provenance` (load_member, refit_test_logits,
refit_epochs): a fold whose config.json records another dataset fingerprint, folds.csv hash or k than the
current ones (`current_provenance`) is refused by name, --allow-missing or not. A teacher (submissions/teacher.npz)
records the same three and its members; load_teacher refuses one made from other data or folds.

    from competition import artifacts
    k = artifacts.fold_count(); artifacts.finished_folds("bn_cnn", k); artifacts.load_member("bn_cnn")
"""
import csv
import hashlib
import io
import json
import pickle
import platform
import re
import subprocess
import zipfile
from dataclasses import asdict, dataclass, field, fields
from functools import cache
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from competition import folds, paths
from competition.atomic import atomic_open, atomic_write_text, file_lock
from competition.data import DataError, FerData, load_dataset
from competition.errors import SettingsError
from competition.recipes import StepSettings

CONFIG, LOG, STATE, BEST = "config.json", "log.csv", "state.pt", "best.pt"
TEACHER = "teacher.npz"  # submissions/teacher.npz: the last ensemble's OOF probabilities, a student's soft targets
OOF, TEST, DONE, LOCK = "oof.npz", "test.npz", "done.json", "lock"
LEADERBOARD, LATEST = "leaderboard.csv", "submission.csv"  # submissions/: every ensemble's row; the latest submission
LEADERBOARD_COLUMNS = ("file", "models", "weights", "average", "oof", "public", "private", "time")
LOG_COLUMNS = ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds", "images_per_s"]
DATA_KEYS = ("k", "folds_sha1", "data_sha1")  # the data and split a fold was trained on (current_provenance)
PROVENANCE_KEYS = (*DATA_KEYS, "aug", "teacher")  # a fold belongs to a run only if these match
_UNREADABLE = (OSError, KeyError, ValueError, EOFError, RuntimeError)  # what a truncated npz or pt raises


STUDENT = "student"  # the tag of a member trained against a teacher's soft targets (train_folds --teacher)


@dataclass(frozen=True)
class Member:
    """One trained variant of an architecture: its folder under folds/ is `name` (arch, then the tag, then
    s<seed> for seeds other than 0: `bn_cnn`, `bn_cnn.s1`, `bn_cnn.student`, `bn_cnn.mixup.s2`)."""
    arch: str
    seed: int = 0
    tag: str = ""

    @property
    def name(self) -> str:
        return ".".join([self.arch] + ([self.tag] if self.tag else []) + ([f"s{self.seed}"] if self.seed else []))

    @classmethod
    def parse(cls, name: str) -> "Member":
        """The reverse of `name`: a last part s<digits> is the seed; a middle part the tag. An architecture
        name with a dot in it (a timm name like `vit_base_patch16_224.augreg_in21k`) reads as arch + tag:
        the folder is the same either way, and config.json names the architecture (`arch_of`)."""
        parts = name.split(".")
        seed = int(parts.pop()[1:]) if len(parts) > 1 and re.fullmatch(r"s\d+", parts[-1]) else 0
        return cls(parts[0], seed, ".".join(parts[1:]))

    @property
    def seed_base(self) -> "Member | None":
        """The member this is another seed of (`bn_cnn.s1` -> `bn_cnn`); None for a seed-0 member."""
        return Member(self.arch, 0, self.tag) if self.seed else None



@dataclass(frozen=True)
class FoldFiles:
    """The paths of one (member, fold); fold None is the member's refit on every Training row."""
    member: str
    fold: int | None

    @property
    def dir(self) -> Path:
        return paths.fold_dir(self.member, self.fold)

    def __truediv__(self, name: str) -> Path:
        return self.dir / name

    def is_done(self) -> bool:
        return (self / DONE).exists()

    def finished_at(self) -> float:
        """When done.json was written (time.time())."""
        return (self / DONE).stat().st_mtime

    @property
    def what(self) -> str:
        return f"{self.member} " + ("refit" if self.fold is None else f"fold {self.fold}")

    def lock(self):
        """Exclusive for the whole fold run; a second process gets LockedError naming the holder."""
        return file_lock(self / LOCK, blocking=False, what=self.what)

    def remove_stale_temps(self) -> None:
        """Temp files left by a SIGKILL during an atomic write (call only while holding the lock)."""
        for stale in self.dir.glob(".*.tmp"):
            stale.unlink()


# ---------------------------------------------------------------- k and the split

def fold_count() -> int:
    """k, the number of folds in folds/folds.csv (read once per version of the file)."""
    path = paths.folds_csv()
    if not path.exists():
        raise DataError(f"{path}: no folds file. Run `./run.sh folds`, then train, first.")
    return _fold_count(str(path), path.stat().st_mtime_ns)


@cache
def _fold_count(path: str, mtime_ns: int) -> int:
    return folds.fold_count(Path(path))  # checked: every fold 0..k-1 has rows


@cache
def _sha1_of_file(path: str, mtime_ns: int) -> str:
    return hashlib.sha1(Path(path).read_bytes()).hexdigest()


def folds_sha1() -> str:
    path = paths.folds_csv()
    return _sha1_of_file(str(path), path.stat().st_mtime_ns)


def data_sha1(train_images: np.ndarray, train_labels: np.ndarray, test_images: np.ndarray) -> str:
    """A fingerprint of the data a fold is trained and scored on (about 0.2 s for all of FER2013)."""
    h = hashlib.sha1()
    for array in (train_labels.astype(np.int64), train_images, test_images):
        h.update(np.ascontiguousarray(array).tobytes())
    return h.hexdigest()


@cache
def _dataset_sha1(path: str, mtime_ns: int) -> str:
    data = load_dataset(Path(path))
    return data_sha1(data.train_images, data.train_labels, data.test_images)


def current_provenance() -> dict:
    """What a fold, refit or teacher must have recorded to belong to the data on disk now: k, the folds.csv
    hash and the dataset's fingerprint (each computed once per version of its file)."""
    cache = paths.cache_path()
    if not cache.exists():
        load_dataset(cache)  # raises: no prepared dataset, run ./run.sh download
    return {"k": fold_count(), "folds_sha1": folds_sha1(),
            "data_sha1": _dataset_sha1(str(cache), cache.stat().st_mtime_ns)}


PROVENANCE_WHAT = {"k": "the number of folds", "folds_sha1": "folds/folds.csv", "data_sha1": "the dataset",
                   "aug": "the augmentation path"}


def stale_keys(recorded: dict) -> list[str]:
    """The current_provenance keys on which `recorded` differs from the data and folds on disk now."""
    now = current_provenance()
    return [key for key in now if recorded.get(key) != now[key]]


def check_provenance(files: FoldFiles) -> None:
    """A finished fold or refit is read only if its config.json records the current dataset fingerprint,
    folds.csv hash and k: logits trained on other data or another split would leak the held-out rows'
    labels (a Training row fold 0 trained on may be held out now) or score the wrong rows."""
    recorded = (read_config(files) or RunConfig()).provenance
    differ = stale_keys(recorded)
    if differ:
        named = ", ".join(PROVENANCE_WHAT[key] + (" (not recorded)" if key not in recorded else "") for key in differ)
        raise SettingsError(f"{files.what} ({files.dir}) was trained on other data than the current: {named} "
                            f"differ. It can't be used, --allow-missing or not: train it again (delete that "
                            f"folder and run the same ./run.sh train command), or restore the dataset and "
                            f"folds/folds.csv it was trained on.")


def versions() -> dict:
    def version(package):
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return None
    return {"python": platform.python_version(), "torch": torch.__version__, "timm": version("timm"),
            "albumentations": version("albumentations"), "numpy": np.__version__}


def run_provenance(data, k: int) -> dict:
    """RunConfig's provenance fields: where a fold came from (once per process, not per fold)."""
    return {"k": k, "folds_sha1": folds_sha1(),
            "data_sha1": data_sha1(data.train_images, data.train_labels, data.test_images),
            "versions": versions(), "git_commit": git_commit()}


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=paths.REPO, capture_output=True, text=True,
                              timeout=10).stdout.strip() or "unknown"
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


# ---------------------------------------------------------------- log.csv and config.json

def known_fields(record: type, recorded: dict):
    """The record from what a file recorded: a key an older version did not write takes the field's default, and
    a key this version does not know is left out (so a file from another version still reads)."""
    return record(**{f.name: recorded[f.name] for f in fields(record) if f.name in recorded})


def write_log(files: FoldFiles, rows: list[dict]) -> None:
    """log.csv, one row per epoch (LOG_COLUMNS), rewritten whole after each epoch."""
    atomic_write_text(files / LOG, pd.DataFrame(rows, columns=LOG_COLUMNS).to_csv(index=False))


def read_log(files: FoldFiles) -> pd.DataFrame:
    return pd.read_csv(files / LOG)


@dataclass(frozen=True)
class Refit:
    """A refit's epochs as config.json records them: how many, the member whose folds chose them (its own, or the
    plain member's for a student without folds), and those folds' best epochs."""
    epochs: int | None = None
    folds_of: str | None = None
    best_epochs: list | None = None


@dataclass(frozen=True)
class RunConfig:
    """config.json: how a fold or refit was started (recipe, CLI settings, budget-sized epochs, provenance),
    built once by the fold's run and written once. On disk each field is a key of its own name (`arch` as
    "model"); a key an older version did not write reads as its default (None: not recorded), and a key this
    version does not know is ignored, so every work folder resumes."""
    arch: str | None = None  # "model" on disk
    fold: int | None = None
    recipe: str | None = None
    seed: int | None = None
    epochs: int | None = None  # the recipe's epochs after --epochs and --budget
    device: str | None = None
    aug: str | None = None  # the augmentation path taken (albumentations or tensor)
    threads: int | None = None
    precision: str | None = None
    settings: dict = field(default_factory=dict)  # every recipe knob (recipes.Recipe as a dict)
    step: StepSettings | None = None  # what one optimizer step uses at this batch (recipes.scaled, applied once)
    k: int | None = None
    folds_sha1: str | None = None
    data_sha1: str | None = None
    versions: dict | None = None
    git_commit: str | None = None
    teacher: dict | None = None  # a student's teacher: its sha1 and weight (Teacher.provenance)
    refit: Refit | None = None  # a refit's epochs (None for a fold)

    def to_json(self) -> dict:
        out = {("model" if f.name == "arch" else f.name): getattr(self, f.name) for f in fields(self)}
        out |= {"step": asdict(self.step) if self.step else None, "refit": asdict(self.refit) if self.refit else None}
        return out if self.refit else {key: v for key, v in out.items() if key != "refit"}

    @classmethod
    def from_json(cls, recorded: dict) -> "RunConfig":
        values = {("arch" if key == "model" else key): v for key, v in recorded.items()}
        step, refit = values.get("step"), values.get("refit")
        return known_fields(cls, values | {"step": known_fields(StepSettings, step) if step else None,
                                           "refit": known_fields(Refit, refit) if refit else None,
                                           "settings": values.get("settings") or {}})

    @property
    def provenance(self) -> dict:
        """What it records of current_provenance's keys (a missing one: not recorded)."""
        return {key: getattr(self, key) for key in DATA_KEYS if getattr(self, key) is not None}

    @property
    def teacher_sha1(self) -> str | None:
        return (self.teacher or {}).get("sha1")


def settings_differ(before: RunConfig | None, now: RunConfig, whole_run: bool = True) -> list[str]:
    """What differs between two fold configs: the recipe knobs (sorted), then, for `whole_run`, the seed and the
    provenance (PROVENANCE_KEYS). The one answer to "were these trained with the same settings?": a resume
    compares the whole run, a refit only its folds' recipe (a student's refit may follow a plain member's folds)."""
    before = before or RunConfig()
    knobs = sorted(key for key in now.settings if before.settings.get(key) != now.settings[key])
    if not whole_run:
        return knobs
    return knobs + [key for key in ("seed", *PROVENANCE_KEYS) if getattr(before, key) != getattr(now, key)]


def check_same_run(files: FoldFiles, config: RunConfig) -> None:
    """A fold resumes, or counts as done, only with the settings, seed, split and data it started with.
    The commit may differ (a code update resumes), and is then only noted."""
    if not (files / CONFIG).exists() or not ((files / STATE).exists() or files.is_done()):
        return
    before = read_config(files)
    differ = settings_differ(before, config)
    if differ:
        named = ", ".join(PROVENANCE_WHAT.get(key, key) for key in differ)
        raise SettingsError(f"{files.dir} was started with other settings or data ({named} differ). Run again "
                            f"with the same ones, or delete that folder to train this fold from scratch.")
    if before.git_commit != config.git_commit:
        print(f"note: {files.dir} was started at commit {(before.git_commit or '?')[:10]}, "
              f"now {(config.git_commit or '?')[:10]}; resuming with the same settings")


def read_config(files: FoldFiles) -> RunConfig | None:
    """The fold's config.json (None when it has none yet)."""
    path = files / CONFIG
    return RunConfig.from_json(json.loads(path.read_text())) if path.exists() else None


def write_config_once(files: FoldFiles, config: RunConfig) -> None:
    """config.json records the first start; a resume keeps it."""
    if not (files / CONFIG).exists() or not (files / STATE).exists():
        atomic_write_text(files / CONFIG, json.dumps(config.to_json(), indent=2))


# ---------------------------------------------------------------- reading and writing

def save_torch(obj, path: Path) -> None:
    with atomic_open(path) as f:
        torch.save(obj, f)


def load_torch(path: Path, what: str) -> dict:
    """torch.load with weights_only=True; a damaged file is a user error that says what to do."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except _UNREADABLE + (pickle.UnpicklingError,) as err:
        raise DataError(f"{path}: unreadable ({type(err).__name__}: {str(err).splitlines()[0][:200]}). "
                        f"Delete it to {what}.") from err


def save_best(files: FoldFiles, arch: str, drop_rate: float | None, weights: dict, epoch: int, val_acc: float,
              recipe: dict) -> None:
    """best.pt, self-describing: the arch and its kwargs beside the best epoch's weights."""
    save_torch({"model": arch, "drop_rate": drop_rate, "state_dict": weights, "epoch": epoch, "val_acc": val_acc,
                "recipe": recipe}, files / BEST)


def load_best(files: FoldFiles) -> dict:
    """best.pt's dict (weights_only: a checkpoint from a shared folds/ cannot run code); engine.net_from_best
    builds the net from it."""
    return load_torch(files / BEST, "train this fold again")


def save_npz(path: Path, **arrays) -> None:
    with atomic_open(path) as f:
        np.savez(f, **arrays)


def read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path) as z:
            return {name: z[name] for name in z.files}
    except _UNREADABLE + (zipfile.BadZipFile,) as err:
        raise DataError(f"{path}: unreadable ({type(err).__name__}). Delete that fold's done.json and run "
                        f"`./run.sh train` again to rewrite it.") from err


@dataclass(frozen=True)
class Done:
    """done.json: what a finished fold or refit says of itself (written last: its presence means finished).
    Every field has a default, so a done.json written by an older version still reads."""
    best_epoch: int = 0  # the epoch whose weights are best.pt (a refit: its last)
    epochs_run: int = 0
    refit: bool = False
    val_acc: float | None = None  # fold-validation accuracy with TTA (None for a refit: nothing held out)
    val_acc_plain: float | None = None  # the same without TTA
    train_acc: float | None = None  # clean (no augmentation) accuracy on train_acc_rows of its training rows
    train_acc_rows: int = 0
    stopped_by_budget: bool = False
    stopped_by_deadline: bool = False  # --stop-at
    node: str | None = None  # where it ran: the host, or host/<Ray node id> on the Ray runner
    seconds: float | None = None  # the epochs' training seconds (no inference)
    images_per_s: float | None = None  # training images per second, the mean over epochs


def write_done(files: FoldFiles, done: Done) -> None:
    atomic_write_text(files / DONE, json.dumps({k: v for k, v in asdict(done).items() if v is not None}, indent=2))


def read_done(files: FoldFiles) -> Done:
    return known_fields(Done, json.loads((files / DONE).read_text()))


# ---------------------------------------------------------------- finished folds

def finished_folds(member: str, k: int) -> list[int]:
    return [f for f in range(k) if FoldFiles(member, f).is_done()]


def member_config(member: str, k: int | None = None) -> RunConfig:
    """The config.json of the member's first started fold or refit (empty when nothing is on disk)."""
    k = fold_count() if k is None else k
    for fold in [*range(k), None]:
        config = read_config(FoldFiles(member, fold))
        if config is not None:
            return config
    return RunConfig()


def arch_of(member: str, k: int | None = None) -> str:
    """The architecture a member trains (config.json's model); the name itself when nothing is on disk."""
    return member_config(member, k).arch or member


def is_student(member: str, k: int | None = None) -> bool:
    """Trained against a teacher's soft targets: its OOF saw the teacher's folds' labels, so it must not be
    weighted on OOF beside other members."""
    return bool(member_config(member, k).teacher)


def refit_epochs(member: str, k: int) -> tuple[int, list[int]]:
    """(epochs, the folds' best epochs): the refit stops where its folds were best, at the median best epoch
    (rounded up). Refused until every fold is finished: the rule needs all of them."""
    missing = [f for f in range(k) if not FoldFiles(member, f).is_done()]
    if missing:
        raise SettingsError(f"{member}: a refit needs all {k} folds finished (its epochs are their median best "
                            f"epoch); fold(s) {missing} are not. Train them first: --folds all")
    for f in range(k):
        check_provenance(FoldFiles(member, f))
    best = [int(read_done(FoldFiles(member, f)).best_epoch) for f in range(k)]
    return int(np.ceil(np.median(best))), best


def folds_started(member: str, k: int) -> bool:
    """Has the member a fold folder (started or finished)? Without one, its refit follows another's folds."""
    return any(FoldFiles(member, f).dir.exists() for f in range(k))


def refit_only_seeds(member: str, k: int) -> list[str]:
    """The other seeds of a seed-0 `member` that have a refit and no fold of their own (`--refit-seeds`): extra
    refits of `member`, their epochs planned from its folds (train_folds.FoldRun.plan_refit)."""
    me = Member.parse(member)
    if me.seed or not paths.folds_dir().is_dir():
        return []
    seeds = [d.name for d in paths.folds_dir().iterdir() if d.is_dir() and d.name != member]
    return sorted((name for name in seeds if Member.parse(name).seed_base == me and FoldFiles(name, None).is_done()
                   and not folds_started(name, k)), key=lambda n: Member.parse(n).seed)


def refits_of(member: str) -> list[str]:
    """The finished refits mixed into `member`'s test logits: its own, then its refit-only seeds'."""
    own = [member] if FoldFiles(member, None).is_done() else []
    return own + refit_only_seeds(member, fold_count())


def refit_logits(member: str, test_rows: int) -> list[np.ndarray]:
    """The test logits (TTA) of the member's finished refits (`refits_of`), each refused when it is not
    `test_rows` rows (a refit trained on other data)."""
    return [_refit_logits(FoldFiles(name, None), test_rows) for name in refits_of(member)]


def refit_test_logits(member: str, test_rows: int) -> np.ndarray | None:
    """Their mean (a refit-only member's test logits), or None when it has no finished refit."""
    refits = refit_logits(member, test_rows)
    return np.mean(refits, axis=0) if refits else None


def _refit_logits(files: FoldFiles, test_rows: int) -> np.ndarray:
    check_provenance(files)
    logits = _finite(read_npz(files / TEST)["logits"], files / TEST, "logits")
    if len(logits) != test_rows:
        raise SettingsError(f"{files.member}: its refit has {len(logits)} test rows, the dataset {test_rows}. "
                            f"Train the refit again on the current data.")
    return logits


@dataclass
class Teacher:
    """Soft targets for distillation: an ensemble's OOF probabilities per Training row, mixed with the labels."""
    path: Path
    sha1: str
    rows: np.ndarray  # (n,) sorted Training rows
    probs: np.ndarray  # (n, 7)
    weight: float  # target = weight x teacher probabilities + (1 - weight) x one-hot label

    def targets(self, rows: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """(len(rows), 7) float32 soft targets; every row must have a teacher prediction."""
        at = np.searchsorted(self.rows, rows)
        known = (at < len(self.rows)) & (self.rows[np.minimum(at, len(self.rows) - 1)] == rows)
        if not known.all():
            raise SettingsError(f"{self.path}: no teacher prediction for {int((~known).sum())} of the "
                                f"{len(rows)} Training rows to train on. Make the teacher from models with "
                                f"every fold finished: python -m competition.ensemble")
        onehot = np.eye(self.probs.shape[1], dtype=np.float32)[labels]
        return (self.weight * self.probs[at] + (1 - self.weight) * onehot).astype(np.float32)

    def provenance(self) -> dict:
        return {"sha1": self.sha1, "weight": self.weight}


def teacher_sha1(path: Path, z: dict | None = None) -> str:
    """What a student records of its teacher: a hash of the rows and probabilities (`z`, read from `path` when
    not given), not of the file's bytes: np.savez stamps the time in the zip, so the same ensemble written
    again must still be the same teacher."""
    z = read_npz(path) if z is None else z
    return hashlib.sha1(z["rows"].astype(np.int64).tobytes() + z["probs"].astype(np.float32).tobytes()).hexdigest()


def save_teacher(path: Path, rows: np.ndarray, probs: np.ndarray, members: list[str]) -> None:
    """The teacher's probabilities with their provenance: its members (whose folds load_member checked against
    the current data) and the current dataset fingerprint, folds.csv hash and k."""
    provenance = {key: np.array(value) for key, value in current_provenance().items()}
    save_npz(path, rows=rows.astype(np.int64), probs=probs.astype(np.float32), members=np.array(members),
             **provenance)


def check_teacher(path: Path, z: dict) -> None:
    """A teacher's soft targets are only right for the data and folds its members were trained on."""
    recorded = {key: z[key].item() for key in ("k", "folds_sha1", "data_sha1") if key in z}
    differ = stale_keys(recorded)
    if differ:
        named = ", ".join(PROVENANCE_WHAT[key] + (" (not recorded)" if key not in recorded else "") for key in differ)
        members = ",".join(str(m) for m in z["members"]) if "members" in z else "..."
        raise SettingsError(f"{path}: this teacher was made from other data than the current: {named} differ. "
                            f"Make it again from members trained on the current data: "
                            f"python -m competition.ensemble --members {members}")


def load_teacher(path: Path, weight: float) -> Teacher:
    if not 0 < weight <= 1:
        raise SettingsError(f"--teacher-weight {weight}: expected a number in (0, 1]")
    if not path.exists():
        raise SettingsError(f"{path}: no teacher file. Write one with python -m competition.ensemble "
                            f"(it saves {TEACHER} beside the submission).")
    z = read_npz(path)
    check_teacher(path, z)
    probs = _finite(z["probs"], path, "probs")
    if probs.ndim != 2 or len(probs) != len(z["rows"]) or not np.allclose(probs.sum(1), 1, atol=1e-3):
        raise DataError(f"{path}: probs must be (rows, classes) probabilities summing to 1. Write it again "
                        f"with python -m competition.ensemble.")
    return Teacher(path, teacher_sha1(path, z), z["rows"], probs, weight)


# ---------------------------------------------------------------- submissions/

def teacher_path() -> Path:
    return paths.submissions_dir() / TEACHER


def latest_submission() -> Path:
    """submissions/submission.csv: the submission `./run.sh submit` sends by default."""
    return paths.submissions_dir() / LATEST


def append_leaderboard(row: dict) -> Path:
    """Read, add a row, write atomically, under a lock: two ensembles at once both keep their rows."""
    path = paths.submissions_dir() / LEADERBOARD
    with file_lock(path.with_name(".leaderboard.lock")):
        old = path.read_text() if path.exists() else ""
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, LEADERBOARD_COLUMNS, lineterminator="\n")
        if not old:
            writer.writeheader()
        writer.writerow(row)
        atomic_write_text(path, old + buffer.getvalue())
    return path


def leaderboard_rows(last: int) -> list[dict]:
    """The last `last` rows of submissions/leaderboard.csv, as written ([] when there is none)."""
    path = paths.submissions_dir() / LEADERBOARD
    return list(csv.DictReader(path.open()))[-last:] if path.exists() else []


def available_members() -> list[str]:
    """Every member folder under folds/ with at least one finished fold."""
    if not paths.folds_dir().is_dir():
        return []
    k = fold_count()
    return sorted(d.name for d in paths.folds_dir().iterdir() if d.is_dir() and finished_folds(d.name, k))


@dataclass
class MemberLogits:
    member: str  # its folder under folds/ (Member.name)
    folds: list[int]  # the folds included
    oof_rows: np.ndarray  # (n,) int64 Training rows (folds.csv `row`), sorted
    oof_labels: np.ndarray  # (n,) int64
    oof_logits: np.ndarray  # (n, 7) with TTA
    oof_logits_plain: np.ndarray  # (n, 7) without TTA
    test_logits: np.ndarray  # (M, 7) mean over folds, with TTA
    test_logits_plain: np.ndarray  # (M, 7) mean over folds, without TTA
    test_logits_per_fold: np.ndarray  # (F, M, 7) with TTA
    fold_val_acc: dict[int, float]
    done: dict[int, Done]  # each fold's done.json
    refit_share: float = 0.0  # the share of test_logits that is the member's refits' (blending.with_refit)


def _finite(array: np.ndarray, path: Path, key: str) -> np.ndarray:
    if not np.isfinite(array).all():
        raise DataError(f"{path}: {key} holds NaN or inf (the run diverged). Retrain that fold with a lower lr: "
                        f"delete {path.parent} and run `./run.sh train` again.")
    return array


def _fold_logits(files: FoldFiles, fold_of_row: np.ndarray | None) -> tuple[dict, dict]:
    check_provenance(files)
    oof, test = read_npz(files / OOF), read_npz(files / TEST)
    for name, arrays in ((OOF, oof), (TEST, test)):
        for key in ("logits", "logits_plain"):
            _finite(arrays[key], files / name, key)
    if fold_of_row is not None and not np.array_equal(np.sort(oof["rows"]), np.flatnonzero(fold_of_row == files.fold)):
        raise SettingsError(f"{files / OOF}: its rows are not fold {files.fold} of the current folds/folds.csv "
                            f"(the split changed after training). Delete {files.dir.parent} and train again.")
    return oof, test


def load_member(member: str, allow_missing: bool = False, fold_of_row: np.ndarray | None = None) -> MemberLogits:
    """The finished folds of `member`; refuses unfinished folds unless allow_missing (then needs at least one).
    With fold_of_row (the current split), each fold's OOF rows must be exactly that fold's rows."""
    k = fold_count()
    folds = finished_folds(member, k)
    missing = sorted(set(range(k)) - set(folds))
    where = paths.folds_dir() / member
    if not folds:
        raise SettingsError(f"{member}: no finished fold (no done.json under {where}). "
                            f"Train it: ./run.sh train --member {member}")
    if missing and not allow_missing:
        raise SettingsError(f"{member}: fold(s) {missing} of {k} are not finished (no done.json in {where}/fold<k>). "
                            f"Finish them (./run.sh train --member {member} resumes), or pass --allow-missing to use "
                            f"fold(s) {folds} only.")
    loaded = [_fold_logits(FoldFiles(member, f), fold_of_row) for f in folds]
    oof, test = [o for o, _ in loaded], [t for _, t in loaded]
    if len({t["logits"].shape for t in test}) > 1:
        raise SettingsError(f"{member}: folds {folds} have test logits of different shapes "
                            f"{[t['logits'].shape for t in test]}; were they trained on different data?")
    rows = np.concatenate([o["rows"] for o in oof]).astype(np.int64)
    if len(np.unique(rows)) != len(rows):
        raise SettingsError(f"{member}: folds {folds} share OOF rows; folds.csv changed after training. Train again.")
    order = np.argsort(rows)
    stack = lambda key: np.concatenate([o[key] for o in oof])[order]  # noqa: E731
    per_fold = np.stack([t["logits"] for t in test])
    done = {f: read_done(FoldFiles(member, f)) for f in folds}
    return MemberLogits(member, folds, rows[order], stack("labels").astype(np.int64), stack("logits"),
                       stack("logits_plain"), per_fold.mean(0), np.stack([t["logits_plain"] for t in test]).mean(0),
                       per_fold, {f: float(d.val_acc) for f, d in done.items()}, done)


def check_against(logits: MemberLogits, data: FerData) -> None:
    """Refuse logits that were not made from this dataset (other test rows, other Training labels)."""
    if len(logits.test_logits) != len(data.test_labels):
        raise SettingsError(f"{logits.member}: {len(logits.test_logits)} test rows of logits, the dataset has "
                            f"{len(data.test_labels)}. Train again on the current data.")
    if logits.oof_rows.max() >= len(data.train_labels) or \
            not np.array_equal(logits.oof_labels, data.train_labels[logits.oof_rows]):
        raise SettingsError(f"{logits.member}: OOF rows and labels do not match the dataset's Training rows. "
                            f"Train again on the current data.")
