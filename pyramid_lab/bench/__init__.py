"""Speed: ``python -m pyramid_lab.bench [--quick | --plan quick|cpu|gpu] [--out FILE.json]``.

Measures, on whatever device is present: the input pipeline against torchvision's and the cost of
each augmentation policy (``input_pipeline``), the training step of our LightningModule against a
plain PyTorch loop per precision / channels_last / compile mode and SAM's cost against SGD
(``loops``), and peak memory of each, the configurations of each comparison timed in turn window
by window (``interleave``); prints a table with the hardware header, median and spread, and
PASS/FAIL against the targets that apply (``plans``), and writes one JSON record per measurement
(``timing.Record``). The command line is ``cli``.
"""

from typing import TYPE_CHECKING

from pyramid_lab import lazy_exports

if TYPE_CHECKING:  # for readers and type checkers; at run time each name loads on first use
    from pyramid_lab.bench.cli import main
    from pyramid_lab.bench.plans import make_plan, run
    from pyramid_lab.bench.timing import Record

# Loaded on first use (PEP 562): `pyramid-lab-bench --help` does not import torch (seconds).
_EXPORTS = {
    "Record": "pyramid_lab.bench.timing",
    "main": "pyramid_lab.bench.cli",
    "make_plan": "pyramid_lab.bench.plans",
    "run": "pyramid_lab.bench.plans",
}


__getattr__ = lazy_exports(__name__, _EXPORTS)


__all__ = ["Record", "main", "make_plan", "run"]
