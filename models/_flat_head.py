"""The timm model contract for a conv stack flattened into an MLP head, written once.

baseline_cnn, bn_cnn and vgg_fer differ only in their conv stages and hidden layers; the stages' feature_info,
the classifier, its reset and the forward split (forward_features -> forward_head -> fc) are the same, so they
live here. Not a model file (the leading underscore keeps models/__init__ from importing it as one).

The flatten plays the part of timm's global pool: `global_pool=''` (in the constructor or `reset_classifier`)
skips it and the hidden layers, so that with `num_classes=0` the model returns its unpooled feature map, as any
timm model does. `features_only=True` gives one level per conv stage.
"""
import inspect

import torch
from torch import nn

from timm.layers import to_2tuple
from timm.models import build_model_with_cfg


class FlatHeadNet(nn.Module):
    """Subclasses call `init_features` with their conv stages, then `init_head` with their hidden layers."""

    def init_features(self, stages: list, widths: tuple) -> None:
        """The conv stages, each halving H and W, with `widths[i]` channels out of stage i."""
        self.features = nn.Sequential(*stages)
        self.num_features = widths[-1]  # timm meaning: channels of forward_features' output
        self.feature_info = [dict(num_chs=chs, reduction=2 ** (i + 1), module=f'features.{i}')
                             for i, chs in enumerate(widths)]

    def init_head(self, num_classes: int, drop_rate: float, pre_logits: nn.Module, hidden: int,
                  head_drop: float, global_pool: str = 'flatten') -> None:
        self.drop_rate = drop_rate
        self.head_hidden_size = hidden  # width returned by forward_head(pre_logits=True)
        self.pre_logits = pre_logits
        self.head_drop = nn.Dropout(head_drop)
        self.reset_classifier(num_classes, global_pool)

    @staticmethod
    def flat_size(channels: int, pools: int, img_size) -> int:
        """Values left after `pools` halvings of an img_size (int or (H, W)) image with `channels` channels."""
        h, w = (s // 2 ** pools for s in to_2tuple(img_size))
        return channels * h * w

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int, global_pool: str = None) -> None:
        """`global_pool`: None keeps the current one; 'flatten' the MLP head; '' none (needs num_classes=0)."""
        if global_pool is not None:
            if global_pool not in ('flatten', ''):
                raise ValueError(f"global_pool must be 'flatten' or '' (no head), not {global_pool!r}")
            self.global_pool = global_pool
        if num_classes and not self.global_pool:
            raise ValueError("global_pool='' keeps the unpooled map, which has no classifier: use num_classes=0")
        self.num_classes = num_classes
        self.fc = nn.Linear(self.head_hidden_size, num_classes) if num_classes > 0 else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if not self.global_pool:
            return x
        x = self.head_drop(self.pre_logits(x))
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def build_flat_head(model_cls: type, variant: str, pretrained: bool, **kwargs) -> FlatHeadNet:
    """timm's build_model_with_cfg; features_only=True returns every conv stage's output."""
    widths = kwargs.get('widths', inspect.signature(model_cls).parameters['widths'].default)
    feature_cfg = dict(flatten_sequential=True, out_indices=tuple(range(len(widths))))
    return build_model_with_cfg(model_cls, variant, pretrained, feature_cfg=feature_cfg, **kwargs)
