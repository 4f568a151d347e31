"""Validation helpers shared by the whole package.

Every message follows one template (after scikit-learn's parameter validation):
what was wrong, where (parameter, module path or layer name), what was expected, what was
received, and how to fix it. Validation raises ``ValueError``/``TypeError``, never
``assert``, so it still runs under ``python -O``.
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any


def check_choice(value: Any, choices: Iterable[str], *, param: str, where: str) -> str:
    """Return ``value`` if it is one of ``choices``; raise a ``ValueError`` listing them."""
    choices = list(choices)
    if not isinstance(value, str) or value not in choices:
        valid = ", ".join(repr(c) for c in choices)
        raise ValueError(
            f"The {param!r} parameter of {where} must be one of {valid}. Got {value!r} instead."
        )
    return value


def check_positive_int(value: Any, *, param: str, where: str) -> int:
    """Return ``value`` as an int if it is a positive integer (bools are refused)."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(
            f"The {param!r} parameter of {where} must be a positive integer. Got {value!r} instead."
        )
    return value


def check_real(value: Any, *, param: str, where: str, low: float | None = None,
               high: float | None = None, low_open: bool = False, high_open: bool = False) -> float:
    """Return ``value`` as a float if it is finite and inside the given interval."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(
            f"The {param!r} parameter of {where} must be a finite real number. Got {value!r} instead."
        )
    below = low is not None and (value <= low if low_open else value < low)
    above = high is not None and (value >= high if high_open else value > high)
    if below or above:
        lo = "-inf" if low is None else f"{low:g}"
        hi = "inf" if high is None else f"{high:g}"
        interval = f"{'(' if low_open or low is None else '['}{lo}, {hi}{')' if high_open or high is None else ']'}"
        raise ValueError(
            f"The {param!r} parameter of {where} must be a float in {interval}. Got {value!r} instead."
        )
    return float(value)
