"""What one bronze append costs in CPU as commits accumulate, per checkpoint interval.

Each configuration makes a fresh local root whose ``bronze.trades`` is created with
``delta.checkpointInterval`` set to it, then appends ``--commits`` batches of ``--rows`` trade
rows over ``--symbols`` symbols (one Parquet file each: the partitions of one commit) through
the writer's path, ``Catalog.append`` with a ``(writer id, batch)`` transaction, no compaction.
Measured per append: CPU time of the whole process (``time.process_time``: delta-rs works in
its own threads, so the calling thread's time misses most of it), and, outside the append, what
loading the table then costs (``DeltaTable(uri)``; the append loads it, and delta-rs replays the
log again to commit). Reported per sixth of the run and as a mean (ms).

Why: an append's cost grows with the commits since the last checkpoint (each load replays
them); bronze commits about once a second per table, so the interval sets its steady cost.

Last line: JSON ``{"<interval>": {"append_ms": mean, "load_ms": mean, "sixths": [...]}, ...}``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta

import pyarrow as pa
from deltalake import DeltaTable

from crypto_lakehouse.schemas import table_spec
from crypto_lakehouse.storage import TABLE_PROPERTIES, Catalog

TABLE = "bronze.trades"
T0 = datetime(2026, 11, 20, tzinfo=UTC)


def _batch(k: int, *, rows: int, symbols: int) -> pa.Table:
    spec = table_spec(TABLE)
    columns = {
        "exchange": ["BINANCE"] * rows,
        "symbol": [f"S{j % symbols}-USDT" for j in range(rows)],
        "ts": [T0 + timedelta(milliseconds=k * rows + j) for j in range(rows)],
        "receipt_ts": [T0] * rows,
        "id": [str(k * rows + j) for j in range(rows)],
        "side": ["buy" if j % 2 else "sell" for j in range(rows)],
        "price": [f"{100 + j % 7}.5" for j in range(rows)],
        "amount": ["0.25"] * rows,
        "writer_id": ["w"] * rows,
        "batch_id": [k] * rows,
        "date": [T0.date()] * rows,
    }
    # the spec's schema (its non-null columns): the table is made as the writer makes it, so the
    # appends take the writer's path (Catalog._append_files), not write_deltalake's
    return pa.table([pa.array(columns.get(f.name, [None] * rows), f.type) for f in spec.schema], schema=spec.schema)


def run(interval: int, *, commits: int, rows: int, symbols: int) -> dict[str, object]:
    root = tempfile.mkdtemp(prefix="commit-cost-")
    saved = TABLE_PROPERTIES["bronze"]["delta.checkpointInterval"]
    TABLE_PROPERTIES["bronze"]["delta.checkpointInterval"] = str(interval)  # read when the table is made
    try:
        catalog = Catalog(root)
        batches = [_batch(k, rows=rows, symbols=symbols) for k in range(4)]
        catalog.append(TABLE, batches[0], app_id="w", version=0)
        append, load = [], []
        for k in range(1, commits + 1):
            t = time.process_time()
            catalog.append(TABLE, batches[k % 4], app_id="w", version=k)
            append.append(time.process_time() - t)
            t = time.process_time()
            DeltaTable(catalog.uri(TABLE))
            load.append(time.process_time() - t)
        assert catalog.open(TABLE).version() == commits
    finally:
        TABLE_PROPERTIES["bronze"]["delta.checkpointInterval"] = saved
        shutil.rmtree(root, ignore_errors=True)
    step = max(1, commits // 6)
    sixths = [
        {
            "from_commit": lo + 1,
            "append_ms": round(1000 * statistics.mean(append[lo : lo + step]), 1),
            "load_ms": round(1000 * statistics.mean(load[lo : lo + step]), 1),
        }
        for lo in range(0, commits, step)
    ]
    return {
        "append_ms": round(1000 * statistics.mean(append), 1),
        "load_ms": round(1000 * statistics.mean(load), 1),
        "sixths": sixths,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--intervals", default="10,100", help="checkpoint intervals to compare")
    parser.add_argument("--commits", type=int, default=150)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--symbols", type=int, default=5)
    args = parser.parse_args()
    out = {}
    for interval in (int(x) for x in args.intervals.split(",")):
        out[str(interval)] = result = run(interval, commits=args.commits, rows=args.rows, symbols=args.symbols)
        print(f"checkpoint every {interval}: append {result['append_ms']} ms CPU, load {result['load_ms']} ms")
        for s in result["sixths"]:  # type: ignore[attr-defined]
            print(f"  from commit {s['from_commit']:>4}: append {s['append_ms']:>6} ms, load {s['load_ms']:>5} ms")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
