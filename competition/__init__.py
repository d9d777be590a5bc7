"""fer-harness: a Kaggle harness for the FER2013 facial expression challenge.

Every command is a module: `python -m competition.download`, `.folds`, `.train_folds`, `.ensemble`,
`.submit`, `.report`, `.bench`, `.run_all`. Where a run's files live on disk is `competition.artifacts`;
how the modules fit together is docs/ARCHITECTURE.md.
"""
import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # no update check over the network at its import (any module)

INPUT_FACTS = ("CLASSES", "IMAGE_SIZE", "NUM_CLASSES")  # stated once, in models/fer.py


def __getattr__(name: str):
    """`from competition import CLASSES` reads models/fer.py on first use, not at `import competition`: importing
    the models package registers every architecture with timm (torch and all), which a module that only renders
    text (report_markdown) must not pay for."""
    if name in INPUT_FACTS:
        from models import fer
        return getattr(fer, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

SLUG = "challenges-in-representation-learning-facial-expression-recognition-challenge"
