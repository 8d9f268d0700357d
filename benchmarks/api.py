"""The query service over HTTP (``lakehouse api`` in its own process, on loopback) against the same
``Lakehouse`` calls in-process, in the same run, on a generated silver.trades (query.py's rows):

* one symbol, one hour (``POST /query/sql``, Arrow IPC stream) p50/p95 through HTTP vs
  ``Lakehouse.sql`` of the same SQL in-process, one client (target: HTTP <= 1.3x at p50), and
  the HTTP p50 with ``--clients`` clients at once;
* SQL aggregation throughput: ``--clients`` clients for ``--seconds`` (queries/s, 429s counted);
* live tick -> SSE client latency: a writer streams the loopback exchange's trades, a client
  follows ``GET /query/stream``; delay from the row's receipt by the writer to the event at
  the client (p50/p99; target p99 < 100 ms).

Bounded: ``--queries`` queries per measure, ``--seconds`` of throughput, ``--ticks`` trades.
Small check: ``python benchmarks/api.py --rows 300000 --days 1 --batches 2 --queries 10
--seconds 3 --ticks 200``.

Last line: {"one_symbol_hour_http_p50_ms", "one_symbol_hour_http_p95_ms",
"one_symbol_hour_inprocess_p50_ms", "one_symbol_hour_inprocess_p95_ms", "http_overhead_p50",
"one_symbol_hour_http_p50_ms_concurrent", "sql_agg_queries_per_s", "clients", "rejected_429",
"live_tick_to_sse_p50_ms", "live_tick_to_sse_p99_ms", "sse_ticks"}
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pyarrow.ipc as ipc

sys.path.insert(0, str(Path(__file__).resolve().parent))
from query import START, SYMBOLS, generate  # noqa: E402  # the read benchmark's rows, same generator

from crypto_lakehouse import Lakehouse, load_settings  # noqa: E402
from crypto_lakehouse.ingest import BronzeWriter, FeedTarget, stream_to_bronze  # noqa: E402
from crypto_lakehouse.loopback import MarketSpec, running_exchange  # noqa: E402
from crypto_lakehouse.service.keys import create_key  # noqa: E402
from crypto_lakehouse.storage import Catalog  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def served(root: Path, spool: Path, clients: int) -> Iterator[str]:
    """``lakehouse api`` over ``root`` in its own process; its base URL once it answers."""
    port = _free_port()
    env = {
        **os.environ,
        "LAKEHOUSE_WRITER__SPOOL_DIR": str(spool),
        "LAKEHOUSE_API__LIMITS__MAX_CONCURRENT": str(clients),
    }
    cmd = [sys.executable, "-m", "crypto_lakehouse.cli", "api", "--root", str(root), "--port", str(port)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code in (200, 503):
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"lakehouse api did not start: {proc.stderr.read() if proc.stderr else ''}")
            time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        proc.wait(20)


def _hour_sql(rng: random.Random, days: int) -> str:
    sym = rng.choice(SYMBOLS)
    h = START + timedelta(hours=rng.randrange(days * 24))
    return (
        f"SELECT * FROM silver.trades WHERE symbol = '{sym}' AND date = DATE '{h.date()}' "
        f"AND ts >= TIMESTAMPTZ '{h.isoformat()}' AND ts < TIMESTAMPTZ '{(h + timedelta(hours=1)).isoformat()}'"
    )


def _agg_sql(rng: random.Random, days: int) -> str:
    d = START + timedelta(days=rng.randrange(days))
    return (
        "SELECT symbol, count(*) AS n, avg(price) AS mean, max(price) - min(price) AS range "
        f"FROM silver.trades WHERE date = DATE '{d.date()}' GROUP BY symbol ORDER BY symbol"
    )


def _http_query(client: httpx.Client, base: str, sql: str) -> int:
    """Rows of ``sql``'s Arrow IPC answer (status 429: -1)."""
    r = client.post(f"{base}/query/sql", json={"sql": sql, "format": "arrow"})
    if r.status_code == 429:
        return -1
    r.raise_for_status()
    return ipc.open_stream(r.content).read_all().num_rows


def _timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1000


def one_symbol_hours(base: str, key: str, lh: Lakehouse, days: int, n: int) -> tuple[list[float], list[float]]:
    """The same n queries, alternating HTTP and in-process (same SQL, same rows), one client."""
    rng = random.Random(1)
    http, local = [], []
    with httpx.Client(headers={"X-API-Key": key}, timeout=60) as client:
        _http_query(client, base, _hour_sql(rng, days))  # warm up both sides
        lh.sql(_hour_sql(rng, days))
        for _ in range(n):
            sql = _hour_sql(rng, days)
            rows: dict[str, int] = {}
            http.append(_timed(lambda: rows.setdefault("http", _http_query(client, base, sql))))  # noqa: B023
            local.append(_timed(lambda: rows.setdefault("local", lh.sql(sql).to_arrow().num_rows)))  # noqa: B023
            assert rows["http"] == rows["local"] > 0, rows
    return http, local


