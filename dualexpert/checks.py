"""Argument checks shared by the constructors: a bad value is one clear error when the object
is built, not an ``IndexError`` or a silent misbehaviour at the first call."""

from __future__ import annotations

from typing import Any


def whole_number(name: str, value: Any, minimum: int = 1) -> int:
    """``value`` if it is an ``int`` (not a bool) of at least ``minimum``, else ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be a whole number of at least {minimum}, not {value!r}")
    return value
