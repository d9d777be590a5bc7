"""fer-harness: a Kaggle harness for the FER2013 facial expression challenge.

Every command is a module: `python -m competition.download`, `.folds`, `.train_folds`, `.ensemble`,
`.submit`, `.report`, `.bench`, `.run_all`. Where a run's files live on disk is `competition.artifacts`;
how the modules fit together is docs/ARCHITECTURE.md.
"""
import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # no update check over the network at its import (any module)

from models.fer import CLASSES, IMAGE_SIZE, NUM_CLASSES  # noqa: F401,E402  (stated once, in models/fer.py)

SLUG = "challenges-in-representation-learning-facial-expression-recognition-challenge"
