"""Jobs that write bronze: ``stream`` (exchanges through cryptofeed) and ``archive_import``
(Binance public-data archives)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from rich.console import Console

from crypto_lakehouse.config import Settings
from crypto_lakehouse.errors import LakehouseError
from crypto_lakehouse.ingest.archive import (
    DEFAULT_BASE_URL,
    ImportResult,
    archive_files,
    import_archives,
    import_archives_fanned,
)
from crypto_lakehouse.ingest.progress import live_progress
from crypto_lakehouse.ingest.stream import stream_targets, stream_to_bronze
from crypto_lakehouse.ingest.writer import BronzeWriter
from crypto_lakehouse.jobs._fanout import Runner, runner_from_settings
from crypto_lakehouse.jobs._signals import run_until_signal
from crypto_lakehouse.storage import Catalog

__all__ = ["DEFAULT_ARCHIVE_CACHE", "StreamResult", "archive_import", "stream"]

DEFAULT_ARCHIVE_CACHE = "./lakehouse_archive_cache"


@dataclass(frozen=True, slots=True)
class StreamResult:
    """What a ``stream`` run committed: per bronze table, the writer's counters."""

    writer_id: str
    root: str
    tables: dict[str, dict[str, int]]


def _list(values: Sequence[str] | None) -> list[str] | None:
    return None if values is None else list(values)


def stream(
    settings: Settings,
    *,
    exchanges: Sequence[str] | None = None,
    symbols: Sequence[str] | None = None,
    channels: Sequence[str] | None = None,
    endpoints: Sequence[str] | None = None,
    rest_endpoint: str | None = None,
    ca_file: str | Path | None = None,
    duration_s: float | None = None,
    progress: Console | None = None,
) -> StreamResult:
    """Stream ``exchanges`` (default: ``settings.stream``) through cryptofeed into the bronze
    tables until SIGINT/SIGTERM or ``duration_s`` seconds; every buffer is flushed before it
    returns. ``endpoints``, ``rest_endpoint`` and ``ca_file`` are as in
    :func:`crypto_lakehouse.ingest.stream.stream_targets`; ``progress`` draws a live table of the
    writer's counters on that console."""
    targets = stream_targets(
        settings,
        exchanges=_list(exchanges),
        symbols=_list(symbols),
        channels=_list(channels),
        endpoints=_list(endpoints),
        rest_endpoint=rest_endpoint,
        ca_file=str(ca_file) if ca_file else None,
    )
    writer = BronzeWriter.from_settings(settings)
    title = f"bronze <- {', '.join(t.exchange for t in targets)}"

    async def run(stop: asyncio.Event) -> None:
        if duration_s is not None:
            asyncio.get_running_loop().call_later(duration_s, stop.set)
        view = None
        if progress is not None:
            view = asyncio.create_task(live_progress(writer, stop, console=progress, title=title))
        await stream_to_bronze(targets, writer, stop=stop, live_port=settings.writer.live_port)
        if view is not None:
            await view

    run_until_signal(run)
    return StreamResult(writer_id=writer.writer_id, root=settings.root, tables=writer.summary())


def _day(value: date | str) -> date:
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise LakehouseError(f"archive days are YYYY-MM-DD: {exc}") from None


def archive_import(
    settings: Settings,
    *,
    market: str,
    kind: str,
    symbols: Sequence[str],
    start: date | str,
    end: date | str,
    base_url: str = DEFAULT_BASE_URL,
    workers: int = 4,
    cache_dir: str | Path = DEFAULT_ARCHIVE_CACHE,
    progress: bool = False,
    runner: Runner | None = None,
) -> ImportResult:
    """Import the ``market``/``kind`` archives of ``symbols`` for the days ``start`` to ``end``
    (inclusive; ``YYYY-MM-DD`` text or dates) into bronze: checksum-verified, one commit per
    file, files already imported with the same checksum skipped. A failed file is reported in
    the result and never stops the others.

    ``runner`` (default: ``scale.runner``'s): where each file is downloaded, verified, parsed and
    written, the files imported for the first time then committed once per bronze table
    (:func:`crypto_lakehouse.ingest.archive.import_archives_fanned`; no ``workers`` or
    ``progress`` then); with none, in this process."""
    files = archive_files(market=market, kind=kind, symbols=list(symbols), start=_day(start), end=_day(end))
    catalog = Catalog.from_settings(settings)
    with runner_from_settings(settings.scale) if runner is None else nullcontext(runner) as fanout:
        if fanout is not None:
            return import_archives_fanned(catalog, files, fanout.map, base_url=base_url, cache_dir=cache_dir)
    return import_archives(
        catalog,
        files,
        base_url=base_url,
        cache_dir=cache_dir,
        workers=workers,
        progress=progress,
    )
