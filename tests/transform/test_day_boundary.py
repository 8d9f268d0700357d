"""One time column decides a silver row's ``date`` partition and the filters of reads and
reprocessing: ``ts`` (TIME_COLUMN), ``receipt_ts`` where the exchange sent no time. A candle that
opens at 23:59 and closes after midnight belongs to the next day, where a read of that day's first
minute looks for it (old code: partitioned by its start, pruned from that read and skipped by a
reprocess of that minute)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from crypto_lakehouse.query import Lakehouse
from crypto_lakehouse.storage import Catalog
from crypto_lakehouse.transform.gold import build_gold
from crypto_lakehouse.transform.silver import SilverOptions, promote_silver

from .helpers import write_bronze

MIDNIGHT = datetime(2026, 11, 21, tzinfo=UTC)
JUST_AFTER = MIDNIGHT + timedelta(milliseconds=500)
NO_BACKFILL = SilverOptions(backfill=False)
WHERE = {
    "exchange": "BINANCE",
    "symbol": "BTC-USDT",
    "ts": JUST_AFTER,
    "receipt_ts": JUST_AFTER + timedelta(milliseconds=20),
}
ROWS: dict[str, dict] = {
    "trades": {"id": "1", "side": "buy", "price": "100.5", "amount": "0.25"},
    "book": {"sequence": 1, "snapshot": True, "side": "bid", "price": "100.5", "size": "2"},
    "ticker": {"sequence": 1, "bid": "100.0", "bid_size": "1", "ask": "100.5", "ask_size": "2"},
    "funding": {"mark_price": "100.0", "rate": "0.0001", "next_funding_time": MIDNIGHT + timedelta(hours=8)},
    "liquidations": {"id": "1", "side": "sell", "quantity": "0.5", "price": "99.5", "status": "filled"},
    "candles": {  # 23:59 -> 00:00, its close event just after midnight
        "interval": "1m",
        "start": MIDNIGHT - timedelta(minutes=1),
        "stop": MIDNIGHT - timedelta(milliseconds=1),
        "trades": 3,
        "open": "100",
        "high": "101",
        "low": "99",
        "close": "100.5",
        "volume": "3",
        "closed": True,
    },
}


def _first_minute(root: Path, table: str) -> pl.DataFrame:
    return Lakehouse(root).read(table, start=MIDNIGHT, end=MIDNIGHT + timedelta(minutes=1))


@pytest.mark.parametrize("kind", list(ROWS))
def test_a_row_just_after_midnight_is_read_and_reprocessed_with_the_next_day(tmp_path: Path, kind: str) -> None:
    for how in ("promote", "reprocess"):
        root = tmp_path / how
        catalog = Catalog(root)
        write_bronze(catalog, f"bronze.{kind}", [{**WHERE, **ROWS[kind]}])
        if how == "promote":
            promote_silver(catalog, options=NO_BACKFILL)
        else:  # reprocess only the first minute of the day: the row is in it by its ts
            promote_silver(catalog, options=NO_BACKFILL, start=MIDNIGHT, end=MIDNIGHT + timedelta(minutes=1))
        got = _first_minute(root, f"silver.{kind}")
        assert got.height == 1, f"{how}: {kind} row at 00:00:00.5 missing from a read of 00:00-00:01"
        assert got["date"].to_list() == [MIDNIGHT.date()]
        assert got["ts"].to_list() == [JUST_AFTER]


def test_a_row_without_exchange_time_is_partitioned_by_its_receipt(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path)
    received = MIDNIGHT - timedelta(milliseconds=1)
    write_bronze(catalog, "bronze.ticker", [{**WHERE, **ROWS["ticker"], "ts": None, "receipt_ts": received}])
    promote_silver(catalog, options=NO_BACKFILL)
    got = pl.read_delta(str(tmp_path / "silver" / "ticker"))
    assert got["date"].to_list() == [received.date()]


def test_gold_ohlcv_reads_by_window_start_which_decides_its_bars(tmp_path: Path) -> None:
    """gold.ohlcv has no date partition: reads filter on window_start (its TIME_COLUMN), which is
    the bar's own key. A trade at 00:00:00.5 makes the 00:00 bar; the exchange's 23:59 candle is
    the 23:59 bar, not in a read from 00:00."""
    catalog = Catalog(tmp_path)
    write_bronze(catalog, "bronze.trades", [{**WHERE, **ROWS["trades"]}])
    write_bronze(catalog, "bronze.candles", [{**WHERE, **ROWS["candles"]}])
    promote_silver(catalog, options=NO_BACKFILL)
    build_gold(catalog, intervals=[timedelta(minutes=1)])
    first = _first_minute(tmp_path, "gold.ohlcv")
    assert first.select("source", "window_start").rows() == [("trades", MIDNIGHT)]
    before = Lakehouse(tmp_path).read("gold.ohlcv", start=MIDNIGHT - timedelta(minutes=1), end=MIDNIGHT)
    assert before.select("source", "window_start").rows() == [("exchange", MIDNIGHT - timedelta(minutes=1))]
