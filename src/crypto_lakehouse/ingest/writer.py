"""The bronze streaming writer: cryptofeed callbacks -> per-table buffers -> ACID Delta appends.

* Callbacks put each row straight into one list per column (:meth:`BronzeWriter.putter`:
  every column by keyword, no tuple built or kept for the garbage collector to walk; prices and
  sizes as cryptofeed's ``Decimal``, written out as text at conversion). Every
  :data:`CHUNK_ROWS` rows the lists are gathered into Arrow arrays on the event loop
  (:func:`.rows.gather`: a buffered trade takes 132 bytes instead of 269 as Python objects, and a
  commit thread never walks Python values); a flusher assembles a table's runs into one Arrow
  table and appends it as **one commit per table** when it holds ``max_rows`` rows or its
  oldest row is ``max_age`` old.
* Every commit carries a Delta application transaction ``(writer_id, batch_id)``; ``batch_id``
  increases per table, so a batch is committed at most once (an ambiguous failure is checked
  before any retry). Retries wait an exponential, jittered backoff.
* **Adaptive batch age** (:mod:`.pacing`): with ``max_age_limit_s`` above ``max_age_s``, each
  table's batch age (and its row limit, in proportion) grows when its commits are slow for
  their age or an attempt fails, and shrinks back when they are quick, so many writers
  appending to one table stay inside the commits a second it takes (docs/scaling.md).
* A commit that still fails after its retries goes to a local **spool** (Arrow IPC, fsynced)
  and the table stays in spool mode (later batches queue behind it, order kept) until the spool
  drains, which is tried periodically and at every start. A spooled batch whose transaction is
  already in the table is dropped, not appended again: exactly once.
* Frames that cannot be normalised land in ``bronze.dead_letter`` verbatim with the error.
  So do single rows that do not fit their table's schema: only those rows, found by bisecting
  the batch on the (rare) failure path; the rest of the batch commits in its table.
* :meth:`BronzeWriter.flush` (the stop path, e.g. SIGTERM) loops until every buffer is empty,
  so rows re-routed to the dead letter while flushing are committed before it returns.
* **Auto-compaction**: every ``compact_every`` commits to a table, the writer merges that
  table's small files (up to 16 MiB each, in the commit thread, so the table's next batch just
  grows meanwhile). A stream commits a file per partition per second; without it a day is tens
  of thousands of files until the scheduled compaction runs. A running compaction of the table,
  a conflict or a failure only skips that round: no row depends on it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import random
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc
from deltalake.exceptions import CommitFailedError

from crypto_lakehouse.errors import LakehouseError
from crypto_lakehouse.ingest.pacing import BatchAge, jittered_backoff
from crypto_lakehouse.ingest.rows import (
    DECIMAL_TEXT,
    LEVEL_COLUMNS,
    ColumnBuffer,
    Gathered,
    Row,
    RowPutter,
    assemble,
    columns_to_arrow,
    convert_column,
    gather,
    row_builder,
    rows_to_arrow,
)
from crypto_lakehouse.maintenance import CompactionBusy, compact
from crypto_lakehouse.schemas import BRONZE, ROW_LAYOUT
from crypto_lakehouse.storage import Catalog, CommitError
from crypto_lakehouse.storage.state import spool_dir as default_spool_dir
from crypto_lakehouse.storage.state import state_dir

if TYPE_CHECKING:
    from crypto_lakehouse.config import Settings

__all__ = ["BronzeWriter", "TableStats", "default_writer_id"]

LOG = logging.getLogger(__name__)

AUTO_COMPACT_TARGET = 16 * 1024 * 1024  # bytes; scheduled compaction merges these further

_dead_letter_row = row_builder("bronze.dead_letter")

_HELD_LOCKS: dict[Path, TextIO] = {}  # writer-id locks this process holds (released when it exits)


def default_writer_id() -> str:
    """Stable across restarts of the same deployment (the spool and exactly-once rely on it)."""
    return socket.gethostname()


@dataclass(slots=True)
class TableStats:
    rows_buffered: int = 0
    rows_committed: int = 0
    commits: int = 0
    rows_spooled: int = 0
    batches_spooled: int = 0
    spool_replayed: int = 0
    spool_skipped: int = 0
    commit_seconds: list[float] = field(default_factory=list)
    retries: int = 0  # append attempts retried (each after a failed attempt)
    attempts_failed: int = 0  # append attempts that raised: a conflict delta-rs gave up on, or storage
    conflicts: int = 0  # of those, concurrent commits delta-rs could not get past (CommitFailedError)
    batch_age_s: float = 0.0  # the table's batch age now (adaptive: see pacing.BatchAge)
    compactions: int = 0
    compact_seconds: list[float] = field(default_factory=list)


CHUNK_ROWS = 4096
"""A buffer's rows are read into Arrow (:func:`.rows.gather`) on the event loop every this many
rows, while their Python objects are fresh in the CPU's caches, so a commit thread holds no
Python values and barely needs the GIL (docs/bronze.md, "Where a message's time goes")."""


class _Run:
    """Rows of a batch in order: gathered into Arrow, or (when some value did not convert) kept
    as Python columns, whose bad rows the commit sets aside for the dead letter."""

    __slots__ = ("columns", "gathered")

    def __init__(self, *, gathered: Gathered | None = None, columns: list[list[Any]] | None = None):
        self.gathered = gathered
        self.columns = columns

    @property
    def rows(self) -> int:
        return len(self.gathered[0]) if self.gathered is not None else len(self.columns[0]) if self.columns else 0


class _Buffer:
    """One table's rows not yet handed to a commit: the runs gathered so far, then the rows
    still in the :class:`.rows.ColumnBuffer` column lists the putters append to."""

    __slots__ = ("due", "first_at", "held", "limit", "rows", "runs", "table", "wake")

    def __init__(self, table: str, *, limit: int, due: float, wake: Callable[[], None]) -> None:
        self.table = table
        self.rows = ColumnBuffer(table, on_first=self.started, on_full=self.gathered, limit=min(CHUNK_ROWS, limit))
        self.runs: list[_Run] = []
        self.held = 0  # rows in runs
        self.limit = limit  # rows: flush at this many (max_rows, scaled with the batch age)
        self.wake = wake
        self.first_at = 0.0
        self.due = due  # seconds: flush when the oldest row is this old (the batch age, jittered)

    def __len__(self) -> int:
        return self.held + len(self.rows)

    def set_limit(self, rows: int) -> None:
        self.limit = rows
        self.rows.limit = min(CHUNK_ROWS, rows)

    def started(self) -> None:
        """A row went into empty column lists: the batch's clock starts if it holds no run yet."""
        if not self.held:
            self.first_at = time.monotonic()

    def gathered(self) -> None:
        """The column lists are full (a chunk, or the limit): gather them into a run, and wake
        the flusher once the buffer holds ``limit`` rows."""
        self._gather()
        if self.held >= self.limit:
            self.wake()

    def _gather(self) -> None:
        n = len(self.rows)
        if not n:
            return
        try:  # (from the lists themselves: no copy unless some value does not convert)
            run = _Run(gathered=gather(self.table, self.rows.columns))
            for column in self.rows.columns:
                column.clear()
        except _CONVERT_ERRORS:
            run = _Run(columns=self.rows.take())
        self.runs.append(run)
        self.held += n

    def take(self) -> list[_Run]:
        """Every row held, as runs (the column lists gathered first), leaving the buffer empty."""
        self._gather()
        runs, self.runs, self.held = self.runs, [], 0
        return runs

    def view(self) -> list[_Run]:
        """Every row held, as runs, leaving the buffer as it is (the live view)."""
        tail = [_Run(columns=[list(c) for c in self.rows.columns])] if len(self.rows) else []
        return [*self.runs, *tail]


