"""``GET /query/stream``: the ticks of bronze tables as they arrive, for server-sent events.

A stream first catches up from Delta and the writers' live buffers since a time
(:meth:`Ticks.catch_up`, one ``Lakehouse.scan(..., live=True)`` per table), then polls
(:meth:`Ticks.poll`): each running writer's live buffer (rows received, not committed yet),
then the rows of the Delta commits since the version it last read. Asking the writers first
and Delta second leaves no gap at the seam (a row a writer had before the poll is in its live
answer or, if its batch committed meanwhile, in a commit the poll reads; ``Lakehouse.scan``
does the same); a row seen twice (live, then committed) is sent once, by the table's natural
key (:mod:`crypto_lakehouse.schemas`).

Each event's id is ``<receipt_us>.<key digest>``: events are sent in that order within each
poll, so a client resuming with ``Last-Event-ID`` gets the rows after it (exact for one writer;
a writer answering late can hold rows received before the last one sent).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl

import crypto_lakehouse.service._query as _query
from crypto_lakehouse.config import Settings
from crypto_lakehouse.errors import InvalidArgument
from crypto_lakehouse.query import Lakehouse
from crypto_lakehouse.schemas import BRONZE, TableName, table_name, table_spec
from crypto_lakehouse.storage.frames import to_frame
from crypto_lakehouse.storage.live import fetch_live
from crypto_lakehouse.storage.state import spool_dir

__all__ = ["MAX_STREAMS", "STREAMABLE", "Cursor", "Event", "Ticks", "parse_cursor", "sse", "stream_tables"]

LOG = logging.getLogger(__name__)

STREAMABLE: tuple[str, ...] = tuple(name for name, spec in BRONZE.items() if spec.key)
"""The tables a stream can carry: the writer-buffered bronze tables with a natural key."""

MAX_STREAMS = 32  # streams open at once; more are refused with 429
RESUME_LOOKBACK = timedelta(minutes=5)  # a resumed stream re-reads this much exchange time before its cursor
_DEDUPE_WINDOW_US = 10 * 60 * 1_000_000  # keys sent are remembered for rows received this recently
_HIDDEN_COLUMNS = ("batch_id",)  # -1 while buffered, the commit's id once committed: not part of a tick
_FORGET_AT = 100_000  # keys remembered before the old ones are dropped
_LIVE_TIMEOUT_S = 2.0


@dataclass(frozen=True, order=True)
class Cursor:
    """Where an event stands in a stream: its row's receipt time (us) and key digest."""

    receipt_us: int
    digest: str

    def __str__(self) -> str:
        return f"{self.receipt_us}.{self.digest}"

    @property
    def received(self) -> datetime:
        return datetime.fromtimestamp(self.receipt_us / 1e6, UTC)


@dataclass(frozen=True)
class Event:
    """One row of ``table`` to send, at ``cursor``."""

    cursor: Cursor
    table: str
    row: dict[str, Any]


def parse_cursor(text: str) -> Cursor:
    """A ``Last-Event-ID`` as sent (``<receipt_us>.<digest>``); anything else is an error."""
    receipt, _, digest = text.strip().partition(".")
    if not receipt.isdigit() or not digest or not all(c in "0123456789abcdef" for c in digest):
        raise InvalidArgument(f"Last-Event-ID {text[:60]!r} is not an event id of this stream (<receipt_us>.<digest>)")
    return Cursor(int(receipt), digest)


def stream_tables(names: list[str]) -> list[TableName]:
    """``names`` (``bronze.trades`` or ``trades``) as streamable tables; others are an error."""
    out: list[TableName] = []
    for name in names:
        full = name if "." in name else f"bronze.{name}"
        if full not in STREAMABLE:
            raise InvalidArgument(f"cannot stream {name!r}: the stream carries {', '.join(STREAMABLE)}")
        out.append(table_name(full))
    return list(dict.fromkeys(out))


def sse(events: list[Event]) -> str:
    """``events`` as server-sent events: ``id:`` the cursor, ``data:`` the row as JSON with its table."""
    return "".join(
        f"id: {e.cursor}\ndata: {json.dumps({'table': e.table, **e.row}, default=_json_value)}\n\n" for e in events
    )


def _json_value(value: object) -> str:
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON")


