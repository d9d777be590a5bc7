"""models: our architectures, registered in timm's model registry, one file each.

Importing this package imports every model file here (any `models/<name>.py` but fer.py), which runs its
`@register_model` functions, so afterwards `timm.create_model(name)` builds any of MODEL_NAMES with 7 classes
and 1 input channel from its default cfg; without the import timm answers "Unknown model". Adding an
architecture is adding one file. Model name = registry name = `--model` value = output folder.

    import models, timm
    model = timm.create_model("bn_cnn")
"""
import importlib
import pkgutil

import timm



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
    return tuple(names)


MODEL_NAMES = _register_files()  # ours; `--model` also takes any other timm name (see competition.engine)
STUDY_MODELS = ("baseline_cnn", "bn_cnn", "resnet_cbam")  # the student's Models 1, 2 and 3
