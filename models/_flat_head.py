"""The timm model contract for a conv stack flattened into an MLP head, written once.

baseline_cnn, bn_cnn and vgg_fer differ only in their conv stages and hidden layers; the classifier, its reset
and the forward split (forward_features -> forward_head -> fc) are the same, so they live here. Not a model
file (the leading underscore keeps models/__init__ from importing it as one).
"""
import torch
from torch import nn

from timm.layers import to_2tuple


class FlatHeadNet(nn.Module):
    """Subclasses build `self.features`, then call `init_head` with their hidden layers."""

    def init_head(self, num_classes: int, drop_rate: float, pre_logits: nn.Module, hidden: int,
                  head_drop: float) -> None:
        self.num_classes, self.drop_rate = num_classes, drop_rate
        self.head_hidden_size = hidden  # width returned by forward_head(pre_logits=True)
        self.pre_logits = pre_logits
        self.head_drop = nn.Dropout(head_drop)
        self.fc = nn.Linear(hidden, num_classes) if num_classes > 0 else nn.Identity()

    @staticmethod
    def flat_size(channels: int, pools: int, img_size) -> int:
        """Values left after `pools` halvings of an img_size (int or (H, W)) image with `channels` channels."""
        h, w = (s // 2 ** pools for s in to_2tuple(img_size))
        return channels * h * w

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
