"""The report on a fake finished run (tests/fake_runs.py): every figure written, every number equal to what the
saved logits give (recomputed here from the npz files, without competition.ensemble), missing work reported;
the ladder's later steps (seeds, refits, ensembles, students) and each step's training minutes, on a fake study
that has them.

    .venv/bin/python -m pytest -q tests/test_report.py
"""
import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import timm
from torch import nn

import models
from competition import CLASSES, paths, report
from tests.conftest import REPO
from tests.fake_runs import make_dataset, make_folds, make_member, make_refit_run, make_run, make_teacher

PNG = b"\x89PNG\r\n\x1a\n"
MODELS = ("baseline_cnn", "bn_cnn")
K = 3


@dataclass
class Built:
    work: Path  # the FER_WORKDIR the report was made from
    out: Path  # the report folder
    numbers: dict  # report.json
    md: str  # report.md

    def npz(self, model: str, fold: int, name: str) -> dict:
        with np.load(self.work / "folds" / model / f"fold{fold}" / name) as z:
            return {key: z[key] for key in z.files}

    def done(self, model: str, fold: int | None) -> dict:
        return json.loads((self.work / "folds" / model / ("refit" if fold is None else f"fold{fold}")
                           / "done.json").read_text())

    def refit(self, model: str) -> np.ndarray:
        with np.load(self.work / "folds" / model / "refit" / "test.npz") as z:
            return z["logits"]


def build(tmp: Path, *args: str) -> Built:
    out = tmp / "rep"
    assert report.main(["--out", str(out), *args]) == 0
    return Built(paths.workdir(), out, json.loads((out / "report.json").read_text()), (out / "report.md").read_text())


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Built:
    """One report of two complete models, every test label known; the read-only tests share it."""
    tmp = tmp_path_factory.mktemp("report")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FER_WORKDIR", str(tmp / "work"))
        make_run(tmp, {"baseline_cnn": 0.5, "bn_cnn": 0.7}, k=K)
        for model in MODELS:  # the fake's train accuracy is the same on every fold: vary it, so spreads are tested
            for fold in range(K):
                done = paths.fold_dir(model, fold) / "done.json"
                done.write_text(json.dumps({**json.loads(done.read_text()), "train_acc": 0.8 + 0.05 * fold}))
        return build(tmp, "--models", ",".join(MODELS))


# ---------------------------------------------------------------- the truth, from the npz files

def accuracy(logits: np.ndarray, labels: np.ndarray) -> float | None:
    known = labels >= 0
    return float((logits[known].argmax(1) == labels[known]).mean()) if known.any() else None


def known_test_labels(b: Built) -> tuple[np.ndarray, np.ndarray]:
    """(public labels, private labels): the first half of the test rows is PublicTest in the fake dataset."""
    with np.load(b.work / "data" / "fer2013.npz") as z:
        labels, usage = z["test_labels"], z["test_usage"].astype(str)
    return labels[usage == "PublicTest"], labels[usage == "PrivateTest"]


def scores(b: Built, oof: np.ndarray, labels: np.ndarray, test: np.ndarray) -> dict:
    public, private = known_test_labels(b)
    return {"oof": accuracy(oof, labels), "public": accuracy(test[:len(public)], public),
            "private": accuracy(test[len(public):], private)}


