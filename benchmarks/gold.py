"""build-gold on >= 10M silver trades vs a bare Polars lazy truncate + group_by of the same data.

Both in their own child process, both for the same intervals (default: the config's 1s, 1m,
5m, 15m, 1h, 4h, 1d): read silver, compute every interval's bars, write them as a partitioned
Delta table. Gold also breaks open/close ties by trade id, computes VWAP and buy/sell volume and
commits its progress transaction.

Last line: {"gold_rows_per_s", "gold_vs_bare_polars", "gold_peak_rss_mb"}
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

SYMBOLS = ["BTC-USDT-PERP", "ETH-USDT-PERP", "SOL-USDT-PERP"]


def _intervals():
    from crypto_lakehouse.config import load_settings

    return load_settings().gold.intervals


def generate(root: Path, rows: int, batches: int = 10) -> None:
    from crypto_lakehouse.schemas import SILVER
    from crypto_lakehouse.storage import Catalog

    catalog, spec = Catalog(root), SILVER["silver.trades"]
    per = rows // batches
    start = int(datetime(2026, 11, 1, tzinfo=UTC).timestamp() * 1_000_000)
    for b in range(batches):
        df = (
            pl.DataFrame({"i": pl.int_range(b * per, (b + 1) * per, eager=True)})
            .with_columns(
                pl.lit("BINANCE_FUTURES").alias("exchange"),
                pl.col("i").mod(3).replace_strict(dict(enumerate(SYMBOLS)), return_dtype=pl.String).alias("symbol"),
                (pl.lit(start) + pl.col("i") * 20_000).cast(pl.Datetime("us", "UTC")).alias("ts"),
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
        )
        catalog.append("silver.trades", df.select(spec.schema.names).to_arrow().cast(spec.schema))


def run_gold(root: Path) -> None:
    from crypto_lakehouse.storage import Catalog
    from crypto_lakehouse.transform.gold import build_gold

    t0 = time.perf_counter()
    r = build_gold(Catalog(root), intervals=_intervals())
    print(json.dumps({"seconds": time.perf_counter() - t0, "bars": sum(r.bars_written.values())}))


def run_bare(root: Path) -> None:
    from deltalake import WriterProperties, write_deltalake

    from crypto_lakehouse.durations import format_duration

    t0 = time.perf_counter()
    lf = pl.scan_delta(str(root / "silver" / "trades"))
    frames = [
        lf.with_columns(pl.col("ts").dt.truncate(every := format_duration(step)).alias("window_start"))
        .group_by("exchange", "symbol", "window_start")
        .agg(
            pl.col("price").first().alias("open"),
            pl.col("price").max().alias("high"),
            pl.col("price").min().alias("low"),
            pl.col("price").last().alias("close"),
            pl.col("amount").sum().alias("volume"),
            pl.len().alias("trades"),
        )
        .with_columns(pl.lit(every).alias("interval"))
        for step in _intervals()
    ]
    bars = pl.concat(pl.collect_all(frames))
    write_deltalake(
        str(root / "bare"),
        bars.to_arrow(),
        partition_by=["interval", "exchange", "symbol"],
        mode="overwrite",
        writer_properties=WriterProperties(compression="ZSTD", compression_level=3),
    )
    print(json.dumps({"seconds": time.perf_counter() - t0, "bars": bars.height}))


def _child(phase: str, root: Path) -> tuple[float, int, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--phase", phase, "--root", str(root)], capture_output=True, text=True, check=True
    )
    res = json.loads(out.stdout.strip().splitlines()[-1])
    return res["seconds"], res["bars"], resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description="gold benchmark")
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--phase", choices=["gold", "bare"])
    ap.add_argument("--root", type=Path)
    args = ap.parse_args()
    if args.phase == "gold":
        return run_gold(args.root)
    if args.phase == "bare":
        return run_bare(args.root)
    root = Path(tempfile.mkdtemp()) / "lake"
    generate(root, args.rows)
    gold_s, gold_bars, gold_rss = _child("gold", root)
    bare_s, bare_bars, _ = _child("bare", root)
    print(f"gold {gold_s:.1f} s ({gold_bars:,} bars), bare polars {bare_s:.1f} s ({bare_bars:,} bars)", file=sys.stderr)
    print(
        json.dumps(
            {
                "gold_rows_per_s": round(args.rows / gold_s),
                "gold_vs_bare_polars": round(bare_s / gold_s, 3),
                "gold_peak_rss_mb": round(gold_rss),
            }
        )
    )


if __name__ == "__main__":
    main()
