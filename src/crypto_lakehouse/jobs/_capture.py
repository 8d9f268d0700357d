"""The ``ingest_capture`` job: a cryptofeed 3.0.1 capture (``FeedHandler(record=...)``, pcap)
replayed into bronze, exactly once per capture."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from crypto_lakehouse.config import Settings
from crypto_lakehouse.ingest.capture import capture_files, capture_writer_id
from crypto_lakehouse.ingest.capture import ingest_capture as replay_capture
from crypto_lakehouse.ingest.writer import BronzeWriter

__all__ = ["CaptureResult", "ingest_capture"]


@dataclass(frozen=True, slots=True)
class CaptureResult:
    """What a capture's replay wrote (see :class:`~crypto_lakehouse.ingest.capture.CaptureIngested`)."""

    capture: str
    files: list[str]
    writer_id: str
    exchanges: list[str]
    frames: int
    callbacks: dict[str, int]
    skipped: dict[str, int]
    rows: dict[str, int]
    ignored_channels: list[str]
    root: str


def ingest_capture(settings: Settings, *, capture: str | Path, exchange: str | None = None) -> CaptureResult:
    """Replay the cryptofeed capture ``capture`` (its first file; the ``.meta.json`` cryptofeed
    wrote beside it must be there) into bronze: every exchange it recorded, or ``exchange``.

    The writer takes ``settings.writer``'s buffering, retries and spool, with the capture's own
    id (``capture:`` + its sha256) instead of ``writer.id``: a capture already ingested adds
    nothing, an interrupted one adds the rest."""
    files = capture_files(capture)  # a missing capture fails before the writer is made
    wid = capture_writer_id(files)
    own = settings.model_copy(update={"writer": settings.writer.model_copy(update={"id": wid})})
    writer = BronzeWriter.from_settings(own)
    return CaptureResult(**asyncio.run(replay_capture(files[0], writer, exchange=exchange)))
