"""``lakehouse demo``: the main job on embedded defaults, printing what it did.

Today: the loopback exchange replays the recorded BINANCE_FUTURES session, then streams a
synthetic market, both through the real cryptofeed handler; ccxt reads the same market's REST
ground truth. Later stages (bronze, silver, gold, queries) extend this.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from crypto_lakehouse.config import Settings
from crypto_lakehouse.exchange import LoopbackExchange, MarketSpec, ccxt_client, feed_class, load_recording
from crypto_lakehouse.exchange.clients import run_feeds

__all__ = ["run_demo"]

_CHANNELS = ("trades", "l2_book", "ticker", "candles", "funding", "liquidations")


def _counting_callbacks(counts: Counter, channels: list[str], trade_ids: dict[str, set]) -> dict[str, Any]:
    def make(channel: str) -> Any:
        async def cb(obj: Any, receipt_ts: float) -> None:
            counts[channel] += 1
            if channel == "trades":
                trade_ids.setdefault(obj.symbol, set()).add(int(obj.id))

        return cb

    return {c: make(c) for c in channels}


async def _stream(ex: LoopbackExchange, symbols: list[str], *, until: asyncio.Event) -> tuple[Counter, dict]:
    counts: Counter = Counter()
    ids: dict[str, set] = {}
    channels = ex.venue.channels
    cls = feed_class(ex.venue.exchange, ws_url=ex.ws_url, rest_url=ex.rest_url, cert_pem=ex.cert_pem)
    feed = cls(
        symbols=symbols,
        channels=channels,
        callbacks=_counting_callbacks(counts, channels, ids),
        candle_closed_only=False,
    )
    await run_feeds([feed], stop=until)
    return counts, ids


async def _demo(settings: Settings, recording: Path, seconds: float, console: Console) -> None:
    table = Table(title="crypto-lakehouse demo: callbacks from the real cryptofeed handler")
    table.add_column("source")
    for c in _CHANNELS:
        table.add_column(c, justify="right")

    if Path(f"{recording}.0").is_file():
        rec = load_recording(recording)
        async with LoopbackExchange(recording=rec) as ex:
            console.print(f"replaying recording {rec.name} ({len(rec.frames)} frames) on {ex.ws_url}")
            v = ex.venue
            syms = sorted({v.std_symbol(s.split("@")[0]) for s in rec.streams})
            done = asyncio.Event()
            task = asyncio.create_task(_stream(ex, syms, until=done))
            await asyncio.wait_for(ex.finished.wait(), 60)
            await asyncio.sleep(0.3)
            done.set()
            counts, _ = await task
            table.add_row(f"recording {rec.name}", *(str(counts[c]) for c in _CHANNELS))
    else:
        console.print(f"[yellow]recording {recording} not found: skipping the replay part[/]")

    lb = settings.loopback
    spec = MarketSpec(exchange=lb.exchange, symbols=lb.symbols, seed=lb.seed, rate=lb.rate)
    async with LoopbackExchange(market=spec) as ex:
        console.print(
            f"synthetic {lb.exchange} market {lb.symbols} at {lb.rate:g} msgs/s for {seconds:g} s on {ex.ws_url}"
        )
        done = asyncio.Event()
        started = time.monotonic()
        task = asyncio.create_task(_stream(ex, [ex.venue.std_symbol(s) for s in lb.symbols], until=done))
        await asyncio.sleep(seconds)
        done.set()
        counts, ids = await task
        elapsed = time.monotonic() - started
        table.add_row(f"synthetic ({elapsed:.0f} s)", *(str(counts[c]) for c in _CHANNELS))
        console.print(table)
        # ccxt reads the same market's ground truth over REST
        client = ccxt_client(lb.exchange, rest_url=ex.rest_url, asynchronous=True)
        try:
            sym0 = lb.symbols[0]
            streamed = ids.get(ex.venue.std_symbol(sym0), set())
            first = min(streamed) if streamed else ex.market.tape(sym0).first_id
            await client.load_markets()
            market = next(m for m in client.markets.values() if m["id"] == sym0)
            trades = await client.fetch_trades(market["symbol"], params={"fromId": first}, limit=1000)
            rest_ids = {int(t["id"]) for t in trades}
            overlap = len(rest_ids & streamed)
            console.print(
                f"ccxt {client.id}.fetch_trades({market['symbol']}, fromId={first}): {len(trades)} trades, "
                f"{overlap} of them also streamed to cryptofeed (same ids)"
            )
        finally:
            await client.close()
        console.print(f"exchange stats: {ex.status()}")


def run_demo(settings: Settings, *, recording: Path, seconds: float, console: Console) -> None:
    """Run the demo end to end (a few seconds plus ``seconds``)."""
    asyncio.run(_demo(settings, recording, seconds, console))
