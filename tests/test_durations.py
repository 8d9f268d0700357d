"""Durations and candle intervals (``durations.py``), fast: no table, no socket, values in and out.

``parse_duration``/``format_duration`` are how every setting and CLI option spells a length of
time; :class:`CandleInterval` is the calendar arithmetic gap detection and backfill rely on to
know which exchange candles are missing (month ends, leap years, year ends). The basics of
``candle_interval`` (its fields, ``1M`` == ``1mo``) are in transform/test_calendar_intervals.py.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from crypto_lakehouse.durations import (
    CandleInterval,
    candle_interval,
    format_duration,
    parse_duration,
    parse_time,
    time_range,
)
from crypto_lakehouse.errors import LakehouseError


def _t(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def _iv(text: str) -> CandleInterval:
    iv = candle_interval(text)
    assert iv is not None, text
    return iv


# ------------------------------------------------------------------------------ parse / format


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1us", timedelta(microseconds=1)),
        ("250ms", timedelta(milliseconds=250)),
        ("1s", timedelta(seconds=1)),
        ("3m", timedelta(minutes=3)),
        ("2h", timedelta(hours=2)),
        ("1d", timedelta(days=1)),
        ("1w", timedelta(days=7)),
        ("1h30m", timedelta(minutes=90)),
        ("1d12h", timedelta(hours=36)),
        ("1m500ms", timedelta(seconds=60, milliseconds=500)),
        ("  4h ", timedelta(hours=4)),
    ],
)
def test_parse_duration_reads_each_unit_and_adds_up_compound_spellings(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", "   ", "m", "1", "5x", "1M", "1mo", "1y", "1H", "0m", "0s0ms", "-1m", "1.5m", "1 m", "1m 30s", "m1"],
)
def test_parse_duration_rejects_what_is_no_positive_fixed_length_and_says_how_to_spell_one(text: str) -> None:
    # a ValueError on purpose: the settings turn it into a ConfigError naming the key (test_config.py)
    with pytest.raises(ValueError, match="unparsable duration") as info:
        parse_duration(text)
    message = str(info.value)
    assert repr(text) in message  # which value was wrong
    assert "(us, ms, s, m, h, d, w)" in message and "'1m'" in message  # and how to write one


@pytest.mark.parametrize(
    ("td", "text"),
    [
        (timedelta(microseconds=1), "1us"),
        (timedelta(microseconds=1001), "1001us"),
        (timedelta(milliseconds=250), "250ms"),
        (timedelta(milliseconds=1500), "1500ms"),
        (timedelta(seconds=1), "1s"),
        (timedelta(seconds=90), "90s"),
        (timedelta(minutes=90), "90m"),
        (timedelta(hours=2), "2h"),
        (timedelta(hours=36), "36h"),
        (timedelta(hours=24), "1d"),
        (timedelta(days=10), "10d"),
        (timedelta(days=7), "1w"),
        (timedelta(days=14), "2w"),
    ],
)
def test_format_duration_uses_the_largest_unit_that_divides(td: timedelta, text: str) -> None:
    assert format_duration(td) == text
    assert parse_duration(text) == td


@pytest.mark.parametrize(
    ("text", "canonical"),
    [("60m", "1h"), ("1h30m", "90m"), ("24h", "1d"), ("7d", "1w"), ("1000ms", "1s"), ("120s", "2m"), ("1w1d", "8d")],
)
def test_one_length_has_one_canonical_spelling(text: str, canonical: str) -> None:
    # gold names its bars and its progress id by this spelling: "60m" and "1h" are one interval
    assert format_duration(parse_duration(text)) == canonical


def test_format_then_parse_round_trips_any_positive_length() -> None:
    rng = random.Random(13)
    sizes = [1, 1_000, 1_000_000, 60_000_000, 3_600_000_000, 86_400_000_000, 604_800_000_000]
    for _ in range(2_000):
        td = timedelta(microseconds=rng.choice(sizes) * rng.randint(1, 5_000) + rng.choice([0, 0, 1, 999]))
        assert parse_duration(format_duration(td)) == td, td


# ------------------------------------------------------------------------------ candle intervals


@pytest.mark.parametrize(
    ("interval", "t", "n", "expected"),
    [
        ("1M", _t(2024, 1, 31, 10, 30), 1, _t(2024, 2, 29, 10, 30)),  # leap year: clamped to the 29th
        ("1M", _t(2023, 1, 31, 10, 30), 1, _t(2023, 2, 28, 10, 30)),  # common year: to the 28th
        ("1M", _t(2024, 3, 31), 1, _t(2024, 4, 30)),
        ("2M", _t(2024, 1, 31), 1, _t(2024, 3, 31)),  # clamped only where the target month is short
        ("1M", _t(2024, 1, 31), 2, _t(2024, 3, 31)),
        ("1M", _t(2024, 12, 15), 1, _t(2025, 1, 15)),  # year end
        ("3M", _t(2024, 11, 30), 1, _t(2025, 2, 28)),
        ("12M", _t(2024, 2, 29), 1, _t(2025, 2, 28)),
        ("1M", _t(2024, 2, 29), 48, _t(2028, 2, 29)),
        ("1M", _t(2024, 1, 1), 25, _t(2026, 2, 1)),
        ("1M", _t(2024, 5, 17, 8), 0, _t(2024, 5, 17, 8)),
        ("1M", _t(2025, 1, 15), -1, _t(2024, 12, 15)),  # backwards across the year end
        ("1M", _t(2024, 3, 31), -1, _t(2024, 2, 29)),
        ("1M", _t(2024, 3, 31), -2, _t(2024, 1, 31)),
        ("1mo", _t(2024, 1, 1), -13, _t(2022, 12, 1)),
        ("1w", _t(2024, 12, 30), 1, _t(2025, 1, 6)),
        ("3d", _t(2024, 2, 27), 1, _t(2024, 3, 1)),  # through the 29th of a leap February
        ("3d", _t(2023, 2, 27), 1, _t(2023, 3, 2)),
        ("1m", _t(2023, 12, 31, 23, 58), 3, _t(2024, 1, 1, 0, 1)),
        ("4h", _t(2024, 1, 1, 2), -1, _t(2023, 12, 31, 22)),
    ],
)
def test_add_moves_by_whole_intervals_across_month_and_year_ends(
    interval: str, t: datetime, n: int, expected: datetime
) -> None:
    got = _iv(interval).add(t, n)
    assert got == expected
    assert got.tzinfo is UTC


def test_add_agrees_with_the_polars_offset_gold_and_gap_detection_use() -> None:
    """Backfill counts the candles it expects with ``add``; gap detection and gold find runs of
    candles with Polars' ``dt.offset_by(offset)``: both must step a month the same way, on every
    day of a leap year and a common one."""
    days = pl.datetime_range(_t(2023, 1, 1, 13, 45), _t(2024, 12, 31, 13, 45), "1d", eager=True)
    for text in ("1M", "3M", "1w", "3d", "4h"):
        iv = _iv(text)
        expected = days.dt.offset_by(iv.offset).to_list()
        assert [iv.add(t) for t in days.to_list()] == expected, text


@pytest.mark.parametrize(
    ("interval", "start", "end", "expected"),
    [
        ("1M", _t(2024, 1, 31), _t(2024, 2, 29), 1),
        ("1M", _t(2024, 1, 31), _t(2024, 2, 28), 0),  # a month on from the 31st is the 29th
        ("1M", _t(2024, 1, 31), _t(2024, 3, 1), 1),
        ("1M", _t(2024, 1, 31), _t(2024, 3, 30), 1),
        ("1M", _t(2024, 1, 31), _t(2024, 3, 31), 2),
        ("1M", _t(2024, 1, 15), _t(2024, 4, 14), 2),
        ("1M", _t(2024, 1, 1, 12), _t(2024, 2, 1, 11, 59, 59), 0),  # a second short of a month
        ("1M", _t(2024, 12, 1), _t(2025, 3, 1), 3),  # across the year end
        ("1M", _t(2024, 1, 1), _t(2025, 1, 1), 12),
        ("3M", _t(2024, 11, 1), _t(2025, 1, 31), 0),
        ("3M", _t(2024, 11, 1), _t(2025, 2, 1), 1),
        ("1M", _t(2024, 3, 1), _t(2024, 3, 1), 0),
        ("1M", _t(2024, 3, 1), _t(2024, 1, 1), 0),  # end before start: nothing expected
        ("1d", _t(2024, 2, 1), _t(2024, 3, 1), 29),
        ("1d", _t(2023, 2, 1), _t(2023, 3, 1), 28),
        ("1w", _t(2024, 1, 1), _t(2025, 1, 1), 52),  # 366 days
        ("1m", _t(2024, 1, 1), _t(2024, 1, 1, 0, 1, 30), 1),
        ("1h", _t(2024, 1, 2), _t(2024, 1, 1), 0),
    ],
)
def test_count_is_the_number_of_whole_intervals_in_a_range(
    interval: str, start: datetime, end: datetime, expected: int
) -> None:
    assert _iv(interval).count(start, end) == expected


@pytest.mark.parametrize("interval", ["1M", "2M", "3M", "1w", "3d", "15m"])
@pytest.mark.parametrize("start", [_t(2024, 1, 31, 6), _t(2023, 8, 31), _t(2024, 2, 29), _t(2024, 12, 1)])
def test_count_inverts_add(interval: str, start: datetime) -> None:
    """The candles a backfill expects between a gap's start and the next candle it has."""
    iv = _iv(interval)
    for n in range(0, 30):
        end = iv.add(start, n)
        assert iv.count(start, end) == n
        assert iv.count(start, end - timedelta(microseconds=1)) == max(0, n - 1)


