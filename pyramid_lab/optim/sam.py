"""Sharpness-Aware Minimization (Foret et al. 2021, arXiv:2010.01412) and its adaptive form ASAM
(Kwon et al. 2021, arXiv:2102.11600), as a wrapper around any base optimizer.

One SAM update takes two forward/backward passes (the study's Table 4: "two forward/backward
passes per step")::

    loss(w).backward()           # g = grad L(w)
    sam.first_step()             # w <- w + e(w), e(w) = rho * g / ||g||_2
    loss(w).backward()           # g' = grad L(w + e(w))   (BatchNorm stats frozen: frozen_bn_stats)
    sam.second_step()            # w <- old w, then the base optimizer steps with g'

Written after the reference implementation (github.com/davda54/sam), with these differences: the
weights are restored by copying them back (also those that got no gradient in the second pass),
the base optimizer's state is this optimizer's state (so checkpoints and device moves see the
momentum buffers), SAM's own settings use group keys that no base optimizer uses (Adadelta has a
``rho`` of its own), and misuse (a step without gradients, two ``first_step`` in a row) raises.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

from pyramid_lab.errors import ConfigError

__all__ = ["SAM"]

# Param-group keys for SAM's own settings; prefixed so that they never shadow a base optimizer's
# hyper-parameter of the same name (torch.optim.Adadelta's ``rho``).
_RHO = "sam_rho"
_ADAPTIVE = "sam_adaptive"
# Added to ||g|| before dividing, as in the reference implementation: a zero gradient gives e = 0.
_EPS = 1e-12


def _check_rho(rho: float) -> None:
    if isinstance(rho, bool) or not isinstance(rho, (int, float)) or not (0 < rho < math.inf):
        raise ConfigError(
            f"optimizer.rho={rho!r} must be > 0 (SAM's neighbourhood size; the paper uses 0.05)"
        )


class SAM(Optimizer):
    """Sharpness-Aware Minimization over a base optimizer (Foret et al. 2021).

    SAM minimises ``max_{||e|| <= rho} L(w + e)``: each update first climbs to the worst point of
    the ``rho``-ball, to first order ``e(w) = rho * g / ||g||_2`` with ``g = grad L(w)`` and the
    norm taken over all parameters together, then applies the base optimizer at ``w`` with the
    gradient taken at ``w + e(w)``. With ``adaptive=True`` it is ASAM (Kwon et al. 2021):
    ``e(w) = rho * w^2 * g / || |w| * g ||_2`` (elementwise products), which makes the ball
    scale-invariant; ASAM's paper uses a larger ``rho`` (0.5 to 2.0 on CIFAR).

    The base optimizer is built over the same ``param_groups`` list and shares ``state``, so an
    LR scheduler built on this object or on ``sam.base_optimizer`` changes the lr the base
    optimizer uses, and ``state_dict()`` holds the base optimizer's state (momentum buffers).

    Args:
        params: parameters or param-group dicts, as for any ``torch.optim.Optimizer``.
        base_optimizer: an optimizer class or a partial of one, e.g. ``torch.optim.SGD`` or
            ``functools.partial(torch.optim.SGD, momentum=0.9)``; called as
            ``base_optimizer(param_groups, **kwargs)``.
        rho: radius of the neighbourhood, in parameter units (L2). Foret et al. use 0.05 for
            CIFAR-10 with SGD; must be > 0.
        adaptive: use ASAM's scale-invariant neighbourhood.
        **kwargs: hyper-parameters of the base optimizer (``lr``, ``momentum``, ...).

    Raises:
        ConfigError: ``rho <= 0`` or a ``base_optimizer`` that is not an optimizer class/partial.

    Example::

        sam = SAM(model.parameters(), torch.optim.SGD, rho=0.05, lr=0.1, momentum=0.9)
        loss_fn(model(x), y).backward()                  # gradient at w
        sam.step(lambda: loss_fn(model(x), y).backward())  # gradient at w + e(w), then update
        sam.zero_grad()
    """

    def __init__(
        self,
        params: Any,
        base_optimizer: type[Optimizer] | Callable[..., Optimizer],
        rho: float = 0.05,
        adaptive: bool = False,
        **kwargs: Any,
    ) -> None:
        _check_rho(rho)
        if isinstance(base_optimizer, Optimizer) or not callable(base_optimizer):
            raise ConfigError(
                f"optimizer.base_optimizer={base_optimizer!r} must be an optimizer class or a "
                "partial of one (e.g. torch.optim.SGD), not an instance"
            )
        defaults = {_RHO: rho, _ADAPTIVE: bool(adaptive), **kwargs}
        super().__init__(params, defaults)
        self.base_optimizer: Optimizer = base_optimizer(self.param_groups, **kwargs)
        # Share the lists/dicts themselves, not copies: schedulers and checkpoints act on one set.
        self.param_groups = self.base_optimizer.param_groups
        self.state = self.base_optimizer.state
        self.defaults.update(self.base_optimizer.defaults)
        # w before first_step, per parameter, until second_step restores it. Kept out of `state`
        # so that checkpoints stay the base optimizer's and Adam's `len(state) == 0` init holds.
        # Only ever mutated in place: Lightning's optimizer wrapper forwards attribute reads to
        # this object but would keep attribute assignments for itself.
        self._w_old: dict[Tensor, Tensor] = {}

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a param group to SAM and to the base optimizer (they share the list)."""
        if _RHO in param_group:
            _check_rho(param_group[_RHO])
        if not hasattr(self, "base_optimizer"):  # during Optimizer.__init__
            super().add_param_group(param_group)
            return
        param_group.setdefault(_RHO, self.defaults[_RHO])
        param_group.setdefault(_ADAPTIVE, self.defaults[_ADAPTIVE])
        self.base_optimizer.add_param_group(param_group)

    def _params_with_grad(self) -> list[tuple[Tensor, dict[str, Any]]]:
        """(parameter, its group) for each parameter with a gradient, each tied parameter once."""
        seen: set[int] = set()
        out = []
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None or id(p) in seen:
                    continue
                seen.add(id(p))
                out.append((p, group))
        return out

    @torch.no_grad()
    def _grad_norm(self, params: list[tuple[Tensor, dict[str, Any]]]) -> Tensor:
        """||g||_2 (or || |w| * g ||_2 for ASAM) over all parameters, as a 0-d tensor.

        Computed on the device of the first parameter (model parallelism may spread the rest),
        without a host sync.
        """
        device = params[0][0].device
        norms = []
        for p, group in params:
            g = p.grad * p.abs() if group[_ADAPTIVE] else p.grad
            # Accumulate in at least fp32: a bf16 sum of squares over millions of entries drifts.
            dtype = torch.promote_types(g.dtype, torch.float32)
            norms.append(torch.linalg.vector_norm(g, dtype=dtype).to(device))
        return torch.linalg.vector_norm(torch.stack(norms))

    @torch.no_grad()
    def first_step(self, zero_grad: bool = False) -> None:
        """Move to the worst point of the neighbourhood: ``w <- w + e(w)``.

        Needs the gradient at ``w`` in ``p.grad``; remembers ``w`` for :meth:`second_step`.

        Args:
            zero_grad: clear the gradients afterwards, ready for the second backward pass.

        Raises:
            RuntimeError: no parameter has a gradient, or the previous ``first_step`` was not
                followed by ``second_step``.
        """
        if self._w_old:
            raise RuntimeError(
                "SAM.first_step() called twice without second_step(): the weights are still perturbed"
            )
        params = self._params_with_grad()
        if not params:
            raise RuntimeError(
                "SAM.first_step() found no gradients: call backward() on the loss at the current "
                "weights before first_step() or step(closure)"
            )
        grad_norm = self._grad_norm(params)
        for p, group in params:
            scale = (group[_RHO] / (grad_norm + _EPS)).to(p)
            e_w = p.grad * scale
            if group[_ADAPTIVE]:
                e_w.mul_(p.square())
            self._w_old[p] = p.detach().clone()
            p.add_(e_w)
        if zero_grad:
            self.zero_grad()

    @torch.no_grad()
    def second_step(self, zero_grad: bool = False) -> None:
        """Restore ``w`` and step the base optimizer with the gradient taken at ``w + e(w)``.

        Args:
            zero_grad: clear the gradients after the update.

        Raises:
            RuntimeError: ``first_step`` was not called before.
        """
        if not self._w_old:
            raise RuntimeError("SAM.second_step() called without first_step()")
        for p, w in self._w_old.items():  # also those without a gradient in the second pass
            p.copy_(w)
        self._w_old.clear()
        self.base_optimizer.step()
        if zero_grad:
            self.zero_grad()

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        """One SAM update: ``first_step``, the closure at ``w + e(w)``, ``second_step``.

        As in the reference implementation, the gradient at ``w`` must already be in ``p.grad``
        (run the first forward/backward pass before calling ``step``); the closure runs the
        second pass (forward + backward, with gradients enabled here) and may return its loss.

        Args:
            closure: computes the loss at the current (perturbed) weights and calls backward.

        Returns:
            What the closure returns (the loss at ``w + e(w)``).

        Raises:
            RuntimeError: no closure (e.g. Lightning's ``16-mixed`` precision, whose GradScaler
                calls ``step()`` without one: use ``bf16-mixed`` or ``32-true``).
        """
        if closure is None:
            raise RuntimeError(
                "SAM.step() needs a closure that runs forward and backward at the perturbed "
                "weights; with Lightning use precision bf16-mixed or 32-true (16-mixed's "
                "GradScaler calls step() without one)"
            )
        self.first_step(zero_grad=True)
        with torch.enable_grad():
            loss = closure()
        self.second_step()
        return loss

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load the base optimizer's state (``state_dict()`` is the base optimizer's too).

        Loading replaces the ``param_groups`` list and the ``state`` dict, so they are re-shared.
        """
        self.base_optimizer.load_state_dict(state_dict)
        self.param_groups = self.base_optimizer.param_groups
        self.state = self.base_optimizer.state
        self._w_old.clear()

    def __getstate__(self) -> dict[str, Any]:
        # Optimizer.__getstate__ keeps only defaults/state/param_groups; copy.deepcopy and pickle
        # need the base optimizer too (pickle's memo keeps the shared lists shared).
        return {**super().__getstate__(), "base_optimizer": self.base_optimizer, "_w_old": {}}
