"""Bronze ingest: batch write speed, end-to-end streaming speed, commit latency, bytes on disk.

* bronze_rows_per_s: Python rows -> Arrow -> one Delta append (the writer's flush path).
* bronze_vs_parquet: pyarrow.parquet.write_table time / Delta append time for the same Arrow
  table, both ZSTD level 3 (target >= 0.8).
* e2e_msgs_per_s: synthetic exchange (own process) -> real cryptofeed -> bronze writer, all
  channels; e2e_vs_parse_only: the same with no-op callbacks (target >= 0.85).
* commit_latency_p99_ms: Delta append latency of the e2e run's commits.
* bronze_bytes_vs_json: bytes of bronze.trades files / bytes of the aggTrade frames they hold
  (target <= 0.10).

Last line: one JSON object with those figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

from crypto_lakehouse.ingest import BronzeWriter, FeedTarget, stream_to_bronze
from crypto_lakehouse.ingest.rows import rows_to_arrow
from crypto_lakehouse.loopback import MarketSpec, SyntheticMarket
from crypto_lakehouse.schemas import BRONZE
from crypto_lakehouse.storage import Catalog
from crypto_lakehouse.venues.clients import feed_class, run_feeds

SYMBOLS = ["BTCUSDT", "ETHUSDT", "SOLUSDT"]


def bench_batch(rows: int, tmp: Path) -> tuple[float, float]:
    market = SyntheticMarket(MarketSpec(exchange="BINANCE_FUTURES", symbols=SYMBOLS, rate=1e6))
    while sum(len(s.tape) for s in market.symbols.values()) < rows:
        market.step()
    now = time.time()
    tuples = []
    for sym in market.symbols.values():
        tape = sym.tape
        std = market.venue.std_symbol(sym.name)
        for i in range(len(tape)):
            r = tape.record(i)
            tuples.append(
                (
                    "BINANCE_FUTURES",
                    std,
                    r["T"] / 1000,
                    now,
                    str(r["a"]),
                    "sell" if r["m"] else "buy",
                    r["p"],
                    r["q"],
                    None,
                )
            )
    catalog = Catalog(tmp / "batch")
    first = rows_to_arrow("bronze.trades", tuples[:1000], writer_id="bench", batch_id=0)
    catalog.append("bronze.trades", first)  # create
    arrow_s, delta_s, parquet_s = [], [], []
    for rep in range(3):  # median of 3 of each, interleaved
        t0 = time.perf_counter()
        table = rows_to_arrow("bronze.trades", tuples, writer_id="bench", batch_id=rep + 1)
        t1 = time.perf_counter()
        catalog.append("bronze.trades", table, app_id="bench", version=rep + 1)
        t2 = time.perf_counter()
        pq.write_table(table, tmp / f"plain{rep}.parquet", compression="zstd", compression_level=3)
        t3 = time.perf_counter()
        arrow_s.append(t1 - t0)
        delta_s.append(t2 - t1)
        parquet_s.append(t3 - t2)
    a, d, p = (statistics.median(x) for x in (arrow_s, delta_s, parquet_s))
    rows_per_s = len(tuples) / (a + d)
    ratio = p / d
    print(
        f"batch of {len(tuples):,} rows (median of 3): to Arrow {a:.3f} s, Delta append {d:.3f} s, "
        f"parquet write_table {p:.3f} s",
        file=sys.stderr,
    )
    return rows_per_s, ratio


def _serve(max_trades: int, tmp: Path) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "crypto_lakehouse.cli",
            "exchange",
            "serve",
            "--symbols",
            ",".join(SYMBOLS),
            "--rate",
            "50000000",
            "--max-trades",
            str(max_trades),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    lines = [proc.stdout.readline() for _ in range(3)]
    return proc, lines[2].split()[1]


def _status(rest: str) -> dict:
    import urllib.request

    with urllib.request.urlopen(rest + "/_loopback/status", timeout=5) as r:
        return json.load(r)


def _cert(rest: str) -> bytes:
    import urllib.request

    with urllib.request.urlopen(rest + "/_loopback/cert.pem", timeout=5) as r:
        return r.read()


async def _until_drained(rest: str, counter) -> None:
    while not _status(rest)["finished"]:
        await asyncio.sleep(0.25)
    last = -1
    while counter() != last:  # the client still reads what is buffered
        last = counter()
        await asyncio.sleep(0.5)


def bench_e2e(max_trades: int, tmp: Path, *, bronze: bool) -> tuple[float, BronzeWriter | None]:
    from cryptofeed.connection import connection_stats

    proc, rest = _serve(max_trades, tmp)
    channels = ["trades", "l2_book", "ticker", "funding", "liquidations", "candles"]
    syms = [f"{s[:-4]}-USDT-PERP" for s in SYMBOLS]
    started = time.time()
    writer = None

    def received() -> int:
        return sum(s.received for s in connection_stats("BINANCE_FUTURES", since=started).values())

    async def run() -> float:
        nonlocal writer
        stop = asyncio.Event()
        ws = _status(rest)["ws_url"]
        t0 = time.perf_counter()
        if bronze:
            writer = BronzeWriter(Catalog(tmp / "e2e"), writer_id="bench", spool_dir=tmp / "spool")
            target = FeedTarget("BINANCE_FUTURES", syms, channels, ws_url=ws, rest_url=rest, cert_pem=_cert(rest))
            task = asyncio.create_task(stream_to_bronze([target], writer, stop=stop))
        else:

            async def noop(obj, ts) -> None:
                return None

            cls = feed_class("BINANCE_FUTURES", ws_url=ws, rest_url=rest, cert_pem=_cert(rest))
            feed = cls(symbols=syms, channels=channels, callbacks={c: noop for c in channels}, candle_closed_only=False)
            task = asyncio.create_task(run_feeds([feed], stop=stop))
        await _until_drained(rest, received)
        elapsed = time.perf_counter() - t0 - 0.5  # the last idle poll
        stop.set()
        await task
        return received() / elapsed

    try:
        rate = asyncio.run(run())
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
    print(f"e2e {'bronze' if bronze else 'parse only'}: {rate:,.0f} msgs/s", file=sys.stderr)
    return rate, writer


def bytes_vs_json(root: Path) -> float:
    import polars as pl

    trades = pl.read_delta(str(root / "bronze" / "trades"))
    json_bytes = 0
    for r in trades.iter_rows(named=True):  # the wrapped frame the exchange sent for this trade
        sym = r["symbol"].replace("-PERP", "").replace("-", "")
        frame = (
            f'{{"stream":"{sym.lower()}@aggTrade","data":{{"e":"aggTrade","E":{int(r["ts"].timestamp() * 1000)},'
            f'"a":{r["id"]},"s":"{sym}","p":"{r["price"]}","q":"{r["amount"]}","f":{r["id"]},"l":{r["id"]},'
            f'"T":{int(r["ts"].timestamp() * 1000)},"m":{"true" if r["side"] == "sell" else "false"}}}}}'
        )
        json_bytes += len(frame)
    files = [p for p in (root / "bronze" / "trades").rglob("*.parquet")]
    size = sum(p.stat().st_size for p in files)
    print(
        f"bronze.trades: {trades.height:,} rows in {len(files)} files, {size:,} bytes; "
        f"JSON frames {json_bytes:,} bytes",
        file=sys.stderr,
    )
    return size / json_bytes


def small_files(tmp: Path, commits: int) -> dict:
    """The cost of partitioning by (exchange, symbol, date) with 1 s flushes: files written per
    commit, and reading one symbol before and after compaction, against an unpartitioned table."""
    import polars as pl
    from deltalake import DeltaTable, write_deltalake

    from crypto_lakehouse.storage.catalog import _WRITER

    spec = BRONZE["bronze.trades"]
    out: dict = {}
    for layout, parts in (("partitioned", list(spec.partition_by)), ("unpartitioned", None)):
        uri = str(tmp / f"small_{layout}")
        base = 1_700_000_000.0
        for c in range(commits):  # one second of 3 symbols at ~1,000 trades/s each
            rows = [
                (
                    "BINANCE_FUTURES",
                    f"{s[:-4]}-USDT-PERP",
                    base + c + i / 1000,
                    base + c,
                    str(c * 1000 + i),
                    "buy",
                    "100.01",
                    "0.001",
                    None,
                )
                for s in SYMBOLS
                for i in range(1000)
            ]
            write_deltalake(
                uri,
                rows_to_arrow("bronze.trades", rows, writer_id="b", batch_id=c),
                mode="append",
                partition_by=parts,
                writer_properties=_WRITER,
            )

        def read_ms(uri: str = uri) -> float:
            times = []
            for _ in range(5):
                t0 = time.perf_counter()
                pl.scan_delta(uri).filter(pl.col("symbol") == "ETH-USDT-PERP").select(pl.len()).collect()
                times.append(time.perf_counter() - t0)
            return statistics.median(times) * 1000

        dt = DeltaTable(uri)
        files = len(dt.file_uris())
        before = read_ms()
        dt.optimize.compact()
        after = read_ms()
        out[layout] = {
            "files": files,
            "files_per_commit": files / commits,
            "read_one_symbol_ms": round(before, 1),
            "read_one_symbol_ms_compacted": round(after, 1),
        }
    print(f"small files over {commits} 1-second commits: {json.dumps(out)}", file=sys.stderr)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description="bronze ingest benchmark")
    ap.add_argument("--batch-rows", type=int, default=1_000_000)
    ap.add_argument("--e2e-trades", type=int, default=20_000, help="trades per symbol in the e2e runs")
    ap.add_argument("--small-file-commits", type=int, default=300, help="1-second commits in the small-file test")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    rows_per_s, vs_parquet = bench_batch(args.batch_rows, tmp)
    parse_only, _ = bench_e2e(args.e2e_trades, tmp, bronze=False)
    e2e, writer = bench_e2e(args.e2e_trades, tmp, bronze=True)
    lat = sorted(x for st in writer.stats.values() for x in st.commit_seconds)
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000
    print(f"{len(lat)} commits, median {statistics.median(lat) * 1000:.1f} ms", file=sys.stderr)
    ratio = bytes_vs_json(tmp / "e2e")
    layout = small_files(tmp, args.small_file_commits)
    print(
        json.dumps(
            {
                "bronze_rows_per_s": round(rows_per_s),
                "bronze_vs_parquet": round(vs_parquet, 3),
                "e2e_msgs_per_s": round(e2e),
                "e2e_vs_parse_only": round(e2e / parse_only, 3),
                "commit_latency_p99_ms": round(p99, 1),
                "bronze_bytes_vs_json": round(ratio, 4),
                "files_per_commit_partitioned": layout["partitioned"]["files_per_commit"],
                "read_one_symbol_ms_small_files": layout["partitioned"]["read_one_symbol_ms"],
                "read_one_symbol_ms_compacted": layout["partitioned"]["read_one_symbol_ms_compacted"],
                "read_one_symbol_ms_unpartitioned_small_files": layout["unpartitioned"]["read_one_symbol_ms"],
            }
        )
    )


if __name__ == "__main__":
    main()
