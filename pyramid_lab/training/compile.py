"""torch.compile as an optional speed-up that never fails a run."""

from __future__ import annotations

import warnings
from typing import Any, Callable

import torch
from torch import nn


class CompileFallback:
    """``torch.compile(net)`` until it first fails, then ``net`` itself for good, with one warning.

    ``torch.compile`` is lazy: tracing and code generation run at the first call (and at each
    recompilation, e.g. the first eval-mode call or SAM's frozen-BatchNorm pass), so that is
    where a missing C++ compiler, Triton or an unsupported op shows up, not at
    ``torch.compile()``. A failure there switches to eager; an error that eager mode raises too
    (a wrong input shape) still propagates. A failure that only appears when the compiled
    backward is first run is not caught here. The compiled module shares ``net``'s parameters.

    Args:
        net: the eager network.
        backend: a ``torch.compile`` backend name or callable.
    """

    def __init__(self, net: nn.Module, backend: str | Callable[..., Any] = "inductor") -> None:
        self.net = net
        self.compiled: Callable[[torch.Tensor], torch.Tensor] | None = None
        try:
            self.compiled = torch.compile(net, backend=backend)
        except Exception as error:  # e.g. a Python version or platform Dynamo does not support
            self._fall_back(error)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.compiled is not None:
            try:
                return self.compiled(x)
            except Exception as error:  # compile is an optional speed-up: never fail a run for it
                self._fall_back(error)
        return self.net(x)

    def _fall_back(self, error: Exception) -> None:
        self.compiled = None
        # Dynamo's messages start with a header line ("backend='inductor' raised:"), then the cause.
        reason = " ".join([line.strip() for line in str(error).splitlines() if line.strip()][:2])
        warnings.warn(f"module.compile=true fell back to eager mode: torch.compile failed with "
                      f"{type(error).__name__}: {reason}", RuntimeWarning, stacklevel=3)
