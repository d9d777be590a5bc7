"""Time budgets: epochs sized from measured speeds, shares, caps, resumed folds, and the deadline guard.

    .venv/bin/python -m pytest -q tests/test_budget.py
"""
import json
import re
import time
from dataclasses import replace

import pytest
import torch

from competition import budget, engine, folds, paths, train_folds
from competition.data import load_dataset
from competition.recipes import LIGHT, get_recipe
from tests.fake_runs import make_dataset

ROWS = {"train": 18_000, "val": 4_600, "test": 7_178, "all": 22_600, "train_sample": 4_096}
SPEEDS = {"bn_cnn": budget.Speed(300, 3000), "baseline_cnn": budget.Speed(1200, 12000),
          "resnet_cbam": budget.Speed(120, 900)}
VIEWS = {name: 2 for name in SPEEDS}
CAP = {name: 200 for name in SPEEDS}


def test_a_plan_fits_the_budget_and_gives_bn_cnn_the_most():
    plans = budget.plan(25 * 60, {n: 1 for n in SPEEDS}, SPEEDS, ROWS, VIEWS, CAP)
    assert sum(p.seconds for p in plans) <= 25 * 60
    by = {p.model: p for p in plans}
    assert by["bn_cnn"].epochs * by["bn_cnn"].epoch_s > 4 * by["resnet_cbam"].epochs * by["resnet_cbam"].epoch_s
    assert all(p.epochs >= 1 for p in plans)
    described = budget.describe(plans, 25 * 60)
    assert "resnet_cbam" in described and "too short to judge" in described  # 1-2 epochs of a slow model


def test_a_plan_never_passes_the_recipe_epochs_and_keeps_started_epochs():
    plans = budget.plan(600 * 60, {"bn_cnn": 1, "baseline_cnn": 1}, SPEEDS, ROWS, VIEWS,
                        {"bn_cnn": 40, "baseline_cnn": 40}, fixed={"baseline_cnn": 7})
    by = {p.model: p for p in plans}
    assert by["bn_cnn"].epochs == 40 and by["baseline_cnn"].epochs == 7


@pytest.fixture
def prepared(tmp_path):
    make_dataset(tmp_path, n_train=210)
    folds.main(["--k", "3"])


def test_budget_prints_the_plan_and_sizes_the_epochs_by_it(prepared, capsys, monkeypatch):
    """Speeds fixed (measuring on a loaded machine would eat the 18 s budget): the epochs are the plan's."""
    speeds = {"bn_cnn": budget.Speed(60, 600), "baseline_cnn": budget.Speed(240, 2400)}
    monkeypatch.setattr(budget, "measure", lambda name, *args: speeds[name])
    args = ["--model", "baseline_cnn,bn_cnn", "--folds", "0", "--budget", "0.3", "--set", "batch_size=16",
            "--checkpoint-every", "0", "--epochs", "400"]
    assert train_folds.main(args) == 0
    out = capsys.readouterr().out
    assert "plan for a budget of 0.3 min" in out and "bn_cnn" in out
    total = next(line for line in out.splitlines() if line.startswith("total"))
    assert float(total.split()[-1]) <= 0.3  # the planned minutes fit; past its deadline a fold stops (below)
    row = r"^(bn_cnn|baseline_cnn) +\d+ +\d+ +[\d.]+ +(\d+) +[\d.]+"  # model folds img/s epoch_s epochs minutes
    planned = {m: int(e) for m, e in re.findall(row, out, flags=re.M)}
    assert planned.keys() == speeds.keys() and all(1 <= e < 400 for e in planned.values()), planned
    again = dict(re.findall(r"^(\w+) fold 0: planned again after epoch 2 .*-> (\d+) epochs", out, flags=re.M))
    for model, epochs in planned.items():  # each fold ran its planned epochs, or stopped at its deadline, saying so
        epochs = int(again.get(model, epochs))  # re-planned from its own epoch time after epoch 2
        done = json.loads((paths.fold_dir(model, 0) / "done.json").read_text())
        assert done["epochs_run"] == epochs or (done["epochs_run"] < epochs and done["stopped_by_budget"]), done
    assert train_folds.main(args) == 0  # the same command again: done with the epochs the budget gave
    assert capsys.readouterr().out.count("finished earlier, skipped") == 2


