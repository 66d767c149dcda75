"""torch.compile and channels_last as callbacks: speed-ups of the network that never fail a run.

``Compile`` runs the module's network through :class:`CompileFallback` (compiled once per graph,
eager mode where compilation fails); ``ChannelsLast`` stores the network and its inputs in NHWC
(faster convolutions on GPUs, with bf16 tensor cores). Both act in ``setup``, before the first
batch, on the module's ``net`` and on the two attributes its ``forward`` reads
(``compiled``, ``memory_format``), so checkpoints hold ``net.*`` either way.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn

from pyramid_lab.errors import ConfigError

# torch.compile's modes: "reduce-overhead" adds CUDA graphs (one launch per step on a GPU),
# "max-autotune" also benchmarks kernel choices (longer compilation).
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


class CompileFallback:
    """``torch.compile(net)`` until it first fails, then ``net`` itself for good, with one warning.

    ``torch.compile`` is lazy: tracing and code generation run at the first call (and at each
    recompilation, e.g. the first eval-mode call or SAM's frozen-BatchNorm pass), so that is
    where a missing C++ compiler, Triton or an unsupported op shows up, not at
    ``torch.compile()``. A failure there switches to eager; an error that eager mode raises too
    (a wrong input shape) still propagates. A failure that only appears when the compiled
    backward is first run is not caught here. The compiled module shares ``net``'s parameters.

    One graph for training and one for evaluation: training batches all have one size (the data
    module drops the last partial batch: ``data.drop_last``), and in eval mode a smaller batch
    (the last of a split) is padded to the size of the first, so Dynamo never recompiles for it
    (it would, twice: once for the new size, and once more when a size-generic graph meets a
    specialisation such as the CPU convolution's batch >= 16 check). Validation and test share
    the evaluation graph when both run under ``torch.no_grad`` (``trainer.inference_mode=false``,
    conf/trainer/default.yaml): inference-mode tensors would be a guard failure of their own.

    Args:
        net: the eager network.
        backend: a ``torch.compile`` backend name or callable.
        mode: a ``torch.compile`` mode of ``COMPILE_MODES`` (inductor only).
    """

    def __init__(
        self, net: nn.Module, backend: str | Callable[..., Any] = "inductor", mode: str = "default"
    ) -> None:
        self.check(backend, mode)
        self.net = net
        self.eval_batch_size: int | None = None
        self.compiled: Callable[[torch.Tensor], torch.Tensor] | None = None
        try:
            self.compiled = torch.compile(
                net, backend=backend, **({"mode": mode} if mode != "default" else {})
            )
        except Exception as error:  # e.g. a Python version or platform Dynamo does not support
            self._fall_back(error)

    @staticmethod
    def check(backend: str | Callable[..., Any], mode: str) -> None:
        """Raise a one-line ConfigError for a mode torch.compile lacks or a backend it cannot take."""
        if mode not in COMPILE_MODES:
            raise ConfigError(f"callbacks.compile.mode={mode!r} is not one of {', '.join(COMPILE_MODES)}")
        if mode != "default" and backend != "inductor":
            raise ConfigError(
                f"callbacks.compile.mode={mode} needs callbacks.compile.backend=inductor "
                f"(got {backend}); use mode=default with other backends"
            )

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.compiled is not None:
            try:
                return self.compiled(x) if self.net.training else self._evaluate(x)
            except Exception as error:  # compile is an optional speed-up: never fail a run for it
                self._fall_back(error)
        return self.net(x)

    def _evaluate(self, x: torch.Tensor) -> torch.Tensor:
        # Padding is exact in eval mode: BatchNorm uses its running statistics and ShakeDrop its
        # expectation, so no sample sees another. It costs one partial batch per split.
        n = x.shape[0]
        if self.eval_batch_size is None or n > self.eval_batch_size:
            self.eval_batch_size = n
        if n == self.eval_batch_size:
            return self.compiled(x)
        # F.pad keeps the input's memory format (channels_last stays channels_last).
        padded = F.pad(x, (0, 0) * (x.dim() - 1) + (0, self.eval_batch_size - n))
        return self.compiled(padded)[:n]

    def _fall_back(self, error: Exception) -> None:
        self.compiled = None
        # Dynamo's messages start with a header line ("backend='inductor' raised:"), then the cause.
        reason = " ".join([line.strip() for line in str(error).splitlines() if line.strip()][:2])
        warnings.warn(
            f"callbacks.compile.enabled=true fell back to eager mode: torch.compile failed with "
            f"{type(error).__name__}: {reason}",
            RuntimeWarning,
            stacklevel=3,
        )


class Compile(pl.Callback):
    """Run the module's network through ``torch.compile`` (:class:`CompileFallback`).

    Args:
        enabled: compile (``False``: the callback does nothing, so the config can switch it).
        backend: the ``torch.compile`` backend: ``"inductor"`` (generated kernels),
            ``"aot_eager"`` or ``"eager"`` (no code generation: fast to start, for tests), or a
            backend callable.
        mode: ``torch.compile``'s mode (inductor only), one of ``COMPILE_MODES``.
    """

    def __init__(
        self, enabled: bool = True, backend: str | Callable[..., Any] = "inductor", mode: str = "default"
    ) -> None:
        self.enabled, self.backend, self.mode = bool(enabled), backend, mode
        if self.enabled:  # a bad mode or backend fails before training, not at setup
            CompileFallback.check(backend, mode)

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self.enabled and pl_module.compiled is None:  # fit then test: compile once
            pl_module.compiled = CompileFallback(pl_module.net, self.backend, self.mode)


class ChannelsLast(pl.Callback):
    """NHWC memory format for the module's network and its inputs.

    Args:
        enabled: switch to channels_last (``False``: the callback does nothing).
    """

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = bool(enabled)

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self.enabled:
            pl_module.memory_format = torch.channels_last
            pl_module.net.to(memory_format=torch.channels_last)
