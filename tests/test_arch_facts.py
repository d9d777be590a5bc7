"""Each architecture's facts (its model file's `arch_facts`) reach the modules that act on them, for every
registered architecture; and a new architecture is one file (the example in docs/ARCHITECTURE.md).

    .venv/bin/python -m pytest -q tests/test_arch_facts.py
"""
import os
import re
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

import models
from competition import bench, budget, run_all
from competition.recipes import RECIPES, get_recipe
from competition.graph import cost
from competition.train_folds import Job
from models import MODEL_NAMES, facts

REPO = Path(__file__).resolve().parent.parent
OTHER = "resnet18"  # a timm architecture with no facts of ours: the defaults


def test_a_name_without_facts_gets_the_defaults_and_the_dearest_cost():
    got = facts(OTHER)
    assert (got.budget_share, got.recipe_overrides, got.study, got.default_on) == (0.1, {}, (), ())
    for device in ("cpu", "cuda"):
        assert got.image_cost[device] == max(facts(n).image_cost[device] for n in MODEL_NAMES)
    assert facts("bn_cnn").image_cost == {"cpu": 4, "cuda": 2} and facts("bn_cnn").budget_share == 0.8


def test_facts_naming_an_unregistered_arch_are_refused(tmp_path):
    pkg = tmp_path / "models"
    shutil.copytree(Path(models.__file__).parent, pkg, ignore=shutil.ignore_patterns("__pycache__"))
    text = (pkg / "bn_cnn.py").read_text().replace("arch_facts = {\n    'bn_cnn':", "arch_facts = {\n    'bn_cnm':")
    (pkg / "bn_cnn.py").write_text(text)
    done = subprocess.run([sys.executable, "-c", "import models"], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 1 and "arch_facts names ['bn_cnm'], which it does not register" in done.stderr


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_recipe_departures_come_from_the_model_file(name):
    for recipe in RECIPES:
        departures = facts(name).recipe_overrides.get(recipe, {})
        assert get_recipe(recipe, name) == replace(get_recipe(recipe, OTHER), **departures)


@pytest.mark.parametrize("name", MODEL_NAMES)
@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_job_costs_are_the_image_cost(name, device):
    recipe = get_recipe("strong", name)
    costs = [cost(Job(name, 0), recipe.epochs, device), cost(Job(name, None), recipe.epochs, device)]
    per_image = facts(name).image_cost[device]
    assert costs == [recipe.epochs * per_image, recipe.epochs * per_image * 1.25]  # a refit: 5/4 the rows


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_budget_shares_minutes_by_budget_share(name):
    """Two architectures at the same speed: their epochs stand as their shares."""
    speed = budget.Speed(train_ips=1000.0, infer_ips=1000.0)
    rows = {"train": 1000, "val": 100, "test": 100, "all": 1100, "train_sample": 0}
    jobs = {name: 1, OTHER: 1}
    plans = budget.plan(50_000, jobs, dict.fromkeys(jobs, speed), rows, dict.fromkeys(jobs, 0),
                        dict.fromkeys(jobs, 10**6))
    epochs = {p.model: p.epochs for p in plans}
    assert epochs[name] / epochs[OTHER] == pytest.approx(facts(name).budget_share / 0.1, rel=0.01)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_default_set_follows_default_on(name):
    for device in ("cpu", "cuda"):
        assert (name in run_all.architectures(None, device)) == (device in facts(name).default_on)
    assert (name in bench.DEFAULT_MODELS.split(",")) == ("cpu" in facts(name).default_on)
    assert (name in models.STUDY_MODELS) == ("cpu" in facts(name).default_on)


def example_file() -> str:
    """The new-architecture example of docs/ARCHITECTURE.md, as written there."""
    doc = (REPO / "docs" / "ARCHITECTURE.md").read_text()
    (code,) = re.findall(r"```python\n(# models/tiny_net\.py\n.*?)```", doc, flags=re.S)
    return code


def test_a_new_architecture_is_one_file(tmp_path):
    """Copy models/, add the documented file, and run the registry-driven tests on it: timm's contract,
    the param/feature checks, and its facts reaching recipes, job costs, the budget and the default set."""
    shutil.copytree(REPO / "models", tmp_path / "models", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "models" / "tiny_net.py").write_text(example_file())
    env = {**os.environ, "PYTHONPATH": str(REPO)}  # competition from here; models from tmp_path (the cwd, first)
    tests = [str(REPO / "tests" / f) for f in ("test_models.py", "test_arch_facts.py")]
    done = subprocess.run([sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider", *tests,
                           "-k", "tiny_net or registry_of_the_models_package"],
                          cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    passed = set(re.findall(r"::(\w+)\[[^\]]*tiny_net[^\]]*\] PASSED", done.stdout))
    assert {"test_contract_default_cfg", "test_contract_torchscript", "test_contract_features_only",
            "test_contract_fx_forward_and_backward", "test_forward_backward_every_param_gets_a_gradient",
            "test_recipe_departures_come_from_the_model_file", "test_job_costs_are_the_image_cost",
            "test_budget_shares_minutes_by_budget_share", "test_default_set_follows_default_on"} <= passed
    assert "test_model_names_are_the_registry_of_the_models_package PASSED" in done.stdout
