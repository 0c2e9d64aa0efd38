"""Argument checks shared by the generators: each raises ValueError naming the argument and what was expected.

`generate_dataset` and the CLI turn these into one-line OpspecErrors; the generators call them eagerly,
before the first batch is produced, so a bad argument never leaves a partial file.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def check_int(name: str, value: object, minimum: int, meaning: str) -> None:
    """Raise ValueError naming the argument unless value is an integer >= minimum."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum} ({meaning}), got {value!r}")


def check_positive(name: str, value: object) -> float:
    """Raise ValueError naming the argument unless value is a finite number > 0; return it as a float."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name}: expected a finite number > 0, got {value!r}")
    return float(value)


def check_nonnegative(name: str, value: object) -> float:
    """Raise ValueError naming the argument unless value is a finite number >= 0; return it as a float."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name}: expected a finite number >= 0, got {value!r}")
    return float(value)


def check_times(times: Sequence[float]) -> list[float]:
    """Validate snapshot times: finite, >= 0, strictly increasing, at least one; return them as floats."""
    out = [float(t) for t in times]
    if not out or any(not math.isfinite(t) or t < 0 for t in out) or any(b <= a for a, b in zip(out, out[1:])):
        raise ValueError(f"times: expected a non-empty strictly increasing list of finite times >= 0, got {list(times)}")
    return out
