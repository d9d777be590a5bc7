"""vgg_fer: the VGG variant of Khaireddin & Chen 2021, "Facial Emotion Recognition: State of the Art Performance
on FER2013" (https://arxiv.org/abs/2105.03588), 73.28% single-network test accuracy trained from scratch.

Four stages of 2 x (Conv3x3 -> BatchNorm -> ReLU) then MaxPool2, 64, 128, 256 and 512 filters, take 1x48x48
down to 512x3x3 (4608 values); the head is Linear 4096 -> ReLU -> Dropout -> Linear 4096 -> ReLU -> Dropout
-> Linear 7. Dropout 0.2 is the default of the authors' code (github.com/usef-kh/fer, models/vgg.py,
`VggFeatures(drop=0.2)`; the paper's own text could not be read here). Two departures from that code, both
deliberate: it trains and tests on 40x40 ten-crops (512x2x2 at the end, a 2048-input first Linear) where we
feed the whole 48x48 face (3x3, 4608 inputs; ten-crop is our TTA level 3, resized back to 48); and it drops
out before the ReLU, which gives the same output as after it. 40,376,519 parameters, 504.15 M multiply-adds
per image (15 times bn_cnn): a model for GPUs.

    import models, timm
    model = timm.create_model("vgg_fer")  # 7 classes, 1 channel from the default cfg
"""
from torch import nn

from timm.models import generate_default_cfgs, register_model

from models._flat_head import FlatHeadNet, build_flat_head
from models.fer import fer_cfg


def vgg_stage(in_chs: int, out_chs: int, depth: int = 2) -> nn.Sequential:
    """`depth` x (Conv3x3 -> BN -> ReLU), then MaxPool2. Convs keep their bias, as in the authors' code."""
    layers = []
    for i in range(depth):
        layers += [nn.Conv2d(in_chs if i == 0 else out_chs, out_chs, kernel_size=3, padding=1),
                   nn.BatchNorm2d(out_chs), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers, nn.MaxPool2d(2))


class VggFer(FlatHeadNet):
    def __init__(
            self,
            num_classes: int = 7,
            in_chans: int = 1,
            drop_rate: float = 0.2,  # after each of the two hidden layers
            img_size=48,  # int or (H, W); the first Linear is sized from it
            global_pool: str = 'flatten',  # '' (with num_classes=0): no head, forward gives the unpooled map
            widths: tuple = (64, 128, 256, 512),
            depth: int = 2,  # convs per stage
            hidden: int = 4096,  # width of both hidden layers
    ):
        super().__init__()
        chs = (in_chans,) + tuple(widths)
        self.init_features([vgg_stage(chs[i], chs[i + 1], depth) for i in range(len(widths))], widths)
        self.flat_features = self.flat_size(chs[-1], len(widths), img_size)  # 512 * 3 * 3 = 4608 at 48x48
        pre_logits = nn.Sequential(
            nn.Flatten(1),
            nn.Linear(self.flat_features, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(drop_rate),
            nn.Linear(hidden, hidden),
            nn.ReLU(inplace=True),
        )
        self.init_head(num_classes, drop_rate, pre_logits, hidden, head_drop=drop_rate, global_pool=global_pool)


# Must sit above the register functions: timm reads it at registration, else 1000 classes and 3 channels.
default_cfgs = generate_default_cfgs({
    'vgg_fer': fer_cfg(first_conv='features.0.0', classifier='fc', pool_size=(3, 3)),
})


@register_model
def vgg_fer(pretrained: bool = False, **kwargs) -> VggFer:
    return build_flat_head(VggFer, 'vgg_fer', pretrained, **kwargs)
