"""Candle intervals: calendar months (``1M`` from cryptofeed, ``1mo`` in the archive's
``klines/1mo``) and long fixed ones (``1w``, ``3d``) are understood by ``durations`` and kept by
gold (old code: every gold run failed with ``unparsable duration '1M'``). Silver's side:
test_silver_candle_intervals.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from crypto_lakehouse.schemas import SILVER
from crypto_lakehouse.storage import Catalog
from crypto_lakehouse.transform.gold import build_gold

MONTHS = [datetime(2024, m, 1, tzinfo=UTC) for m in (1, 2, 3, 4, 5)]


def test_candle_intervals_know_calendar_months_and_fixed_lengths() -> None:
    from crypto_lakehouse.durations import candle_interval, parse_duration  # here: old code lacks it

    month = candle_interval("1M")
    assert month is not None and month == candle_interval("1mo") == candle_interval(" 1mo ")
    assert (month.name, month.months, month.fixed, month.offset) == ("1M", 1, None, "1mo")
    assert month.add(datetime(2024, 1, 1, tzinfo=UTC)) == datetime(2024, 2, 1, tzinfo=UTC)
    assert month.add(datetime(2024, 2, 1, tzinfo=UTC)) == datetime(2024, 3, 1, tzinfo=UTC)  # 29 days later
    assert month.count(datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 4, 1, tzinfo=UTC)) == 3
    assert candle_interval("3M").add(datetime(2024, 11, 1, tzinfo=UTC)) == datetime(2025, 2, 1, tzinfo=UTC)
    minute = candle_interval("1m")  # case matters: m is a minute, M a month
    assert (minute.name, minute.months, minute.fixed, minute.offset) == ("1m", 0, timedelta(minutes=1), "1m")
    assert candle_interval("1w").fixed == timedelta(days=7) and candle_interval("3d").fixed == timedelta(days=3)
    assert candle_interval("4h").count(datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 2, tzinfo=UTC)) == 6
    for bad in ("", "M", "1", "0m", "0M", "-1M", "1x", "bogus", "1M1d"):
        assert candle_interval(bad) is None, bad
    with pytest.raises(ValueError, match="unparsable duration"):
        parse_duration("1M")  # bars stay fixed windows: a month is not one


def _candle(interval: str, start: datetime, stop: datetime, *, price: float = 100.0, closed: bool = True) -> dict:
    return {
        "exchange": "BINANCE",
        "symbol": "BTC-USDT",
        "ts": stop + timedelta(milliseconds=1),
        "receipt_ts": stop + timedelta(milliseconds=30),
        "interval": interval,
        "start": start,
        "stop": stop,
        "trades": 10,
        "open": f"{price}",
        "high": f"{price + 5}",
        "low": f"{price - 5}",
        "close": f"{price + 1}",
        "volume": "12.5",
        "closed": closed,
    }


def _monthly(i: int, *, interval: str = "1M", price: float = 100.0) -> dict:
    return _candle(interval, MONTHS[i], MONTHS[i + 1] - timedelta(milliseconds=1), price=price)


def _silver_candles(rows: list[dict]) -> pl.DataFrame:
    df = (
        pl.DataFrame(rows)
        .drop("closed")
        .with_columns(
            pl.col("ts").dt.date().alias("date"),
            pl.lit("stream").alias("source"),
            *(pl.col(c).cast(pl.Float64) for c in ("open", "high", "low", "close", "volume")),
        )
    )
    spec = SILVER["silver.candles"]
    return df.select(spec.schema.names)


def test_gold_keeps_monthly_weekly_and_three_day_candles(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path)
    spec = SILVER["silver.candles"]
    week = datetime(2024, 1, 1, tzinfo=UTC)  # a Monday
    first = [
        _monthly(0),
        _monthly(1),
        _candle("1w", week, week + timedelta(days=7) - timedelta(milliseconds=1)),
        _candle("3d", week, week + timedelta(days=3) - timedelta(milliseconds=1)),
        _candle("1m", week, week + timedelta(minutes=1) - timedelta(milliseconds=1)),
    ]
    catalog.append("silver.candles", _silver_candles(first).to_arrow().cast(spec.schema))
    build_gold(catalog, intervals=[timedelta(minutes=1)])  # old code: ValueError: unparsable duration '1M'
    # a later month, and February again from a backfill with other values: replaced, not doubled
    catalog.append(
        "silver.candles", _silver_candles([_monthly(2), _monthly(1, price=200.0)]).to_arrow().cast(spec.schema)
    )
    result = build_gold(catalog, intervals=[timedelta(minutes=1)])
    assert result.exchange_candles == 2
    gold = pl.read_delta(str(tmp_path / "gold" / "ohlcv")).filter(pl.col("source") == "exchange")
    months = gold.filter(pl.col("interval") == "1M").sort("window_start")
    assert months["window_start"].to_list() == MONTHS[:3]
    assert months["open"].to_list() == [100.0, 200.0, 100.0]
    assert sorted(gold["interval"].to_list()) == sorted(["1M", "1M", "1M", "1w", "3d", "1m"])
    assert gold.filter(pl.col("interval") == "1w")["window_start"].to_list() == [week]
