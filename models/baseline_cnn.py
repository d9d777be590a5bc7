"""baseline_cnn: Model 1 of the student's FER2013 study, a two-conv CNN with an MLP head.

Two Conv3x3 -> ReLU -> MaxPool2 stages shrink 1x48x48 to 32x12x12 (4608 values); a 128-unit hidden layer
with dropout 0.5 classifies. No normalisation layers: this is the study's floor, kept as described.

    import models, timm
    model = timm.create_model("baseline_cnn")  # 7 classes, 1 channel from the default cfg
"""
from torch import nn

from timm.models import generate_default_cfgs, register_model

from models._flat_head import FlatHeadNet, build_flat_head
from models.fer import ArchFacts, fer_cfg


def conv_stage(in_chs: int, out_chs: int) -> nn.Sequential:
    """Conv3x3 (same padding) -> ReLU -> MaxPool2: halves height and width."""
    return nn.Sequential(
        nn.Conv2d(in_chs, out_chs, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )


class BaselineCnn(FlatHeadNet):
    def __init__(
            self,
            num_classes: int = 7,
            in_chans: int = 1,
            drop_rate: float = 0.5,
            img_size=48,  # int or (H, W); the first Linear is sized from it
            global_pool: str = 'flatten',  # '' (with num_classes=0): no head, forward gives the unpooled map
            widths: tuple = (16, 32),
            hidden: int = 128,
    ):
        super().__init__()
        chs = (in_chans,) + tuple(widths)
        self.init_features([conv_stage(chs[i], chs[i + 1]) for i in range(len(widths))], widths)
        self.flat_features = self.flat_size(chs[-1], len(widths), img_size)  # 32 * 12 * 12 = 4608 at 48x48
        pre_logits = nn.Sequential(nn.Flatten(1), nn.Linear(self.flat_features, hidden), nn.ReLU(inplace=True))
        self.init_head(num_classes, drop_rate, pre_logits, hidden, head_drop=drop_rate, global_pool=global_pool)


# Must sit above the register functions: timm reads it at registration, else 1000 classes and 3 channels.
default_cfgs = generate_default_cfgs({
    'baseline_cnn': fer_cfg(first_conv='features.0.0', classifier='fc', pool_size=(12, 12)),
})

# Weight decay 0.01 and a slower EMA: without normalisation layers it overfits under the strong recipe's defaults.
_STRONG = dict(weight_decay=0.01, ema_decay=0.998)
arch_facts = {
    'baseline_cnn': ArchFacts(
        image_cost={'cpu': 1, 'cuda': 1}, recipe_overrides={'strong': _STRONG, 'quick': _STRONG},
        study=("Model 1", "two conv stages and an MLP head, no normalisation: the floor",
               "52% train / 70% val (unreliable: val above train)"),
        default_on=('cpu', 'cuda')),
}


@register_model
def baseline_cnn(pretrained: bool = False, **kwargs) -> BaselineCnn:
    return build_flat_head(BaselineCnn, 'baseline_cnn', pretrained, **kwargs)
