"""models: the study's architectures, registered in timm's model registry.

Importing this package runs each model file's `@register_model` functions, so afterwards
`timm.create_model(name)` builds any of MODEL_NAMES with 7 classes and 1 input channel from its default cfg;
without the import timm answers "Unknown model". Model name = registry name = `--model` value = output folder.

    import models, timm
    model = timm.create_model("bn_cnn")
"""
from . import baseline_cnn, bn_cnn, resnet_cbam  # noqa: F401  (imported for their registration side effect)

MODEL_NAMES = ("baseline_cnn", "bn_cnn", "resnet_cbam", "resnet_cbam48")
