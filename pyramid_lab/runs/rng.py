"""Every random generator's state, in types that weights-only checkpoint loading accepts.

ShakeDrop and augmentation draw from the global generators, so a checkpoint keeps their states and
a resumed run continues their streams instead of replaying the seed's. Lightning's own collector
returns numpy's state with a numpy array in it, which weights-only loading refuses; here that array
is a tensor, and the rest are tensors, strings, numbers and tuples.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from lightning_fabric.utilities.seed import _collect_rng_states, _set_rng_states


def rng_states() -> dict[str, Any]:
    """The states of torch's CPU (and CUDA) generators, numpy's and Python's ``random``."""
    states = _collect_rng_states()
    kind, keys, position, has_gauss, cached_gaussian = states["numpy"]
    # MT19937's 624 uint32 words, widened to int64 (a dtype every torch version stores).
    states["numpy"] = (
        str(kind),
        torch.from_numpy(keys.astype(np.int64)),
        int(position),
        int(has_gauss),
        float(cached_gaussian),
    )
    return states


def restore_rng_states(states: dict[str, Any]) -> None:
    """Set the generators from :func:`rng_states`'s dict (or from an older checkpoint's, whose
    numpy state holds a numpy array)."""
    numpy_state = states.get("numpy")
    if numpy_state is not None and isinstance(numpy_state[1], torch.Tensor):
        kind, keys, position, has_gauss, cached_gaussian = numpy_state
        states = {
            **states,
            "numpy": (kind, keys.numpy().astype(np.uint32), position, has_gauss, cached_gaussian),
        }
    _set_rng_states(states)
