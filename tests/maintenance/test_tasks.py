"""Maintenance never loses data and never breaks a tag."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from deltalake import DeltaTable

from crypto_lakehouse import Lakehouse
from crypto_lakehouse.exchange import LoopbackExchange, MarketSpec
from crypto_lakehouse.ingest import BronzeWriter, FeedTarget, stream_to_bronze
from crypto_lakehouse.maintenance import checkpoint, compact, retention, vacuum
from crypto_lakehouse.schemas import SILVER
from crypto_lakehouse.storage import Catalog


def test_compaction_and_vacuum_during_a_live_stream_lose_no_rows(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path)
    writer = BronzeWriter(catalog, writer_id="w", spool_dir=tmp_path / "spool", max_age_s=0.05)
    reports = []

    async def go() -> None:
        spec = MarketSpec(exchange="BINANCE", symbols=["BTCUSDT", "ETHUSDT"], rate=3_000, max_trades=6_000)  # ~6 s
        async with LoopbackExchange(market=spec) as ex:
            target = FeedTarget("BINANCE", ["BTC-USDT", "ETH-USDT"], ["trades"], ex.ws_url, ex.rest_url, ex.cert_pem)
            stop = asyncio.Event()
            task = asyncio.create_task(stream_to_bronze([target], writer, stop=stop))
            done = threading.Event()

            def maintain() -> None:  # compaction and vacuum keep running while the writer appends
                while not done.is_set():
                    if catalog.exists("bronze.trades"):
                        reports.append(compact(catalog, "bronze.trades"))
                        vacuum(catalog, "bronze.trades")  # the configured horizon (7 days)
                    done.wait(0.2)

            t = threading.Thread(target=maintain)
            t.start()
            await asyncio.wait_for(ex.finished.wait(), 120)
            await asyncio.sleep(1.0)
            stop.set()
            await task
            done.set()
            t.join()

    asyncio.run(go())
    assert any(r.files_after < r.files_before for r in reports)  # it did compact mid-stream
    final = compact(catalog, "bronze.trades")
    trades = pl.read_delta(catalog.uri("bronze.trades"))
    assert trades.height == writer.stats["bronze.trades"].rows_committed == 12_000
    assert trades["id"].n_unique() == 12_000 and final.files_after <= 4


def _silver(catalog: Catalog, day: datetime, ids: range) -> None:
    spec = SILVER["silver.trades"]
    df = (
        pl.DataFrame({"id": list(ids)})
        .with_columns(
            pl.lit("BINANCE").alias("exchange"),
            pl.lit("BTC-USDT").alias("symbol"),
            (pl.lit(day) + pl.duration(seconds=pl.col("id") % 3600)).dt.cast_time_unit("us").alias("ts"),
            pl.lit("buy").alias("side"),
            pl.lit(100.0).alias("price"),
            pl.lit(1.0).alias("amount"),
            pl.lit("stream").alias("source"),
        )
        .with_columns(pl.col("ts").alias("receipt_ts"), pl.col("ts").dt.date().alias("date"))
    )
    catalog.append("silver.trades", df.select(spec.schema.names).to_arrow().cast(spec.schema))


def test_a_tag_stays_byte_identical_through_compaction_retention_vacuum_and_checkpoint(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path)
    old, new = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 11, 20, tzinfo=UTC)
    for k in range(6):  # many small commits over two days
        _silver(catalog, old if k % 2 else new, range(k * 100, k * 100 + 100))
    lh = Lakehouse(tmp_path)
    lh.tag("bt")
    pinned = lh.read("silver.trades", as_of="bt").sort("id")
    assert compact(catalog, "silver.trades").files_after < 6
    r = retention(catalog, "silver.trades", keep=timedelta(days=30), now=datetime(2026, 11, 22, tzinfo=UTC))
    assert "300" in r.detail and lh.read("silver.trades").height == 300  # the January day is gone
    v = vacuum(catalog, "silver.trades", retention=timedelta(0))
    c = checkpoint(catalog, "silver.trades")
    assert "tagged" in c.detail
    assert lh.read("silver.trades", as_of="bt").sort("id").equals(pinned)  # byte-identical
    assert lh.sql("select count(*) as n from silver.trades", as_of="bt")["n"][0] == 600
    # the protection is what kept it: vacuum without the tag's versions deletes files it needs
    lh.untag("bt")
    assert vacuum(catalog, "silver.trades", retention=timedelta(0)).bytes_freed > v.bytes_freed
    with pytest.raises(Exception):  # noqa: B017 - delta-rs raises its own error for missing files
        DeltaTable(catalog.uri("silver.trades"), version=5).to_pyarrow_table()


def test_maintain_cli_reports_json(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path)
    for k in range(4):
        _silver(catalog, datetime(2026, 11, 20, tzinfo=UTC), range(k * 10, k * 10 + 10))
    res = subprocess.run(
        [sys.executable, "-m", "crypto_lakehouse.cli", "maintain", "compact", "--root", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout.strip().splitlines()[-1])
    assert report[0]["table"] == "silver.trades" and report[0]["files_after"] < report[0]["files_before"]
