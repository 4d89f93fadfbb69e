"""Checks every configuration dataclass shares (each adds its own in ``__post_init__``)."""

from __future__ import annotations

import dataclasses
import math


def check_finite_numbers(config) -> None:
    """Raise ``ValueError`` naming the field if any float field of the dataclass ``config`` is NaN or infinite
    (``--learning-rate inf`` or ``--hidden-weight nan`` would otherwise pass every ``>``/``<`` check)."""
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{field.name} must be a finite number; got {value}.")
