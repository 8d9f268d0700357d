"""Polars-style durations (``250ms``, ``1s``, ``3m``, ``2h``, ``1d``, ``1w``) parsed once, here,
the exchanges' candle intervals, which include calendar months (:func:`candle_interval`), and
the times and time ranges users pass (:func:`parse_time`, :func:`time_range`)."""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from crypto_lakehouse.errors import InvalidArgument

__all__ = ["CandleInterval", "candle_interval", "format_duration", "parse_duration", "parse_time", "time_range"]

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


_MONTHS = re.compile(r"(\d+)(M|mo)")


@dataclass(frozen=True, slots=True)
class CandleInterval:
    """An exchange candle interval: a fixed length (``1m``, ``4h``, ``3d``, ``1w``) or a number of
    calendar months (``1M``; the Binance archive spells it ``1mo``), whose length varies.

    ``name`` is the spelling silver stores (the exchange API's: ``1M`` for a month, as cryptofeed
    and ccxt write it); ``offset`` the Polars offset string (``dt.offset_by``, ``dt.truncate``)."""

    name: str
    months: int  # > 0: calendar months; 0: a fixed length
    fixed: timedelta | None  # the length when fixed (months == 0), else None

    @property
    def offset(self) -> str:
        return format_duration(self.fixed) if self.fixed is not None else f"{self.months}mo"

    def add(self, t: datetime, n: int = 1) -> datetime:
        """``t`` plus ``n`` intervals (months: the same day and time ``n`` months on, the day
        clamped to the month's last, as Polars' ``dt.offset_by`` does)."""
        if self.fixed is not None:
            return t + n * self.fixed
        month = t.month - 1 + n * self.months
        year, month = t.year + month // 12, month % 12 + 1
        return t.replace(year=year, month=month, day=min(t.day, calendar.monthrange(year, month)[1]))

    def count(self, start: datetime, end: datetime) -> int:
        """Whole intervals from ``start`` up to ``end`` (e.g. candles expected in ``[start, end)``)."""
        if self.fixed is not None:
            return max(0, (end - start) // self.fixed)
        n = max(0, ((end.year - start.year) * 12 + end.month - start.month) // self.months)
        while n and self.add(start, n) > end:
            n -= 1
        return n


def candle_interval(text: str) -> CandleInterval | None:
    """The interval of a candle (``"1m"``, ``"3d"``, ``"1w"``, ``"1M"``, ``"1mo"``), or None
    when ``text`` is not one (silver quarantines such candles). Case matters: ``m`` is a
    minute, ``M`` a month."""
    s = str(text).strip()
    m = _MONTHS.fullmatch(s)
    if m:
        n = int(m.group(1))
        return CandleInterval(f"{n}M", n, None) if n > 0 else None
    try:
        return CandleInterval(s, 0, parse_duration(s))
    except ValueError:
        return None


TimeLike = datetime | str
"""A point in time: a datetime (naive: UTC), or text: ISO 8601 (``2024-01-01``,
``2024-01-01T12:00:00Z``, ``2024-01-01 12:00``) or ``-2h`` (that long before now)."""


def parse_time(value: TimeLike, *, name: str = "time") -> datetime:
    """``value`` as an aware UTC datetime (see :data:`TimeLike`); :class:`InvalidArgument` naming
    ``name`` and the accepted forms otherwise."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if not isinstance(value, str):
        raise InvalidArgument(f"{name} must be a datetime or text, not {type(value).__name__}")
    text = value.strip()
    try:
        if text.startswith("-"):
            return datetime.now(UTC) - parse_duration(text[1:])
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidArgument(
            f"{name} {value!r} is not a time: use ISO 8601 (2024-01-01, 2024-01-01T12:00:00Z) "
            "or a duration before now (-2h, -1d)"
        ) from None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def time_range(
    start: TimeLike | None, end: TimeLike | None, *, names: tuple[str, str] = ("start", "end")
) -> tuple[datetime | None, datetime | None]:
    """``start`` and ``end`` parsed (:func:`parse_time`); an ``end`` that is not after ``start``
    is an :class:`InvalidArgument` (an inverted or empty range is a mistake, never an empty
    answer)."""
    first = None if start is None else parse_time(start, name=names[0])
    last = None if end is None else parse_time(end, name=names[1])
    if first is not None and last is not None and last <= first:
        raise InvalidArgument(
            f"{names[1]} {last.isoformat()} is not after {names[0]} {first.isoformat()}: the range is empty"
        )
    return first, last
