"""The commit ceiling of one bronze table: 1, 2, 4, 8 writer **processes** appending to it at once.

Two parts, each writer a separate process with its own ``BronzeWriter`` (its own writer id), all
appending to ``bronze.trades`` of one fresh local root per configuration, through the real path
(``BronzeWriter`` -> ``Catalog.append`` -> Parquet files + a delta-rs commit), auto-compaction off:

* **ceiling** (``--writers 1,2,4,8``): each writer appends ``--rows`` (1,000) row batches back to
  back for ``--seconds``, a fixed batch age (no adaptation). What one table takes.
* **paced** (``--paced-writers 8``): each writer is fed ``--rate`` rows a second and flushes by
  age from ``--floor`` (100 ms: far more commits than the table takes), once with a **fixed** age
  and once **adaptive** (``max_age_limit`` ``--limit``): does any commit exhaust its retries?

Per configuration: commits/s (all writers), rows/s, ``retries`` (append attempts the writer
retried), ``attempts_failed`` (attempts that raised; ``conflicts`` of them delta-rs's
``CommitFailedError`` after its own 15 retries), ``batches_failed`` (batches that failed every
retry and went to the spool), commit latency p50/p99 (ms, one append, retries included), and
``raced`` (mean, p99, max): per commit, how many commits of other writers landed between the
snapshot its append read and its own commit: delta-rs re-reads and checks each of them, and
may lose the race for the next version to any of them (a commit fails after 15 lost races).
delta-rs does not report its internal retries; ``raced`` bounds them from above (several
commits can land during one attempt, lost once). The paced part also reports the mean batch age
(s) and rows per commit.

Timings depend on the machine's load: on a shared 2-core box they move by tens of per cent
between runs. Last line: JSON ``{"ceiling": [...], "paced": [...]}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TABLE = "bronze.trades"


def _rows(writer: int, n: int) -> list[tuple[Any, ...]]:
    t0 = time.time()
    return [
        ("BINANCE_FUTURES", "BTC-USDT-PERP", t0 + i / 1000, t0, str(writer * 10**9 + i), "buy", "100.5", "0.001", None)
        for i in range(n)
    ]


def _recording_catalog(root: str) -> Any:
    """A Catalog that lists, per successful append, the version of the snapshot it committed
    against: the last one it opened (``Catalog._append_files`` opens the table first)."""
    from crypto_lakehouse.storage import Catalog

    class Recording(Catalog):
        read_version = -1
        read_versions: list[int] = []

        def open(self, table: str, *, version: int | None = None) -> Any:
            dt = super().open(table, version=version)
            self.read_version = dt.version()
            return dt

        def append(self, table: str, data: Any, **kwargs: Any) -> bool:
            done = super().append(table, data, **kwargs)
            if done:
                self.read_versions.append(self.read_version)
            return done

    catalog = Recording(root)
    catalog.read_versions = []
    return catalog


def _worker(kind: str, root: str, writer_id: str, opts: dict[str, Any], barrier: Any, results: Any) -> None:
    """One writer process: set up, wait for the others, append for ``opts['seconds']``, report."""
    from crypto_lakehouse.ingest import BronzeWriter

    catalog = _recording_catalog(root)
    paced = kind != "ceiling"

    def make_writer() -> BronzeWriter:
        return BronzeWriter(
            catalog,
            writer_id=writer_id,
            max_rows=10**9,
            max_age_s=opts["floor"] if paced else 3600.0,
            max_age_limit_s=opts["limit"] if kind == "adaptive" else None,
            spool_dir=Path(root) / "spool",
            compact_every=0,
        )

    writer = make_writer()
    ages: list[float] = []

    async def ceiling(end: float) -> None:
        rows = _rows(int(writer_id.rsplit("-", 1)[1]), opts["rows"])
        while time.monotonic() < end:
            writer.add_many(TABLE, rows)
            await writer.flush()

    async def fed(end: float) -> None:
        chunk = _rows(int(writer_id.rsplit("-", 1)[1]), max(1, round(opts["rate"] / 100)))
        stop = asyncio.Event()
        flusher = asyncio.create_task(writer.run(stop))
        next_at = time.monotonic()
        while time.monotonic() < end:
            writer.add_many(TABLE, chunk)
            ages.append(writer.stats[TABLE].batch_age_s)
            next_at += 0.01
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        stop.set()
        await flusher

    async def main() -> dict[str, Any]:
        nonlocal writer
        await writer.start()  # a first commit before the clock starts: lazy imports, thread pools
        writer.add_many(TABLE, _rows(0, 10))
        await writer.flush()
        writer = make_writer()  # the same id (this process holds its lock), fresh counters and ages
        await writer.start()
        catalog.read_versions.clear()
        await asyncio.to_thread(barrier.wait)
        started = time.monotonic()
        await (fed if paced else ceiling)(started + opts["seconds"])
        st = writer.stats[TABLE]
        return {
            "writer_id": writer_id,
            "elapsed": time.monotonic() - started,
            "commits": st.commits,
            "rows": st.rows_committed,
            "retries": st.retries,
            "attempts_failed": st.attempts_failed,
            "conflicts": st.conflicts,
            "batches_failed": st.batches_spooled,
            "latencies": st.commit_seconds,
            "read_versions": catalog.read_versions,
            "mean_age": statistics.fmean(ages[len(ages) // 2 :]) if ages else None,
        }

    results.put(asyncio.run(main()))


def _commits_by_writer(root: Path) -> dict[str, list[int]]:
    """Each writer's commit versions of the table, in order (from the log's ``txn`` actions)."""
    out: dict[str, list[int]] = {}
    for path in sorted((root / "bronze" / "trades" / "_delta_log").glob("*.json")):
        for line in path.read_text().splitlines():
            if line.startswith('{"txn"'):
                out.setdefault(json.loads(line)["txn"]["appId"], []).append(int(path.stem))
    return out


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def run_config(kind: str, writers: int, opts: dict[str, Any], base: Path) -> dict[str, Any]:
    from crypto_lakehouse.storage import Catalog

    root = base / f"{kind}-{writers}"
    shutil.rmtree(root, ignore_errors=True)
    Catalog(root).create(TABLE)
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(writers), ctx.Queue()
    procs = [
        ctx.Process(target=_worker, args=(kind, str(root), f"bench-{i}", opts, barrier, results))
        for i in range(writers)
    ]
    for p in procs:
        p.start()
    got = [results.get(timeout=opts["seconds"] + 300) for _ in procs]
    for p in procs:
        p.join(60)
    versions = _commits_by_writer(root)
    raced = [  # (a writer's first commit, before the clock started, is left out)
        v - r - 1
        for g in got
        if g["read_versions"]
        for v, r in zip(versions[g["writer_id"]][-len(g["read_versions"]) :], g["read_versions"], strict=True)
    ]
    latencies = [x for g in got for x in g["latencies"]]
    elapsed = max(g["elapsed"] for g in got)
    commits, rows = sum(g["commits"] for g in got), sum(g["rows"] for g in got)
    out: dict[str, Any] = {
        "mode": kind,
        "writers": writers,
        "seconds": round(elapsed, 1),
        "commits": commits,
        "commits_per_s": round(commits / elapsed, 1),
        "rows_per_s": round(rows / elapsed),
        "retries": sum(g["retries"] for g in got),
        "attempts_failed": sum(g["attempts_failed"] for g in got),
        "conflicts": sum(g["conflicts"] for g in got),
        "batches_failed": sum(g["batches_failed"] for g in got),
        "p50_ms": round(_percentile(latencies, 0.5) * 1000, 1),
        "p99_ms": round(_percentile(latencies, 0.99) * 1000, 1),
    }
    if raced:
        out |= {
            "raced_mean": round(statistics.fmean(raced), 2),
            "raced_p99": _percentile(raced, 0.99),
            "raced_max": max(raced),
        }
    if kind != "ceiling":
        mean_ages = [g["mean_age"] for g in got if g["mean_age"] is not None]
        out |= {
            "mean_batch_age_s": round(statistics.fmean(mean_ages), 2) if mean_ages else None,
            "rows_per_commit": round(rows / commits) if commits else 0,
        }
    print(json.dumps(out), file=sys.stderr)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--writers", default="1,2,4,8", help="ceiling: writer counts, comma-separated")
    ap.add_argument("--seconds", type=float, default=15.0, help="per configuration")
    ap.add_argument("--rows", type=int, default=1_000, help="ceiling: rows per append")
    ap.add_argument("--paced-writers", type=int, default=8, help="paced: writer processes (0: skip)")
    ap.add_argument("--rate", type=float, default=5_000.0, help="paced: rows a second fed to each writer")
    ap.add_argument("--floor", type=float, default=0.1, help="paced: writer.max_age, seconds")
    ap.add_argument("--limit", type=float, default=10.0, help="paced, adaptive: writer.max_age_limit, seconds")
    ap.add_argument("--keep", type=Path, help="keep the tables under this directory (default: a temporary one)")
    args = ap.parse_args()
    base = args.keep or Path(tempfile.mkdtemp(prefix="bench-commits-"))
    opts = {"seconds": args.seconds, "rows": args.rows, "rate": args.rate, "floor": args.floor, "limit": args.limit}
    ceiling = [run_config("ceiling", int(n), opts, base) for n in args.writers.split(",") if n.strip()]
    paced = [run_config(kind, args.paced_writers, opts, base) for kind in ("fixed", "adaptive") if args.paced_writers]
    if args.keep is None:
        shutil.rmtree(base, ignore_errors=True)
    print(json.dumps({"ceiling": ceiling, "paced": paced}))


if __name__ == "__main__":
    main()
