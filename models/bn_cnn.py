"""bn_cnn: Model 2 of the student's FER2013 study, a four-block CNN with batch norm and a two-layer MLP head.

Four Conv3x3 -> BatchNorm -> ReLU -> MaxPool2 blocks (32, 64, 128, 256 filters) take 1x48x48 down to
256x3x3 (2304 values); the head is Linear 512 -> BatchNorm1d -> ReLU -> Dropout 0.5 -> Linear 128 -> ReLU
-> Dropout 0.25 -> Linear 7.

    import models, timm
    model = timm.create_model("bn_cnn")  # 7 classes, 1 channel from the default cfg
"""
from torch import nn

from timm.models import generate_default_cfgs, register_model

from models._flat_head import FlatHeadNet, build_flat_head
from models.fer import ArchFacts, fer_cfg


def conv_bn_stage(in_chs: int, out_chs: int) -> nn.Sequential:
    """Conv3x3 -> BN -> ReLU -> MaxPool2. The conv keeps its bias, as in the study (BN makes it redundant)."""
    return nn.Sequential(
        nn.Conv2d(in_chs, out_chs, kernel_size=3, padding=1),
        nn.BatchNorm2d(out_chs),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )


class BnCnn(FlatHeadNet):
    def __init__(
            self,
            num_classes: int = 7,
            in_chans: int = 1,
            drop_rate: float = 0.5,  # after the 512-unit layer
            drop_rate_last: float = 0.25,  # after the 128-unit layer, just before the classifier
            img_size=48,  # int or (H, W); the first Linear is sized from it
            global_pool: str = 'flatten',  # '' (with num_classes=0): no head, forward gives the unpooled map
            widths: tuple = (32, 64, 128, 256),
            hidden: tuple = (512, 128),
    ):
        super().__init__()
        chs = (in_chans,) + tuple(widths)
        self.init_features([conv_bn_stage(chs[i], chs[i + 1]) for i in range(len(widths))], widths)
        self.flat_features = self.flat_size(chs[-1], len(widths), img_size)  # 256 * 3 * 3 = 2304 at 48x48
        pre_logits = nn.Sequential(
            nn.Flatten(1),
            nn.Linear(self.flat_features, hidden[0]),
            nn.BatchNorm1d(hidden[0]),
            nn.ReLU(inplace=True),
            nn.Dropout(drop_rate),
            nn.Linear(hidden[0], hidden[1]),
            nn.ReLU(inplace=True),
        )
        self.init_head(num_classes, drop_rate, pre_logits, hidden[1], head_drop=drop_rate_last,
                       global_pool=global_pool)


# Must sit above the register functions: timm reads it at registration, else 1000 classes and 3 channels.
default_cfgs = generate_default_cfgs({
    'bn_cnn': fer_cfg(first_conv='features.0.0', classifier='fc', pool_size=(3, 3)),
})

arch_facts = {
    'bn_cnn': ArchFacts(
        image_cost={'cpu': 4, 'cuda': 2},
        budget_share=0.8,  # where the accuracy comes from on a CPU (competition.budget's docstring)
        study=("Model 2", "four conv blocks with batch norm, a deeper MLP head", "58%"),
        default_on=('cpu', 'cuda')),
}


@register_model
def bn_cnn(pretrained: bool = False, **kwargs) -> BnCnn:
    return build_flat_head(BnCnn, 'bn_cnn', pretrained, **kwargs)
