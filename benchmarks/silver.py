"""promote-silver on >= 10M generated bronze trades vs a bare Polars dedup + filter of the same data.

Both run in their own child process (peak RSS is the child's): read bronze, parse, filter,
deduplicate, write a partitioned Delta table. Silver also validates with every rule, keeps
quarantine/report bookkeeping, commits its progress transaction and scans for gaps.

Last line: {"silver_rows_per_s", "silver_mb_per_s", "silver_vs_bare_polars", "silver_peak_rss_mb"}
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


def generate(root: Path, rows: int, batches: int = 10) -> int:
    """Bronze trades written as ``batches`` commits; 0.5% duplicates, like a reconnecting stream."""
    from crypto_lakehouse.schemas import BRONZE
    from crypto_lakehouse.storage import Catalog

    catalog = Catalog(root)
    spec = BRONZE["bronze.trades"]
    per = rows // batches
    start = int(datetime(2026, 11, 1, tzinfo=UTC).timestamp() * 1_000_000)
    for b in range(batches):
        i = pl.int_range(b * per, (b + 1) * per, eager=True)
        df = pl.DataFrame({"i": i}).with_columns(
            pl.lit("BINANCE_FUTURES").alias("exchange"),
            pl.col("i").mod(3).replace_strict(dict(enumerate(SYMBOLS)), return_dtype=pl.String).alias("symbol"),
            (pl.lit(start) + pl.col("i") * 1_000).cast(pl.Datetime("us", "UTC")).alias("ts"),
        )
        dup = df.filter(pl.col("i").mod(200) == 0)
        df = pl.concat([df, dup]).with_columns(
            pl.col("ts").dt.date().alias("date"),
            (pl.col("ts") + pl.duration(milliseconds=5)).alias("receipt_ts"),
            (pl.col("i") // 3 + 1_000_000).cast(pl.String).alias("id"),
            pl.when(pl.col("i").mod(2) == 0).then(pl.lit("buy")).otherwise(pl.lit("sell")).alias("side"),
            (pl.lit(60_000.0) + (pl.col("i").mod(997) * 0.01)).round(2).cast(pl.String).alias("price"),
            ((pl.col("i").mod(5_000) + 1) * 0.001).round(3).cast(pl.String).alias("amount"),
            pl.lit(None, pl.String).alias("type"),
            pl.lit("bench").alias("writer_id"),
            pl.lit(b + 1, pl.Int64).alias("batch_id"),
        )
        catalog.append("bronze.trades", df.select(spec.schema.names).to_arrow().cast(spec.schema))
    return catalog.summary("bronze.trades")["rows"]


def run_silver(root: Path) -> None:
    from crypto_lakehouse.storage import Catalog
    from crypto_lakehouse.transform.silver import promote_silver

    t0 = time.perf_counter()
    promote_silver(Catalog(root), tables=["trades"], backfiller=None)
    print(json.dumps({"seconds": time.perf_counter() - t0}))


def run_bare(root: Path) -> None:
    from deltalake import WriterProperties, write_deltalake

    t0 = time.perf_counter()
    df = (
        pl.scan_delta(str(root / "bronze" / "trades"))
        .with_columns(
            pl.col("price").cast(pl.Float64, strict=False),
            pl.col("amount").cast(pl.Float64, strict=False),
            pl.col("id").cast(pl.Int64, strict=False),
        )
        .filter((pl.col("price") > 0) & (pl.col("amount") > 0) & pl.col("side").is_in(["buy", "sell"]))
        .unique(subset=["exchange", "symbol", "id"], keep="any")
        .collect()
    )
    write_deltalake(
        str(root / "bare"),
        df.to_arrow(),
        partition_by=["exchange", "symbol", "date"],
        mode="overwrite",
        writer_properties=WriterProperties(compression="ZSTD", compression_level=3),
    )
    print(json.dumps({"seconds": time.perf_counter() - t0}))


def _child(phase: str, root: Path) -> tuple[float, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--phase", phase, "--root", str(root)], capture_output=True, text=True, check=True
    )
    secs = json.loads(out.stdout.strip().splitlines()[-1])["seconds"]
    rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return secs, rss_mb


def main() -> None:
    ap = argparse.ArgumentParser(description="silver benchmark")
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--phase", choices=["silver", "bare"])
    ap.add_argument("--root", type=Path)
    args = ap.parse_args()
    if args.phase == "silver":
        return run_silver(args.root)
    if args.phase == "bare":
        return run_bare(args.root)
    root = Path(tempfile.mkdtemp()) / "lake"
    t0 = time.perf_counter()
    n = generate(root, args.rows)
    mb = sum(p.stat().st_size for p in (root / "bronze" / "trades").rglob("*.parquet")) / 1e6
    print(f"generated {n:,} bronze trades ({mb:.0f} MB) in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    silver_s, silver_rss = _child("silver", root)  # first child: RUSAGE_CHILDREN max is its own peak
    bare_s, _ = _child("bare", root)
    print(f"silver {silver_s:.1f} s, bare polars {bare_s:.1f} s", file=sys.stderr)
    print(
        json.dumps(
            {
                "silver_rows_per_s": round(n / silver_s),
                "silver_mb_per_s": round(mb / silver_s, 1),
                "silver_vs_bare_polars": round(bare_s / silver_s, 3),
                "silver_peak_rss_mb": round(silver_rss),
            }
        )
    )


if __name__ == "__main__":
    main()
