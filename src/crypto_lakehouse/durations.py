"""Polars-style durations (``250ms``, ``1s``, ``3m``, ``2h``, ``1d``, ``1w``) parsed once, here."""

from __future__ import annotations

import re
from datetime import timedelta

__all__ = ["format_duration", "parse_duration"]

_UNITS_US = {
    "us": 1,
    "ms": 1_000,
    "s": 1_000_000,
    "m": 60_000_000,
    "h": 3_600_000_000,
    "d": 86_400_000_000,
    "w": 604_800_000_000,
}
_PART = re.compile(r"(\d+)(us|ms|s|m|h|d|w)")


def parse_duration(text: str) -> timedelta:
    """Parse ``"1m"``, ``"1h30m"``, ``"250ms"`` into a positive :class:`timedelta`.

    Calendar units (months, years) are rejected: their length varies, so bars built on them
    would not be fixed windows.
    """
    s = str(text).strip()
    pos, total_us = 0, 0
    for m in _PART.finditer(s):
        if m.start() != pos:
            break
        total_us += int(m.group(1)) * _UNITS_US[m.group(2)]
        pos = m.end()
    if not s or pos != len(s) or total_us <= 0:
        raise ValueError(
            f"unparsable duration {text!r}: use a positive number and a unit "
            f"({', '.join(_UNITS_US)}), e.g. '250ms', '1m', '4h', '1d'"
        )
    return timedelta(microseconds=total_us)


def format_duration(td: timedelta) -> str:
    """The shortest Polars-style string for ``td`` (``timedelta(minutes=90)`` -> ``"90m"``)."""
    us = td // timedelta(microseconds=1)
    for unit, size in sorted(_UNITS_US.items(), key=lambda kv: -kv[1]):
        if us % size == 0:
            return f"{us // size}{unit}"
    raise AssertionError("unreachable: 'us' divides everything")
