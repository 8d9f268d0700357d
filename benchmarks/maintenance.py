"""After 10,000 streaming commits: time to open the table and read one day, before and after
compaction + checkpoint, against the same rows written in one go ("compacted").

The commits go through the real BronzeWriter (one flush = one commit, a symbol per commit, three
days of trades), with its auto-compaction as configured (``--compact-every``; 0 turns it off to
see the raw small-file layout), and end just before its next auto-compaction. The day read
is the last one, being written: its partitions hold those small files. Reads are the user's
path, ``Lakehouse.read(start=, end=)``:
"read" is a read on a Lakehouse that has the table open already (a notebook, a backtest loop);
"open" is loading the table (``DeltaTable(uri)``); "cold" is a new Lakehouse: open + read.
Also measured: one hour of one symbol after compaction, with and without z-ordering by time, and
open and cold read once the log and tombstones are past bronze's retention and cleaned.

Last line: {"open_ms_before", "open_ms_after", "read_day_before_vs_compacted",
"read_day_after_vs_compacted", ...}
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
from deltalake import DeltaTable

from crypto_lakehouse.config import load_settings
from crypto_lakehouse.ingest import BronzeWriter
from crypto_lakehouse.maintenance import checkpoint, compact
from crypto_lakehouse.query import Lakehouse
from crypto_lakehouse.storage import Catalog

TABLE = "bronze.trades"
SYMBOLS = ["BTC-USDT-PERP", "ETH-USDT-PERP", "SOL-USDT-PERP"]
START = datetime(2026, 11, 1, tzinfo=UTC)
DAY = START + timedelta(days=2)  # the last of the three: the day being written
HOUR = DAY + timedelta(hours=12)


def _rows(k: int, rows: int, step_s: float) -> list[tuple]:
    t0 = START.timestamp()
    return [
        ("BINANCE_FUTURES", SYMBOLS[k % 3], t0 + i * step_s, t0 + i * step_s, str(i), "buy", "100.5", "0.001", None)
        for i in range(k * rows, (k + 1) * rows)
    ]


async def _stream(catalog: Catalog, commits: int, rows: int, compact_every: int, spool: Path) -> BronzeWriter:
    step_s = 3 * 86_400 / (commits * rows)  # three days of data
    # the table's first commit comes from an earlier writer, so the streaming writer's last
    # auto-compaction is compact_every - 1 commits before the end: the worst moment to read the day being written
    first = BronzeWriter(catalog, writer_id="bench-earlier", spool_dir=spool, compact_every=0)
    writer = BronzeWriter(catalog, writer_id="bench", spool_dir=spool, compact_every=compact_every)
    t0 = time.perf_counter()
    for k in range(commits):
        w = first if k == 0 else writer
        if k < 2:
            await w.start()
        w.add_many(TABLE, _rows(k, rows, step_s))
        await w.flush()
        if k % 1000 == 999:
            print(f"  {k + 1:,} commits ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    return writer


def _median_ms(fn: Callable[[], object], n: int = 7) -> float:
    fn()  # warm the page cache and the Lakehouse's open table
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def _measure(root: Path, uri: str) -> dict[str, float]:
    warm = Lakehouse(root)
    day = {"start": DAY, "end": DAY + timedelta(days=1)}
    return {
        "open": _median_ms(lambda: DeltaTable(uri)),
        "read": _median_ms(lambda: warm.read(TABLE, **day)),
        "cold": _median_ms(lambda: Lakehouse(root).read(TABLE, **day)),
        "files": Catalog(root).summary(TABLE)["files"],
    }


def _read_hour_ms(root: Path) -> float:
    lh = Lakehouse(root)
    return _median_ms(lambda: lh.read(TABLE, start=HOUR, end=HOUR + timedelta(hours=1), symbols=[SYMBOLS[0]]))


def main() -> None:
    ap = argparse.ArgumentParser(description="maintenance benchmark")
    ap.add_argument("--commits", type=int, default=10_000)
    ap.add_argument("--rows", type=int, default=100, help="rows per commit")
    ap.add_argument(
        "--compact-every",
        type=int,
        default=load_settings().writer.compact_every,
        help="writer auto-compaction every N commits (default: the configured one; 0 = off)",
    )
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    s_root, r_root = tmp / "streamed", tmp / "reference"
    streamed, reference = Catalog(s_root), Catalog(r_root)
    t0 = time.perf_counter()
    writer = asyncio.run(_stream(streamed, args.commits, args.rows, args.compact_every, tmp / "spool"))
    stream_s = time.perf_counter() - t0
    commit_ms = sorted(writer.stats[TABLE].commit_seconds)
    everything = pl.read_delta(streamed.uri(TABLE))
    reference.append(TABLE, everything.to_arrow())
    uri = streamed.uri(TABLE)

    ref, before = _measure(r_root, reference.uri(TABLE)), _measure(s_root, uri)
    compact(streamed, TABLE)
    checkpoint(streamed, TABLE)
    after = _measure(s_root, uri)
    hour_compacted = _read_hour_ms(s_root)
    compact(streamed, TABLE, z_order=["ts"])
    hour_zordered = _read_hour_ms(s_root)
    # the table once those commits are older than bronze's log and tombstone retention (hours on
    # a running deployment, minutes here: simulated by setting both to zero) and cleaned
    streamed.open(TABLE).alter.set_table_properties(
        {"delta.logRetentionDuration": "interval 0 seconds", "delta.deletedFileRetentionDuration": "interval 0 seconds"}
    )
    dt = streamed.open(TABLE)
    dt.create_checkpoint()
    dt.cleanup_metadata()
    expired = _measure(s_root, uri)
    print(
        f"{args.commits:,} commits of {args.rows} rows in {stream_s:.0f} s (commit p50 "
        f"{commit_ms[len(commit_ms) // 2] * 1000:.0f} ms, p99 {commit_ms[int(len(commit_ms) * 0.99)] * 1000:.0f} ms, "
        f"{writer.stats[TABLE].compactions} auto-compactions every {args.compact_every} commits)\n"
        f"files: {before['files']:,} -> {after['files']:,} (written in one go: {ref['files']})\n"
        f"open: {before['open']:.1f} -> {after['open']:.1f} ms (one go: {ref['open']:.1f})\n"
        f"read a day: {before['read']:.1f} -> {after['read']:.1f} ms (one go: {ref['read']:.1f})\n"
        f"cold read a day (new Lakehouse): {before['cold']:.1f} -> {after['cold']:.1f} ms (one go: {ref['cold']:.1f})\n"
        f"read an hour of one symbol after compaction: {hour_compacted:.1f} ms, "
        f"z-ordered by ts: {hour_zordered:.1f} ms\n"
        f"once the log and tombstones expired: open {expired['open']:.1f} ms, cold read a day {expired['cold']:.1f} ms",
        file=sys.stderr,
    )
    shutil.rmtree(tmp, ignore_errors=True)
    print(
        json.dumps(
            {
                "open_ms_before": round(before["open"], 1),
                "open_ms_after": round(after["open"], 1),
                "read_day_before_vs_compacted": round(before["read"] / ref["read"], 3),
                "read_day_after_vs_compacted": round(after["read"] / ref["read"], 3),
                "cold_read_day_before_vs_compacted": round(before["cold"] / ref["cold"], 3),
                "cold_read_day_after_vs_compacted": round(after["cold"] / ref["cold"], 3),
                "read_hour_zordered_vs_compacted": round(hour_zordered / hour_compacted, 3),
                "open_ms_expired": round(expired["open"], 1),
                "cold_read_day_expired_vs_compacted": round(expired["cold"] / ref["cold"], 3),
                "files_before": before["files"],
                "files_after": after["files"],
            }
        )
    )


if __name__ == "__main__":
    main()
