"""Reading numbers, times and measures out of tag text, converted to research units.

Every function here takes the text as a client wrote it and returns None when it cannot be
read; none of them raises. Units:

- numbers are plain ASCII decimals (``12``, ``-2.5``, ``.5``, ``1e3``); ``nan``, ``inf``,
  ``1_000``, ``5,2``, non-ASCII digits and the empty string are not numbers;
- weights become kilograms: ``kg`` (also ``kgs``, ``kilogram(s)``), ``lb``/``lbs``/
  ``pound(s)``, ``g``; a missing or empty unit means kilograms;
- distances become metres: ``m``/``meter(s)``/``metre(s)``, ``km``, ``mi``/``mile(s)``,
  ``ft``/``feet``, ``yd``/``yard(s)``; a missing or empty unit means the caller's default;
- durations become seconds: ``HH:MM:SS``, ``MM:SS`` (minutes and seconds below 60, the last
  part may be fractional) or a bare number in the given unit (seconds when there is none);
- timestamps are unix seconds; a value above 10^12 is taken as milliseconds;
- paces become seconds per kilometre.
"""

from __future__ import annotations

import math
import re

__all__ = [
    "SET_TYPES",
    "distance_to_m",
    "duration_unit_factor",
    "normalise_set_type",
    "parse_bool",
    "parse_count",
    "parse_duration",
    "parse_number",
    "parse_pace",
    "parse_timestamp",
    "weight_to_kg",
]

_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\Z")
# Bounded digit runs: int() refuses strings longer than 4300 digits, and no count or clock
# part needs more than ten.
_COUNT = re.compile(r"[0-9]{1,10}\Z")
_CLOCK_PART = re.compile(r"[0-9]{1,10}\Z")
_CLOCK_LAST = re.compile(r"[0-9]{1,10}(?:\.[0-9]{1,20})?\Z")

MS_THRESHOLD = 10**12
"""Timestamps above this are milliseconds (§9.2): 10^12 seconds is the year 33658."""

INT32_MAX = 2**31 - 1

SET_TYPES = frozenset({"warmup", "normal", "drop", "failure", "working"})

_KG_PER: dict[str, float] = {
    "kg": 1.0,
    "kgs": 1.0,
    "kilogram": 1.0,
    "kilograms": 1.0,
    "g": 0.001,
    "lb": 0.45359237,
    "lbs": 0.45359237,
    "pound": 0.45359237,
    "pounds": 0.45359237,
}

_M_PER: dict[str, float] = {
    "m": 1.0,
    "meter": 1.0,
    "meters": 1.0,
    "metre": 1.0,
    "metres": 1.0,
    "km": 1000.0,
    "kms": 1000.0,
    "kilometer": 1000.0,
    "kilometers": 1000.0,
    "kilometre": 1000.0,
    "kilometres": 1000.0,
    "mi": 1609.344,
    "mile": 1609.344,
    "miles": 1609.344,
    "ft": 0.3048,
    "foot": 0.3048,
    "feet": 0.3048,
    "yd": 0.9144,
    "yard": 0.9144,
    "yards": 0.9144,
}

_S_PER: dict[str, float] = {
    "s": 1.0,
    "sec": 1.0,
    "secs": 1.0,
    "second": 1.0,
    "seconds": 1.0,
    "ms": 0.001,
    "millisecond": 0.001,
    "milliseconds": 0.001,
    "min": 60.0,
    "mins": 60.0,
    "minute": 60.0,
    "minutes": 60.0,
    "h": 3600.0,
    "hr": 3600.0,
    "hrs": 3600.0,
    "hour": 3600.0,
    "hours": 3600.0,
}


def _unit_key(unit: str | None) -> str:
    return unit.strip().lower() if unit is not None else ""


def parse_number(value: str | None) -> float | None:
    """A finite decimal number, or None for empty, non-numeric, nan or infinite text."""
    if value is None:
        return None
    text = value.strip()
    if not _NUMBER.match(text):
        return None
    number = float(text)
    return number if math.isfinite(number) else None


