"""resnet_cbam, resnet_cbam48: Model 3 of the student's FER2013 study, a ResNet-18 with CBAM after each stage.

ResNet-18 (He et al. 2016, https://arxiv.org/abs/1512.03385): a stem, then four stages of two basic residual
blocks (64, 128/s2, 256/s2, 512/s2). Each stage ends in CBAM (Woo et al. 2018, https://arxiv.org/abs/1807.06521):
channel attention then spatial attention, here timm's `CbamModule` via `create_attn("cbam", chs)`. Global
average pooling, dropout 0.3, Linear 512 -> 7.

Two variants of one class, differing only in the stem:
  resnet_cbam    the study's ImageNet stem, Conv7x7/s2 + MaxPool3/s2: 48 -> 12 before the stages, 2x2 at the end
  resnet_cbam48  Conv3x3/s1 and no max-pool: 48 stays 48 before the stages, 6x6 at the end

    import models, timm
    model = timm.create_model("resnet_cbam48")  # 7 classes, 1 channel from the default cfg
"""
import torch
from torch import nn

from timm.layers import ClassifierHead, create_attn
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model

from models.fer import ArchFacts, fer_cfg
from timm.models.resnet import BasicBlock, downsample_conv


def make_stage(in_chs: int, out_chs: int, depth: int, stride: int, attn_layer) -> nn.Sequential:
    """`depth` basic blocks, the first one striding (1x1 conv + BN shortcut when the shape changes), then attention."""
    blocks = []
    for i in range(depth):
        down = downsample_conv(in_chs, out_chs, 1, stride) if i == 0 and (stride != 1 or in_chs != out_chs) else None
        blocks.append(BasicBlock(in_chs if i == 0 else out_chs, out_chs, stride if i == 0 else 1, downsample=down))
    attn = create_attn(attn_layer, out_chs)  # None when attn_layer is '' or None: a plain ResNet stage
    blocks.append(attn if attn is not None else nn.Identity())
    return nn.Sequential(*blocks)


class ResNetCbam(nn.Module):
    def __init__(
            self,
            num_classes: int = 7,
            in_chans: int = 1,
            drop_rate: float = 0.3,
            small_stem: bool = False,  # True: Conv3x3/s1, no max-pool (keeps 48x48 faces at 6x6 in the last stage)
            depths: tuple = (2, 2, 2, 2),
            widths: tuple = (64, 128, 256, 512),
            attn_layer: str = 'cbam',  # a timm.layers.create_attn type; '' for none (create_model drops None kwargs)
            global_pool: str = 'avg',
            zero_init_last: bool = False,  # zero the last BN gamma of each block (timm's default, not the study's)
    ):
        super().__init__()
        self.num_classes = num_classes
        self.drop_rate = drop_rate
        stem_k, stem_s = (3, 1) if small_stem else (7, 2)
        self.stem = nn.Sequential(
            nn.Conv2d(in_chans, widths[0], stem_k, stride=stem_s, padding=stem_k // 2, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        )
        self.stem_pool = nn.Identity() if small_stem else nn.MaxPool2d(3, stride=2, padding=1)
        reduction = 1 if small_stem else 4
        stages, self.feature_info, in_chs = [], [], widths[0]
        for i, (depth, chs) in enumerate(zip(depths, widths)):
            stride = 1 if i == 0 else 2
            reduction *= stride
            stages.append(make_stage(in_chs, chs, depth, stride, attn_layer))
            self.feature_info.append(dict(num_chs=chs, reduction=reduction, module=f'stages.{i}'))
            in_chs = chs
        self.stages = nn.Sequential(*stages)
        self.num_features = self.head_hidden_size = in_chs
        self.head = ClassifierHead(in_chs, num_classes, pool_type=global_pool, drop_rate=drop_rate)
        self.init_weights(zero_init_last)

    @torch.jit.ignore
    def init_weights(self, zero_init_last: bool = False) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):  # He init as in torchvision / timm ResNets
                nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')
        if zero_init_last:
            for m in self.modules():
                if isinstance(m, BasicBlock):
                    m.zero_init_last()

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head.fc

    def reset_classifier(self, num_classes: int, global_pool: str = None) -> None:
        self.num_classes = num_classes
        self.head.reset(num_classes, pool_type=global_pool)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem_pool(self.stem(x))
        return self.stages(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


# Must sit above the register functions: timm reads it at registration, else 1000 classes and 3 channels.
default_cfgs = generate_default_cfgs({
    'resnet_cbam': fer_cfg(first_conv='stem.0', classifier='head.fc', pool_size=(2, 2),
                           fixed_input_size=False),
    'resnet_cbam48': fer_cfg(first_conv='stem.0', classifier='head.fc', pool_size=(6, 6),
                             fixed_input_size=False),
})

# The study tuned Model 3 apart: a smaller lr, an earlier decay.
_STUDY = dict(lr=5e-4, decay_epochs=15, patience=8, epochs=50)
arch_facts = {
    'resnet_cbam': ArchFacts(
        image_cost={'cpu': 10, 'cuda': 9}, recipe_overrides={'study': _STUDY},
        study=("Model 3", "ResNet-18 with CBAM attention after each stage; ImageNet stem (48 -> 12 px)", "60%"),
        default_on=('cpu', 'cuda')),
    'resnet_cbam48': ArchFacts(
        image_cost={'cpu': 108, 'cuda': 15}, recipe_overrides={'study': _STUDY},
        study=("Model 3, 48 px stem", "the same ResNet-18 + CBAM with a 3x3 stride-1 stem: stages see 48 px", "-"),
        default_on=('cuda',)),  # the best single model the host measured (68.9% fold 0), too dear on a CPU
}


def _create_resnet_cbam(variant: str, pretrained: bool = False, **kwargs) -> ResNetCbam:
    feature_cfg = dict(flatten_sequential=True, out_indices=(0, 1, 2, 3))  # features_only=True: the four stages
    return build_model_with_cfg(ResNetCbam, variant, pretrained, feature_cfg=feature_cfg, **kwargs)


@register_model
def resnet_cbam(pretrained: bool = False, **kwargs) -> ResNetCbam:
    return _create_resnet_cbam('resnet_cbam', pretrained, **kwargs)


@register_model
def resnet_cbam48(pretrained: bool = False, **kwargs) -> ResNetCbam:
    model_args = dict(small_stem=True)
    return _create_resnet_cbam('resnet_cbam48', pretrained, **dict(model_args, **kwargs))
