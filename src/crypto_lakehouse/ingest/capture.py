"""cryptofeed 3.0.1's own captures -> bronze: ``FeedHandler(record=...)`` pcap files replayed
through ``cryptofeed.capture.playback_async`` with the lakehouse's callbacks.

A capture is a pcap (often ``.pcap.zst``) of every websocket frame and REST exchange the
recording process's feeds saw, with a ``<name>.meta.json`` beside it (written by cryptofeed:
the feeds' exchange, symbols, channels and options, the files of a rotated capture, a symbol
snapshot). The replay runs the exchange's unmodified cryptofeed handler over the recorded frames,
so bronze gets the rows live streaming would have written, with the recorded receipt times.

* **Which feed.** The exchanges come from the capture (every one, or ``exchange=``); each
  exchange's subscription and options from the metadata. The feed class is cryptofeed's, pointed
  at the recorded endpoints when they are not the exchange's own (a capture of the loopback
  exchange), because playback matches connections by address and REST responses by URL.
* **Frames cryptofeed cannot parse** go to ``bronze.dead_letter`` verbatim, as in streaming
  (:func:`~.stream.writer_feed`), as do frames it only logs and drops.
* **Exactly once.** The writer id is the capture's identity, ``capture:`` + 16 hex digits of
  a sha256 of its files' contents (:func:`capture_writer_id`). A writer's batch ids continue
  from its last commit, so that alone would append a re-run again; the replay is deterministic
  (frames in recorded order, one at a time, recorded receipt times), so each table's rows come
  in the same order every time, and the batches of a writer commit in order: what an earlier run
  committed is a prefix of each table's rows. A run counts the rows bronze holds for the id (after
  re-appending its spool) and skips that many of each table: a finished capture adds nothing, an
  interrupted one adds the rest. Rows that did not fit their table's schema (re-routed to the dead
  letter with the table as channel) count for their table. The prefix holds for one cryptofeed
  version: a release that parses frames differently may add or drop rows on a re-run.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypedDict
from urllib.parse import urlsplit

import polars as pl
from cryptofeed.capture.pcap import Capture, read_capture
from cryptofeed.capture.playback import playback_async
from cryptofeed.capture.recorder import metadata_path
from cryptofeed.feed import Feed

from crypto_lakehouse.errors import InvalidArgument, LakehouseError
from crypto_lakehouse.ingest.rows import LEVEL_COLUMNS, Row, RowPutter
from crypto_lakehouse.ingest.stream import CHANNELS, Callback, _UnexpectedMessages, bronze_callbacks, writer_feed
from crypto_lakehouse.ingest.writer import BronzeWriter
from crypto_lakehouse.schemas import BRONZE
from crypto_lakehouse.venues.clients import feed_class
from crypto_lakehouse.venues.registry import venue

__all__ = ["CaptureIngested", "capture_files", "capture_writer_id", "ingest_capture", "is_pcap_capture"]

LOG = logging.getLogger(__name__)

PCAP_MAGIC = (0xA1B23C4D).to_bytes(4, "little")  # nanosecond pcap, the only kind cryptofeed writes
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_YIELD_ROWS = 1_000  # rows between yields to the writer's flusher at most (a replay never waits otherwise)


class CaptureIngested(TypedDict):
    """:func:`ingest_capture`'s summary."""

    capture: str  # the first file
    files: list[str]
    writer_id: str  # the capture's identity (capture_writer_id)
    exchanges: list[str]
    frames: int  # frames replayed through cryptofeed
    callbacks: dict[str, int]  # cryptofeed channel -> callbacks during the replay
    skipped: dict[str, int]  # bronze table -> rows an earlier run of this capture had committed
    rows: dict[str, int]  # bronze table -> rows committed by this run
    ignored_channels: list[str]  # recorded channels bronze has no table for
    root: str