def parse_count(value: str | None) -> int | None:
    """A non-negative integer written with digits only (a set or split number), or None.

    Values that would not fit a 32-bit column are refused.
    """
    if value is None:
        return None
    text = value.strip()
    if not _COUNT.match(text):
        return None
    number = int(text)
    return number if number <= INT32_MAX else None


def parse_bool(value: str | None) -> bool | None:
    """``true``/``false`` (any case, also ``1``/``0``), else None."""
    if value is None:
        return None
    text = value.strip().lower()
    if text in ("true", "1"):
        return True
    if text in ("false", "0"):
        return False
    return None


def weight_to_kg(value: float, unit: str | None) -> float | None:
    """``value`` in ``unit`` as kilograms; None for an unknown unit. No unit means kg."""
    key = _unit_key(unit)
    if key == "":
        return value
    factor = _KG_PER.get(key)
    return None if factor is None else value * factor


def distance_to_m(value: float, unit: str | None, default: str = "m") -> float | None:
    """``value`` in ``unit`` as metres; an empty unit means ``default``; None if unknown."""
    key = _unit_key(unit) or default
    factor = _M_PER.get(key)
    return None if factor is None else value * factor


def duration_unit_factor(unit: str | None) -> float | None:
    """Seconds per one ``unit`` (``seconds``, ``minutes``, ``h`` …); 1 when there is none."""
    key = _unit_key(unit)
    if key == "":
        return 1.0
    return _S_PER.get(key)


def _parse_clock(text: str) -> float | None:
    parts = text.split(":")
    if len(parts) not in (2, 3):
        return None
    *leading, last = parts
    if not _CLOCK_LAST.match(last) or not all(_CLOCK_PART.match(p) for p in leading):
        return None
    seconds = float(last)
    numbers = [int(p) for p in leading]
    if seconds >= 60 or (len(numbers) == 2 and numbers[1] >= 60):
        return None
    total = 0.0
    for number in numbers:
        total = total * 60 + number
    return total * 60 + seconds


def parse_duration(value: str | None, unit: str | None = None) -> float | None:
    """Seconds from ``HH:MM:SS``, ``MM:SS`` or a bare number in ``unit`` (seconds if None).

    Negative and unreadable values give None; a clock form ignores ``unit``.
    """
    if value is None:
        return None
    text = value.strip()
    if ":" in text:
        return _parse_clock(text)
    number = parse_number(text)
    factor = duration_unit_factor(unit)
    if number is None or factor is None or number < 0:
        return None
    return number * factor


def parse_timestamp(value: str | None) -> float | None:
    """Unix seconds; values above 10^12 are read as milliseconds; negatives give None."""
    number = parse_number(value)
    if number is None or number < 0:
        return None
    if number > MS_THRESHOLD:
        return number / 1000
    return number


def parse_pace(value: str | None, unit: str | None) -> float | None:
    """Seconds per kilometre from a pace such as ``05:39`` with ``min/km`` or ``min/mi``.

    The unit's distance part (``km`` or ``mi``, default ``km``) sets the conversion. A
    clock value is a time; a bare number is minutes when the unit starts with ``min`` and
    seconds otherwise. An unknown distance unit gives None.
    """
    if value is None:
        return None
    key = _unit_key(unit)
    time_part, _, distance_part = key.rpartition("/")
    distance = distance_part or "km"
    per_m = _M_PER.get(distance)
    if per_m is None:
        return None
    text = value.strip()
    if ":" in text:
        seconds = _parse_clock(text)
    else:
        number = parse_number(text)
        factor = 60.0 if time_part.startswith("min") else 1.0
        seconds = None if number is None or number < 0 else number * factor
    if seconds is None:
        return None
    return seconds * 1000 / per_m


def normalise_set_type(value: str | None) -> str | None:
    """``warmup``, ``normal``, ``drop``, ``failure`` or ``working`` (any case), else None."""
    if value is None:
        return None
    text = value.strip().lower()
    return text if text in SET_TYPES else None
