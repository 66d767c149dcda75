"""Test-time augmentation: the image and its horizontal flip, averaged."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

__all__ = ["tta_logits"]


def tta_logits(model: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """Log of the mean softmax of ``x`` and of its left-right mirror image.

    The two views are averaged as probabilities, like any ensemble here (the snapshot ensemble's
    ``test/acc_ensemble`` averages softmax outputs too): each view contributes its confidence,
    and the result is a proper distribution. Averaging logits instead would weight a view by the
    scale of its logits. The log makes the result a drop-in for logits: ``argmax`` gives the
    ensemble's prediction and ``cross_entropy`` its negative log-likelihood. Both views go through
    the model as one batch of ``2B`` (one forward pass; in eval mode BatchNorm does not mix them).

    Args:
        model: ``[N, C, H, W] -> [N, K]`` logits, in eval mode.
        x: ``[B, C, H, W]`` images, as the model takes them (normalised).

    Returns:
        ``[B, K]`` float32 log-probabilities.
    """
    b = x.shape[0]
    probs = model(torch.cat([x, x.flip(-1)])).float().softmax(-1)
    return ((probs[:b] + probs[b:]) / 2).log()