def pooled(b: Built, model: str, key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows, labels, OOF logits under `key`) of every fold, sorted by Training row."""
    parts = [b.npz(model, f, "oof.npz") for f in range(K)]
    rows = np.concatenate([p["rows"] for p in parts])
    order = np.argsort(rows)
    return (rows[order], np.concatenate([p["labels"] for p in parts])[order],
            np.concatenate([p[key] for p in parts])[order])


def fold_mean(b: Built, model: str, key: str) -> np.ndarray:
    return np.mean([b.npz(model, f, "test.npz")[key] for f in range(K)], axis=0)


def step(b: Built, name: str) -> dict:
    (row,) = [s for s in b.numbers["ladder"] if s["step"] == name]
    return row


def same(got: dict, want: dict) -> None:
    for key, value in want.items():
        assert got[key] == pytest.approx(value), key


# ---------------------------------------------------------------- files

def test_every_figure_is_written_and_linked(built):
    names = ["confident_mistakes.png"] + [f"{kind}_{m}.png" for m in MODELS for kind in ("curves", "confusion")]
    for name in names:
        blob = (built.out / name).read_bytes()
        assert blob.startswith(PNG) and len(blob) > 2000, name
        assert f"]({name})" in built.md, f"report.md does not show {name}"
    assert sorted(p.name for p in built.out.iterdir()) == sorted(names + ["report.json", "report.md"])
    assert not [p for p in built.out.parent.iterdir() if p.name.startswith(".rep")], "a temp folder was left"
    assert "confident_mistakes.png` is made of FER2013 images: it is not to be committed" in built.md


# ---------------------------------------------------------------- numbers

@pytest.mark.parametrize("model", MODELS)
def test_model_numbers_equal_the_logits(built, model):
    got = built.numbers["models"][model]
    _, labels, oof = pooled(built, model, "logits")
    want = scores(built, oof, labels, fold_mean(built, model, "logits"))
    train = [built.done(model, f)["train_acc"] for f in range(K)]
    val = [built.done(model, f)["val_acc"] for f in range(K)]
    same(got, {**want, "train_acc": np.mean(train), "train_acc_std": np.std(train), "val_acc": np.mean(val),
               "val_acc_std": np.std(val), "gap": np.mean(train) - np.mean(val)})
    confusion = np.zeros((7, 7), int)
    np.add.at(confusion, (labels, oof.argmax(1)), 1)
    assert got["per_class"]["confusion"] == confusion.tolist()
    assert got["per_class"]["recall"] == pytest.approx(confusion.diagonal() / confusion.sum(1))
    d = CLASSES.index("Disgust")
    precision, recall = confusion[d, d] / confusion[:, d].sum(), confusion[d, d] / confusion[d].sum()
    f1 = 2 * precision * recall / (precision + recall)
    assert (f"Disgust has {int((labels == d).sum())} of {len(labels)} training images") in built.md
    assert f"its OOF precision is {precision:.2f}, recall {recall:.2f} and F1 {f1:.2f}" in built.md
    (line,) = [l for l in built.md.splitlines() if l.startswith(f"| {models.facts(model).study[0]} | {model} |")]
    for value in want.values():
        assert f"| {100 * value:.2f}% |" in line
    assert f"{100 * np.mean(val):.2f} ± {100 * np.std(val):.2f}%" in line


@pytest.mark.parametrize("model", MODELS)
def test_ladder_equals_the_logits(built, model):
    with np.load(built.work / "folds" / model / "fold0" / "oof.npz") as z:
        first = scores(built, z["logits_plain"], z["labels"], built.npz(model, 0, "test.npz")["logits_plain"])
    _, labels, plain = pooled(built, model, "logits_plain")
    average = scores(built, plain, labels, fold_mean(built, model, "logits_plain"))
    _, _, tta = pooled(built, model, "logits")
    with_tta = scores(built, tta, labels, fold_mean(built, model, "logits"))
    assert first != average != with_tta  # the steps differ, so a step computed from the wrong logits fails
    same(step(built, f"{model}: one fold (fold 0)"), first)
    same(step(built, f"{model}: {K}-fold average"), average)
    same(step(built, f"{model}: + TTA"), with_tta)
    for name, s in (("one fold (fold 0)", first), (f"{K}-fold average", average), ("+ TTA", with_tta)):
        row = f"| {model}: {name} | {100 * s['oof']:.2f}% |"
        assert row in built.md


def test_ensembles_equal_the_logits(built):
    _, labels, _ = pooled(built, MODELS[0], "logits")
    oofs = [pooled(built, m, "logits")[2] for m in MODELS]
    tests = [fold_mean(built, m, "logits") for m in MODELS]
    for name in ("equal weights", "OOF-fitted weights"):
        row = step(built, f"ensemble, {name}")
        w = np.array(row["weights"])
        assert w.sum() == pytest.approx(1) and (w >= 0).all() and row["models"] == list(MODELS)
        same(row, scores(built, np.tensordot(w, np.stack(oofs), 1), labels, np.tensordot(w, np.stack(tests), 1)))
        assert f"| ensemble, {name} | {100 * row['oof']:.2f}% |" in built.md
    assert step(built, "ensemble, equal weights")["weights"] == [0.5, 0.5]


def test_mistakes_are_wrong_and_most_confident_first(built):
    mistakes = built.numbers["mistakes"]["images"]
    rows, labels, _ = pooled(built, MODELS[0], "logits")
    truth = dict(zip(rows.tolist(), labels.tolist()))
    assert mistakes and all(m["true"] != m["pred"] and truth[m["row"]] == m["true"] for m in mistakes)
    confidence = [m["confidence"] for m in mistakes]
    assert confidence == sorted(confidence, reverse=True)
    assert f"true {CLASSES[mistakes[0]['true']]}, predicted {CLASSES[mistakes[0]['pred']]}" in built.md


def test_unknown_private_labels_read_n_a(tmp_path):
    make_run(tmp_path, {"bn_cnn": 0.7}, k=K, private_known=False)
    b = build(tmp_path, "--models", "bn_cnn")
    assert b.numbers["models"]["bn_cnn"]["private"] is None
    assert b.numbers["models"]["bn_cnn"]["public"] is not None
    (line,) = [l for l in b.md.splitlines() if l.startswith("| Model 2 | bn_cnn |")]
    assert "| n/a |" in line
    assert [s["step"] for s in b.numbers["ensemble"]] == ["ensemble, equal weights"]  # one model: nothing to fit


# ---------------------------------------------------------------- missing work

def test_missing_folds_and_models_are_reported(tmp_path):
    make_run(tmp_path, {"baseline_cnn": 0.5, "bn_cnn": 0.7}, k=K)
    (paths.fold_dir("baseline_cnn", 1) / "done.json").unlink()  # interrupted
    shutil.rmtree(paths.fold_dir("bn_cnn", 2))  # never started
    b = build(tmp_path)  # default models: the study's three, and resnet_cbam has no run
    missing = b.md.split("## Missing")[1].split("\n## ")[0]
    for line in ("baseline_cnn fold 1: started, no done.json", "bn_cnn fold 2: not started",
                 "resnet_cbam: no complete fold of 3", "baseline_cnn: left out of the ensemble",
                 "bn_cnn: left out of the ensemble", "ensemble: no model has all 3 folds"):
        assert line in missing
        assert any(m.startswith(line) for m in b.numbers["missing"])
    assert b.numbers["models"]["baseline_cnn"]["folds"] == [0, 2]
    assert b.numbers["models"]["bn_cnn"]["folds"] == [0, 1]
    assert "resnet_cbam" not in b.numbers["models"] and b.numbers["ensemble"] == []
    assert "bn_cnn: 2-fold average" in [s["step"] for s in b.numbers["ladder"]]
    assert b.numbers["mistakes"]["source"] == "bn_cnn, TTA"  # no ensemble: the best single model
    assert (b.out / "curves_bn_cnn.png").exists() and not (b.out / "curves_resnet_cbam.png").exists()


def test_nothing_missing_says_so(built):
    assert built.numbers["missing"] == []
    assert "## Missing\n\nNothing: every model listed ran all 3 folds." in built.md


def test_no_finished_model_is_an_error_that_names_them(tmp_path, capsys):
    make_folds(make_dataset(tmp_path), K)
    assert report.main(["--out", str(tmp_path / "rep"), "--models", "bn_cnn"]) == 2
    assert "bn_cnn: no complete fold of 3" in capsys.readouterr().err
    assert not (tmp_path / "rep").exists()
    with pytest.raises(SystemExit):
        report.main(["--models", "bn_cnn,vgg"])


def test_a_crash_leaves_the_old_report(tmp_path, monkeypatch, capsys):
    make_run(tmp_path, {"bn_cnn": 0.7}, k=K)
    old = build(tmp_path, "--models", "bn_cnn").md

    def crash(*args):
        raise RuntimeError("disk full")
    monkeypatch.setattr(report, "plot_mistakes", crash)
    assert report.main(["--out", str(tmp_path / "rep"), "--models", "bn_cnn"]) == 1  # a bug: exit 1, traceback
    assert "RuntimeError: disk full" in capsys.readouterr().err
    assert (tmp_path / "rep" / "report.md").read_text() == old
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".rep")] == []


@pytest.mark.parametrize("kind", ["trained folds", "a file", "a folder with a stray report.json"])
def test_out_refuses_an_existing_folder_that_is_not_a_report(tmp_path, capsys, kind):
    make_run(tmp_path, {"bn_cnn": 0.7}, k=K)
    out = paths.folds_dir() if kind == "trained folds" else tmp_path / "notes"
    if kind == "a file":
        out.write_text("keep me\n")
    elif kind != "trained folds":
        out.mkdir()
        (out / "report.json").write_text('{"other": "tool"}\n')

    def snapshot():
        files = sorted(out.rglob("*")) if out.is_dir() else [out]
        return [(str(p), p.read_bytes() if p.is_file() else None) for p in files]
    before = snapshot()
    assert report.main(["--out", str(out), "--members", "bn_cnn"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {out}: exists and is not a report folder") and err.count("\n") == 1
    assert snapshot() == before  # nothing renamed, nothing deleted
    assert [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}")] == []


def test_out_accepts_an_empty_folder_and_an_earlier_report(tmp_path):
    make_run(tmp_path, {"bn_cnn": 0.7}, k=K)
    (tmp_path / "rep").mkdir()
    first = build(tmp_path, "--models", "bn_cnn")  # into the empty folder
    (first.out / "stale.png").write_bytes(PNG)
    build(tmp_path, "--models", "bn_cnn")  # over the earlier report: replaced whole
    assert not (first.out / "stale.png").exists() and (first.out / "report.md").exists()


# ---------------------------------------------------------------- model size

def hooked_macs(name: str) -> int:
    """Multiply-adds counted by hand on every Conv2d and Linear: an independent check of FlopCounterMode."""
    model, total = timm.create_model(name, num_classes=7, in_chans=1).eval(), [0]

    def count(module, inputs, output):
        if isinstance(module, nn.Conv2d):
            total[0] += output.numel() * module.in_channels // module.groups * int(np.prod(module.kernel_size))
        else:
            total[0] += output.numel() * module.in_features
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            module.register_forward_hook(count)
    with torch.no_grad():
        model(torch.zeros(1, 1, 48, 48))
    return total[0]


@pytest.mark.parametrize("name", ["baseline_cnn", "bn_cnn"])
def test_macs_and_parameters(name):
    params, macs = report.size_of(name)
    assert macs == hooked_macs(name) > 0
    assert params == sum(p.numel() for p in timm.create_model(name, num_classes=7, in_chans=1).parameters())


def test_allow_missing_builds_the_ensemble_from_finished_folds_and_still_lists_the_gaps(tmp_path):
    make_run(tmp_path, {"baseline_cnn": 0.5, "bn_cnn": 0.7}, k=K)
    for model in ("baseline_cnn", "bn_cnn"):
        shutil.rmtree(paths.fold_dir(model, 2))  # as after `./run.sh all --quick`, which trains some folds only
    b = build(tmp_path, "--models", "baseline_cnn,bn_cnn", "--allow-missing")
    assert "bn_cnn fold 2: not started" in b.numbers["missing"]
    assert "bn_cnn: in the ensemble with its finished folds only (--allow-missing)" in b.numbers["missing"]
    row = step(b, "ensemble, equal weights")
    assert row["models"] == ["baseline_cnn", "bn_cnn"] and row["oof_rows"] == int((np.arange(140) % K != 2).sum())


def test_a_model_trained_too_briefly_is_not_compared_with_the_study():
    from competition.report_markdown import judged
    assert judged({"epochs_run": [40, 38]}, "58%") == "58%"
    assert judged({"epochs_run": [3]}, "60%") == "not trained long enough to judge: 3 epochs (study: 60%)"


# ---------------------------------------------------------------- the ladder's later steps, and what they cost

SEEDS = ("bn_cnn", "bn_cnn.s1", "bn_cnn.s2")
WITH_REFIT = ("bn_cnn", "bn_cnn.s1")  # bn_cnn.s2 has no refit
ENSEMBLE = ("baseline_cnn", *SEEDS)


def wrong_logits(labels: np.ndarray) -> np.ndarray:
    """Test logits sure of a wrong class on every row: mixed in, they change PublicTest for certain."""
    logits = np.zeros((len(labels), 7), np.float32)
    logits[np.arange(len(labels)), (labels + 1) % 7] = 100.0
    return logits


@pytest.fixture(scope="module")
def climbed(tmp_path_factory) -> Built:
    """A study grown on: bn_cnn with two more seeds (on cuda), refits of two of them, a refit-only student and a
    student with folds (on cpu), both taught by the baseline_cnn + bn_cnn ensemble. Default models: found on disk."""
    tmp = tmp_path_factory.mktemp("climbed")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FER_WORKDIR", str(tmp / "work"))
        fd, fold_of_row = make_run(tmp, {"baseline_cnn": 0.5}, k=K)
        for seed, member in enumerate(SEEDS):
            make_member(fd, fold_of_row, member, "bn_cnn", 0.7, seed=seed, seconds=60.0 * (seed + 1))
        for member in WITH_REFIT:
            make_refit_run(fd, member, "bn_cnn", seconds=500.0, test_logits=wrong_logits(fd.test_labels))
        teacher = make_teacher(fd, ["baseline_cnn", "bn_cnn"])
        make_refit_run(fd, "bn_cnn.student", "bn_cnn", 0.8, seconds=240.0, teacher=teacher)
        make_member(fd, fold_of_row, "baseline_cnn.student", "baseline_cnn", 0.9, device="cpu", seconds=10.0,
                    teacher=teacher)
        return build(tmp)


def fold_seconds(b: Built, member: str) -> float:
    return sum(b.done(member, f)["seconds"] for f in range(K))


def mixed_test(b: Built, member: str) -> np.ndarray:
    """The member's test logits as blending.with_refit makes them, recomputed: half folds' mean, half refit."""
    folds = fold_mean(b, member, "logits")
    return 0.5 * folds + 0.5 * b.refit(member) if member in WITH_REFIT else folds


def test_the_seeds_step_is_the_equal_average_of_the_seed_members(climbed):
    row = step(climbed, "bn_cnn: + seeds, 3 averaged")
    _, labels, _ = pooled(climbed, "bn_cnn", "logits")
    oof = np.mean([pooled(climbed, m, "logits")[2] for m in SEEDS], axis=0)
    test = np.mean([fold_mean(climbed, m, "logits") for m in SEEDS], axis=0)
    want = scores(climbed, oof, labels, test)
    assert want["oof"] != step(climbed, "bn_cnn: + TTA")["oof"]  # else a seeds step that is bn_cnn alone passes
    same(row, want)
    assert row["models"] == list(SEEDS) and row["oof_rows"] == len(labels)
    assert row["minutes"] == pytest.approx(sum(fold_seconds(climbed, m) for m in SEEDS) / 60)
    assert row["devices"] == ["cuda"] and row["runs"] == 3 * K


def test_the_refit_step_mixes_refits_into_test_logits_only(climbed):
    seeds = step(climbed, "bn_cnn: + seeds, 3 averaged")
    row = step(climbed, "bn_cnn: + refit (share ½, 2 of 3 members)")
    test = np.mean([mixed_test(climbed, m) for m in SEEDS], axis=0)
    want = scores(climbed, np.zeros((0, 7)), np.zeros(0, int), test)
    assert row["oof"] == seeds["oof"] and row["oof_rows"] == seeds["oof_rows"]  # a refit has no OOF
    assert row["public"] == pytest.approx(want["public"]) == 0.0 != seeds["public"]
    assert row["private"] == pytest.approx(want["private"])
    assert row["refits"] == list(WITH_REFIT) and "a refit has none" in row["oof_note"]
    refit_seconds = sum(climbed.done(m, None)["seconds"] for m in WITH_REFIT)
    assert row["minutes"] == pytest.approx(seeds["minutes"] + refit_seconds / 60) and row["runs"] == 3 * K + 2
    assert f"| {row['step']} | {100 * row['oof']:.2f}% (the folds' OOF: a refit has none) |" in climbed.md


def test_each_step_costs_the_runs_it_needs(climbed):
    fold0 = climbed.done("bn_cnn", 0)["seconds"]
    assert step(climbed, "bn_cnn: one fold (fold 0)")["minutes"] == pytest.approx(fold0 / 60)
    for name in (f"bn_cnn: {K}-fold average", "bn_cnn: + TTA"):  # TTA is inference: it adds no training
        assert step(climbed, name)["minutes"] == pytest.approx(fold_seconds(climbed, "bn_cnn") / 60)
    baseline = step(climbed, "baseline_cnn: + TTA")
    assert baseline["minutes"] == pytest.approx(fold_seconds(climbed, "baseline_cnn") / 60) and baseline["runs"] == K
    assert baseline["devices"] == ["unknown"]  # make_run's config.json names no device: said, not guessed
    everything = sum(fold_seconds(climbed, m) for m in ENSEMBLE) + sum(climbed.done(m, None)["seconds"]
                                                                         for m in WITH_REFIT)
    unknown = fold_seconds(climbed, "baseline_cnn") / 60
    for e in climbed.numbers["ensemble"]:
        assert e["minutes"] == pytest.approx(everything / 60) and e["devices"] == ["cuda", "unknown"]
        assert e["minutes_by_device"] == pytest.approx({"cuda": everything / 60 - unknown, "unknown": unknown})
    assert f"| {everything / 60:.1f} (cuda {everything / 60 - unknown:.1f}, unknown {unknown:.2f}) |" in climbed.md
    assert "| training minutes (device) |" in climbed.md and "CPU minutes are not GPU minutes" in climbed.md
    assert "inference, TTA and start-up excluded" in climbed.md
    tta = step(climbed, "bn_cnn: + TTA")
    assert f"| {tta['step']} | {100 * tta['oof']:.2f}% | 140 | {100 * tta['public']:.2f}% | " \
           f"{100 * tta['private']:.2f}% | {tta['minutes']:.1f} (cuda) |" in climbed.md


def test_the_ensemble_holds_every_complete_member_with_refits_and_no_student(climbed):
    names = [e["step"] for e in climbed.numbers["ensemble"]]
    assert names == ["ensemble, equal weights", "ensemble, OOF-fitted weights",
                     "ensemble, stacked (logistic regression)"]
    _, labels, _ = pooled(climbed, "baseline_cnn", "logits")
    oof = np.mean([pooled(climbed, m, "logits")[2] for m in ENSEMBLE], axis=0)
    test = np.mean([mixed_test(climbed, m) for m in ENSEMBLE], axis=0)
    equal = step(climbed, "ensemble, equal weights")
    same(equal, scores(climbed, oof, labels, test))
    for e in climbed.numbers["ensemble"]:
        assert e["models"] == list(ENSEMBLE) and e["refits"] == list(WITH_REFIT)
    stacked = step(climbed, "ensemble, stacked (logistic regression)")
    assert stacked["weights"] is None and 0 < stacked["oof"] <= 1 and stacked["oof_rows"] == len(labels)
    assert "a logistic regression on the members' fold-averaged TTA logits" in climbed.md


def test_students_stand_alone(climbed):
    refit_only = step(climbed, "distilled student bn_cnn.student")
    assert refit_only["oof"] is None and refit_only["oof_rows"] == 0 and refit_only["oof_note"] == "refit only"
    same(refit_only, {k: v for k, v in scores(climbed, np.zeros((0, 7)), np.zeros(0, int),
                                              climbed.refit("bn_cnn.student")).items() if k != "oof"})
    teacher = fold_seconds(climbed, "baseline_cnn") + fold_seconds(climbed, "bn_cnn")
    assert refit_only["minutes"] == pytest.approx((climbed.done("bn_cnn.student", None)["seconds"] + teacher) / 60)
    assert refit_only["teacher"] == "teacher: baseline_cnn + bn_cnn"
    assert "| distilled student bn_cnn.student (teacher: baseline_cnn + bn_cnn) | n/a (refit only) | 0 |" in climbed.md
    with_folds = step(climbed, "distilled student baseline_cnn.student")
    _, labels, oof = pooled(climbed, "baseline_cnn.student", "logits")
    same(with_folds, scores(climbed, oof, labels, fold_mean(climbed, "baseline_cnn.student", "logits")))
    assert with_folds["oof_note"].startswith("optimistic")
    assert with_folds["devices"] == ["cpu", "cuda", "unknown"]  # its teacher's runs count too
    assert with_folds["minutes"] == pytest.approx((fold_seconds(climbed, "baseline_cnn.student") + teacher) / 60)
    students = {"bn_cnn.student", "baseline_cnn.student"}
    assert not students & set(climbed.numbers["models"])
    assert all(not students & set(e["models"]) for e in climbed.numbers["ensemble"])
    assert [s["step"] for s in climbed.numbers["ladder"]][-2:] == ["distilled student baseline_cnn.student",
                                                                   "distilled student bn_cnn.student"]


def test_seed_members_are_reported_as_members_of_their_architecture(climbed):
    assert climbed.numbers["models"]["bn_cnn.s1"]["arch"] == "bn_cnn"
    assert climbed.numbers["models"]["bn_cnn.s1"]["params"] == report.size_of("bn_cnn")[0]
    (line,) = [l for l in climbed.md.splitlines() if l.startswith("|  | bn_cnn.s1 |")]
    assert line.endswith("| another member of bn_cnn (seed or setting) |")
    assert not [s for s in climbed.numbers["ladder"] if s["step"].startswith("bn_cnn.s1:")]  # in bn_cnn's climb


def test_a_student_whose_teacher_file_changed_counts_only_its_own_runs(tmp_path):
    fd, fold_of_row = make_run(tmp_path, {"bn_cnn": 0.7}, k=K)
    make_refit_run(fd, "bn_cnn.student", "bn_cnn", seconds=240.0, teacher=make_teacher(fd, ["bn_cnn"]))
    make_teacher(fd, ["bn_cnn"], seed=6)  # a later ensemble wrote another teacher.npz
    row = step(build(tmp_path, "--models", "bn_cnn,bn_cnn.student"), "distilled student bn_cnn.student")
    assert row["minutes"] == pytest.approx(240.0 / 60) and "not counted" in row["teacher"]


def test_a_plain_study_climbs_as_before(built):
    want = [f"{m}: {s}" for m in MODELS for s in ("one fold (fold 0)", f"{K}-fold average", "+ TTA")]
    want += ["ensemble, equal weights", "ensemble, OOF-fitted weights", "ensemble, stacked (logistic regression)"]
    assert [s["step"] for s in built.numbers["ladder"]] == want
    assert all("oof_note" not in s and not s.get("refits") for s in built.numbers["ladder"])
    assert step(built, "bn_cnn: + TTA")["minutes"] == pytest.approx(sum(built.done("bn_cnn", f)["seconds"]
                                                                         for f in range(K)) / 60)


def test_a_student_with_unfinished_folds_is_listed_as_missing(tmp_path):
    fd, fold_of_row = make_run(tmp_path, {"bn_cnn": 0.7}, k=K)
    make_member(fd, fold_of_row, "bn_cnn.student", "bn_cnn", 0.9, teacher=make_teacher(fd, ["bn_cnn"]))
    (paths.fold_dir("bn_cnn.student", 2) / "done.json").unlink()
    b = build(tmp_path, "--models", "bn_cnn,bn_cnn.student")
    assert "bn_cnn.student fold 2: started, no done.json (interrupted or running)" in b.numbers["missing"]
    assert step(b, "distilled student bn_cnn.student")["oof_rows"] == int((np.arange(140) % K != 2).sum())


def test_the_text_renderer_imports_no_torch():
    """report_markdown renders the numbers dict only: importing it (and the competition package) loads neither
    torch nor timm, so the text can be rendered, or its wording changed and checked, without them."""
    code = "import competition.report_markdown, sys; print('torch' in sys.modules, 'timm' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.split() == ["False", "False"], out.stderr