_CONVERT_ERRORS = (pa.ArrowException, ValueError, TypeError, OverflowError)


def _to_arrow_isolating(
    table: str, columns: list[list[Any]], *, writer_id: str, batch_id: int
) -> tuple[pa.Table | None, list[tuple[object, Exception]]]:
    """:func:`.rows.columns_to_arrow` of a buffer's columns, setting aside the rows that do not
    convert: ``(table of the rows that fit, or None when none does; [(bad row, its error)])``.

    The whole batch is converted at once first, so a clean batch costs nothing extra. Only when
    that fails (the rows are then taken as tuples): each column is converted on its own (a
    column that fails is checked value by value; nulls in a non-nullable column are found
    vectorised), the rows found bad are set aside, and the rest is converted again; should
    that still fail (a failure no column check explains), the rest is bisected down to the
    single rows that do not convert.
    """
    try:
        named = dict(zip(ROW_LAYOUT[table], columns, strict=True))
        return columns_to_arrow(table, named, writer_id=writer_id, batch_id=batch_id), []
    except _CONVERT_ERRORS:
        pass
    rows = list(zip(*columns, strict=True))
    found = _bad_rows(table, rows)
    rest = [row for i, row in enumerate(rows) if i not in found] if found else rows
    bad: list[tuple[object, Exception]] = [(rows[i], exc) for i, exc in sorted(found.items())]
    good: list[pa.Table] = []
    stack = [rest] if rest else []
    while stack:  # bisection: a safety net, normally one conversion of the rest
        part = stack.pop()
        try:
            good.append(rows_to_arrow(table, part, writer_id=writer_id, batch_id=batch_id))
        except _CONVERT_ERRORS as exc:
            if len(part) == 1:
                bad.append((part[0], exc))
            else:
                half = len(part) // 2
                stack += [part[half:], part[:half]]  # popped from the end: first half first
    return (pa.concat_tables(good) if good else None), bad


