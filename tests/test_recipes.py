"""`--set key=value` for every knob of Recipe, including Optional ones and `none` (issue #20). The knobs are
read from dataclasses.fields(Recipe), so a new knob is covered, or fails here until parse_value knows its type.
And get_recipe's light augmentation for schedules under a model's `light_below` epochs."""
import json
import typing
from dataclasses import fields, replace

import pytest

import models
from competition import folds, paths, train_folds
from competition.errors import SettingsError
from competition.recipes import LIGHT, QUICK, Recipe, get_recipe, is_light, parse_overrides
from models import air_fer
from tests.fake_runs import make_dataset
from tests.test_train_folds import FAST

SAMPLE = {int: ("7", 7), float: ("0.3", 0.3), bool: ("false", False), str: ("sgd", "sgd")}  # text -> value
KNOBS = [f for f in fields(Recipe) if f.name != "name"]


def arms(field) -> tuple[type, bool]:
    """(the field's concrete type, whether it is Optional)."""
    kinds = typing.get_args(field.type) or (field.type,)
    concrete = [k for k in kinds if k is not type(None)]
    assert len(concrete) == 1, f"{field.name}: {field.type}"
    return concrete[0], len(kinds) > 1


@pytest.mark.parametrize("field", KNOBS, ids=lambda f: f.name)
def test_every_recipe_knob_can_be_set(field):
    kind, optional = arms(field)
    text, value = SAMPLE[kind]
    assert parse_overrides([f"{field.name}={text}"]) == {field.name: value}
    assert type(parse_overrides([f"{field.name}={text}"])[field.name]) is kind
    assert getattr(get_recipe("strong", "bn_cnn", parse_overrides([f"{field.name}={text}"])), field.name) == value
    if optional:
        assert parse_overrides([f"{field.name}=none"]) == {field.name: None}
        assert parse_overrides([f"{field.name}=None"]) == {field.name: None}
    if kind is not str:
        with pytest.raises(SettingsError, match=rf"--set '{field.name}=abc': 'abc' is not valid for {field.name}"):
            parse_overrides([f"{field.name}=abc"])


def test_name_and_unknown_keys_are_refused():
    for pair in ("name=mine", "learning_rate=1", "lr"):
        with pytest.raises(SettingsError, match="expected key=value with key one of"):
            parse_overrides([pair])


def test_drop_rate_reaches_the_model_and_its_config(tmp_path):
    make_dataset(tmp_path, n_train=105)
    folds.main(["--k", "3"])
    for text, value in (("0.3", 0.3), ("none", None)):
        tag = f"d{text.replace('.', '')}"
        assert train_folds.main(["--model", "baseline_cnn", "--folds", "0", "--epochs", "1", "--tag", tag, *FAST,
                                 "--set", f"drop_rate={text}"]) == 0
        config = json.loads((paths.fold_dir(f"baseline_cnn.{tag}", 0) / "config.json").read_text())
        assert config["settings"]["drop_rate"] == value


@pytest.mark.parametrize("model", ["air_fer_s", "air_fer", "air_fer_l"])
def test_a_schedule_under_light_below_gets_the_light_augmentation(model):
    """air_fer's facts: under LIGHT_BELOW epochs (by --epochs or a budget's plan) flips and translation only,
    from it on the recipe's strong augmentation; a knob the user set keeps its value."""
    below = models.facts(model).light_below
    assert below == air_fer.LIGHT_BELOW > 1
    short, long = get_recipe("quick", model, {"epochs": below - 1}), get_recipe("quick", model, {"epochs": below})
    assert is_light(model, short) and not is_light(model, long)
    assert {k: getattr(short, k) for k in LIGHT} == LIGHT
    assert all(getattr(long, k) == getattr(QUICK, k) > 0 for k in LIGHT)  # the strong recipe's, all on
    assert short.pad == long.pad == 2 and short.flip and short.alt_flip  # translation and flips stay
    assert get_recipe("quick", model, {}, epochs=below - 1).rotate == 0  # a budget's plan, as --epochs
    assert get_recipe("quick", model, {"epochs": 40}, epochs=below).rotate == QUICK.rotate  # the plan, not the cap
    mine = get_recipe("quick", model, parse_overrides(["epochs=3", "erase=0.5"]))
    assert mine.erase == 0.5 and mine.rotate == 0  # the user's knob wins, the rest is light


def test_a_model_without_light_below_keeps_its_augmentation_at_any_length():
    assert models.facts("bn_cnn").light_below == 0
    assert get_recipe("quick", "bn_cnn", {"epochs": 1}) == replace(QUICK, epochs=1, batch_size=128)
