"""Input validation shared by every helper: one place, messages that name the parameter.

Each function returns the value it checked (converted where it says so), so a helper can
write ``steps = check_int("steps", steps, low=1)``. Wrong types raise ``TypeError``, values
out of range ``ValueError``; both name the parameter and show what was passed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Integral, Real
from typing import Any


def check_int(name: str, value: Any, *, low: int | None = None, high: int | None = None) -> int:
    """``value`` as an ``int`` in [low, high] (either bound optional); bools are rejected."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    value = int(value)
    if (low is not None and value < low) or (high is not None and value > high):
        span = (f">= {low}" if high is None else f"<= {high}" if low is None
                else f"in [{low}, {high}]")
        raise ValueError(f"{name} must be an int {span}, got {value!r}")
    return value


def check_ints(name: str, values: Any, *, low: int | None = None, length: int | None = None
               ) -> list[int]:
    """A non-empty sequence of ints, each >= ``low``, of ``length`` entries when given."""
    if isinstance(values, str | bytes) or not isinstance(values, Sequence) or not values:
        raise TypeError(f"{name} must be a non-empty sequence of ints, got {values!r}")
    if length is not None and len(values) != length:
        raise ValueError(f"{name} must have {length} entries, got {len(values)}")
    return [check_int(f"{name}[{i}]", v, low=low) for i, v in enumerate(values)]


def check_real(name: str, value: Any, *, low: float | None = None, high: float | None = None,
               low_open: bool = False, high_open: bool = False) -> float:
    """``value`` as a finite ``float`` within the bounds (open or closed as asked)."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    value = float(value)
    bad = not math.isfinite(value)
    if low is not None:
        bad |= value <= low if low_open else value < low
    if high is not None:
        bad |= value >= high if high_open else value > high
    if bad:
        lo = "" if low is None else ("(" if low_open else "[") + f"{low:g}"
        hi = "" if high is None else f"{high:g}" + (")" if high_open else "]")
        span = f"in {lo or '(-inf'}, {hi or 'inf)'}"
        raise ValueError(f"{name} must be a finite number {span}, got {value!r}")
    return value


def check_positive(name: str, value: Any) -> float:
    """A finite ``float`` > 0."""
    return check_real(name, value, low=0.0, low_open=True)


def check_choice(name: str, value: Any, choices: Sequence[Any]) -> Any:
    """``value`` if it is one of ``choices``, else ``ValueError`` listing them."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value


def check_shape(name: str, tensor: Any, shape: Sequence[int | None]) -> Any:
    """``tensor`` if it has ``len(shape)`` dimensions matching ``shape`` (``None``: any size)."""
    got = tuple(getattr(tensor, "shape", ()))
    if not hasattr(tensor, "shape"):
        raise TypeError(f"{name} must be a tensor or array, got {type(tensor).__name__}")
    if len(got) != len(shape) or any(s is not None and g != s for g, s in zip(got, shape,
                                                                             strict=True)):
        want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
        raise ValueError(f"{name} must have shape {want}, got {got}")
    return tensor
