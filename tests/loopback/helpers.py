"""Run the real cryptofeed handler against a loopback exchange and collect its callbacks."""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from typing import Any

from cryptofeed.connection import connection_stats
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from crypto_lakehouse.loopback import LoopbackExchange
from crypto_lakehouse.venues.clients import client_ssl_context, feed_class, run_feeds


class Collected:
    def __init__(self) -> None:
        self.counts: Counter = Counter()
        self.objects: dict[str, list] = defaultdict(list)
        self.reconnects = 0

    def callbacks(self, channels: list[str]) -> dict[str, Any]:
        def make(channel: str) -> Any:
            async def cb(obj: Any, receipt_ts: float) -> None:
                self.counts[channel] += 1
                self.objects[channel].append(obj)

            return cb

        return {c: make(c) for c in channels}


async def stream_until_finished(
    ex: LoopbackExchange,
    symbols: list[str],
    channels: list[str] | None = None,
    *,
    settle: float = 0.3,
    timeout: float = 60,
    **feed_kwargs: Any,
) -> Collected:
    """Stream ``symbols`` with the real cryptofeed class until the exchange has played out."""
    got = Collected()
    channels = channels or ex.venue.channels
    cls = feed_class(ex.venue.exchange, ws_url=ex.ws_url, rest_url=ex.rest_url, cert_pem=ex.cert_pem)
    feed = cls(symbols=symbols, channels=channels, callbacks=got.callbacks(channels), **feed_kwargs)
    stop = asyncio.Event()
    task = asyncio.create_task(run_feeds([feed], stop=stop))
    await asyncio.wait_for(ex.finished.wait(), timeout)
    await asyncio.sleep(settle)
    got.reconnects = sum(s.reconnects for s in connection_stats(ex.venue.exchange).values())
    stop.set()
    await task
    return got


async def read_frames(ex: LoopbackExchange, path: str, *, send: str | None = None) -> tuple[list[str], bool]:
    """Raw websocket client on ``path`` (sending ``send`` first, if given): every text frame until
    the market ends; and whether the connection was dropped."""
    frames: list[str] = []
    dropped = False
    async with connect(f"{ex.ws_url}{path}", ssl=client_ssl_context(ex.cert_pem)) as ws:
        if send is not None:
            await ws.send(send)
        try:
            while True:
                try:
                    frames.append(await asyncio.wait_for(ws.recv(), 0.3))
                except TimeoutError:
                    if ex.finished.is_set():
                        break
        except ConnectionClosed as exc:
            dropped = exc.rcvd is None  # no close frame: the TCP connection was cut
    return frames, dropped