class Ticks:
    """The rows of ``tables`` a stream sends: :meth:`catch_up` once, then :meth:`poll` again and
    again, each returning only rows not sent yet. Synchronous (run it in a thread); one per
    stream (it owns its ``Lakehouse``)."""

    def __init__(
        self,
        settings: Settings,
        *,
        tables: list[TableName],
        exchange: str | None,
        symbols: list[str] | None,
        since: datetime,
        after: Cursor | None = None,
        max_rows: int,
    ) -> None:
        self.lakehouse = Lakehouse(settings.root, config=settings)
        self.spool: str | Path = settings.writer.spool_dir or spool_dir(self.lakehouse.catalog.root)
        self.tables = tables
        self.exchange = exchange.strip().upper() if exchange else None
        self.symbols = [s.strip().upper() for s in symbols] if symbols else None
        self.since = since if after is None else max(since, after.received - RESUME_LOOKBACK)
        self.after = after
        self.max_rows = max_rows
        self.versions: dict[str, int | None] = {}  # the Delta version each table was read up to
        self._seen: dict[tuple[Any, ...], int] = {}  # (table, *key) -> receipt_us of the rows sent
        self._newest = 0
        self._forget_at = _FORGET_AT

    def catch_up(self) -> list[Event]:
        """Every row since ``since`` (Delta and the live buffers; after ``after`` when resuming),
        in cursor order. Past ``max_rows`` rows: 413, narrow the stream."""
        frames: list[tuple[str, pl.DataFrame]] = []
        for table in self.tables:
            self.versions[table] = self.lakehouse.version(table)  # before the read: the polls read on from it
            df = self.lakehouse.scan(
                table, start=self.since, exchange=self.exchange, symbols=self.symbols, live=True
            ).collect()
            frames.append((table, df))
        total = sum(df.height for _, df in frames)
        if total > self.max_rows:
            raise _query.QueryFailed(
                413,
                f"the catch-up holds {total} rows, past api.limits.max_rows ({self.max_rows}); "
                "give a later since, fewer tables or symbols",
                reason="rows",
            )
        events = self._unsent(frames)
        return events if self.after is None else [e for e in events if e.cursor > self.after]

    def poll(self) -> list[Event]:
        """The rows that arrived since the last call: live buffers first, then the Delta commits
        since the version last read (see the module's docstring), less the rows sent already."""
        frames: list[tuple[str, pl.DataFrame]] = []
        versions = dict(self.versions)
        for table in self.tables:
            frames += [(table, self._selected(to_frame(t), table)) for t in self._live(table)]
            latest, before = self.lakehouse.version(table), versions[table]
            if latest is not None and latest != before:
                catalog = self.lakehouse.catalog
                files = catalog.appended_files(table, after=-1 if before is None else before, upto=latest)
                if files:
                    frames.append((table, self._selected(to_frame(catalog.read_files(table, files)), table)))
                versions[table] = latest
        self.versions = versions  # only once every table was read: a failed poll is repeated whole
        return self._unsent(frames)

    def _live(self, table: str) -> list[Any]:
        return fetch_live(self.spool, table, timeout=_LIVE_TIMEOUT_S)

    def _selected(self, df: pl.DataFrame, table: str) -> pl.DataFrame:
        """The rows of ``df`` the stream asked for (what ``Lakehouse.scan`` selects)."""
        names = table_spec(table).schema.names
        if self.exchange is not None and "exchange" in names:
            df = df.filter(pl.col("exchange") == self.exchange)
        if self.symbols is not None and "symbol" in names:
            df = df.filter(pl.col("symbol").is_in(self.symbols))
        return df.filter(pl.col("ts") >= self.since)

    def _unsent(self, frames: list[tuple[str, pl.DataFrame]]) -> list[Event]:
        """The rows of ``frames`` whose key was not sent yet, as events in cursor order; their
        keys are remembered (for ``_DEDUPE_WINDOW_US`` of receipt time)."""
        events: list[Event] = []
        for table, df in frames:
            if df.is_empty():
                continue
            key = list(table_spec(table).key)
            receipts = df.get_column("receipt_ts").dt.epoch("us").to_list()
            rows = df.drop([c for c in _HIDDEN_COLUMNS if c in df.columns]).to_dicts()
            for values, receipt, row in zip(df.select(key).rows(), receipts, rows, strict=True):
                k = (table, *values)
                if k in self._seen:
                    continue
                self._seen[k] = receipt
                digest = hashlib.blake2b(repr(k).encode(), digest_size=6).hexdigest()
                events.append(Event(Cursor(receipt, digest), table, row))
                self._newest = max(self._newest, receipt)
        events.sort(key=lambda e: e.cursor)
        self._forget()
        return events

    def _forget(self) -> None:
        """Drop the keys of rows received long before the newest (they cannot come again: a
        writer commits its buffer within seconds) once there are many."""
        if len(self._seen) < self._forget_at:
            return
        horizon = self._newest - _DEDUPE_WINDOW_US
        self._seen = {k: r for k, r in self._seen.items() if r >= horizon}
        self._forget_at = max(_FORGET_AT, 2 * len(self._seen))