def test_measure_trains_and_infers_a_few_batches(prepared):
    data = load_dataset()
    recipe = get_recipe("strong", "baseline_cnn", {"batch_size": 16})
    speed = budget.measure("baseline_cnn", recipe, data.train_images, data.train_labels, torch.device("cpu"), "auto")
    assert 0 < speed.train_ips < float("inf") and 0 < speed.infer_ips < float("inf")  # it ran; no timing asserted


def test_a_fold_past_its_deadline_stops_and_says_so(prepared):
    now = time.monotonic()
    run = train_folds.FoldRun(train_folds.Job("baseline_cnn", 2), *_inputs(), slot=budget.Slot(now))
    done = run.run()
    assert done.epochs_run == 1 and done.stopped_by_budget is True


def _inputs():
    data = load_dataset()
    fold_of_row = folds.load_folds(len(data.train_labels))
    resident = train_folds.Resident.place(data, torch.device("cpu"), "auto")
    recipe = get_recipe("strong", "baseline_cnn", {"batch_size": 16, "epochs": 5})
    return recipe, train_folds.RunContext(resident, fold_of_row, torch.device("cpu"), "auto")


def test_a_job_may_use_what_an_earlier_one_saved():
    plans = {p.model: p for p in budget.plan(20 * 60, {"bn_cnn": 1, "baseline_cnn": 1}, SPEEDS, ROWS, VIEWS, CAP)}
    mine = [train_folds.Job("bn_cnn", 0), train_folds.Job("baseline_cnn", 0)]
    ends = [slot.deadline for slot in budget.job_slots(mine, mine, plans, end=1000.0)]
    assert ends[1] == pytest.approx(1000.0 - plans["baseline_cnn"].finish_s)  # the last job: the budget's end
    assert ends[0] == pytest.approx(1000.0 - plans["baseline_cnn"].seconds - plans["bn_cnn"].finish_s)
    assert budget.job_slots(mine, mine[1:], plans, end=1000.0)[0] is None  # a finished job: none


