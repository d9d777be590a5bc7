"""A fake finished training run on disk, laid out exactly as competition.train_folds writes one.

Tests of the ensemble and the report use it so they need no training: logits are synthetic, with a
chosen accuracy, and every file a real run leaves (config.json, log.csv, oof.npz, test.npz, done.json)
is there, with the current provenance in config.json. See competition.train_folds for the layout. make_member, make_refit_run and make_teacher add the
members a study grows into: other seeds, refits on every Training row, distilled students and their teacher.
FAST is what a test adds to a real (tiny) train_folds run.
"""
import json

import numpy as np
import pandas as pd

from competition import artifacts, data, paths
from tests.conftest import kaggle_zip, synthetic_rows

FAST = ["--set", "batch_size=16", "--threads", "1", "--checkpoint-every", "0"]  # small batches, one thread


def noisy_logits(labels, accuracy, rng, n_classes=7):
    """Logits whose argmax equals `labels` on about `accuracy` of the rows (labels -1: random)."""
    logits = rng.normal(0, 1, size=(len(labels), n_classes)).astype(np.float32)
    hit = (rng.random(len(labels)) < accuracy) & (labels >= 0)
    logits[hit, labels[hit]] += 6.0
    return logits


def make_dataset(tmp_path, n_train=140, n_public=28, n_private=28, private_known=True):
    labels, usage, images = synthetic_rows(n_train, n_public, n_private)
    return data.prepare(kaggle_zip(tmp_path / "c.zip", labels, usage, images, with_private_labels=private_known))


def make_folds(fd, k=3):
    fold = np.arange(len(fd.train_labels)) % k
    table = pd.DataFrame({"row": np.arange(len(fold)), "label": fd.train_labels,
                          "group": np.arange(len(fold)), "fold": fold})
    paths.folds_csv().parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(paths.folds_csv(), index=False)
    return fold


def make_fold_run(fd, fold_of_row, model, fold, accuracy, seed=0, epochs=3, test_labels=None):
    """Write folds/<model>/fold<fold>/ as a finished run whose logits have about `accuracy`."""
    rng = np.random.default_rng([seed, fold, sum(model.encode())])
    out = paths.fold_dir(model, fold)
    out.mkdir(parents=True, exist_ok=True)
    rows = np.flatnonzero(fold_of_row == fold)
    labels = fd.train_labels[rows]
    truth = fd.test_labels if test_labels is None else test_labels
    oof, oof_plain = noisy_logits(labels, accuracy, rng), noisy_logits(labels, accuracy - 0.05, rng)
    test, test_plain = noisy_logits(truth, accuracy, rng), noisy_logits(truth, accuracy - 0.05, rng)
    np.savez(out / "oof.npz", rows=rows, labels=labels, logits=oof, logits_plain=oof_plain)
    np.savez(out / "test.npz", logits=test, logits_plain=test_plain)
    log = pd.DataFrame({"epoch": np.arange(1, epochs + 1), "train_loss": np.linspace(1.8, 1.0, epochs),
                        "train_acc": np.linspace(0.3, accuracy + 0.1, epochs),
                        "val_loss": np.linspace(1.7, 1.1, epochs), "val_acc": np.linspace(0.3, accuracy, epochs),
                        "lr": np.linspace(1e-3, 1e-5, epochs), "seconds": 1.0, "images_per_s": 100.0})
    log.to_csv(out / "log.csv", index=False)
    (out / "config.json").write_text(json.dumps({"model": model, "fold": fold, "recipe": "strong", "seed": seed,
                                                 "epochs": epochs, **artifacts.current_provenance()}))
    val_acc = float((oof.argmax(1) == labels).mean())
    (out / "done.json").write_text(json.dumps({
        "best_epoch": epochs, "epochs_run": epochs, "val_acc": val_acc,
        "val_acc_plain": float((oof_plain.argmax(1) == labels).mean()),
        "train_acc": min(1.0, accuracy + 0.1), "seconds": float(epochs), "images_per_s": 100.0}))
    return out


def make_run(tmp_path, models=None, k=3, private_known=True):
    """Dataset, folds and finished fold runs for `models` ({name: accuracy})."""
    models = models or {"baseline_cnn": 0.5, "bn_cnn": 0.7}
    fd = make_dataset(tmp_path, private_known=private_known)
    fold_of_row = make_folds(fd, k)
    for model, accuracy in models.items():
        for fold in range(k):
            make_fold_run(fd, fold_of_row, model, fold, accuracy)
    return fd, fold_of_row


# ---------------------------------------------------------------- members: seeds, refits, students, teachers

def set_json(path, **changes):
    """Rewrite one JSON file of a fake run with `changes` applied."""
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def make_member(fd, fold_of_row, member, arch, accuracy, seed=0, device="cuda:0", seconds=60.0, teacher=None):
    """Every fold of a member folder (`bn_cnn.s1`, `bn_cnn.student`) as make_fold_run writes them, then
    config.json naming its architecture, seed, device and teacher, and done.json's seconds: fold f trained for
    seconds x (f + 1), so a sum over the wrong folds comes out different."""
    for fold in range(int(fold_of_row.max()) + 1):
        out = make_fold_run(fd, fold_of_row, member, fold, accuracy, seed=seed)
        set_json(out / "config.json", model=arch, seed=seed, device=device, teacher=teacher)
        set_json(out / "done.json", seconds=seconds * (fold + 1))


def make_refit_run(fd, member, arch, accuracy=0.7, seed=0, device="cuda:0", seconds=120.0, teacher=None,
                   test_logits=None):
    """folds/<member>/refit/ as a finished refit: test.npz, done.json (refit true, seconds), config.json; no
    oof.npz. test_logits: the TTA logits to write (default: about `accuracy` right)."""
    rng = np.random.default_rng([seed, 99, sum(member.encode())])
    out = paths.fold_dir(member, None)
    out.mkdir(parents=True, exist_ok=True)
    test = noisy_logits(fd.test_labels, accuracy, rng) if test_logits is None else test_logits.astype(np.float32)
    np.savez(out / "test.npz", logits=test, logits_plain=noisy_logits(fd.test_labels, accuracy - 0.05, rng))
    (out / "config.json").write_text(json.dumps({"model": arch, "fold": None, "seed": seed, "device": device,
                                                 "teacher": teacher, "refit": {"epochs": 3},
                                                 **artifacts.current_provenance()}))
    (out / "done.json").write_text(json.dumps({"refit": True, "best_epoch": 3, "epochs_run": 3, "train_acc": 0.9,
                                               "seconds": seconds, "images_per_s": 100.0}))
    return out


def make_teacher(fd, members, weight=0.5, seed=5):
    """submissions/teacher.npz as competition.ensemble writes it (random probabilities for every Training row);
    returns the provenance a student's config.json records for it."""
    path = paths.submissions_dir() / artifacts.TEACHER
    path.parent.mkdir(parents=True, exist_ok=True)
    probs = np.random.default_rng(seed).dirichlet(np.ones(7), size=len(fd.train_labels))
    artifacts.save_teacher(path, np.arange(len(fd.train_labels)), probs, members)
    return {"sha1": artifacts.teacher_sha1(path), "weight": weight}
