"""MixUp and CutMix on a training batch, with a switch between them (timm's ``Mixup`` semantics).

The mixing itself is torchvision's (``torchvision.transforms.v2.MixUp`` / ``CutMix``): one lambda
per batch drawn from Beta(alpha, alpha) on the host (no device synchronisation), each image paired
with its neighbour in the (shuffled) batch, CutMix's lambda corrected to the pasted box's true area,
and soft targets ``lam * onehot(y) + (1 - lam) * onehot(y_partner)`` that sum to one. One lambda
per batch is the papers' own convention (Zhang et al. 2018 mixup; Yun et al. 2019 CutMix).

The loss takes the soft targets as they are: ``torch.nn.functional.cross_entropy`` accepts class
probabilities, and its ``label_smoothing`` then smooths them (``(1 - eps) * targets + eps / K``),
so label smoothing still combines. Train accuracy against soft targets is counted against the
dominant label (:func:`dominant_label`) and must be logged under a name that says so
(``train/acc_dominant``).
"""

from __future__ import annotations

import torch
import torchvision.transforms.v2 as T
from torch import Tensor

from pyramid_lab.errors import ConfigError

__all__ = ["MixCut", "dominant_label"]


def dominant_label(targets: Tensor) -> Tensor:
    """The class with the largest share of each soft target ``[B, K]`` -> ``[B]`` (ties: the lower
    class index, as ``argmax``)."""
    return targets.argmax(dim=-1)


class MixCut:
    """MixUp (Zhang et al. 2018) and/or CutMix (Yun et al. 2019) applied to a batch.

    With both alphas > 0, each batch gets CutMix with probability ``switch_prob`` and MixUp
    otherwise (timm's ``Mixup(switch_prob=...)``); with one alpha > 0, that one. ``prob`` is the
    probability that a batch is mixed at all (unmixed batches get one-hot targets). The papers'
    CIFAR settings: mixup alpha 1.0 (Zhang et al. 2018), CutMix alpha 1.0 with prob 0.5 on
    PyramidNet (Yun et al. 2019).

    Args:
        num_classes: K, the width of the soft targets.
        mixup_alpha: Beta(alpha, alpha) of MixUp's lambda; 0 = no MixUp.
        cutmix_alpha: Beta(alpha, alpha) of CutMix's lambda; 0 = no CutMix.
        switch_prob: probability of CutMix rather than MixUp when both are on.
        prob: probability of mixing a batch at all.
    """

    def __init__(
        self,
        num_classes: int,
        mixup_alpha: float = 0.0,
        cutmix_alpha: float = 0.0,
        switch_prob: float = 0.5,
        prob: float = 1.0,
    ) -> None:
        for key, value in (("mixup_alpha", mixup_alpha), ("cutmix_alpha", cutmix_alpha)):
            if not value >= 0:
                raise ConfigError(f"module.mixing.{key}={value!r} must be >= 0 (0 = off; the papers use 1.0)")
        for key, value in (("switch_prob", switch_prob), ("prob", prob)):
            if not 0 <= value <= 1:
                raise ConfigError(f"module.mixing.{key}={value!r} must be a probability in [0, 1]")
        if mixup_alpha == 0 and cutmix_alpha == 0:
            raise ConfigError(
                "module.mixing needs mixup_alpha > 0 or cutmix_alpha > 0 (or set "
                "module.mixing=null to turn mixing off)"
            )
        self.num_classes = int(num_classes)
        self.mixup_alpha, self.cutmix_alpha = float(mixup_alpha), float(cutmix_alpha)
        self.switch_prob, self.prob = float(switch_prob), float(prob)
        self._mixup = T.MixUp(alpha=mixup_alpha, num_classes=num_classes) if mixup_alpha else None
        self._cutmix = T.CutMix(alpha=cutmix_alpha, num_classes=num_classes) if cutmix_alpha else None

    def __call__(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """Mix a batch.

        Args:
            x: ``[B, C, H, W]`` float images (normalised or not).
            y: ``[B]`` int64 class indices.

        Returns:
            ``(mixed images [B, C, H, W], soft targets [B, K] float32 summing to 1)``.
        """
        # Host-side draws (torch's global CPU generator, saved in our checkpoints): no sync.
        if self.prob < 1 and float(torch.rand(())) >= self.prob:
            return x, torch.nn.functional.one_hot(y, self.num_classes).to(torch.float32)
        use_cutmix = self._mixup is None or (
            self._cutmix is not None and float(torch.rand(())) < self.switch_prob
        )
        mix = self._cutmix if use_cutmix else self._mixup
        x, targets = mix(x, y)
        return x, targets.to(torch.float32)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(mixup_alpha={self.mixup_alpha}, "
            f"cutmix_alpha={self.cutmix_alpha}, switch_prob={self.switch_prob}, "
            f"prob={self.prob})"
        )
