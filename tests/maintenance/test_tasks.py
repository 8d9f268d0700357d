"""Maintenance never loses data and never breaks a tag."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from deltalake import DeltaTable

from crypto_lakehouse import Lakehouse
from crypto_lakehouse.errors import LakehouseError
from crypto_lakehouse.ingest import BronzeWriter, FeedTarget, stream_to_bronze
from crypto_lakehouse.loopback import LoopbackExchange, MarketSpec
from crypto_lakehouse.maintenance import CompactionBusy, checkpoint, compact, retention, vacuum
from crypto_lakehouse.schemas import BRONZE, SILVER
from crypto_lakehouse.storage import TABLE_PROPERTIES, Catalog


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
            pl.col("id").cast(pl.String).alias("trade_id"),
            pl.col("id").cast(pl.String).alias("trade_key"),
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
    v = vacuum(catalog, "silver.trades", horizon=timedelta(0))
    c = checkpoint(catalog, "silver.trades")
    assert "tagged" in c.detail
    assert lh.read("silver.trades", as_of="bt").sort("id").equals(pinned)  # byte-identical
    assert lh.sql("select count(*) as n from silver.trades", as_of="bt")["n"][0] == 600
    # the protection is what kept it: vacuum without the tag's versions deletes files it needs
    lh.untag("bt")
    assert vacuum(catalog, "silver.trades", horizon=timedelta(0)).bytes_freed > v.bytes_freed
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
    before = pl.read_delta(catalog.uri("silver.trades"))

    def zorder(column: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "crypto_lakehouse.cli", "maintain", "compact", "--root", str(tmp_path)]
            + ["--table", "silver.trades", "--z-order", column],
            capture_output=True,
            text=True,
            timeout=120,
        )

    res = zorder("ts")
    assert res.returncode == 0, res.stderr
    assert "z-ordered by ts" in json.loads(res.stdout.strip().splitlines()[-1])[0]["detail"]
    after = pl.read_delta(catalog.uri("silver.trades"))
    assert after["ts"].is_sorted()  # one partition: one file clustered by time
    assert after.sort("id").equals(before.sort("id"))
    res = zorder("no_such_column")
    assert res.returncode == 2 and "no_such_column" in res.stderr


def _bronze(catalog: Catalog, ids: range) -> None:
    spec = BRONZE["bronze.trades"]
    df = pl.DataFrame({"i": list(ids)}).with_columns(
        pl.lit("BINANCE").alias("exchange"),
        pl.lit("BTC-USDT").alias("symbol"),
        (pl.lit(datetime(2026, 11, 1, tzinfo=UTC)) + pl.duration(seconds="i")).dt.cast_time_unit("us").alias("ts"),
        pl.col("i").cast(pl.String).alias("id"),
        pl.lit("buy").alias("side"),
        pl.lit("100.5").alias("price"),
        pl.lit("1").alias("amount"),
        pl.lit(None, pl.String).alias("type"),
        pl.lit("w").alias("writer_id"),
        pl.lit(0, pl.Int64).alias("batch_id"),
    )
    df = df.with_columns(pl.col("ts").alias("receipt_ts"), pl.col("ts").dt.date().alias("date"))
    catalog.append("bronze.trades", df.select(spec.schema.names).to_arrow().cast(spec.schema))


def test_vacuum_keeps_recently_removed_files_and_reclaims_those_whose_tombstones_expired(tmp_path: Path) -> None:
    # bronze checkpoints list removed files for 1 hour only (fast opens): vacuum must keep what
    # the versions inside its horizon read, yet not leak the files whose tombstones are gone
    catalog = Catalog(tmp_path)
    uri = catalog.uri("bronze.trades")
    for k in range(4):
        _bronze(catalog, range(k * 10, k * 10 + 10))
    compact(catalog, "bronze.trades")
    two_days_ago = (datetime.now(UTC) - timedelta(days=2)).timestamp()
    for f in Path(uri).rglob("*.parquet"):
        os.utime(f, (two_days_ago, two_days_ago))  # the small files were written long ago...
    expected = pl.read_delta(uri, version=3).sort("id")
    assert expected.height == 40

    report = vacuum(catalog, "bronze.trades", horizon=timedelta(hours=1))  # ...but removed just now
    assert report.files_after == report.files_before
    assert pl.read_delta(uri, version=3).sort("id").equals(expected)

    dt = catalog.open("bronze.trades")  # "an hour later": the tombstones leave the checkpoint
    dt.alter.set_table_properties({"delta.deletedFileRetentionDuration": "interval 0 seconds"})
    catalog.open("bronze.trades").create_checkpoint()
    cp = sorted(Path(uri, "_delta_log").glob("*.checkpoint.parquet"))[-1]
    assert pl.read_parquet(cp)["remove"].drop_nulls().is_empty()
    report = vacuum(catalog, "bronze.trades", horizon=timedelta(0))
    assert report.files_before - report.files_after == 4  # the four small files, nothing else
    assert pl.read_delta(uri).sort("id").equals(expected)


def test_vacuum_refuses_a_horizon_longer_than_the_tables_tombstones(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path)
    _bronze(catalog, range(10))
    with pytest.raises(LakehouseError, match="deletedFileRetentionDuration"):
        vacuum(catalog, "bronze.trades", horizon=timedelta(days=7))


def test_checkpoint_gives_an_older_table_its_layers_retention_properties(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path)
    _bronze(catalog, range(10))
    catalog.open("bronze.trades").alter.set_table_properties({"delta.logRetentionDuration": "interval 30 days"})
    report = checkpoint(catalog, "bronze.trades")
    config = catalog.open("bronze.trades").metadata().configuration
    assert {k: config[k] for k in TABLE_PROPERTIES["bronze"]} == TABLE_PROPERTIES["bronze"]
    assert "checkpoint at v2" in report.detail


def test_concurrent_compactions_of_a_table_take_turns_and_never_duplicate_rows(tmp_path: Path) -> None:
    # delta-rs 1.6 commits two concurrent compactions of the same files both (rows doubled)
    catalog = Catalog(tmp_path)
    for k in range(30):
        _bronze(catalog, range(k * 10, k * 10 + 10))
    barrier = threading.Barrier(4)

    def run() -> None:
        barrier.wait()
        compact(catalog, "bronze.trades")

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    trades = pl.read_delta(catalog.uri("bronze.trades"))
    assert sorted(trades["id"].cast(pl.Int64).to_list()) == list(range(300))
    assert [h["operation"] for h in catalog.open("bronze.trades").history()].count("OPTIMIZE") == 1


def test_a_compaction_that_must_not_wait_gives_way_to_a_running_one(tmp_path: Path) -> None:
    from crypto_lakehouse.maintenance.tasks import _compaction_lock

    catalog = Catalog(tmp_path)
    for k in range(3):
        _bronze(catalog, range(k * 10, k * 10 + 10))
    with _compaction_lock(catalog, "bronze.trades", wait=True):  # as a running compaction holds it
        with pytest.raises(CompactionBusy):
            compact(catalog, "bronze.trades", wait=False)
    assert compact(catalog, "bronze.trades", wait=False).files_after == 1


def test_a_vacuum_horizon_below_whole_hours_says_it_was_rounded_up(tmp_path: Path) -> None:
    """delta-rs vacuums by whole hours: `1s` becomes 1 h, and the report (and so the CLI) says so."""
    catalog = Catalog(tmp_path)
    _bronze(catalog, range(10))
    _bronze(catalog, range(10, 20))
    compact(catalog, "bronze.trades")  # two files removed just now: inside an hour, kept
    report = vacuum(catalog, "bronze.trades", horizon=timedelta(seconds=1))
    assert report.files_after == report.files_before
    assert "horizon 1s rounded up to 1h" in report.detail
    assert "rounded" not in vacuum(catalog, "bronze.trades", horizon=timedelta(hours=1)).detail

    config = tmp_path / "lakehouse.yaml"
    config.write_text("maintenance:\n  vacuum_horizon: 1s\n")
    res = subprocess.run(
        [sys.executable, "-m", "crypto_lakehouse.cli", "maintain", "vacuum", "--table", "bronze.trades",
         "--root", str(tmp_path), "--config", str(config)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "horizon 1s rounded up to 1h" in json.loads(res.stdout)[0]["detail"]
