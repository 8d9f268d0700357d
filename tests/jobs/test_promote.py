"""The promote and backfill jobs: REST URL merging, open-gap counting, time bounds, and a
backfill through the job with a REST base given like `lakehouse backfill --rest`."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from crypto_lakehouse import LakehouseError, jobs, load_settings
from crypto_lakehouse.durations import parse_time, time_range
from crypto_lakehouse.errors import InvalidArgument, UnknownTable
from crypto_lakehouse.ingest.backfill import rest_urls
from crypto_lakehouse.loopback import MarketSpec, SyntheticMarket, running_exchange


def test_rest_urls_take_the_given_base_over_the_configured_over_the_recorded_one() -> None:
    recorded = {"BINANCE": "http://recorded", "BINANCE_FUTURES": "http://recorded-f"}
    configured = {"binance_futures": "http://configured"}
    assert rest_urls(configured, recorded=recorded) == {
        "BINANCE": "http://recorded",
        "BINANCE_FUTURES": "http://configured",
    }
    given = rest_urls(configured, recorded=recorded, given={"binance": "http://given"})
    assert given == {"BINANCE": "http://given", "BINANCE_FUTURES": "http://configured"}
    assert rest_urls(configured, recorded=recorded, given={"BINANCE": ""}) == rest_urls(configured, recorded=recorded)
    assert rest_urls({}) == {}  # nothing known: each exchange's own
    assert configured == {"binance_futures": "http://configured"}  # not modified


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
    told: list[tuple[int, float]] = []
    with running_exchange(market=market) as ex:
        result = jobs.backfill(
            settings,
            exchange="binance",
            symbol="BTC-USDT",
            start=datetime.fromtimestamp(start_ms / 1000, UTC),
            end="2023-11-14T23:00:00Z",
            rest=ex.rest_url,
            progress=lambda rows, done: told.append((rows, done)),
        )
    tape = market.tape("BTCUSDT")
    assert result == jobs.BackfillResult(
        exchange="BINANCE", symbol="BTC-USDT", rows_added=tape.last_id - tape.first_id + 1
    )
    # progress after every page, ending with every row and the whole range
    assert told[-1] == (len(tape), 1.0) and len(told) >= 2
    assert [d for _, d in told] == sorted(d for _, d in told) and [r for r, _ in told] == sorted(r for r, _ in told)
    silver = pl.read_delta(str(tmp_path / "lake" / "silver" / "trades"))
    assert silver["id"].sort().to_list() == list(range(tape.first_id, tape.last_id + 1))
    assert set(silver["source"]) == {"backfill"}


def test_backfill_job_refuses_an_unknown_exchange_with_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(LakehouseError, match="unknown exchange 'NOPE'"):
        jobs.backfill(load_settings(root=str(tmp_path)), exchange="nope", symbol="BTC-USDT", start="-1h")


def test_a_root_streamed_from_a_loopback_exchange_is_backfilled_from_it_by_default(tmp_path: Path) -> None:
    """Offline by default: after `lakehouse stream --endpoint <loopback>`, promote and backfill
    without --rest reach that loopback exchange (recorded in bronze.sessions), not the real
    venue (which would fail here, and mix real trades into a synthetic root)."""
    settings = load_settings(root=str(tmp_path / "lake"))
    market = MarketSpec(exchange="BINANCE", symbols=["BTCUSDT"], rate=100)
    with running_exchange(market=market) as ex:
        jobs.stream(
            settings,
            exchanges=["BINANCE"],
            symbols=["BTC-USDT"],
            channels=["trades"],
            endpoints=[ex.rest_url],
            duration_s=2,
        )
        time.sleep(1.5)  # the market trades on after the writer stopped: a tail to fill
        promoted = jobs.promote_silver(settings)
        added = jobs.backfill(settings, exchange="binance", symbol="BTC-USDT", start="-10s")
    assert promoted.open_gaps == 0
    silver = pl.read_delta(str(tmp_path / "lake" / "silver" / "trades"))
    assert silver.filter(pl.col("source") == "backfill").height > 0  # the tail, from the loopback exchange
    ids = silver["id"].sort()
    assert ids.n_unique() == ids.len() and ids.diff().drop_nulls().max() == 1  # contiguous, each once
    assert added.rows_added >= 0  # reached the loopback exchange (the real one is unreachable: an error)
