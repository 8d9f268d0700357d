"""Reads on a generated 100M-row silver.trades (10 days, 3 symbols).

* one symbol, one hour via ``Lakehouse.scan`` (p50/p95 over random hours), against DuckDB over a
  hand-partitioned (symbol/date) Parquet copy of the same rows in the same run;
* live tick -> query latency through a running writer's live buffer;
* replay throughput (Arrow batches, one hour of all symbols).

Last line: {"one_symbol_hour_p50_ms", "one_symbol_hour_p95_ms", "vs_duckdb_parquet",
"live_tick_to_query_p99_ms", "replay_events_per_s"}
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import polars as pl
import pyarrow.dataset as pads

from crypto_lakehouse import Lakehouse, load_settings
from crypto_lakehouse.schemas import SILVER
from crypto_lakehouse.storage import Catalog

SYMBOLS = ["BTC-USDT-PERP", "ETH-USDT-PERP", "SOL-USDT-PERP"]
START = datetime(2026, 11, 1, tzinfo=UTC)


def generate(root: Path, copy: Path, rows: int, days: int, batches: int) -> None:
    catalog, spec = Catalog(root), SILVER["silver.trades"]
    per = rows // batches
    step_us = days * 86_400_000_000 // rows
    start_us = int(START.timestamp() * 1_000_000)
    for b in range(batches):
        df = (
            pl.DataFrame({"i": pl.int_range(b * per, (b + 1) * per, eager=True)})
            .with_columns(
                pl.lit("BINANCE_FUTURES").alias("exchange"),
                pl.col("i").mod(3).replace_strict(dict(enumerate(SYMBOLS)), return_dtype=pl.String).alias("symbol"),
                (pl.lit(start_us) + pl.col("i") * step_us).cast(pl.Datetime("us", "UTC")).alias("ts"),
                (pl.col("i") // 3 + 1_000_000).alias("id"),
                pl.when(pl.col("i").mod(2) == 0).then(pl.lit("buy")).otherwise(pl.lit("sell")).alias("side"),
                (60_000.0 + pl.col("i").mod(997) * 0.01).alias("price"),
                ((pl.col("i").mod(5_000) + 1) * 0.001).alias("amount"),
                pl.lit("stream").alias("source"),
            )
            .with_columns(
                pl.col("ts").dt.date().alias("date"),
                pl.col("ts").alias("receipt_ts"),
                pl.col("id").cast(pl.String).alias("trade_id"),
                pl.col("id").cast(pl.String).alias("trade_key"),
            )
            .select(spec.schema.names)
        )
        catalog.append("silver.trades", df.to_arrow().cast(spec.schema))
        pads.write_dataset(  # the hand-partitioned copy of the same rows
            df.drop("exchange").to_arrow(),
            copy,
            format="parquet",
            partitioning=["symbol", "date"],
            partitioning_flavor="hive",
            basename_template=f"part-{b}-{{i}}.parquet",
            existing_data_behavior="overwrite_or_ignore",
        )
        print(f"  batch {b + 1}/{batches} written", file=sys.stderr)


def one_symbol_hours(lh: Lakehouse, copy: Path, days: int, n: int) -> tuple[list[float], list[float]]:
    rng = random.Random(1)
    con = duckdb.connect()
    ours, theirs = [], []
    for _ in range(n):
        sym = rng.choice(SYMBOLS)
        h = START + timedelta(hours=rng.randrange(days * 24))
        t0 = time.perf_counter()
        a = lh.scan("silver.trades", symbols=[sym], start=h, end=h + timedelta(hours=1)).collect()
        t1 = time.perf_counter()
        b = con.execute(
            f"select * from read_parquet('{copy}/**/*.parquet', hive_partitioning = true) "
            "where symbol = ? and date = ? and ts >= ? and ts < ?",
            [sym, h.date(), h, h + timedelta(hours=1)],
        ).to_arrow_table()
        t2 = time.perf_counter()
        assert a.height == b.num_rows > 0, (a.height, b.num_rows)
        ours.append((t1 - t0) * 1000)
        theirs.append((t2 - t1) * 1000)
    return ours, theirs


def live_latency(tmp: Path, ticks: int) -> list[float]:
    """Add a tick to a running writer, then query until it is visible: p99 of that delay."""
    from crypto_lakehouse.ingest import BronzeWriter
    from crypto_lakehouse.ingest.live import LiveServer

    settings = load_settings(root=str(tmp / "live_lake"), writer={"spool_dir": str(tmp / "spool")})
    writer = BronzeWriter(Catalog(settings.root), writer_id="bench", spool_dir=tmp / "spool", max_age_s=3600)
    loop = asyncio.new_event_loop()
    ready = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(LiveServer(writer, spool_dir=tmp / "spool").start())
        ready.set()
        loop.run_forever()

    threading.Thread(target=serve, daemon=True).start()
    ready.wait()
    lh = Lakehouse(config=settings)
    lh.read("bronze.trades", live=True)  # warm up imports
    out = []
    for i in range(ticks):
        now = time.time()
        t0 = time.perf_counter()
        loop.call_soon_threadsafe(
            writer.add, "bronze.trades", ("BINANCE", "BTC-USDT", now, now, str(i), "buy", "1.0", "1.0", None)
        )
        while lh.scan("bronze.trades", live=True).filter(pl.col("id") == str(i)).collect().is_empty():
            pass
        out.append((time.perf_counter() - t0) * 1000)
    loop.call_soon_threadsafe(loop.stop)
    return out


def replay_rate(lh: Lakehouse) -> float:
    h = START + timedelta(days=2)
    t0 = time.perf_counter()
    n = sum(b.num_rows for b in lh.replay_batches(["silver.trades"], start=h, end=h + timedelta(hours=1)))
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description="read benchmark")
    ap.add_argument("--rows", type=int, default=100_000_000)
    ap.add_argument("--days", type=int, default=10)
    ap.add_argument("--batches", type=int, default=20)
    ap.add_argument("--queries", type=int, default=40)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    root, copy = tmp / "lake", tmp / "parquet_copy"
    t0 = time.perf_counter()
    generate(root, copy, args.rows, args.days, args.batches)
    print(f"generated {args.rows:,} rows in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    lh = Lakehouse(root)
    ours, theirs = one_symbol_hours(lh, copy, args.days, args.queries)
    p50, p95 = statistics.median(ours), statistics.quantiles(ours, n=20)[18]
    print(
        f"one symbol-hour: lakehouse p50 {p50:.1f} ms p95 {p95:.1f} ms; DuckDB/Parquet p50 "
        f"{statistics.median(theirs):.1f} ms",
        file=sys.stderr,
    )
    live = sorted(live_latency(tmp, 200))
    rate = replay_rate(lh)
    print(
        json.dumps(
            {
                "one_symbol_hour_p50_ms": round(p50, 1),
                "one_symbol_hour_p95_ms": round(p95, 1),
                "vs_duckdb_parquet": round(p50 / statistics.median(theirs), 3),
                "live_tick_to_query_p99_ms": round(live[int(len(live) * 0.99) - 1], 1),
                "replay_events_per_s": round(rate),
            }
        )
    )


if __name__ == "__main__":
    main()
