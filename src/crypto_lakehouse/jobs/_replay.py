"""The ``ingest_recording`` job: a recorded session replayed into bronze (through the loopback
exchange and the real cryptofeed handler)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from crypto_lakehouse.config import Settings
from crypto_lakehouse.ingest.writer import BronzeWriter
from crypto_lakehouse.loopback import load_recording
from crypto_lakehouse.loopback.replay import ingest_recording as replay_into

__all__ = ["RecordingResult", "ingest_recording"]


@dataclass(frozen=True, slots=True)
class RecordingResult:
    """What a replay wrote: frames sent by the loopback exchange, rows committed per table."""

    recording: str
    exchange: str
    frames: int
    rows: dict[str, int]
    root: str


def ingest_recording(settings: Settings, *, recording: str | Path, timeout: float = 600) -> RecordingResult:
    """Replay ``recording`` (``PATH/NAME``: files ``NAME.0``, ``NAME.ws.*``, ...) into bronze with
    a writer of its own (role ``replay``); give up after ``timeout`` seconds."""
    rec = load_recording(recording)  # a missing recording fails before the writer starts
    writer = BronzeWriter.from_settings(settings, role="replay")
    return RecordingResult(**asyncio.run(replay_into(rec, writer, timeout=timeout)))
