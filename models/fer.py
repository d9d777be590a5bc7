"""What the harness knows of a FER2013 model, stated once: the input and output (48x48 grayscale in, 7 emotions
out, how pixels are scaled), and the shape of each architecture's own facts (`ArchFacts`).

Every model file's default cfg comes from `fer_cfg()`, and the augmentation normalises with MEAN/STD, so
the two can't disagree. Beside its `default_cfgs`, a model file may give `arch_facts`, one `ArchFacts` per
name it registers: what it costs, how a budget shares minutes with it, its recipe departures, the study's figures
for it, whether it is trained by default, and under how many epochs its augmentation is light.
`models.facts(name)` looks them up, with the defaults for any other name (a timm architecture).

    from models.fer import ArchFacts, fer_cfg
    default_cfgs = generate_default_cfgs({'my_net': fer_cfg(first_conv='stem.0', classifier='head.fc')})
    arch_facts = {'my_net': ArchFacts(image_cost={'cpu': 3, 'cuda': 2}, default_on=('cuda',))}
"""
from dataclasses import dataclass, field

CLASSES = ("Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Neutral")
NUM_CLASSES = len(CLASSES)
IMAGE_SIZE = 48  # pixels, square
IN_CHANS = 1  # grayscale
MEAN, STD = 0.5, 0.25  # of pixel/255 over FER2013's Training rows, rounded


def fer_cfg(**kwargs) -> dict:
    """timm default cfg for a FER2013 model; kwargs add or replace keys (first_conv, classifier, pool_size)."""
    return {
        'num_classes': NUM_CLASSES, 'input_size': (IN_CHANS, IMAGE_SIZE, IMAGE_SIZE), 'pool_size': None,
        'fixed_input_size': True, 'mean': (MEAN,), 'std': (STD,), **kwargs,
    }


@dataclass(frozen=True)
class ArchFacts:
    """One architecture's facts beyond timm's cfg, read by the modules named per field; each has a default."""
    # Relative cost of one training image by device type, for dealing jobs to processes (train_folds): CPU epoch
    # seconds on 2 cores, GPU bare-step img/s at batch 512 on an H200. A device left out: the dearest known.
    image_cost: dict = field(default_factory=dict)
    budget_share: float = 0.1  # of a --budget's training minutes, against the other architectures' (budget)
    recipe_overrides: dict = field(default_factory=dict)  # recipe name -> {knob: value} it departs with (recipes)
    study: tuple = ()  # the report's study row: (its name in the study, what it changes, what the study reported)
    default_on: tuple = ()  # runs where run_all trains it (and bench times it) unasked: "cpu", "cuda", "quick"
    cheaper: str = ""  # a smaller sibling that run_all --quick trains instead where the budget gives this one too
    # few epochs on the machine it runs on (a slow CPU): more epochs of a smaller net pay more there (run_all)
    light_below: int = 0  # a schedule of fewer epochs trains with light augmentation, flips and translation only
    # (recipes.LIGHT): short ones underfit, and the rest of the augmentation costs them accuracy; 0 = never (recipes)
