"""Durations as people write them: 30, 0.5, "90s", "1h30m", "250ms" -> seconds."""

from __future__ import annotations

import math
import re
from functools import lru_cache

from scheduler.errors import InvalidOption

EXPECTED = "a positive duration: seconds (30, 0.5) or a string such as '90s', '5m', '1h30m'"

# Largest first: a duration string names each unit at most once, in this order.
_UNITS = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
_UNIT_LIST = "units: d, h, m, s, ms"
_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"
_PLAIN = re.compile(_NUMBER)
_PART = re.compile(rf"\s*({_NUMBER})\s*([^\d\s.]*)\s*")


class _Unreadable(Exception):
    """Why a duration string cannot be read; parse_duration turns it into InvalidOption."""


def parse_duration(value: str | int | float, *, option: str = "timeout") -> float:
    """Seconds of a positive duration, or InvalidOption naming `option` and what was expected."""
    # bool is an int subclass: `timeout=True` is a mistake, not one second.
    if isinstance(value, bool):
        raise InvalidOption(option, value, "a boolean is not a duration", EXPECTED)
    if isinstance(value, float):
        seconds = value
    elif isinstance(value, int):
        # float() of an int beyond ~1e308 raises; such a timeout is as unusable as inf.
        seconds = float(value) if value.bit_length() <= 1000 else math.inf
    elif isinstance(value, str):
        try:
            seconds = _parse_text(value)
        except _Unreadable as exc:
            raise InvalidOption(option, value, str(exc), EXPECTED) from None
    else:
        why = f"a {type(value).__name__} is not a duration"
        raise InvalidOption(option, value, why, EXPECTED)
    if math.isnan(seconds) or math.isinf(seconds):
        raise InvalidOption(option, value, "not a finite number", EXPECTED)
    if seconds <= 0:
        raise InvalidOption(option, value, "must be greater than zero", EXPECTED)
    return seconds


@lru_cache(maxsize=1024)  # jobs repeat a few strings ("1m", "30s") many times
def _parse_text(value: str) -> float:
    text = value.strip().lower()
    if not text:
        raise _Unreadable("empty")
    # Read "-5m" as a number so the message says "greater than zero", not "unreadable".
    negative = text.startswith("-")
    seconds = _parse_magnitude(text.removeprefix("-").lstrip())
    return -seconds if negative else seconds


def _parse_magnitude(text: str) -> float:
    if _PLAIN.fullmatch(text):
        return float(text)
    order = list(_UNITS)
    total, last, pos = 0.0, -1, 0
    while pos < len(text):
        match = _PART.match(text, pos)
        if match is None:
            raise _Unreadable("not a duration")
        number, unit = match.groups()
        if not unit:
            raise _Unreadable(f"missing a unit after {number} ({_UNIT_LIST})")
        if unit not in _UNITS:
            raise _Unreadable(f"unknown unit {unit!r} ({_UNIT_LIST})")
        if order.index(unit) <= last:
            raise _Unreadable("units must go from largest to smallest, each once, as in '1h30m'")
        last = order.index(unit)
        total += float(number) * _UNITS[unit]
        pos = match.end()
    return total
