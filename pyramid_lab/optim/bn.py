"""BatchNorm running statistics updated in only one of SAM's two forward passes.

SAM runs the model twice per step; the second pass, at the perturbed weights ``w + e(w)``, should
not move the running mean/variance that evaluation will use (the reference implementation,
github.com/davda54/sam ``example/utility/bypass_bn.py``, sets ``momentum = 0`` for it). Setting the
momentum to 0 still counts the batch in ``num_batches_tracked``, which is wrong in cumulative mode
(``momentum=None``: the average weights by ``1 / num_batches_tracked``), and ``0 * NaN`` still
poisons the statistics. Switching ``track_running_stats`` off for the pass has neither problem:
a training-mode BatchNorm then normalises with the batch statistics exactly as before, and reads
and writes none of its three buffers.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

__all__ = ["frozen_bn_stats"]


@contextmanager
def frozen_bn_stats(model: nn.Module) -> Iterator[None]:
    """Leave every BatchNorm's running statistics untouched inside the block.

    Covers ``BatchNorm1d/2d/3d``, their lazy forms and ``SyncBatchNorm`` (not ``InstanceNorm``,
    whose functional form updates its buffers regardless). Modules in training mode still
    normalise with the batch statistics, so the forward output is unchanged; modules in eval mode
    are unaffected. ``running_mean``, ``running_var`` and ``num_batches_tracked`` stay bit-exact,
    for any ``momentum`` including ``None``. The previous settings come back on exit, also after an
    exception.

    With ``torch.compile`` the flag is part of the compiled graph's guards: expect one extra
    compilation (for the second pass), not one per step.

    Args:
        model: the network whose BatchNorm layers to freeze.

    Example::

        loss_fn(model(x), y).backward()        # first pass: running stats updated
        sam.first_step(zero_grad=True)
        with frozen_bn_stats(model):
            loss_fn(model(x), y).backward()    # second pass: running stats untouched
        sam.second_step(zero_grad=True)
    """
    frozen = [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
    for m in frozen:
        m.track_running_stats = False
    try:
        yield
    finally:
        for m in frozen:
            m.track_running_stats = True
