"""Launching: Hydra callbacks (writable output folders, the sweep summary) and the DDP relaunch
inside sweeps (pyramid_lab.launch.ddp)."""

from pyramid_lab.launch.hydra_callbacks import SweepSummary, WritableOutput

__all__ = ["SweepSummary", "WritableOutput"]
