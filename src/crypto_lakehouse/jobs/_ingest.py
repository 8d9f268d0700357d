"""Jobs that write bronze: ``stream`` (exchanges through cryptofeed) and ``archive_import``
(Binance public-data archives)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
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
from crypto_lakehouse.ingest.shards import Shard
from crypto_lakehouse.ingest.stream import FeedTarget, shard_targets, stream_targets, stream_to_bronze
from crypto_lakehouse.ingest.writer import BronzeWriter
from crypto_lakehouse.jobs._fanout import Runner, runner_from_settings
from crypto_lakehouse.jobs._signals import run_until_signal
from crypto_lakehouse.storage import Catalog

__all__ = ["DEFAULT_ARCHIVE_CACHE", "StreamResult", "archive_import", "stream"]

DEFAULT_ARCHIVE_CACHE = "./lakehouse_archive_cache"

LOG = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class StreamResult:
    """What a ``stream`` run committed: per bronze table, the writer's counters; the shard it
    ran as (``I/N``, None: not sharded) and the ``EXCHANGE:SYMBOL`` pairs it subscribed to
    (empty: a shard with nothing to stream, which returns at once)."""

    writer_id: str
    root: str
    tables: dict[str, dict[str, int]]
    shard: str | None = None
    subscribed: list[str] = field(default_factory=list)


def _pairs(targets: list[FeedTarget]) -> list[str]:
    """``EXCHANGE:SYMBOL`` of every pair ``targets`` stream, in order, once each."""
    pairs = (
        f"{t.exchange}:{s}"
        for t in targets
        for s in [*t.symbols, *(x for v in (t.subscription or {}).values() for x in v)]
    )
    return list(dict.fromkeys(pairs))


def _list(values: Sequence[str] | None) -> list[str] | None:
    return None if values is None else list(values)


def stream(
    settings: Settings,
    *,
    exchanges: Sequence[str] | None = None,
    symbols: Sequence[str] | None = None,
    channels: Sequence[str] | None = None,
    shard: str | None = None,
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
    writer's counters on that console.

    ``shard`` (``I/N``, default ``settings.stream.shard``): stream only the (exchange, symbol)
    pairs of shard I of N (:mod:`crypto_lakehouse.ingest.shards`) under the writer id
    ``<writer.id or host>-shard-I-of-N``. A shard that gets no pair logs so and returns at once
    (``subscribed`` empty), nothing written."""
    spec = shard or settings.stream.shard
    part = Shard.parse(spec) if spec else None  # (before any endpoint is asked: a bad value fails at once)
    targets = stream_targets(
        settings,
        exchanges=_list(exchanges),
        symbols=_list(symbols),
        channels=_list(channels),
        endpoints=_list(endpoints),
        rest_endpoint=rest_endpoint,
        ca_file=str(ca_file) if ca_file else None,
    )
    every = _pairs(targets)
    if part is not None:
        targets = shard_targets(targets, part)
    writer = BronzeWriter.from_settings(settings, shard=part.name if part else None)
    result = StreamResult(
        writer_id=writer.writer_id,
        root=settings.root,
        tables={},
        shard=str(part) if part else None,
        subscribed=_pairs(targets),
    )
    if part is not None and not targets:
        LOG.warning("shard %s has nothing to stream: none of the %d pairs hashes to it", part, len(every))
        return result
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
    return dataclasses.replace(result, tables=writer.summary())


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
