"""``lakehouse ingest-recording``: a recorded session -> loopback exchange -> cryptofeed -> bronze."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypedDict

from cryptofeed.connection import connection_stats

from crypto_lakehouse.errors import LakehouseError
from crypto_lakehouse.ingest.stream import CHANNELS, FeedTarget, stream_to_bronze
from crypto_lakehouse.ingest.writer import BronzeWriter
from crypto_lakehouse.loopback import LoopbackExchange, Recording, load_recording
from crypto_lakehouse.loopback.capture import Capture, CaptureExchange, is_capture, load_capture
from crypto_lakehouse.loopback.recording import _STREAMS
from crypto_lakehouse.venues.registry import venue

__all__ = [
    "replay_target",
    "synthetic_target",
    "RecordingIngested",
    "capture_subscription",
    "ingest_recording",
    "load_any_recording",
    "recording_subscription",
    "stream_until_finished",
]


class RecordingIngested(TypedDict):
    """:func:`ingest_recording`'s summary."""

    recording: str
    exchange: str
    frames: int  # frames the loopback exchange sent
    rows: dict[str, int]  # bronze table -> rows committed
    callbacks: dict[str, int]  # cryptofeed channel -> callbacks the handler delivered
    root: str


def load_any_recording(path: str | Path) -> Recording | Capture:
    """A capture (``NAME.jsonl.zst``, any venue) or a legacy recording (``PATH/NAME`` prefix)."""
    return load_capture(path) if is_capture(path) else load_recording(path)


def capture_subscription(cap: Capture) -> dict[str, list[str]]:
    """cryptofeed channel -> symbols of the capture's header that the venue offers (HTX's and
    Bybit's recordings name a few channels or symbols 3.0.1 no longer streams for them)."""
    offered = venue(cap.exchange).offered_channels
    return {c: list(s) for c, s in cap.configuration.items() if c in offered and s}


def recording_subscription(rec: Recording) -> dict[str, list[str]]:
    """cryptofeed channel -> symbols the recording holds frames for (its configuration line
    when present, else derived from the recorded stream names)."""
    if rec.configuration:
        return {c: list(s) for c, s in rec.configuration.items() if c in CHANNELS and s}
    v = venue(rec.exchange)
    sub: dict[str, list[str]] = {}
    for stream in rec.streams:
        sym, _, chan = stream.partition("@")
        chan = chan.split("@", 1)[0]
        channel = "candles" if chan.startswith("kline_") else _STREAMS.get(chan, (None,))[0]
        if channel in CHANNELS:
            sub.setdefault(channel, [])
            std = v.std_symbol(sym.upper())
            if std not in sub[channel]:
                sub[channel].append(std)
    return sub


async def stream_until_finished(
    ex: LoopbackExchange | CaptureExchange, targets: list[FeedTarget], writer: BronzeWriter, *, timeout: float = 300
) -> None:
    """Stream ``targets`` into ``writer`` until the loopback exchange has played out its
    recording or market and every message it sent has reached the handler; then flush."""
    started = time.time()
    stop = asyncio.Event()
    task = asyncio.create_task(stream_to_bronze(targets, writer, stop=stop, sessions=False))
    finished = asyncio.create_task(ex.finished.wait())
    await asyncio.wait({task, finished}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        finished.cancel()
        task.result()  # the stream failed: raise its error
    if isinstance(ex, LoopbackExchange) and ex.error is not None:
        stop.set()
        await task
        raise LakehouseError(f"the loopback exchange failed: {ex.error!r}") from ex.error
    if not finished.done():
        finished.cancel()
        stop.set()
        await task
        raise TimeoutError(f"the loopback exchange did not finish within {timeout:g} s")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        received = sum(s.received for s in connection_stats(ex.venue.exchange, since=started).values())
        if received >= ex.stats.messages_sent:
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.2)  # the last messages' callbacks
    stop.set()
    await task


async def ingest_recording(
    recording: str | Path | Recording | Capture, writer: BronzeWriter, *, timeout: float = 300
) -> RecordingIngested:
    """Replay ``recording`` (a capture ``NAME.jsonl.zst`` of any venue, or a legacy Binance
    recording ``PATH/NAME``) through the real cryptofeed handler into bronze; returns a summary
    with the rows committed per bronze table and the callbacks delivered per channel."""
    rec = recording if isinstance(recording, Recording | Capture) else load_any_recording(recording)
    counted: dict[str, int] = {}
    ex: LoopbackExchange | CaptureExchange
    if isinstance(rec, Capture):
        sub = capture_subscription(rec)
        ex, interval = CaptureExchange(rec), rec.candle_interval
    else:
        sub = recording_subscription(rec)
        ex, interval = LoopbackExchange(recording=rec), None
    async with ex:
        target = replay_target(ex, sub, candle_interval=interval)
        target.observers = {c: [_counter(counted, c)] for c in sub}
        await stream_until_finished(ex, [target], writer, timeout=timeout)
        frames = ex.stats.messages_sent
    return {
        "recording": rec.name,
        "exchange": rec.exchange,
        "frames": frames,
        "rows": {name: st["rows_committed"] for name, st in writer.summary().items()},
        "callbacks": counted,
        "root": writer.catalog.root,
    }


def replay_target(
    ex: LoopbackExchange | CaptureExchange, subscription: dict[str, list[str]], *, candle_interval: str | None = None
) -> FeedTarget:
    """What to stream from ``ex`` (started) replaying a recording or capture: its exchange,
    ``subscription`` (channel -> symbols, e.g. :func:`capture_subscription`) at its addresses."""
    return FeedTarget(
        ex.venue.exchange,
        symbols=[],
        channels=list(subscription),
        ws_url=ex.ws_url,
        rest_url=ex.rest_url,
        cert_pem=ex.cert_pem,
        subscription=subscription,
        host_in_path=isinstance(ex, CaptureExchange),
        candle_interval=candle_interval,
    )


def synthetic_target(ex: LoopbackExchange, *, channels: list[str] | None = None) -> FeedTarget:
    """What to stream from ``ex`` (started) running a synthetic market: every symbol it trades,
    in cryptofeed's names, on ``channels`` (default: the venue's default channels)."""
    market = ex.market
    if market is None:
        raise LakehouseError(f"the loopback exchange at {ex.rest_url} replays a recording: it runs no market")
    symbols = [market.std_symbol(s) for s in market.symbols]
    return FeedTarget(ex.venue.exchange, symbols, channels or ex.venue.channels, ex.ws_url, ex.rest_url, ex.cert_pem)


def _counter(counts: dict[str, int], channel: str) -> Callable[[object, float], Awaitable[None]]:
    async def count(_obj: object, _receipt: float) -> None:
        counts[channel] = counts.get(channel, 0) + 1

    return count
