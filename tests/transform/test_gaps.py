"""Gap detection (``transform/gaps.py``), fast: silver-shaped frames in memory, the missing ranges
out. Trade ids, candles and funding here; coverage gaps (sessions) in test_coverage.py; detection
and filling end to end, against a loopback exchange, in test_silver.py.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from crypto_lakehouse.durations import candle_interval
from crypto_lakehouse.transform.gaps import _SCHEMA, _candle_gaps, _funding_gaps, _id_gaps

T0 = datetime(2024, 1, 1, tzinfo=UTC)
_UTC = pl.Datetime("us", "UTC")


def _minutes(m: float) -> datetime:
    return T0 + timedelta(minutes=m)


# ------------------------------------------------------------------------------ trade ids


def _trades(*rows: tuple[str, str, int]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema={"exchange": pl.String, "symbol": pl.String, "id": pl.Int64}, orient="row")


def _id_runs(trades: pl.DataFrame | pl.LazyFrame) -> list[tuple[str, str, int, int]]:
    return sorted(_id_gaps(trades, contiguous=("B", "C")).select("exchange", "symbol", "first_id", "last_id").rows())


def test_missing_trade_ids_are_runs_of_first_and_last_id() -> None:
    ids = [8, 1, 10, 3, 2, 7]  # in no order: Delta keeps none
    assert _id_runs(_trades(*(("B", "BTC-USDT", i) for i in ids))) == [("B", "BTC-USDT", 4, 6), ("B", "BTC-USDT", 9, 9)]


def test_contiguous_ids_and_ids_before_the_first_or_after_the_last_are_no_gap() -> None:
    assert _id_runs(_trades(*(("B", "BTC-USDT", i) for i in range(100, 200)))) == []
    assert _id_runs(_trades(("B", "BTC-USDT", 5_000_000_000))) == []
    assert _id_runs(_trades()) == []


def test_ids_are_contiguous_per_exchange_and_symbol_not_across_them() -> None:
    trades = _trades(
        ("B", "BTC-USDT", 1),
        ("B", "BTC-USDT", 5),
        ("B", "ETH-USDT", 2),  # would fill BTC-USDT's gap if symbols were mixed
        ("B", "ETH-USDT", 3),
        ("B", "ETH-USDT", 4),
        ("C", "BTC-USDT", 10),
        ("C", "BTC-USDT", 12),
    )
    assert _id_runs(trades.lazy()) == [("B", "BTC-USDT", 2, 4), ("C", "BTC-USDT", 11, 11)]


def test_an_id_gap_is_a_row_of_silver_gaps() -> None:
    gaps = _id_gaps(_trades(("B", "BTC-USDT", 1), ("B", "BTC-USDT", 4)), contiguous=["B"])
    assert gaps.cast(_SCHEMA).columns == list(_SCHEMA)  # what detect_gaps concatenates
    assert gaps.row(0, named=True) == {
        "exchange": "B",
        "symbol": "BTC-USDT",
        "table": "silver.trades",
        "interval": None,
        "first_id": 2,
        "last_id": 3,
        "start": None,
        "end": None,
        "reason": None,
        "check": "trade_ids:contiguous",
    }


# ------------------------------------------------------------------------------ candles


def _candles(*rows: tuple[str, str, datetime], exchange: str = "B") -> pl.DataFrame:
    """(symbol, interval, start) -> silver-shaped candles (the columns detection reads)."""
    return pl.DataFrame(
        [(exchange, s, iv, start) for s, iv, start in rows],
        schema={"exchange": pl.String, "symbol": pl.String, "interval": pl.String, "start": _UTC},
        orient="row",
    )


def _candle_holes(candles: pl.DataFrame | pl.LazyFrame) -> list[tuple[str, str, datetime, datetime]]:
    return sorted(_candle_gaps(candles).select("symbol", "interval", "start", "end").rows())


def test_a_missing_candle_is_the_range_from_where_it_should_open_to_the_next_candle() -> None:
    candles = _candles(*(("BTC-USDT", "1m", _minutes(m)) for m in (5, 0, 1, 4)))
    assert _candle_holes(candles) == [("BTC-USDT", "1m", _minutes(2), _minutes(4))]
    (hole,) = _candle_gaps(candles).select("interval", "start", "end").rows()
    assert candle_interval(hole[0]).count(hole[1], hole[2]) == 2  # what the backfill expects back


def test_the_same_candle_twice_is_no_gap() -> None:
    # streamed and backfilled copies of one candle (silver keeps one, but detection reads any)
    candles = _candles(*(("BTC-USDT", "1m", _minutes(m)) for m in (0, 1, 1, 2)))
    assert _candle_holes(candles.lazy()) == []


@pytest.mark.parametrize(
    ("interval", "starts", "holes"),
    [
        (  # a missing month: from its first day to the next month's
            "1M",
            [datetime(2024, m, 1, tzinfo=UTC) for m in (1, 2, 4, 5)],
            [(datetime(2024, 3, 1, tzinfo=UTC), datetime(2024, 4, 1, tzinfo=UTC))],
        ),
        (  # a leap February missing, and two months across the year end
            "1M",
            [datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 3, 1, tzinfo=UTC), datetime(2024, 12, 1, tzinfo=UTC)]
            + [datetime(2025, 3, 1, tzinfo=UTC)],
            [
                (datetime(2024, 2, 1, tzinfo=UTC), datetime(2024, 3, 1, tzinfo=UTC)),
                (datetime(2024, 4, 1, tzinfo=UTC), datetime(2024, 12, 1, tzinfo=UTC)),
                (datetime(2025, 1, 1, tzinfo=UTC), datetime(2025, 3, 1, tzinfo=UTC)),
            ],
        ),
        (  # consecutive months of unequal lengths: no gap
            "1M",
            [datetime(2024, m, 1, tzinfo=UTC) for m in range(1, 13)] + [datetime(2025, 1, 1, tzinfo=UTC)],
            [],
        ),
        (  # weeks open on Mondays
            "1w",
            [datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 8, tzinfo=UTC), datetime(2024, 1, 22, tzinfo=UTC)],
            [(datetime(2024, 1, 15, tzinfo=UTC), datetime(2024, 1, 22, tzinfo=UTC))],
        ),
        (
            "3d",
            [datetime(2024, 2, 27, tzinfo=UTC), datetime(2024, 3, 1, tzinfo=UTC), datetime(2024, 3, 7, tzinfo=UTC)],
            [(datetime(2024, 3, 4, tzinfo=UTC), datetime(2024, 3, 7, tzinfo=UTC))],
        ),
    ],
)
def test_candle_gaps_step_by_the_candles_own_interval(
    interval: str, starts: list[datetime], holes: list[tuple[datetime, datetime]]
) -> None:
    got = _candle_holes(_candles(*(("BTC-USDT", interval, s) for s in starts)))
    assert got == [("BTC-USDT", interval, s, e) for s, e in holes]


def test_candles_are_consecutive_per_symbol_and_interval_and_unknown_intervals_are_left_out() -> None:
    candles = _candles(
        ("BTC-USDT", "1m", _minutes(0)),
        ("BTC-USDT", "1m", _minutes(1)),
        ("BTC-USDT", "5m", _minutes(0)),  # would look like 1m gaps if intervals were mixed
        ("BTC-USDT", "5m", _minutes(5)),
        ("ETH-USDT", "1m", _minutes(3)),  # would leave BTC-USDT's minute 2 missing if symbols were mixed
        ("ETH-USDT", "1m", _minutes(8)),
        ("BTC-USDT", "5x", _minutes(0)),  # silver quarantines these; older rows are skipped, not fatal
        ("BTC-USDT", "5x", _minutes(60)),
    )
    assert _candle_holes(candles) == [("ETH-USDT", "1m", _minutes(4), _minutes(8))]
    other_venue = pl.concat([candles, _candles(("BTC-USDT", "1m", _minutes(3)), exchange="C")])
    assert _candle_holes(other_venue) == [("ETH-USDT", "1m", _minutes(4), _minutes(8))]


def test_a_candle_gap_is_a_row_of_silver_gaps() -> None:
    gaps = _candle_gaps(_candles(("BTC-USDT", "1h", T0), ("BTC-USDT", "1h", T0 + timedelta(hours=3))))
    row = gaps.cast(_SCHEMA).row(0, named=True)
    assert row == {
        "exchange": "B",
        "symbol": "BTC-USDT",
        "table": "silver.candles",
        "interval": "1h",
        "first_id": None,
        "last_id": None,
        "start": T0 + timedelta(hours=1),
        "end": T0 + timedelta(hours=3),
        "reason": None,
        "check": "candles:interval",
    }
    assert _candle_gaps(_candles()).is_empty()


# ------------------------------------------------------------------------------ funding


def _funding(*rows: tuple[str, float, str]) -> pl.DataFrame:
    """(symbol, minutes after T0, source) -> silver-shaped funding rows."""
    return pl.DataFrame(
        [("B", s, _minutes(m), src) for s, m, src in rows],
        schema={"exchange": pl.String, "symbol": pl.String, "ts": _UTC, "source": pl.String},
        orient="row",
    )


def _silences(funding: pl.DataFrame | pl.LazyFrame, gap: timedelta = timedelta(minutes=1)) -> list[tuple]:
    return sorted(_funding_gaps(funding, funding_gap=gap).select("symbol", "start", "end").rows())


def test_a_funding_silence_longer_than_the_setting_is_a_gap_between_the_rows_around_it() -> None:
    rows = _funding(*(("BTC-USDT-PERP", m, "stream") for m in (2.75, 0, 0.5, 2)))
    assert _silences(rows) == [("BTC-USDT-PERP", _minutes(0.5) + timedelta(microseconds=1), _minutes(2))]
    assert _silences(rows, timedelta(minutes=2)) == []


def test_a_silence_of_exactly_the_setting_is_no_gap() -> None:
    rows = _funding(*(("BTC-USDT-PERP", m, "stream") for m in (0, 1, 2, 3)))
    assert _silences(rows.lazy()) == []
    assert _silences(rows, timedelta(seconds=59)) == [
        ("BTC-USDT-PERP", _minutes(m) + timedelta(microseconds=1), _minutes(m + 1)) for m in (0, 1, 2)
    ]


def test_only_the_stream_is_expected_to_be_continuous_per_symbol() -> None:
    rows = _funding(
        ("BTC-USDT-PERP", 0, "stream"),
        ("BTC-USDT-PERP", 2.5, "backfill"),  # a settlement fetched over REST does not end the silence
        ("BTC-USDT-PERP", 5, "stream"),
        ("BTC-USDT-PERP", 480, "backfill"),  # settlements are 8 h apart: no gap between them
        ("BTC-USDT-PERP", 960, "archive"),
        ("ETH-USDT-PERP", 0.5, "stream"),  # another symbol does not break BTC's silence
        ("ETH-USDT-PERP", 1, "stream"),
    )
    assert _silences(rows) == [("BTC-USDT-PERP", _minutes(0) + timedelta(microseconds=1), _minutes(5))]


def test_a_funding_gap_is_a_row_of_silver_gaps() -> None:
    gaps = _funding_gaps(_funding(("X-Y", 0, "stream"), ("X-Y", 10, "stream")), funding_gap=timedelta(minutes=1))
    assert gaps.cast(_SCHEMA).row(0, named=True) == {
        "exchange": "B",
        "symbol": "X-Y",
        "table": "silver.funding",
        "interval": None,
        "first_id": None,
        "last_id": None,
        "start": T0 + timedelta(microseconds=1),
        "end": _minutes(10),
        "reason": None,
        "check": "funding:silence",
    }
    assert _funding_gaps(_funding(), funding_gap=timedelta(minutes=1)).is_empty()
