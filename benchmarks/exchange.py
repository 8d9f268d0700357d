"""Loopback exchange throughput: what the server alone emits, and what one real cryptofeed
client parses with no-op callbacks. The server runs in its own process (`lakehouse exchange
serve`), as in production use, so server and client each get a core.

Last line: {"exchange_msgs_per_s": ..., "cryptofeed_parse_msgs_per_s": ...}
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

SYMBOLS = "BTCUSDT,ETHUSDT,SOLUSDT"


def _serve(max_trades: int, tmp: Path) -> tuple[subprocess.Popen, str, str, Path]:
    cert = tmp / "cert.pem"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "crypto_lakehouse.cli",
            "exchange",
            "serve",
            "--symbols",
            SYMBOLS,
            "--rate",
            "50000000",
            "--max-trades",
            str(max_trades),
            "--cert-out",
            str(cert),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    lines = [proc.stdout.readline() for _ in range(3)]
    ws = lines[1].split()[1]
    rest = lines[2].split()[1]
    return proc, ws, rest, cert


def _status(rest: str) -> dict:
    with urllib.request.urlopen(rest + "/_loopback/status", timeout=5) as r:
        return json.load(r)


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    proc.communicate(timeout=30)


async def _raw_reader(ws_url: str, cert: Path, rest: str) -> float:
    """Read and discard every byte; returns seconds from the upgrade to the market's end."""
    host, port = ws_url.removeprefix("wss://").split(":")
    ctx = ssl.create_default_context(cafile=str(cert))
    reader, writer = await asyncio.open_connection(host, int(port), ssl=ctx, limit=1 << 22)
    streams = "/".join(
        f"{s.lower()}@{c}"
        for s in SYMBOLS.split(",")
        for c in ("aggTrade", "depth@100ms", "bookTicker", "kline_1m", "markPrice", "forceOrder")
    )
    writer.write(
        f"GET /stream?streams={streams} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    await reader.readuntil(b"\r\n\r\n")
    t0 = time.perf_counter()
    last = t0
    while True:
        try:
            chunk = await asyncio.wait_for(reader.read(1 << 22), 1.0)
        except TimeoutError:
            if _status(rest)["finished"]:
                break
            continue
        if not chunk:
            break
        last = time.perf_counter()
    writer.close()
    return last - t0


def bench_server(max_trades: int, tmp: Path) -> float:
    proc, ws, rest, cert = _serve(max_trades, tmp)
    try:
        secs = asyncio.run(_raw_reader(ws, cert, rest))
        sent = _status(rest)["messages_sent"]
    finally:
        _stop(proc)
    rate = sent / secs
    print(f"server alone: {sent:,} messages in {secs:.2f} s = {rate:,.0f} msgs/s", file=sys.stderr)
    return rate


def bench_cryptofeed(max_trades: int, tmp: Path) -> float:
    from cryptofeed.connection import connection_stats

    from crypto_lakehouse.venues.clients import feed_class, run_feeds

    proc, ws, rest, cert = _serve(max_trades, tmp)
    received = frames = 0
    first = last = 0.0

    async def noop(obj, receipt_ts) -> None:
        nonlocal received, first, last
        received += 1
        last = time.perf_counter()
        if not first:
            first = last

    async def run() -> None:
        cls = feed_class("BINANCE_FUTURES", ws_url=ws, rest_url=rest, cert_pem=cert.read_bytes())
        channels = ["trades", "l2_book", "ticker", "candles", "funding", "liquidations"]
        syms = [f"{s[:-4]}-USDT-PERP" for s in SYMBOLS.split(",")]
        feed = cls(symbols=syms, channels=channels, callbacks={c: noop for c in channels}, candle_closed_only=False)
        stop = asyncio.Event()
        task = asyncio.create_task(run_feeds([feed], stop=stop))
        while not _status(rest)["finished"]:
            await asyncio.sleep(0.5)
        idle = received
        while True:  # drain what the client still has buffered
            await asyncio.sleep(0.5)
            if received == idle:
                break
            idle = received
        nonlocal frames
        frames = sum(st.received for st in connection_stats("BINANCE_FUTURES").values())
        stop.set()
        await task

    try:
        asyncio.run(run())
        sent = _status(rest)["messages_sent"]
    finally:
        _stop(proc)
    secs = last - first
    rate = frames / secs
    print(
        f"cryptofeed client: {frames:,} messages parsed ({sent:,} sent), {received:,} callbacks, in {secs:.2f} s"
        f" = {rate:,.0f} msgs/s",
        file=sys.stderr,
    )
    return rate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--server-trades", type=int, default=120_000, help="trades per symbol for the server-alone run")
    ap.add_argument("--client-trades", type=int, default=10_000, help="trades per symbol for the cryptofeed run")
    args = ap.parse_args()
    tmp = Path(subprocess.check_output(["mktemp", "-d"], text=True).strip())
    server = bench_server(args.server_trades, tmp)
    client = bench_cryptofeed(args.client_trades, tmp)
    print(json.dumps({"exchange_msgs_per_s": round(server), "cryptofeed_parse_msgs_per_s": round(client)}))


if __name__ == "__main__":
    main()