@pytest.mark.parametrize(
    ("text", "name", "offset", "months", "fixed"),
    [
        ("3M", "3M", "3mo", 3, None),
        ("12mo", "12M", "12mo", 12, None),
        ("1w", "1w", "1w", 0, timedelta(days=7)),
        ("1h30m", "1h30m", "90m", 0, timedelta(minutes=90)),
        ("60m", "60m", "1h", 0, timedelta(hours=1)),
    ],
)
def test_a_candle_interval_has_a_stored_name_and_a_polars_offset(
    text: str, name: str, offset: str, months: int, fixed: timedelta | None
) -> None:
    iv = _iv(text)
    assert (iv.name, iv.offset, iv.months, iv.fixed) == (name, offset, months, fixed)


@pytest.mark.parametrize("text", ["0mo", "1Mo", "1MO", "1.5M", "1 M", "M1", "1y", "1mo1d", "1d1M"])
def test_what_is_no_candle_interval_is_none_for_silver_to_quarantine(text: str) -> None:
    assert candle_interval(text) is None


# ------------------------------------------------------------------------------ time windows on the CLI


def test_a_window_bound_is_a_date_a_time_or_a_duration_before_now() -> None:
    assert time_range(None, None) == (None, None)
    assert parse_time("2024-01-02") == _t(2024, 1, 2)
    assert parse_time(" 2024-01-02T03:04:05Z ") == _t(2024, 1, 2, 3, 4, 5)
    assert parse_time("2024-01-02T03:00:00+02:00") == _t(2024, 1, 2, 1)  # an offset is honoured
    before = datetime.now(UTC)
    got = parse_time("-1h30m")
    assert before - timedelta(minutes=90) <= got <= datetime.now(UTC) - timedelta(minutes=90)


@pytest.mark.parametrize("text", ["-5x", "yesterday"])
def test_a_bad_window_bound_is_a_lakehouse_error_naming_it(text: str) -> None:
    # old code: a bare ValueError, printed by the CLI as a traceback
    with pytest.raises(LakehouseError) as info:
        parse_time(text, name="--start")
    assert f"--start {text!r} is not a time" in str(info.value) and "-2h" in str(info.value)