def test_planning_again_shares_the_slack_instead_of_giving_it_to_the_first_fold():
    """The 30-minute run at 8d394a9: three air_fer folds planned at 7 epochs of 67.6 s, run at 43 s. Planning
    again only against its deadline, fold 0 took 14 epochs and left 11 and 12; shared, each gets 12, and all
    end within the budget."""
    plan = budget.JobPlan("air_fer", 3, 7, 67.6, 45.0, budget.Speed(400, 4000))
    mine = [train_folds.Job("air_fer", f) for f in range(3)]
    end, epoch_s = 1722.0, 43.0
    slots = budget.job_slots(mine, mine, {"air_fer": plan}, end)
    now, got = 0.0, []
    for slot in slots:
        now += 2 * epoch_s  # epochs 1 and 2, then the replan
        got.append(slot.epochs(2, 7, epoch_s, now))
        assert 2 * epoch_s + (got[-1] - 2) * epoch_s <= slot.deadline - (now - 2 * epoch_s)  # never past it
        now += (got[-1] - 2) * epoch_s + plan.finish_s
    assert got == [12, 12, 12] and now <= end, (got, now)
    only_deadline = 2 + int((slots[0].deadline - 2 * epoch_s) // epoch_s)  # what the old replan gave fold 0
    assert only_deadline == 14


def test_stop_at_cuts_a_running_fold_and_says_so(prepared):
    recipe, context = _inputs()
    run = train_folds.FoldRun(train_folds.Job("baseline_cnn", 1), recipe, replace(context, stop_at=time.monotonic()))
    done = run.run()
    assert done.epochs_run == 1 and done.stopped_by_deadline is True and done.stopped_by_budget is False
    assert (paths.fold_dir("baseline_cnn", 1) / "test.npz").exists()  # finished cleanly: logits and all


def test_jobs_not_started_by_stop_at_are_skipped_and_listed(prepared, capsys):
    assert train_folds.main(["--model", "baseline_cnn", "--folds", "0,1", "--epochs", "1", "--set", "batch_size=16",
                             "--stop-at", str(time.time() - 1)]) == 0
    out = capsys.readouterr().out
    assert "skipped at --stop-at: baseline_cnn fold 0, baseline_cnn fold 1" in out
    assert not (paths.fold_dir("baseline_cnn", 0) / "done.json").exists()


def test_a_budget_sized_fold_plans_again_from_its_own_epochs(prepared, capsys):
    """Sized to 3 epochs by a pessimistic measurement, with time to its deadline for the recipe's 5: after
    epoch 2 it plans again, trains 5, and its cosine is rebuilt for 5 epochs (not cut short at 3)."""
    recipe, context = _inputs()
    sized = replace(recipe, epochs=3)
    end = time.monotonic() + 3600
    run = train_folds.FoldRun(train_folds.Job("baseline_cnn", 0), sized, context, slot=budget.Slot(end),
                              max_epochs=recipe.epochs)
    done = run.run()
    assert done.epochs_run == 5 and "3 -> 5 epochs" in capsys.readouterr().out
    state = torch.load(paths.fold_dir("baseline_cnn", 0) / "state.pt", weights_only=False)
    rebuilt = engine.make_scheduler(torch.optim.SGD([torch.zeros(1)], lr=1.0), sized, run.source.steps, 5)
    assert state["scheduler"]["t_initial"] == rebuilt.t_initial
    assert state["progress"]["planned_epochs"] == 5


def test_on_a_gpu_time_is_shared_by_cost_so_every_model_gets_the_same_fraction_of_its_epochs():
    caps = {"bn_cnn": 40, "baseline_cnn": 40, "resnet_cbam": 40}
    plans = budget.plan(20 * 60, {n: 1 for n in SPEEDS}, SPEEDS, ROWS, VIEWS, caps, by_cost=True)
    fractions = {p.model: p.epochs / caps[p.model] for p in plans}
    assert max(fractions.values()) - min(fractions.values()) <= 1 / 40 + 1e-9, fractions  # whole epochs apart
    assert sum(p.seconds for p in plans) <= 20 * 60
    cpu = {p.model: p.epochs for p in budget.plan(20 * 60, {n: 1 for n in SPEEDS}, SPEEDS, ROWS, VIEWS, caps)}
    assert cpu["resnet_cbam"] < {p.model: p.epochs for p in plans}["resnet_cbam"]  # SHARES starve it on the CPU


def test_every_plan_says_when_it_ends_and_a_long_one_gives_a_hint():
    long = budget.plan(float("inf"), {n: 5 for n in SPEEDS}, SPEEDS, ROWS, VIEWS, CAP)
    assert all(p.epochs == 200 for p in long)  # no budget: the recipe's epochs
    text = budget.describe(long, None)
    assert "expected to end about" in text and "hint:" in text and "--quick" in text and "--budget" in text
    short = budget.describe(budget.plan(float("inf"), {"baseline_cnn": 1}, SPEEDS, ROWS, VIEWS,
                                        {"baseline_cnn": 1}), None)
    assert "expected to end about" in short and "hint:" not in short


def test_a_run_without_budget_prints_its_plan_before_training(prepared, capsys):
    assert train_folds.main(["--model", "baseline_cnn", "--folds", "0", "--epochs", "1",
                             "--set", "batch_size=16"]) == 0
    out = capsys.readouterr().out
    assert "plan at the recipe's epochs" in out and "expected to end about" in out
    assert out.index("expected to end about") < out.index("epoch 1/1")


def test_a_refit_is_planned_with_its_folds_epochs_at_the_cost_of_every_row():
    """The quick run's fold 0 + refit: one epoch count for both, the refit's epoch priced at all Training rows
    (no validation), its finish at the test rows only; the two fit the budget, and the fold's slot leaves
    room for the refit after it."""
    alone = budget.plan(20 * 60, {"bn_cnn": 1}, SPEEDS, ROWS, VIEWS, CAP)[0]
    both = budget.plan(20 * 60, {"bn_cnn": 1}, SPEEDS, ROWS, VIEWS, CAP, refits={"bn_cnn": 1})[0]
    assert both.refit_epoch_s == pytest.approx(budget.EPOCH_OVERHEAD * ROWS["all"] / SPEEDS["bn_cnn"].train_ips)
    assert both.refit_finish_s < both.finish_s  # nothing held out to score
    assert both.seconds <= 20 * 60 < both.seconds + both.epoch_s + both.refit_epoch_s  # fits, and nothing to spare
    assert both.epochs < alone.epochs and "1+1 refit" in budget.describe([both], 20 * 60)
    mine = [train_folds.Job("bn_cnn", 0), train_folds.Job("bn_cnn", None)]
    fold, refit = budget.job_slots(mine, mine, {"bn_cnn": both}, end=1000.0)
    assert fold.later_train_s == pytest.approx(both.epochs * both.refit_epoch_s)
    assert (refit.epoch_s, refit.finish_s, refit.later_train_s) == (both.refit_epoch_s, both.refit_finish_s, 0.0)


def test_a_budget_sized_refit_needs_no_folds_plans_again_and_keeps_its_last_epoch(prepared, capsys):
    """Under a budget a refit trains the budget's epochs (not its folds' median best epoch, which needs all k of
    them), plans again after epoch 2 like a fold, and, stopped at its deadline, is finished with its last weights."""
    recipe, context = _inputs()
    run = train_folds.FoldRun(train_folds.Job("baseline_cnn", None), replace(recipe, epochs=3), context,
                              slot=budget.Slot(time.monotonic() + 3600), max_epochs=recipe.epochs)
    done = run.run()
    assert done.refit and done.epochs_run == done.best_epoch == 5 and "3 -> 5 epochs" in capsys.readouterr().out
    config = json.loads((paths.fold_dir("baseline_cnn", None) / "config.json").read_text())
    assert config["refit"] == {"epochs": 3, "folds_of": "baseline_cnn", "best_epochs": []}
    cut = train_folds.FoldRun(train_folds.Job("baseline_cnn", None, seed=1), recipe, context,
                              slot=budget.Slot(time.monotonic()), max_epochs=recipe.epochs).run()
    assert cut.epochs_run == cut.best_epoch == 1 and cut.stopped_by_budget
    assert "stopped after epoch 1 of 5: another would end past its share" in capsys.readouterr().out
    assert (paths.fold_dir("baseline_cnn.s1", None) / "test.npz").exists()


def test_an_interrupted_refit_resumes(prepared, capsys, monkeypatch):
    """A refit's state.pt holds no best weights until its last epoch (it keeps that one): resuming must not
    need them (the held-out check's killed refit could not resume)."""
    recipe, context = _inputs()
    context = replace(context, checkpoint_every=0.0)
    job, slot = train_folds.Job("baseline_cnn", None), budget.Slot(time.monotonic() + 3600)
    one_epoch = train_folds.FoldRun.one_epoch

    def killed_in_epoch_2(run):
        if run.progress.epoch == 1:
            raise KeyboardInterrupt
        one_epoch(run)

    monkeypatch.setattr(train_folds.FoldRun, "one_epoch", killed_in_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        train_folds.FoldRun(job, replace(recipe, epochs=3), context, slot).run()
    monkeypatch.setattr(train_folds.FoldRun, "one_epoch", one_epoch)
    done = train_folds.FoldRun(job, replace(recipe, epochs=3), context, slot).run()
    assert "resuming after epoch 1" in capsys.readouterr().out and done.epochs_run == done.best_epoch == 3


def test_a_budget_plan_under_light_below_trains_with_the_light_augmentation(prepared, capsys, monkeypatch):
    """The recipe is made again for the epochs the budget planned: air_fer_s at 3 epochs (under its
    light_below) trains with flips and translation only, says so, and its config.json records it; baseline_cnn
    (no light_below) keeps its augmentation in the same run."""
    def plan_three(minutes, jobs, recipes, *rest):
        return {n: replace(r, epochs=3) for n, r in recipes.items()}, [None] * len(jobs)
    monkeypatch.setattr(budget, "fit_budget", plan_three)
    assert train_folds.main(["--model", "air_fer_s,baseline_cnn", "--folds", "0", "--budget", "5",
                             "--recipe", "quick", "--set", "batch_size=16", "--set", "erase=0.5"]) == 0
    assert ("air_fer_s: 3 epochs, fewer than its 9: light augmentation (rotate, scale, brightness, contrast off;"
            in capsys.readouterr().out)  # erase: the user's
    light = json.loads((paths.fold_dir("air_fer_s", 0) / "config.json").read_text())["settings"]
    strong = json.loads((paths.fold_dir("baseline_cnn", 0) / "config.json").read_text())["settings"]
    assert light["epochs"] == 3 and light["rotate"] == light["scale"] == light["brightness"] == 0
    assert light["erase"] == strong["erase"] == 0.5  # the --set knob kept
    assert strong["epochs"] == 3 and strong["rotate"] == 10 and strong["brightness"] == 0.2
    train_folds.print_light({"air_fer_s": get_recipe("quick", "air_fer_s", {"epochs": 3})}, dict.fromkeys(LIGHT, 0.1))
    assert capsys.readouterr().out == ""  # --set chose every knob: nothing was made light, nothing said
