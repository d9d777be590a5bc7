"""models: our architectures, registered in timm's model registry, one file each, with their facts.

Importing this package imports every model file here (any `models/<name>.py` but fer.py), which runs its
`@register_model` functions, so afterwards `timm.create_model(name)` builds any of MODEL_NAMES with 7 classes
and 1 input channel from its default cfg; without the import timm answers "Unknown model". Each file's
`arch_facts` (models.fer.ArchFacts: cost, budget share, recipe departures, the study's figures, the default set)
are read through `facts(name)`. Adding an architecture is adding one file. Model name = registry name =
`--model` value = output folder.

    import models, timm
    model = timm.create_model("bn_cnn")
    models.facts("bn_cnn").image_cost["cpu"]  # 4: four times baseline_cnn's epoch
"""
import importlib
import pkgutil
from dataclasses import replace

import timm

from models.fer import ArchFacts

_FACTS = {}  # name -> ArchFacts, from each model file's `arch_facts`


def _register_files() -> tuple[str, ...]:
    """Import each model file; return the names it registered, file by file (alphabetical), in its order."""
    names = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name == "fer" or info.name.startswith("_"):
            continue
        before = set(timm.list_models())
        module = importlib.import_module(f"{__name__}.{info.name}")
        new = set(timm.list_models()) - before
        names += [n for n in vars(module) if n in new]  # definition order, not alphabetical
        facts = getattr(module, "arch_facts", {})
        if set(facts) - new:
            raise ValueError(f"{module.__file__}: arch_facts names {sorted(set(facts) - new)}, which it does not "
                             f"register (it registers {sorted(new)})")
        _FACTS.update(facts)
    return tuple(names)


def facts(name: str) -> ArchFacts:
    """The facts of an architecture: its file's `arch_facts`, else ArchFacts' defaults (any timm name). A device
    type missing from image_cost costs as much as the dearest architecture known there."""
    known = _FACTS.get(name, ArchFacts())
    devices = {d for f in _FACTS.values() for d in f.image_cost}
    dearest = {d: max(f.image_cost[d] for f in _FACTS.values() if d in f.image_cost) for d in devices}
    return replace(known, image_cost={**dearest, **known.image_cost})


def default_archs(device_type: str) -> tuple[str, ...]:
    """The architectures trained when none are named, in MODEL_NAMES' order: those whose facts say so here."""
    return tuple(n for n in MODEL_NAMES if device_type in facts(n).default_on)


MODEL_NAMES = _register_files()  # ours; `--model` also takes any other timm name (see competition.engine)
STUDY_MODELS = default_archs("cpu")  # the student's Models 1, 2 and 3: the default set on any device