def concurrent(
    base: str, key: str, days: int, clients: int, seconds: float, make_sql: Callable[..., str]
) -> tuple[list[float], int]:
    """``clients`` threads sending ``make_sql`` queries for ``seconds``: latencies, 429s."""
    stop = time.monotonic() + seconds
    rejected = [0] * clients

    def run(i: int) -> list[float]:
        rng, out = random.Random(100 + i), []
        with httpx.Client(headers={"X-API-Key": key}, timeout=60) as client:
            while time.monotonic() < stop:
                t0 = time.perf_counter()
                if _http_query(client, base, make_sql(rng, days)) < 0:
                    rejected[i] += 1
                    time.sleep(0.01)
                    continue
                out.append((time.perf_counter() - t0) * 1000)
        return out

    with ThreadPoolExecutor(clients) as pool:
        latencies = [ms for part in pool.map(run, range(clients)) for ms in part]
    return latencies, sum(rejected)


def sse_latency(base: str, key: str, settings_root: Path, spool: Path, ticks: int, timeout: float) -> list[float]:
    """A writer streams ``ticks`` trades of the loopback exchange (committing every second);
    an SSE client follows them: ms from each row's receipt by the writer to its event."""
    out: list[float] = []
    connected = threading.Event()

    def follow(stop: threading.Event) -> None:
        params = {"tables": "trades", "heartbeat_s": 0.5}
        with httpx.stream("GET", f"{base}/query/stream", params=params, headers={"X-API-Key": key}, timeout=30) as r:
            connected.set()
            for line in r.iter_lines():
                if line.startswith("data: "):
                    row = json.loads(line[6:])
                    out.append((time.time() - datetime.fromisoformat(row["receipt_ts"]).timestamp()) * 1000)
                if stop.is_set() or len(out) >= ticks:
                    return

    writer = BronzeWriter(Catalog(settings_root), writer_id="bench", spool_dir=spool, max_age_s=1.0)
    spec = MarketSpec(exchange="BINANCE", symbols=["BTCUSDT"], rate=max(50.0, ticks / 10), max_trades=ticks)
    stop_client = threading.Event()
    client = threading.Thread(target=follow, args=(stop_client,), daemon=True)
    client.start()
    connected.wait(30)
    with running_exchange(market=spec) as ex:
        target = FeedTarget("BINANCE", ["BTC-USDT"], ["trades"], ex.ws_url, ex.rest_url, ex.cert_pem)

        async def stream() -> None:
            stop = asyncio.Event()
            task = asyncio.create_task(stream_to_bronze([target], writer, stop=stop, live_port=0, sessions=False))
            deadline = time.monotonic() + timeout
            while len(out) < ticks and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            stop.set()
            await task

        asyncio.run(stream())
    stop_client.set()
    client.join(5)
    return out


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(len(ordered) * q))], 1) if ordered else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description="query service benchmark (HTTP vs in-process, SQL throughput, SSE)")
    ap.add_argument("--rows", type=int, default=20_000_000)
    ap.add_argument("--days", type=int, default=5)
    ap.add_argument("--batches", type=int, default=10)
    ap.add_argument("--queries", type=int, default=40, help="one-symbol-hour queries per side")
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=15.0, help="per concurrent measure")
    ap.add_argument("--ticks", type=int, default=1_000, help="trades the loopback exchange sends for the SSE measure")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    root, spool = tmp / "lake", tmp / "spool"
    t0 = time.perf_counter()
    generate(root, tmp / "parquet_copy", args.rows, args.days, args.batches)
    print(f"generated {args.rows:,} rows in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    key = create_key(Catalog(root), role="reader")[1]
    lh = Lakehouse(config=load_settings(root=str(root), writer={"spool_dir": str(spool)}))
    with served(root, spool, args.clients) as base:
        http, local = one_symbol_hours(base, key, lh, args.days, args.queries)
        print(f"one symbol-hour: HTTP p50 {_p(http, 0.5)} ms, in-process p50 {_p(local, 0.5)} ms", file=sys.stderr)
        hours, _ = concurrent(base, key, args.days, args.clients, args.seconds / 2, _hour_sql)
        agg, rejected = concurrent(base, key, args.days, args.clients, args.seconds, _agg_sql)
        rate = len(agg) / args.seconds
        print(f"aggregation: {rate:.1f} queries/s with {args.clients} clients ({rejected} x 429)", file=sys.stderr)
        sse = sse_latency(base, key, root, spool, args.ticks, timeout=max(30.0, args.ticks / 5))
        print(f"SSE: {len(sse)} ticks, p50 {_p(sse, 0.5)} ms, p99 {_p(sse, 0.99)} ms", file=sys.stderr)
    print(
        json.dumps(
            {
                "one_symbol_hour_http_p50_ms": _p(http, 0.5),
                "one_symbol_hour_http_p95_ms": _p(http, 0.95),
                "one_symbol_hour_inprocess_p50_ms": _p(local, 0.5),
                "one_symbol_hour_inprocess_p95_ms": _p(local, 0.95),
                "http_overhead_p50": round(statistics.median(http) / statistics.median(local), 3),
                "one_symbol_hour_http_p50_ms_concurrent": _p(hours, 0.5),
                "sql_agg_queries_per_s": round(rate, 1),
                "clients": args.clients,
                "rejected_429": rejected,
                "live_tick_to_sse_p50_ms": _p(sse, 0.5),
                "live_tick_to_sse_p99_ms": _p(sse, 0.99),
                "sse_ticks": len(sse),
            }
        )
    )


if __name__ == "__main__":
    main()
