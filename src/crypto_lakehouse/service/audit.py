"""The audit trail of the query service: one ``meta.audit`` row per request (time, key id, role,
method, route, SQL hash, rows, bytes, duration, status, client address).

A request only puts its row on a queue (microseconds); a background thread appends what has
queued every ``api.audit_flush`` (1 s) as one Delta commit, so auditing never adds a commit to a
request's latency, and stopping the service flushes what is left. Rows older than
``api.audit_retention`` (whole UTC days, the table's ``date`` partitions) are deleted once a
day by the same thread. A failed append is logged and retried with the next batch; rows are
dropped (and counted in the log) only past 100,000 waiting.
"""

from __future__ import annotations

import logging
import queue
import threading
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypedDict

import polars as pl
import pyarrow as pa

from crypto_lakehouse.schemas import table_spec
from crypto_lakehouse.storage import Catalog

__all__ = ["AuditLog", "AuditRow", "read_audit"]

LOG = logging.getLogger(__name__)
_TABLE = "meta.audit"
_MAX_WAITING = 100_000


class AuditRow(TypedDict):
    at: datetime
    key_id: str | None
    role: str | None
    method: str
    route: str
    sql_hash: str | None
    rows: int | None
    bytes: int | None
    duration_ms: float
    status: int
    client: str | None


class AuditLog:
    """Batches :class:`AuditRow` into ``meta.audit`` from a background thread (see the module)."""

    def __init__(self, catalog: Catalog, *, flush_s: float = 1.0, retention: timedelta | None = None) -> None:
        self._catalog = catalog
        self._flush_s = flush_s
        self._retention = retention
        self._queue: queue.Queue[AuditRow] = queue.Queue()
        self._pending: list[AuditRow] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pruned: date | None = None

    def record(self, row: AuditRow) -> None:
        """Queue ``row`` (never blocks, never fails the request)."""
        if self._queue.qsize() < _MAX_WAITING:
            self._queue.put_nowait(row)
        else:
            LOG.warning("audit: %d rows waiting, dropping one (is the storage reachable?)", _MAX_WAITING)

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="audit", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop the thread after a last flush."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.flush()

    def _run(self) -> None:
        while not self._stop.wait(self._flush_s):
            self.flush()
            self._prune()

    def flush(self) -> int:
        """Append every queued row now, as one commit; the number of rows written."""
        while True:
            try:
                self._pending.append(self._queue.get_nowait())
            except queue.Empty:
                break
        if not self._pending:
            return 0
        rows: list[dict[str, Any]] = [{**r, "date": r["at"].astimezone(UTC).date()} for r in self._pending]
        try:
            self._catalog.append(_TABLE, pa.Table.from_pylist(rows, schema=table_spec(_TABLE).schema))
        except Exception as exc:  # noqa: BLE001 - storage errors come in many types: keep the rows, retry
            LOG.warning("audit: appending %d rows failed (%s); retrying with the next batch", len(rows), exc)
            return 0
        self._pending = []
        return len(rows)

    def _prune(self) -> None:
        today = datetime.now(UTC).date()
        if self._retention is None or self._pruned == today or not self._catalog.exists(_TABLE):
            return
        self._pruned = today
        cutoff = (datetime.now(UTC) - self._retention).date()
        try:
            self._catalog.open(_TABLE).delete(f"date < '{cutoff.isoformat()}'")
        except Exception as exc:  # noqa: BLE001 - retried tomorrow; never stops the service
            LOG.warning("audit: deleting rows before %s failed (%s)", cutoff, exc)


def read_audit(catalog: Catalog, *, since: datetime | None = None, key_id: str | None = None) -> pl.DataFrame:
    """Audit rows (newest first), from ``since`` on, of ``key_id`` if given."""
    spec = table_spec(_TABLE)
    if not catalog.exists(_TABLE):
        return pl.DataFrame(pl.from_arrow(spec.schema.empty_table())).drop("date")
    lf = catalog.scan(_TABLE)
    if since is not None:
        lf = lf.filter(pl.col("date") >= since.date(), pl.col("at") >= since)
    if key_id is not None:
        lf = lf.filter(pl.col("key_id") == key_id)
    return lf.sort("at", descending=True).drop("date").collect()
