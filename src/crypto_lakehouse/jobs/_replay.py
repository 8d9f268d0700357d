"""The ``ingest_recording`` job: a recorded session replayed into bronze (through the loopback
exchange and the real cryptofeed handler)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from crypto_lakehouse.config import Settings
from crypto_lakehouse.errors import InvalidArgument
from crypto_lakehouse.ingest.capture import is_pcap_capture
from crypto_lakehouse.ingest.writer import BronzeWriter
from crypto_lakehouse.jobs._capture import CaptureResult, ingest_capture
from crypto_lakehouse.loopback.replay import ingest_recording as replay_into
from crypto_lakehouse.loopback.replay import load_any_recording

__all__ = ["RecordingResult", "ingest_recording"]


@dataclass(frozen=True, slots=True)
class RecordingResult:
    """What a replay wrote: frames sent by the loopback exchange, rows committed per table."""

    recording: str
    exchange: str
    frames: int
    rows: dict[str, int]
    callbacks: dict[str, int]  # cryptofeed channel -> callbacks the handler delivered
    root: str


def ingest_recording(
    settings: Settings, *, recording: str | Path, timeout: float = 600, exchange: str | None = None
) -> RecordingResult | CaptureResult:
    """Replay ``recording`` (a capture ``NAME.jsonl.zst`` of any venue, or a legacy recording
    ``PATH/NAME``: files ``NAME.0``, ``NAME.ws.*``, ...) into bronze with a writer of its own
    (role ``replay``); give up after ``timeout`` seconds.

    A cryptofeed 3 pcap capture (``FeedHandler(record=...)``) is replayed by
    :func:`~crypto_lakehouse.jobs.ingest_capture` instead (``exchange``: only that one of its
    exchanges); ``exchange`` means nothing for the others, which hold one exchange each."""
    if is_pcap_capture(recording):
        return ingest_capture(settings, capture=recording, exchange=exchange)
    if exchange is not None:
        raise InvalidArgument(f"exchange= picks an exchange of a pcap capture; {recording} holds one exchange")
    rec = load_any_recording(recording)  # a missing recording fails before the writer starts
    writer = BronzeWriter.from_settings(settings, role="replay")
    return RecordingResult(**asyncio.run(replay_into(rec, writer, timeout=timeout)))
