"""The promote and backfill jobs: REST URL merging, open-gap counting, time bounds, and a
backfill through the job with a REST base given like `lakehouse backfill --rest`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from crypto_lakehouse import LakehouseError, jobs, load_settings
from crypto_lakehouse.durations import parse_time, time_range
from crypto_lakehouse.errors import InvalidArgument, UnknownTable
from crypto_lakehouse.loopback import MarketSpec, SyntheticMarket, running_exchange


def test_backfill_urls_put_the_given_rest_base_over_the_configured_one() -> None:
    configured = {"BINANCE": "http://a", "BINANCE_FUTURES": "http://b"}
    assert jobs.backfill_urls(configured, exchange="binance", rest="http://c") == {
        "BINANCE": "http://c",
        "BINANCE_FUTURES": "http://b",
    }
    assert jobs.backfill_urls(configured, exchange="BINANCE_US", rest="http://d")["BINANCE_US"] == "http://d"
    assert jobs.backfill_urls(configured, exchange="BINANCE", rest=None) == configured
    assert jobs.backfill_urls(configured, exchange="BINANCE", rest="") == configured  # an empty --rest is no --rest
    assert configured == {"BINANCE": "http://a", "BINANCE_FUTURES": "http://b"}  # not modified


def test_count_open_gaps_counts_only_open_ones() -> None:
    assert jobs.count_open_gaps(None) == 0
    assert jobs.count_open_gaps(pl.DataFrame({"status": []}, schema={"status": pl.String})) == 0
    gaps = pl.DataFrame({"status": ["open", "filled", "open", "unfillable"]})
    assert jobs.count_open_gaps(gaps) == 2


def test_time_bounds_take_datetimes_or_text() -> None:
    t = datetime(2024, 1, 2, 3, tzinfo=UTC)
    assert parse_time(t) is t
    assert parse_time(datetime(2024, 1, 2, 3)) == t  # naive: UTC
    assert parse_time("2024-01-02T03:00:00Z") == t and parse_time("2024-01-02T03:00:00") == t
    assert parse_time("2024-01-02") == datetime(2024, 1, 2, tzinfo=UTC)
    assert abs(parse_time("-2h") - (datetime.now(UTC) - timedelta(hours=2))) < timedelta(seconds=5)
    assert time_range(None, None) == (None, None)
    with pytest.raises(InvalidArgument, match=r"--start 'yesterday' is not a time: use ISO 8601"):
        parse_time("yesterday", name="--start")


def test_an_end_not_after_its_start_is_refused_by_every_job(tmp_path: Path) -> None:
    settings = load_settings(root=str(tmp_path / "lake"))
    message = r"end 2024-01-01T00:00:00\+00:00 is not after start 2024-01-02T00:00:00\+00:00"
    with pytest.raises(InvalidArgument, match=message):
        jobs.promote_silver(settings, start="2024-01-02", end="2024-01-01")
    with pytest.raises(InvalidArgument, match=message):
        jobs.backfill(settings, exchange="binance", symbol="BTC-USDT", start="2024-01-02", end="2024-01-01")
    with pytest.raises(InvalidArgument, match="the range is empty"):
        jobs.promote_silver(settings, start="2024-01-02", end="2024-01-02")
    assert not (tmp_path / "lake").exists()  # refused before anything was written


def test_promote_names_the_silver_tables_that_exist_when_given_one_that_does_not(tmp_path: Path) -> None:
    settings = load_settings(root=str(tmp_path / "lake"))
    with pytest.raises(UnknownTable, match=r"no silver table 'Trade' to promote; tables: trades, book, ticker"):
        jobs.promote_silver(settings, tables=["Trade"])
    # any case, with or without the layer
    assert jobs.promote_silver(settings, tables=["Trades", "SILVER.book"]).summary()["tables"] == {}


def test_backfill_job_fetches_from_the_given_rest_base(tmp_path: Path) -> None:
    start_ms = 1_700_000_000_000
    market = SyntheticMarket(MarketSpec(exchange="BINANCE", symbols=["BTCUSDT"], rate=1, start_ms=start_ms))
    for _ in range(120):  # two minutes, one trade a second
        market.step()
    settings = load_settings(root=str(tmp_path / "lake"))
    with running_exchange(market=market) as ex:
        result = jobs.backfill(
            settings,
            exchange="binance",
            symbol="BTC-USDT",
            start=datetime.fromtimestamp(start_ms / 1000, UTC),
            end="2023-11-14T23:00:00Z",
            rest=ex.rest_url,
        )
    tape = market.tape("BTCUSDT")
    assert result == jobs.BackfillResult(
        exchange="BINANCE", symbol="BTC-USDT", rows_added=tape.last_id - tape.first_id + 1
    )
    silver = pl.read_delta(str(tmp_path / "lake" / "silver" / "trades"))
    assert silver["id"].sort().to_list() == list(range(tape.first_id, tape.last_id + 1))
    assert set(silver["source"]) == {"backfill"}


def test_backfill_job_refuses_an_unknown_exchange_with_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(LakehouseError, match="unknown exchange 'NOPE'"):
        jobs.backfill(load_settings(root=str(tmp_path)), exchange="nope", symbol="BTC-USDT", start="-1h")
