"""After 10,000 small streaming-size commits: time to open the table and read one day, before
and after compaction + checkpoint, against the same rows written in one go ("compacted").

Last line: {"open_ms_before", "open_ms_after", "read_day_before_vs_compacted",
"read_day_after_vs_compacted"}
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl
from deltalake import DeltaTable

from crypto_lakehouse.maintenance import checkpoint, compact
from crypto_lakehouse.schemas import BRONZE
from crypto_lakehouse.storage import Catalog

SYMBOLS = ["BTC-USDT-PERP", "ETH-USDT-PERP", "SOL-USDT-PERP"]
START_US = int(datetime(2026, 11, 1, tzinfo=UTC).timestamp() * 1_000_000)
DAY = date(2026, 11, 2)


def _batch(k: int, rows: int, step_us: int) -> pl.DataFrame:
    spec = BRONZE["bronze.trades"]
    i = pl.int_range(k * rows, (k + 1) * rows, eager=True)
    return (
        pl.DataFrame({"i": i})
        .with_columns(
            pl.lit("BINANCE_FUTURES").alias("exchange"),
            pl.lit(SYMBOLS[k % 3]).alias("symbol"),
            (pl.lit(START_US) + pl.col("i") * step_us).cast(pl.Datetime("us", "UTC")).alias("ts"),
            pl.col("i").cast(pl.String).alias("id"),
            pl.lit("buy").alias("side"),
            pl.lit("100.5").alias("price"),
            pl.lit("0.001").alias("amount"),
            pl.lit(None, pl.String).alias("type"),
            pl.lit("bench").alias("writer_id"),
            pl.lit(k, pl.Int64).alias("batch_id"),
        )
        .with_columns(pl.col("ts").alias("receipt_ts"), pl.col("ts").dt.date().alias("date"))
        .select(spec.schema.names)
    )


def _open_ms(uri: str) -> float:
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        DeltaTable(uri)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def _read_day_ms(uri: str) -> float:
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        pl.scan_delta(uri).filter(pl.col("date") == DAY).collect()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description="maintenance benchmark")
    ap.add_argument("--commits", type=int, default=10_000)
    ap.add_argument("--rows", type=int, default=100, help="rows per commit")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    total = args.commits * args.rows
    step_us = 3 * 86_400_000_000 // total  # three days of data
    streamed, reference = Catalog(tmp / "streamed"), Catalog(tmp / "reference")
    t0 = time.perf_counter()
    for k in range(args.commits):
        streamed.append("bronze.trades", _batch(k, args.rows, step_us).to_arrow().cast(BRONZE["bronze.trades"].schema))
        if k % 1000 == 999:
            print(f"  {k + 1:,} commits ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    everything = pl.concat([_batch(k, args.rows, step_us) for k in range(args.commits)])
    reference.append("bronze.trades", everything.to_arrow().cast(BRONZE["bronze.trades"].schema))
    s_uri, r_uri = streamed.uri("bronze.trades"), reference.uri("bronze.trades")
    open_before, read_before, read_ref = _open_ms(s_uri), _read_day_ms(s_uri), _read_day_ms(r_uri)
    files_before = streamed.summary("bronze.trades")["files"]
    compact(streamed, "bronze.trades")
    checkpoint(streamed, "bronze.trades")
    open_after, read_after = _open_ms(s_uri), _read_day_ms(s_uri)
    print(
        f"{args.commits:,} commits, {files_before:,} files -> {streamed.summary('bronze.trades')['files']:,}; "
        f"open {open_before:.1f} -> {open_after:.1f} ms; read a day {read_before:.1f} -> {read_after:.1f} ms "
        f"(written in one go: {read_ref:.1f} ms)",
        file=sys.stderr,
    )
    print(
        json.dumps(
            {
                "open_ms_before": round(open_before, 1),
                "open_ms_after": round(open_after, 1),
                "read_day_before_vs_compacted": round(read_before / read_ref, 3),
                "read_day_after_vs_compacted": round(read_after / read_ref, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
