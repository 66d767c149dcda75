"""Speed: ``python -m pyramid_lab.bench [--quick | --plan quick|cpu|gpu] [--out FILE.json]``.

Measures, on whatever device is present: the data pipeline against torchvision's (``data``), the
training step of our LightningModule against a plain PyTorch loop per precision / channels_last /
compile mode, SAM's cost against SGD (``train``), and peak memory of each, the configurations of
each comparison timed in turn window by window (``interleave``); prints a table with the hardware
header, median and spread, and PASS/FAIL against the targets that apply, and writes one JSON
record per measurement (``timing.Record``).
"""

from pyramid_lab.bench.cli import main, make_plan, run
from pyramid_lab.bench.timing import Record

__all__ = ["Record", "main", "make_plan", "run"]
