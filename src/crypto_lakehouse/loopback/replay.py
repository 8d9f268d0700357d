"""``lakehouse ingest-recording``: a recorded session -> loopback exchange -> cryptofeed -> bronze."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import TypedDict

from cryptofeed.connection import connection_stats

from crypto_lakehouse.ingest.stream import CHANNELS, FeedTarget, stream_to_bronze
from crypto_lakehouse.ingest.writer import BronzeWriter
from crypto_lakehouse.loopback import LoopbackExchange, Recording, load_recording
from crypto_lakehouse.loopback.recording import _STREAMS
from crypto_lakehouse.venues.registry import venue

__all__ = ["RecordingIngested", "ingest_recording", "recording_subscription", "stream_until_finished"]


class RecordingIngested(TypedDict):
    """:func:`ingest_recording`'s summary."""

    recording: str
    exchange: str
    frames: int  # frames the loopback exchange sent
    rows: dict[str, int]  # bronze table -> rows committed
    root: str


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
    ex: LoopbackExchange, targets: list[FeedTarget], writer: BronzeWriter, *, timeout: float = 300
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
    recording: str | Path | Recording, writer: BronzeWriter, *, timeout: float = 300
) -> RecordingIngested:
    """Replay ``recording`` through the real cryptofeed handler into bronze; returns a summary
    with the rows committed per bronze table."""
    rec = recording if isinstance(recording, Recording) else load_recording(recording)
    sub = recording_subscription(rec)
    async with LoopbackExchange(recording=rec) as ex:
        target = FeedTarget(
            rec.exchange,
            symbols=[],
            channels=list(sub),
            ws_url=ex.ws_url,
            rest_url=ex.rest_url,
            cert_pem=ex.cert_pem,
            subscription=sub,
        )
        await stream_until_finished(ex, [target], writer, timeout=timeout)
        frames = ex.stats.messages_sent
    return {
        "recording": rec.name,
        "exchange": rec.exchange,
        "frames": frames,
        "rows": {name: st["rows_committed"] for name, st in writer.summary().items()},
        "root": writer.catalog.root,
    }