def _runs_to_arrow(
    table: str, runs: Sequence[_Run], *, writer_id: str, batch_id: int
) -> tuple[pa.Table | None, list[tuple[object, Exception]]]:
    """A batch's runs, in order, as one Arrow table in ``table``'s schema and the rows that do not
    fit it (as :func:`_to_arrow_isolating`): gathered runs are assembled (Arrow's work, no
    Python per row), runs kept as Python columns converted row-isolating."""
    tables: list[pa.Table] = []
    bad: list[tuple[object, Exception]] = []
    ready: list[Gathered] = []
    for run in runs:
        if run.gathered is not None:
            ready.append(run.gathered)
            continue
        if ready:
            tables.append(assemble(table, ready, writer_id=writer_id, batch_id=batch_id))
            ready = []
        assert run.columns is not None
        good, found = _to_arrow_isolating(table, run.columns, writer_id=writer_id, batch_id=batch_id)
        tables += [good] if good is not None else []
        bad += found
    if ready:
        tables.append(assemble(table, ready, writer_id=writer_id, batch_id=batch_id))
    if not tables:
        return None, bad
    return (tables[0] if len(tables) == 1 else pa.concat_tables(tables)), bad


# Python types a column of this Arrow type surely converts (checked without calling pyarrow, whose
# error path costs ~25 us a value here); anything else is tried with pyarrow itself.
_PLAIN: dict[pa.DataType, tuple[type, ...]] = {
    pa.string(): (str,),
    pa.float64(): (float, int),
    pa.bool_(): (bool,),
}


def _bad_rows(table: str, rows: Sequence[object]) -> dict[int, Exception]:
    """Index -> error of the rows that cannot be converted, found column by column (failure
    path only): rows of the wrong shape (a producer may hand anything), values a column cannot
    convert, nulls where the column is not nullable."""
    spec, columns = BRONZE[table], ROW_LAYOUT[table]
    width = len(columns)
    bad: dict[int, Exception] = {}
    shaped: dict[int, Row] = {}
    for i, row in enumerate(rows):
        if isinstance(row, tuple) and len(row) == width:
            shaped[i] = row
        else:
            bad[i] = ValueError(f"expected a tuple of {width} values ({', '.join(columns)}), got {row!r}")
    index = list(shaped)
    for j, name in enumerate(columns):
        f = spec.schema.field(name)
        values = [shaped[i][j] for i in index]
        decimal = name in DECIMAL_TEXT[table]
        try:
            arr = convert_column(f.type, values, decimal=decimal)
        except _CONVERT_ERRORS:
            plain = _PLAIN.get(pa.float64() if pa.types.is_timestamp(f.type) else f.type, ())  # seconds
            for k, v in enumerate(values):
                if v is None or type(v) in plain:  # converts (an out-of-range number is left to the bisection)
                    continue
                try:
                    convert_column(f.type, [v], decimal=decimal)
                except _CONVERT_ERRORS as exc:
                    bad.setdefault(index[k], exc.with_traceback(None))
            continue
        if not f.nullable and arr.null_count:
            nulls = pc.indices_nonzero(pc.is_null(arr)).to_pylist()
            for at in nulls:
                assert at is not None  # (an index array has no nulls)
                bad.setdefault(index[at], ValueError(f"null value in non-nullable column {name}"))
    return bad


