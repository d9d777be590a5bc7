"""baseline_cnn: Model 1 of the student's FER2013 study, a two-conv CNN with an MLP head.

Two Conv3x3 -> ReLU -> MaxPool2 stages shrink 1x48x48 to 32x12x12 (4608 values); a 128-unit hidden layer
with dropout 0.5 classifies. No normalisation layers: this is the study's floor, kept as described.

    import models, timm
    model = timm.create_model("baseline_cnn")  # 7 classes, 1 channel from the default cfg
"""
import torch
from torch import nn

from timm.layers import to_2tuple
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model

from models.fer import fer_cfg


def conv_stage(in_chs: int, out_chs: int) -> nn.Sequential:
    """Conv3x3 (same padding) -> ReLU -> MaxPool2: halves height and width."""
    return nn.Sequential(
        nn.Conv2d(in_chs, out_chs, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )


class BaselineCnn(nn.Module):
    def __init__(
            self,
            num_classes: int = 7,
            in_chans: int = 1,
            drop_rate: float = 0.5,
            img_size=48,  # int or (H, W); the first Linear is sized from it
            widths: tuple = (16, 32),
            hidden: int = 128,
    ):
        super().__init__()
        self.num_classes = num_classes
        self.drop_rate = drop_rate
        chs = (in_chans,) + tuple(widths)
        self.features = nn.Sequential(*[conv_stage(chs[i], chs[i + 1]) for i in range(len(widths))])
        self.num_features = chs[-1]  # timm meaning: channels of forward_features' output
        h, w = (s // 2 ** len(widths) for s in to_2tuple(img_size))
        self.flat_features = chs[-1] * h * w  # 32 * 12 * 12 = 4608 at 48x48
        self.head_hidden_size = hidden  # width returned by forward_head(pre_logits=True)
        self.pre_logits = nn.Sequential(nn.Flatten(1), nn.Linear(self.flat_features, hidden), nn.ReLU(inplace=True))
        self.head_drop = nn.Dropout(drop_rate)
        self.fc = nn.Linear(hidden, num_classes) if num_classes > 0 else nn.Identity()

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.fc = nn.Linear(self.head_hidden_size, num_classes) if num_classes > 0 else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.head_drop(self.pre_logits(x))
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


# Must sit above the register functions: timm reads it at registration, else 1000 classes and 3 channels.
default_cfgs = generate_default_cfgs({
    'baseline_cnn': fer_cfg(first_conv='features.0.0', classifier='fc'),
})


@register_model
def baseline_cnn(pretrained: bool = False, **kwargs) -> BaselineCnn:
    return build_model_with_cfg(BaselineCnn, 'baseline_cnn', pretrained, **kwargs)
