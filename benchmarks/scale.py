"""Scale-out figures on this machine (docs/scaling.md): promote-silver and build-gold in one process vs
fanned out on a Dask LocalCluster of 2 workers (and what the model predicts for 16), the time of one
distributed commit, the commit table of one bronze table under 1/2/4/8 writers
(benchmarks/commits.py), and S3 (moto's server) vs local disk for bronze writes and one-symbol-hour
reads.

Both runs read the same bronze (a copy) of ``--trades`` generated trades (4 symbols x ``--days``
UTC days, 0.5 % duplicates, several commits), and their silver and gold are checked equal. Each
fanned job is timed in two parts: the map (workers reading bronze, validating, deduplicating,
writing Parquet; for gold, reading silver and writing bars of 1m, 5m, 1h and 1d) and the rest of
the job in this process (listing files, the commits, silver's gap scan and report). The model:
T(n) = rest + map x 2 / n (the map divides over workers; the rest does not).

Last line: JSON.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl

SYMBOLS = ["BTC-USDT-PERP", "ETH-USDT-PERP", "SOL-USDT-PERP", "XRP-USDT-PERP"]
START = datetime(2026, 11, 1, tzinfo=UTC)


def generate(root: Path, rows: int, *, days: int, commits: int, storage_options: dict[str, str] | None = None) -> float:
    """Bronze trades over ``days`` days as ``commits`` appends; seconds spent appending."""
    from crypto_lakehouse.schemas import BRONZE
    from crypto_lakehouse.storage import Catalog

    catalog = Catalog(str(root), storage_options=storage_options)
    spec = BRONZE["bronze.trades"]
    per = rows // commits
    step_us = days * 86_400_000_000 // rows * len(SYMBOLS)  # each symbol's trades spread over the days
    spent = 0.0
    for b in range(commits):
        i = pl.int_range(b * per, (b + 1) * per, eager=True)
        df = pl.DataFrame({"i": i}).with_columns(
            pl.lit("BINANCE_FUTURES").alias("exchange"),
            pl.col("i")
            .mod(len(SYMBOLS))
            .replace_strict(dict(enumerate(SYMBOLS)), return_dtype=pl.String)
            .alias("symbol"),
            (pl.lit(int(START.timestamp() * 1e6)) + (pl.col("i") // len(SYMBOLS)) * step_us)
            .cast(pl.Datetime("us", "UTC"))
            .alias("ts"),
        )
        df = pl.concat([df, df.filter(pl.col("i").mod(200) == 0)]).with_columns(
            pl.col("ts").dt.date().alias("date"),
            (pl.col("ts") + pl.duration(milliseconds=5)).alias("receipt_ts"),
            (pl.col("i") // len(SYMBOLS) + 1_000_000).cast(pl.String).alias("id"),
            pl.when(pl.col("i").mod(2) == 0).then(pl.lit("buy")).otherwise(pl.lit("sell")).alias("side"),
            (pl.lit(60_000.0) + (pl.col("i").mod(997) * 0.01)).round(2).cast(pl.String).alias("price"),
            ((pl.col("i").mod(5_000) + 1) * 0.001).round(3).cast(pl.String).alias("amount"),
            pl.lit(None, pl.String).alias("type"),
            pl.lit("bench").alias("writer_id"),
            pl.lit(b + 1, pl.Int64).alias("batch_id"),
        )
        data = df.sort("symbol", "date").select(spec.schema.names).to_arrow().cast(spec.schema)
        t0 = time.perf_counter()
        catalog.append("bronze.trades", data)
        spent += time.perf_counter() - t0
    return spent


class _Timed:
    """A runner that times its map phase."""

    def __init__(self, runner: Any) -> None:
        self.runner, self.seconds, self.tasks = runner, 0.0, 0

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any], /) -> list[Any]:
        t0 = time.perf_counter()
        try:
            return self.runner.map(fn, items)
        finally:
            self.seconds += time.perf_counter() - t0
            self.tasks += len(items)


GOLD_INTERVALS = ["1m", "5m", "1h", "1d"]


def promote(root: Path, runner: Any | None) -> dict[str, float]:
    """promote-silver then build-gold on ``root``, each with ``runner`` (None: in one process)."""
    from crypto_lakehouse import jobs, load_settings

    settings = load_settings(root=str(root), silver={"backfill": False}, gold={"intervals": GOLD_INTERVALS})
    out: dict[str, float] = {}
    for job, run in (
        ("silver", lambda r: jobs.promote_silver(settings, tables=["trades"], runner=r)),
        ("gold", lambda r: jobs.promote_gold(settings, runner=r)),
    ):
        timed = _Timed(runner) if runner is not None else None
        t0 = time.perf_counter()
        run(timed)
        out[f"{job}_s"] = total = time.perf_counter() - t0
        if timed is not None:
            out |= {f"{job}_map_s": timed.seconds, f"{job}_rest_s": total - timed.seconds, f"{job}_tasks": timed.tasks}
    return out


def distributed_commit(root: Path, files: int) -> float:
    """Seconds to commit ``files`` staged files (100 rows each, over the table's partitions) as one append."""
    from crypto_lakehouse.schemas import SILVER
    from crypto_lakehouse.storage import Catalog

    catalog = Catalog(root)
    spec = SILVER["silver.trades"]
    rows = catalog.scan("silver.trades").head(files * 100).collect()
    days = rows.get_column("date").unique().to_list()
    staged = []
    for n in range(files):  # one file a (symbol, date) partition, as many as asked
        part = rows.slice(n * 100, 100).with_columns(pl.lit(days[n % len(days)]).alias("date"))
        staged += catalog.stage("silver.trades", part.to_arrow().cast(spec.schema))
    assert len(staged) >= files, len(staged)
    snapshot = catalog.open("silver.trades")
    t0 = time.perf_counter()
    catalog.commit_staged("silver.trades", staged, snapshot=snapshot)
    return time.perf_counter() - t0


def _moto() -> tuple[subprocess.Popen[bytes], dict[str, str]]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    import s3fs

    endpoint = f"http://127.0.0.1:{port}"
    s3fs.S3FileSystem(key="bench", secret="bench", client_kwargs={"endpoint_url": endpoint}).call_s3(
        "create_bucket", Bucket="lake"
    )
    return server, {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_REGION": "us-east-1",
        "AWS_ALLOW_HTTP": "true",
        "AWS_CONDITIONAL_PUT": "etag",
    }


def s3_vs_local(tmp: Path, rows: int) -> dict[str, float]:
    """Bronze appends (10 commits of ``rows``/10) and one-symbol-hour reads, local vs S3 (moto)."""
    from crypto_lakehouse.query import Lakehouse

    server, options = _moto()
    try:
        out: dict[str, float] = {}
        for name, root, opts in (("local", str(tmp / "s3cmp"), None), ("s3", "s3://lake/bench", options)):
            spent = generate(Path(root) if opts is None else root, rows, days=1, commits=10, storage_options=opts)  # type: ignore[arg-type]
            out[f"{name}_bronze_rows_per_s"] = rows / spent
            from crypto_lakehouse import load_settings

            lh = Lakehouse(config=load_settings(root=root, storage_options=opts or {}))
            times = []
            for h in range(5):
                t0 = time.perf_counter()
                lh.scan(
                    "bronze.trades",
                    symbols=[SYMBOLS[h % 4]],
                    start=START + timedelta(hours=h),
                    end=START + timedelta(hours=h + 1),
                ).collect()
                times.append(time.perf_counter() - t0)
            out[f"{name}_symbol_hour_read_s"] = sorted(times)[len(times) // 2]
        out["s3_vs_local_write"] = out["s3_bronze_rows_per_s"] / out["local_bronze_rows_per_s"]
        out["s3_vs_local_read"] = out["s3_symbol_hour_read_s"] / out["local_symbol_hour_read_s"]
        return out
    finally:
        server.terminate()
        server.wait(10)


def commit_table(seconds: float) -> dict[str, Any]:
    """benchmarks/commits.py's table (1/2/4/8 writers on one table), if it exists."""
    script = Path(__file__).with_name("commits.py")
    if not script.exists():
        return {"note": "benchmarks/commits.py not found"}
    res = subprocess.run(
        [sys.executable, str(script), "--seconds", str(seconds)], capture_output=True, text=True, check=True
    )
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trades", type=int, default=20_000_000)
    ap.add_argument("--days", type=int, default=5)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--s3-rows", type=int, default=1_000_000)
    ap.add_argument("--commit-seconds", type=float, default=15)
    args = ap.parse_args()
    from crypto_lakehouse import jobs

    with tempfile.TemporaryDirectory(dir="/tmp") as d:
        tmp = Path(d)
        print(f"generating {args.trades:,} bronze trades...", flush=True)
        bronze_s = generate(tmp / "alone", args.trades, days=args.days, commits=20)
        shutil.copytree(tmp / "alone", tmp / "fanned")
        print("promote in one process...", flush=True)
        alone = promote(tmp / "alone", None)
        t0 = time.perf_counter()
        with jobs.dask_runner(workers=args.workers) as cluster:
            startup = time.perf_counter() - t0
            print("promote fanned out...", flush=True)
            fanned = promote(tmp / "fanned", cluster)
        a = pl.read_delta(str(tmp / "alone" / "silver" / "trades")).height
        b = pl.read_delta(str(tmp / "fanned" / "silver" / "trades")).height
        assert a == b, f"silver rows differ: {a} in one process, {b} fanned out"
        gold = [pl.read_delta(str(tmp / run / "gold" / "ohlcv")) for run in ("alone", "fanned")]
        gold = [g.sort(g.columns) for g in gold]
        assert gold[0].equals(gold[1]), "gold differs between the build in one process and the fanned-out one"
        commit_60 = distributed_commit(tmp / "fanned", 60)
        print("S3 vs local...", flush=True)
        s3 = s3_vs_local(tmp, args.s3_rows)
    print("commit table (1/2/4/8 writers)...", flush=True)
    commits = commit_table(args.commit_seconds)
    predicted: dict[str, float] = {}
    for job in ("silver", "gold"):  # T(16) = rest + worker-seconds of the map / 16
        predicted[job] = fanned[f"{job}_rest_s"] + fanned[f"{job}_map_s"] * args.workers / 16
    out = {
        "trades": args.trades,
        "silver_rows": a,
        "gold_bars": gold[0].height,
        "bronze_write_rows_per_s": args.trades / bronze_s,
        "cluster_startup_s": startup,
        **{
            f"{job}_{key}": value
            for job in ("silver", "gold")
            for key, value in {
                "in_process_s": alone[f"{job}_s"],
                "fanned_s": fanned[f"{job}_s"],
                "fanned_vs_in_process": alone[f"{job}_s"] / fanned[f"{job}_s"],
                "fanned_map_s": fanned[f"{job}_map_s"],
                "fanned_rest_s": fanned[f"{job}_rest_s"],
                "fanned_tasks": fanned[f"{job}_tasks"],
                "predicted_s_16_workers": predicted[job],
                "predicted_speedup_16_workers": alone[f"{job}_s"] / predicted[job],
            }.items()
        },
        "distributed_commit_60_files_s": commit_60,
        **s3,
        "commit_table": commits,
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
