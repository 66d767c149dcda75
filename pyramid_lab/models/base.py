"""``ConvNet``: the contract every model family follows (the head, ``num_features``, shared checks)."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from pyramid_lab.errors import ConfigError


class ConvNet(nn.Module):
    """Base of every model: a feature extractor, then global average pooling and one linear layer.

    Subclasses build their layers, call :meth:`_make_head` last and implement
    :meth:`forward_features`; ``forward_head`` and ``forward`` are defined here once. The head has
    no parameters but ``fc``, so its state-dict keys are ``fc.weight`` and ``fc.bias`` in every
    family. Pre-activation networks (PyramidNet, WRN, DenseNet) end their features with the final
    norm and activation; post-activation ones (ResNet, VGG) already end on one.

    Args:
        num_classes: outputs of the linear head.
        in_chans: channels of the input images.

    Raises:
        ConfigError: for ``num_classes`` or ``in_chans`` below 1.
    """

    # Old state-dict key prefix -> new one, so that checkpoints written before a rename still load.
    legacy_keys: ClassVar[dict[str, str]] = {}

    def __init__(self, num_classes: int, in_chans: int) -> None:
        super().__init__()
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ConfigError(f"model.num_classes={num_classes} is invalid; valid: an integer >= 1")
        if not isinstance(in_chans, int) or in_chans < 1:
            raise ConfigError(f"model.in_chans={in_chans} is invalid; valid: an integer >= 1 (3 for RGB)")
        self.num_classes = num_classes
        self.in_chans = in_chans

    def _make_head(self, num_features: int) -> None:
        """Set ``num_features`` and the classifier ``fc``; called last in a subclass's ``__init__``."""
        self.num_features = num_features
        self.fc = nn.Linear(num_features, self.num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_chans, H, W) images -> (B, num_features, h, w) feature map, before pooling."""
        raise NotImplementedError

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """(B, num_features, h, w) features -> (B, num_classes) logits, or the pooled
        (B, num_features) features when ``pre_logits``."""
        # Global average pooling: the references' AvgPool2d(8) on 32x32 inputs, for any size.
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_chans, H, W) images -> (B, num_classes) logits."""
        return self.forward_head(self.forward_features(x))

    def _load_from_state_dict(
        self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any
    ) -> None:
        # The hook nn.Module.load_state_dict calls per module, before its children's: renaming here
        # lets the children find their keys under the new names.
        for old, new in self.legacy_keys.items():
            for key in [k for k in state_dict if k.startswith(prefix + old)]:
                state_dict[prefix + new + key[len(prefix + old) :]] = state_dict.pop(key)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
