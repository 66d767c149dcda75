"""The optimizer numbers no run can use, refused with one line naming the setting: checked by
``train`` before a run writes anything (pyramid_lab.build) and by the LightningModule for whoever
builds one another way (torch's own message, "Invalid learning rate: -1", names no setting)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pyramid_lab.errors import ConfigError, is_finite_number

CHECKED = ("lr", "momentum", "weight_decay")


def check_optimizer_numbers(settings: Mapping[str, Any]) -> None:
    """Raise a one-line ConfigError for a non-finite or negative ``lr``, ``momentum`` or
    ``weight_decay`` in ``settings`` (the optimizer's config or its factory's keywords), or lr 0."""
    for key in CHECKED:
        value = settings.get(key)
        if value is None:
            continue
        if not is_finite_number(value):
            raise ConfigError(f"optimizer.{key}={value!r} must be a finite number")
        if key == "lr" and value <= 0:  # lr 0 trains nothing
            raise ConfigError(f"optimizer.lr={value!r} must be > 0 (the study: 0.1 for SGD)")
        if value < 0:
            raise ConfigError(f"optimizer.{key}={value!r} must be >= 0")
