"""The FER2013 input and output, stated once: 48x48 grayscale in, 7 emotions out, and how pixels are scaled.

Every model file's default cfg comes from `fer_cfg()`, and the augmentation normalises with MEAN/STD, so
the two can't disagree.

    from models.fer import fer_cfg
    default_cfgs = generate_default_cfgs({'my_net': fer_cfg(first_conv='stem.0', classifier='head.fc')})
"""
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
