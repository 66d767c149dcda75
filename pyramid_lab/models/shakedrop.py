"""ShakeDrop regularisation (Yamada et al. 2018, "ShakeDrop Regularization for Deep Residual Learning")."""

from __future__ import annotations

import torch
from torch import nn


def shake_drop(x: torch.Tensor, drop_prob: float, training: bool = True) -> torch.Tensor:
    """Scale a residual branch ``F(x)`` by ShakeDrop's random coefficient.

    Training: forward ``(b + alpha - b*alpha) * x`` and backward ``(b + beta - b*beta) * grad``, with
    ``b ~ Bernoulli(1 - drop_prob)`` once per mini-batch, ``alpha ~ U[-1, 1]`` and ``beta ~ U[0, 1]``
    per sample, drawn independently (Yamada et al. 2018, Eq. 3 and Table 2, the PyramidNet setting).
    Eval: the expectation ``E[b + alpha - b*alpha] = 1 - drop_prob``.

    Args:
        x: the residual branch output, shape (B, C, H, W) or any (B, ...).
        drop_prob: probability that the block is perturbed (``1 - p_l`` in the paper), in [0, 1].
        training: draw the random coefficients (True) or use the expectation (False).
    """
    if drop_prob == 0.0:
        return x
    if not training:
        return x * (1.0 - drop_prob)
    shape = (x.shape[0],) + (1,) * (x.dim() - 1)
    # b stays a tensor: no branch on its value, so no host sync and no graph break under compile.
    # where(b, 1, alpha) is b + alpha - b*alpha for b in {0, 1}, exact in floating point.
    keep = torch.rand((1,) * x.dim(), device=x.device) >= drop_prob
    alpha = torch.empty(shape, device=x.device, dtype=x.dtype).uniform_(-1.0, 1.0)
    beta = torch.rand(shape, device=x.device, dtype=x.dtype)
    forward_scale = torch.where(keep, 1.0, alpha)
    backward_scale = torch.where(keep, 1.0, beta)
    # Value x * forward_scale, gradient backward_scale: the detached term carries the difference.
    return x * backward_scale + (x * (forward_scale - backward_scale)).detach()


class ShakeDrop(nn.Module):
    """Module form of :func:`shake_drop` for one residual block with a fixed ``drop_prob``."""

    def __init__(self, drop_prob: float = 0.5) -> None:
        super().__init__()
        if not 0.0 <= drop_prob <= 1.0:
            raise ValueError(f"drop_prob={drop_prob} must be in [0, 1]")
        self.drop_prob = drop_prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return shake_drop(x, self.drop_prob, self.training)

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob:.4f}"


def linear_drop_probs(final_drop_prob: float, num_blocks: int) -> list[float]:
    """The linear decay rule: block l of L is perturbed with probability ``l / L * final_drop_prob``.

    Equivalent to the paper's ``p_l = 1 - l / L * (1 - p_L)`` with ``p_L = 1 - final_drop_prob``
    (p_L = 0.5 in Yamada et al. 2018, and in the study).
    """
    return [final_drop_prob * (i + 1) / num_blocks for i in range(num_blocks)]
