"""Fixtures shared by the tests; plain helpers are in tests/helpers.py."""

from __future__ import annotations

import os

import pytest

from tests.helpers import TINY

# Tests must not compete for the machine's 2 cores with themselves.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture
def tiny_overrides() -> list[str]:
    """A config that trains a 3-unit PyramidNet on two digits batches: a second or two."""
    return list(TINY)