def _dead_rows(name: str, bad: list[tuple[object, Exception]]) -> list[Row]:
    """``bronze.dead_letter`` rows for rows of ``name`` that do not fit its schema: the row's
    ``repr`` as payload, the table as channel. They always fit the dead letter's schema (so a
    bad dead-letter row is re-routed once, never in a loop)."""
    now = time.time()
    at = ROW_LAYOUT[name].index("exchange")
    out = []
    for row, exc in bad:
        exchange = row[at] if isinstance(row, tuple) and len(row) > at and isinstance(row[at], str) else None
        error = f"does not fit {name}: {type(exc).__name__}: {exc}"
        out.append(_dead_letter_row(received_at=now, exchange=exchange, channel=name, error=error, payload=repr(row)))
    return out


class BronzeWriter:
    """Buffers rows per bronze table and appends them as Delta commits (see module doc)."""

    def __init__(
        self,
        catalog: Catalog,
        *,
        writer_id: str | None = None,
        max_rows: int = 50_000,
        max_age_s: float = 1.0,
        max_age_limit_s: float | None = None,
        commit_duty: float = 0.25,
        retries: int = 5,
        backoff_s: float = 0.2,
        spool_dir: str | Path | None = None,
        spool_retry_s: float = 10.0,
        compact_every: int = 50,
    ):
        """``max_age_limit_s``: how far the adaptive batch age may grow (None: ``max_age_s``, a
        fixed age); ``commit_duty``: the share of a batch's age its commit may take before the
        age grows (:class:`.pacing.BatchAge`)."""
        self.catalog = catalog
        self.writer_id = writer_id or default_writer_id()
        self.max_rows = max_rows
        self.max_age_s = max_age_s
        limit = max_age_s if max_age_limit_s is None else max_age_limit_s
        self._ages = {name: BatchAge(max_age_s, limit, duty=commit_duty) for name in BRONZE}
        self.retries = retries
        self.backoff_s = backoff_s
        # None: the root's own state directory on this host (storage.state), never the working directory
        base = Path(spool_dir) if spool_dir is not None else default_spool_dir(catalog.root)
        self.spool_dir = base / self.writer_id.replace("/", "_")
        self.spool_retry_s = spool_retry_s
        self.compact_every = compact_every
        self.stats: dict[str, TableStats] = {name: TableStats() for name in BRONZE}
        self._buffers: dict[str, _Buffer] = {
            name: _Buffer(name, limit=max_rows, due=max_age_s, wake=self._wake_flush) for name in BRONZE
        }
        for name in BRONZE:
            self._pace(name)
        self._next_batch: dict[str, int] = {}
        self._inflight: dict[str, asyncio.Task[list[Row]]] = {}
        self._inflight_rows: dict[str, tuple[list[_Run], int]] = {}  # runs being committed (live view)
        self._wake = asyncio.Event()
        self._last_spool_try = 0.0
        self._spool_lock = threading.Lock()
        self._closed = False

    @classmethod
    def from_settings(cls, settings: Settings, *, role: str | None = None, shard: str | None = None) -> BronzeWriter:
        """The writer ``settings`` describe; ``role`` distinguishes the default id of writers that
        may run beside ``lakehouse stream`` on the same host (each id is one process); ``shard``
        (``shard-I-of-N``) is appended to the id, configured or default, so each shard of a
        sharded stream has its own."""
        w = settings.writer
        writer_id = w.id or (f"{default_writer_id()}-{role}" if role else None)
        if shard:
            writer_id = f"{writer_id or default_writer_id()}-{shard}"
        return cls(
            Catalog.from_settings(settings),
            writer_id=writer_id,
            max_rows=w.max_rows,
            max_age_s=w.max_age.total_seconds(),
            max_age_limit_s=w.max_age_limit.total_seconds(),
            commit_duty=w.commit_duty,
            retries=w.retries,
            backoff_s=w.retry_backoff.total_seconds(),
            spool_dir=w.spool_dir,
            compact_every=w.compact_every,
        )

    # ------------------------------------------------------------------ hot path
    def _wake_flush(self) -> None:
        self._wake.set()

    def putter(self, table: str) -> RowPutter:
        """The stream callbacks' way in: a function buffering one row of ``table`` given every
        column of its layout by keyword (:attr:`.rows.ColumnBuffer.put`: a missing or unknown
        column is a ``TypeError`` with nothing buffered), prices and sizes as text or as the
        ``Decimal`` cryptofeed parsed (:data:`.rows.DECIMAL_TEXT`). Valid for the writer's life."""
        return self._buffers[table].rows.put

    def levels_putter(self, table: str) -> RowPutter:
        """:meth:`putter` for a book update of ``table`` (bronze.book, bronze.l3_book):
        ``put(n, **columns)``, the level columns as ``n`` values each, every other column once
        (:attr:`.rows.ColumnBuffer.put_levels`)."""
        put = self._buffers[table].rows.put_levels
        if put is None:
            raise ValueError(f"{table} has no level columns; levels_putter takes {', '.join(LEVEL_COLUMNS)}")
        return put

    def column_buffer(self, table: str) -> ColumnBuffer:
        """The buffer :meth:`putter` appends to (its column lists and hooks), for the compiled
        callbacks (:mod:`.compiled`), which append to the same lists. Valid for the writer's life."""
        return self._buffers[table].rows

    def add(self, table: str, row: Row) -> None:
        """Buffer one row (a tuple in ``ROW_LAYOUT[table]`` order: see :func:`.rows.row_builder`).
        A row of another width (or no sequence) goes to the dead letter at once, as its repr."""
        buf = self._buffers[table]
        rows = buf.rows
        if not rows.columns[0]:
            buf.started()
        try:
            rows.append(row)
        except (ValueError, TypeError) as exc:
            self._misshapen(table, [row], exc)
            return
        if len(rows) >= rows.limit:
            buf.gathered()

    def add_many(self, table: str, rows: list[Row]) -> None:
        """Buffer several rows of ``table`` (see :meth:`add`)."""
        if not rows:
            return
        buf = self._buffers[table]
        if not len(buf.rows):
            buf.started()
        try:
            buf.rows.extend(rows)
        except (ValueError, TypeError):  # some row is misshapen: row by row, so only it is set aside
            for row in rows:
                self.add(table, row)
            return
        if len(buf.rows) >= buf.rows.limit:
            buf.gathered()

    def add_repeated(self, table: str, head: Row, tail: Sequence[Sequence[Any]]) -> None:
        """Buffer several rows of ``table`` given as columns (see
        :meth:`.rows.ColumnBuffer.extend_repeated`): ``head`` the values of the layout's first
        columns, the same in every row, ``tail`` one list per remaining column. The book
        callbacks' path: a book update's levels with no tuple per level. A shape that does not
        fill the layout goes to the dead letter at once (as one row: its repr)."""
        buf = self._buffers[table]
        rows = buf.rows
        if not rows.columns[0]:
            buf.started()
        try:
            rows.extend_repeated(head, tail)
        except (ValueError, TypeError) as exc:
            self._misshapen(table, [(head, tail)], exc)
            return
        if len(rows) >= rows.limit:
            buf.gathered()

    def _misshapen(self, table: str, rows: list[object], exc: Exception) -> None:
        width = len(ROW_LAYOUT[table])
        LOG.error("a row of %s that is not a tuple of %d values goes to the dead letter: %s", table, width, exc)
        error = ValueError(f"expected a tuple of {width} values ({', '.join(ROW_LAYOUT[table])}), got {rows[0]!r}")
        for row in _dead_rows(table, [(row, error) for row in rows]):
            self._buffers["bronze.dead_letter"].rows.append(row)

    def dead_letter(self, *, exchange: str | None, channel: str | None, error: str, payload: object) -> None:
        """Keep a frame or record that could not be normalised, verbatim, with the reason."""
        if isinstance(payload, bytes):
            payload = payload.decode("utf-8", "replace")
        now = time.time()
        self.add(
            "bronze.dead_letter",
            _dead_letter_row(received_at=now, exchange=exchange, channel=channel, error=error, payload=str(payload)),
        )

    def pending(self, table: str) -> int:
        """Rows of ``table`` in memory not committed yet: the batch being committed and the
        buffer. A batch counts here until its commit returned (so it is visible in Delta) or it
        was spooled; :meth:`live_arrow` has the rows themselves, spooled batches included."""
        inflight = self._inflight_rows.get(table)
        return (sum(run.rows for run in inflight[0]) if inflight else 0) + len(self._buffers[table])

    def live_arrow(self, table: str) -> pa.Table:
        """Every row of ``table`` the writer holds that Delta may not show yet, in the table's
        schema: spooled batches (a failed commit waiting on local disk; their batch ids), then
        the batch being committed and the buffer (``batch_id`` -1).

        A batch leaves this answer only once it is visible in Delta: the batch in flight after
        its commit returned, a spool file after its append. So a reader that asks here first and
        pins its Delta version afterwards misses no row the writer had received before. Call it
        on the writer's event loop (the live server does): the batch in flight and the buffer
        then change between calls, never during one. Rows that do not fit the schema (at commit
        they go to the dead letter) are left out rather than failing the whole answer."""
        spec = BRONZE[table]
        parts = []
        for path in self._spooled(table):
            try:  # memory-mapped: a long spool costs no copy per read
                parts.append(ipc.open_file(pa.memory_map(str(path))).read_all().cast(spec.schema))
            except FileNotFoundError:  # drained since the listing: committed, so in Delta
                continue
        # the rows that fit, as the commit will split them (bad rows are found column by column)
        inflight = self._inflight_rows.get(table)
        runs = [*(inflight[0] if inflight else []), *self._buffers[table].view()]
        fitting, _bad = _runs_to_arrow(table, runs, writer_id=self.writer_id, batch_id=-1)
        parts.append(fitting if fitting is not None else spec.schema.empty_table())
        return pa.concat_tables(parts)

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Take the writer id's lock, learn each table's next batch id and re-append what a
        previous run spooled."""
        self._wake = asyncio.Event()  # of this run's event loop: a writer may run again in another
        self._lock()
        self._claim_spool()
        await asyncio.to_thread(self._init_batches)
        await asyncio.to_thread(self._drain_spool)

    def _lock(self) -> None:
        """One process per writer id: the id keys exactly-once and the spool, so two processes
        sharing it could drop or duplicate batches. The lock dies with the process."""
        import fcntl

        # keyed by the root, not the spool directory: two processes started from different working
        # directories (or with different spool settings) still meet at the same lock
        locks = state_dir(self.catalog.root) / "locks"
        path = (locks / f"{self.writer_id.replace('/', '_')}.lock").resolve()
        if path in _HELD_LOCKS:  # this process holds it already (a restarted writer object)
            return
        locks.mkdir(parents=True, exist_ok=True)
        fh = open(path, "w")  # noqa: SIM115 - held for the process lifetime
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            raise LakehouseError(
                f"writer id {self.writer_id!r} is in use by another process on this host; give each writer its own "
                "id (writer.id / LAKEHOUSE_WRITER__ID)"
            ) from None
        fh.write(str(os.getpid()))
        fh.flush()
        _HELD_LOCKS[path] = fh

    def _claim_spool(self) -> None:
        """A spool is only ever applied to the root it was made for: its ``ROOT`` file names that
        root, and batches spooled for another root stop this writer (they are never dropped)."""
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        marker = self.spool_dir / "ROOT"
        made_for = marker.read_text().strip() if marker.exists() else None
        if made_for is not None and made_for != self.catalog.root:
            waiting = sum(1 for name in BRONZE for _ in self._spooled(name))
            if waiting:
                raise LakehouseError(
                    f"the spool {self.spool_dir} holds {waiting} batch(es) of writer {self.writer_id!r} for the root "
                    f"{made_for}, not {self.catalog.root}: run this writer with --root {made_for} to commit them, "
                    "or give it another id (writer.id)"
                )
        if made_for != self.catalog.root:
            marker.write_text(self.catalog.root + "\n")

    def _init_batches(self) -> None:
        for name in BRONZE:
            committed = self.catalog.transaction_version(name, self.writer_id) or 0
            spooled = [int(p.stem) for p in self._spooled(name)]
            self._next_batch[name] = max([committed, *spooled]) + 1

    async def run(self, stop: asyncio.Event) -> None:
        """Flush due buffers until ``stop`` is set, then flush everything and return."""
        tick = max(0.01, min(0.1, self.max_age_s / 4))
        while not stop.is_set():
            try:
                await asyncio.wait_for(self._wake.wait(), tick)
            except TimeoutError:
                pass
            self._wake.clear()
            self._flush_due(force=False)
            if self._has_spool() and time.monotonic() - self._last_spool_try >= self.spool_retry_s:
                self._last_spool_try = time.monotonic()
                await asyncio.to_thread(self._drain_spool)
        await self.flush()

    async def flush(self) -> None:
        """Commit every non-empty buffer now and wait for all commits (the stop path: SIGTERM).

        Loops until every buffer is empty and nothing is in flight: a commit may re-route rows
        that do not fit its table to the dead letter, whose buffer is then committed in the next
        round (after the others). Call it once the producers have stopped, as :meth:`run` does.
        """
        while True:
            await asyncio.gather(*self._inflight.values(), return_exceptions=True)
            # a gather of commits that are all done returns without yielding: let their done
            # callbacks (queued, they clear _inflight) run, or this loop would spin forever
            await asyncio.sleep(0)
            if not any(len(buf) for buf in self._buffers.values()):
                return
            self._flush_due(force=True)

    def _flush_due(self, *, force: bool) -> None:
        now = time.monotonic()
        for name, buf in self._buffers.items():
            if not len(buf) or name in self._inflight:
                continue
            if force or len(buf) >= buf.limit or now - buf.first_at >= buf.due:
                runs = buf.take()
                self._pace(name)
                batch = self._next_batch.setdefault(name, 1)
                self._next_batch[name] = batch + 1
                self._inflight_rows[name] = (runs, batch)
                task = asyncio.create_task(asyncio.to_thread(self._commit, name, runs, batch))
                self._inflight[name] = task
                task.add_done_callback(functools.partial(self._done, name))

    def _pace(self, name: str) -> None:
        """Set the next batch's deadline and row limit of ``name`` from its batch age: the age
        jittered (a fresh draw per batch) and ``max_rows`` scaled as the age is."""
        age, buf = self._ages[name], self._buffers[name]
        buf.due = age.jittered(random.random()) if age.adaptive else age.age
        buf.set_limit(max(1, round(self.max_rows * age.scale)))
        self.stats[name].batch_age_s = age.age

    def _done(self, name: str, task: asyncio.Task[list[Row]]) -> None:
        """On the event loop, when a commit thread ended: rows of its batch that did not fit the
        schema move to the dead-letter buffer (in the same step as the batch leaves the in-flight
        view, so :meth:`buffered` never shows them twice or not at all)."""
        self._inflight.pop(name, None)
        self._inflight_rows.pop(name, None)
        self._pace(name)  # the age its commit left
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            LOG.error("commit of %s failed and its batch could not be spooled", name, exc_info=exc)
            return
        dead = task.result()
        if dead:
            self.add_many("bronze.dead_letter", dead)

    # ------------------------------------------------------------------ commits (worker threads)
    def _commit(self, name: str, runs: list[_Run], batch: int) -> list[Row]:
        """Commit one batch; whatever goes wrong, its rows end up committed, spooled or (rows that
        cannot be converted to the table's schema) in the dead letter: never lost.

        Runs in a worker thread, so it does not touch the buffers: it returns the dead-letter
        rows for the rows that did not fit, and :meth:`_done` buffers them on the event loop."""
        data, bad = _runs_to_arrow(name, runs, writer_id=self.writer_id, batch_id=batch)
        dead = _dead_rows(name, bad) if bad else []
        if bad:
            LOG.error(
                "%d of %d rows of %s batch %d do not fit the schema (first: %s): they go to the dead letter",
                len(bad),
                sum(run.rows for run in runs),
                name,
                batch,
                bad[0][1],
            )
        if data is None:
            return dead
        try:
            self._commit_arrow(name, data, batch)
        except Exception:  # unexpected: keep the rows on local disk, retried from the spool
            LOG.exception("commit of %s batch %d failed unexpectedly; spooling it", name, batch)
            self._spool(name, batch, data)
        return dead

    def _commit_arrow(self, name: str, data: pa.Table, batch: int) -> None:
        st = self.stats[name]
        with self._spool_lock:  # spool mode: commits keep their order, so drain first or queue behind
            if self._spooled(name) and not self._drain_table(name):
                self._spool(name, batch, data)
                return
        started = time.perf_counter()
        try:
            self._append(name, data, batch)
        except CommitError as exc:
            LOG.error("%s; spooling batch %d (%d rows) to %s", exc, batch, data.num_rows, self.spool_dir)
            self._spool(name, batch, data)
            return
        seconds = time.perf_counter() - started
        st.commit_seconds.append(seconds)
        self._ages[name].committed(seconds)
        st.rows_committed += data.num_rows
        st.commits += 1
        if self.compact_every and st.commits % self.compact_every == 0:
            self._auto_compact(name)

    def _append(self, name: str, data: pa.Table, batch: int) -> None:
        """Append one batch as ``(writer_id, batch)``, retrying ``retries`` times after a jittered
        exponential backoff; before a retry, a batch the failed attempt did commit (an ambiguous
        failure) is not appended again. Each failed attempt backs the table's batch age off.
        Raises :class:`CommitError` when the last attempt fails."""
        st, age = self.stats[name], self._ages[name]
        for attempt in range(self.retries + 1):
            try:
                if attempt:
                    done = self.catalog.transaction_version(name, self.writer_id)
                    if done is not None and done >= batch:
                        return
                self.catalog.append(name, data, app_id=self.writer_id, version=batch)
                return
            except Exception as exc:  # storage errors come in many types (IO, object store, commit)
                cause = exc.__cause__ if isinstance(exc, CommitError) and exc.__cause__ else exc
                st.attempts_failed += 1
                st.conflicts += isinstance(cause, CommitFailedError)
                age.failed()
                if attempt == self.retries:
                    raise CommitError(f"append to {name} failed after {attempt + 1} attempts: {cause}") from cause
                wait = jittered_backoff(self.backoff_s, attempt + 1)
                LOG.warning(
                    "append to %s failed (%s); retry %d/%d in %.2fs", name, cause, attempt + 1, self.retries, wait
                )
                st.retries += 1
                time.sleep(wait)
        raise AssertionError("unreachable")

    def _auto_compact(self, name: str) -> None:
        st = self.stats[name]
        started = time.perf_counter()
        try:
            report = compact(self.catalog, name, target_size=AUTO_COMPACT_TARGET, retries=0, wait=False)
        except CompactionBusy:  # a scheduled compaction is at it: nothing to add
            LOG.info("auto-compaction of %s skipped: another compaction is running", name)
            return
        except Exception as exc:  # a conflicting commit, a storage hiccup, ...: next round
            LOG.warning("auto-compaction of %s skipped: %s", name, exc)
            return
        st.compactions += 1
        st.compact_seconds.append(time.perf_counter() - started)
        LOG.info("auto-compaction of %s: %s", name, report.detail)

    def _spool_path(self, name: str) -> Path:
        return self.spool_dir / name

    def _spooled(self, name: str) -> list[Path]:
        d = self._spool_path(name)
        return sorted(d.glob("*.arrow")) if d.is_dir() else []

    def _has_spool(self) -> bool:
        return any(self._spooled(n) for n in BRONZE)

    def _spool(self, name: str, batch: int, data: pa.Table) -> None:
        d = self._spool_path(name)
        d.mkdir(parents=True, exist_ok=True)
        final = d / f"{batch:012d}.arrow"
        tmp = final.with_suffix(".tmp")
        with pa.OSFile(str(tmp), "wb") as sink, ipc.new_file(sink, data.schema) as w:
            w.write_table(data)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, final)
        st = self.stats[name]
        st.rows_spooled += data.num_rows
        st.batches_spooled += 1

    def _drain_spool(self) -> None:
        with self._spool_lock:
            for name in BRONZE:
                self._drain_table(name)

    def _drain_table(self, name: str) -> bool:
        """Append spooled batches in order, skipping those whose transaction already committed.
        Returns True when the table's spool is empty. Caller holds the spool lock."""
        st = self.stats[name]
        for path in self._spooled(name):
            batch = int(path.stem)
            try:
                done = self.catalog.transaction_version(name, self.writer_id)
                if done is not None and done >= batch:
                    st.spool_skipped += 1
                    LOG.warning("spooled %s batch %d is already committed: dropping it", name, batch)
                else:
                    data = ipc.open_file(str(path)).read_all()
                    self.catalog.append(name, data, app_id=self.writer_id, version=batch)
                    st.spool_replayed += 1
                    st.rows_committed += data.num_rows
                    st.commits += 1
            except Exception as exc:  # still failing: keep the spool for the next try
                LOG.warning("spool of %s not drained yet: %s", name, exc)
                return False
            path.unlink()
        return True

    def summary(self) -> dict[str, dict[str, int]]:
        return {
            name: {
                "rows_committed": st.rows_committed,
                "commits": st.commits,
                "rows_buffered": len(self._buffers[name]),
                "rows_spooled": st.rows_spooled,
                "spool_replayed": st.spool_replayed,
                "retries": st.retries,
                "conflicts": st.conflicts,
                "compactions": st.compactions,
            }
            for name, st in self.stats.items()
        }