def is_pcap_capture(path: str | Path) -> bool:
    """Whether ``path`` is a cryptofeed pcap capture (by its magic bytes; zstd-compressed ones
    by the pcap magic inside)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
        if head == ZSTD_MAGIC:
            from cryptofeed.capture._zstd import open_read

            with open_read(str(path)) as zf:
                head = zf.read(4)
    except Exception:  # noqa: BLE001 - unreadable, or zstd that does not decompress (each backend has its error)
        return False
    return head == PCAP_MAGIC


def capture_files(path: str | Path) -> list[Path]:
    """The files of the capture ``path`` names, in order: ``path`` itself, or every file its
    metadata lists when cryptofeed rotated it (``--rotate``: ``cap.pcap.zst``, ``cap.1.pcap.zst``)."""
    p = Path(path)
    if not p.is_file():
        raise LakehouseError(f"{p}: no such capture file")
    meta = _metadata(p)
    names = meta.get("files") if meta else None
    if not names or p.name not in names:
        return [p]
    files = [p.parent / n for n in names]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise LakehouseError(f"{p}: the capture's files {', '.join(missing)} are missing (its metadata lists them)")
    return files


def capture_writer_id(files: Sequence[str | Path]) -> str:
    """The capture's identity and writer id: ``capture:`` + 16 hex digits of a sha256 over the
    sha256 of each of its files' bytes (as stored, in order), so the same capture gets the same
    id wherever it lies."""
    digest = hashlib.sha256()
    for f in files:
        try:
            with open(f, "rb") as fh:
                digest.update(hashlib.file_digest(fh, "sha256").digest())
        except OSError as exc:
            raise LakehouseError(f"{f}: cannot read the capture ({exc.strerror or exc})") from None
    return f"capture:{digest.hexdigest()[:16]}"


async def ingest_capture(
    path: str | Path, writer: BronzeWriter, *, exchange: str | None = None, stall_timeout: float = 30.0
) -> CaptureIngested:
    """Replay the cryptofeed capture ``path`` into bronze through ``writer``, exactly once (see
    the module doc): ``writer.writer_id`` must be the capture's :func:`capture_writer_id`.

    ``exchange`` replays only that exchange's streams (default: every exchange recorded).
    ``stall_timeout`` is cryptofeed's: seconds a stream may hold back the shared timeline.
    Starts the writer, and flushes it before returning."""
    files = capture_files(path)
    identity = await asyncio.to_thread(capture_writer_id, files)
    if writer.writer_id != identity:
        raise InvalidArgument(
            f"{files[0]}: write a capture with the writer id {identity!r} (capture_writer_id), "
            f"not {writer.writer_id!r}: exactly-once depends on it"
        )
    meta = _metadata(files[0])
    if meta is None:
        raise LakehouseError(
            f"{files[0]}: no {Path(metadata_path(str(files[0]))).name} beside it; cryptofeed writes it next to "
            "the capture and the replay needs it (the feeds' subscriptions): copy it along"
        )
    capture = await asyncio.to_thread(_read, files)
    exchanges = _exchanges(capture, files[0], exchange)
    await writer.start()
    _refuse_spooled(writer)
    skip = await asyncio.to_thread(_committed_rows, writer)
    view = _Resume(writer, skip)
    handler = _UnexpectedMessages([view])
    cf_logger = logging.getLogger("cryptofeed.exchanges")
    cf_logger.addHandler(handler)
    writer_stop = asyncio.Event()
    flusher = asyncio.create_task(writer.run(writer_stop))
    frames = 0
    callbacks: dict[str, int] = {}
    ignored: set[str] = set()
    try:
        for ex in exchanges:
            feed, skipped_channels = _feed(capture, _feed_entry(meta, ex, files[0]), view)
            ignored |= skipped_channels
            result = await playback_async(
                [str(f) for f in files], exchange=ex, feed=feed, on_error="raise", stall_timeout=stall_timeout
            )
            frames += result.messages_processed
            for channel, n in result.callbacks.items():
                callbacks[channel] = callbacks.get(channel, 0) + n
    finally:
        writer_stop.set()
        await flusher
        cf_logger.removeHandler(handler)
    summary = writer.summary()
    return {
        "capture": str(files[0]),
        "files": [str(f) for f in files],
        "writer_id": identity,
        "exchanges": exchanges,
        "frames": frames,
        "callbacks": callbacks,
        "skipped": {name: n for name, n in skip.items() if n},
        "rows": {name: st["rows_committed"] for name, st in summary.items()},
        "ignored_channels": sorted(ignored),
        "root": writer.catalog.root,
    }


# ---------------------------------------------------------------------------- reading the capture
def _metadata(first: Path) -> dict[str, Any] | None:
    try:
        with open(metadata_path(str(first))) as fh:
            doc = json.load(fh)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise LakehouseError(f"{metadata_path(str(first))}: unreadable capture metadata ({exc})") from None
    return doc if isinstance(doc, dict) else None


def _read(files: list[Path]) -> Capture:
    try:
        return read_capture([str(f) for f in files])
    except (OSError, ValueError, EOFError, RuntimeError) as exc:  # cryptofeed: ValueError for a bad pcap
        raise LakehouseError(f"{files[0]}: not a readable cryptofeed capture ({exc})") from None


def _exchanges(capture: Capture, first: Path, exchange: str | None) -> list[str]:
    recorded = sorted({s.exchange for s in capture.ws} | {s.exchange for s in capture.http})
    if not recorded:
        raise LakehouseError(f"{first}: the capture holds no exchange traffic")
    if exchange is None:
        return recorded
    if exchange.upper() not in recorded:
        raise InvalidArgument(f"{first}: no {exchange.upper()} in the capture; it holds {', '.join(recorded)}")
    return [exchange.upper()]


def _feed_entry(meta: dict[str, Any], exchange: str, first: Path) -> dict[str, Any]:
    entries = [e for e in meta.get("feeds", []) if isinstance(e, dict) and e.get("exchange") == exchange]
    if len(entries) != 1:
        raise LakehouseError(
            f"{first}: the capture's metadata has {len(entries)} {exchange} feeds; one per exchange can be replayed"
        )
    return entries[0]


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _recorded_base(urls: set[str], own: list[str], what: str, exchange: str) -> str | None:
    """None when every recorded URL is under one of the class's own endpoint addresses, else the
    one origin they share (the loopback exchange's): the base to point the class at."""
    if all(any(u.startswith(o) for o in own) for u in urls):
        return None
    origins = {_origin(u) for u in urls}
    if len(origins) != 1:
        raise LakehouseError(f"{exchange} was recorded from {what} endpoints {sorted(origins)}, not cryptofeed's own")
    return origins.pop()


def _endpoints(capture: Capture, exchange: str, cls: type[Feed]) -> tuple[str | None, str | None]:
    """The ``(ws_url, rest_url)`` the capture was recorded from, None where they are the class's."""
    ws = {s.address for s in capture.ws if s.exchange == exchange and s.address}
    rest = {r[2] for s in capture.http if s.exchange == exchange for r in s.requests if r[2]}
    own_ws = [a for e in cls.websocket_endpoints for a in (e.address, e.sandbox) if a]
    own_rest = [a for e in cls.rest_endpoints for a in (e.address, e.sandbox) if a]
    return _recorded_base(ws, own_ws, "websocket", exchange), _recorded_base(rest, own_rest, "REST", exchange)


def _feed(capture: Capture, entry: dict[str, Any], view: _Resume) -> tuple[Feed, set[str]]:
    """The recorded feed, rebuilt with the lakehouse's callbacks; and the recorded channels
    bronze has no table for (replayed, not stored)."""
    exchange = entry["exchange"]
    base = venue(exchange).feed
    ws_url, rest_url = _endpoints(capture, exchange, base)
    cls = writer_feed(feed_class(exchange, ws_url=ws_url, rest_url=rest_url), view)
    kwargs = {k: v for k, v in (entry.get("kwargs") or {}).items() if v is not None}
    subscription = entry.get("subscription")
    if subscription:
        kwargs["subscription"] = subscription
        channels = list(subscription)
    else:
        channels = list(entry.get("channels") or [])
        kwargs["symbols"], kwargs["channels"] = entry.get("symbols"), channels
    stored = [c for c in channels if c in CHANNELS]
    callbacks = {c: _yielding(cb, view) for c, cb in bronze_callbacks(view, stored).items()}
    return cls(callbacks=callbacks, **kwargs), set(channels) - set(stored)


def _yielding(cb: Callback, view: _Resume) -> Callback:
    """``cb``, yielding to the event loop whenever ``view`` has passed on a batch's worth of rows:
    a replay of one stream never waits on anything, so without it the writer's flusher would
    not run (and the buffers would grow) until the capture ended."""

    async def wrapped(obj: Any, receipt: float) -> None:  # Any: the channel's cryptofeed type
        await cb(obj, receipt)
        if view.added >= view.yield_rows:
            view.added = 0
            await asyncio.sleep(0)

    return wrapped


# ---------------------------------------------------------------------------- exactly once
def _refuse_spooled(writer: BronzeWriter) -> None:
    """Batches still in the spool after start (storage down) are rows bronze does not show yet:
    counting without them would append them twice."""
    waiting = sorted(writer.spool_dir.glob("*/*.arrow"))
    if waiting:
        raise LakehouseError(
            f"{len(waiting)} batch(es) of {writer.writer_id!r} wait in the spool {writer.spool_dir} and could not be "
            "committed: run this again once storage accepts commits"
        )


def _committed_rows(writer: BronzeWriter) -> dict[str, int]:
    """Bronze table -> rows this writer id committed (a table it never committed to: 0, read
    from the Delta log alone). Re-routed rows count for the table they did not fit."""
    catalog, wid = writer.catalog, writer.writer_id
    counts = {name: 0 for name in BRONZE}
    for name in BRONZE:
        if catalog.transaction_version(name, wid) is None:
            continue
        mine = catalog.scan(name).filter(pl.col("writer_id") == wid)
        if name != "bronze.dead_letter":
            counts[name] += mine.select(pl.len()).collect().item()
            continue
        for channel, n in mine.group_by("channel").len().collect().iter_rows():
            counts[channel if channel in BRONZE and channel != name else name] += n
    return counts


class _Resume(BronzeWriter):
    """What the replay's callbacks and feed see of ``writer``: every row is passed on, except the
    first ``skip[table]`` of each table (an earlier run of this capture committed them).

    Only the producer side (``putter``, ``levels_putter``, ``add``, ``add_many``, ``add_repeated``,
    ``dead_letter``) is used through it, so it holds no writer state of its own: the real writer
    buffers, commits and spools."""

    def __init__(self, writer: BronzeWriter, skip: dict[str, int]):  # no BronzeWriter.__init__: a view, no state
        self._writer = writer
        self._skip = {name: n for name, n in skip.items() if n}
        self.added = 0  # rows passed on since the replay last yielded (see _yielding)
        self.yield_rows = max(1, min(writer.max_rows, _YIELD_ROWS))

    def putter(self, table: str) -> RowPutter:
        put = self._writer.putter(table)

        def skipping(**row: Any) -> None:
            if self._skip.get(table):
                self._skip[table] -= 1
                return
            put(**row)
            self.added += 1

        return skipping

    def levels_putter(self, table: str) -> RowPutter:
        put, tail = self._writer.levels_putter(table), LEVEL_COLUMNS[table]

        def skipping(n: int, **row: Any) -> None:
            skip = self._skip.get(table)
            if skip:
                self._skip[table] = max(0, skip - n)
                if skip >= n:
                    return
                row |= {column: row[column][skip:] for column in tail}
                n -= skip
            put(n, **row)
            self.added += n

        return skipping

    def add(self, table: str, row: Row) -> None:
        if self._skip.get(table):
            self._skip[table] -= 1
            return
        self._writer.add(table, row)
        self.added += 1

    def add_many(self, table: str, rows: list[Row]) -> None:
        n = self._skip.get(table)
        if n:
            self._skip[table] = max(0, n - len(rows))
            rows = rows[n:]
        self._writer.add_many(table, rows)
        self.added += len(rows)

    def add_repeated(self, table: str, head: Row, tail: Sequence[Sequence[Any]]) -> None:
        n, rows = self._skip.get(table), len(tail[0]) if tail else 0
        if n:
            self._skip[table] = max(0, n - rows)
            if n >= rows:
                return
            tail, rows = [column[n:] for column in tail], rows - n
        self._writer.add_repeated(table, head, tail)
        self.added += rows

    def dead_letter(self, *, exchange: str | None, channel: str | None, error: str, payload: object) -> None:
        if self._skip.get("bronze.dead_letter"):
            self._skip["bronze.dead_letter"] -= 1
            return
        self._writer.dead_letter(exchange=exchange, channel=channel, error=error, payload=payload)
        self.added += 1
