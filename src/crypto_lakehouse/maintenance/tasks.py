"""The maintenance tasks, one table at a time; each returns what it did."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import polars as pl
from deltalake.exceptions import CommitFailedError

from crypto_lakehouse.durations import format_duration
from crypto_lakehouse.errors import LakehouseError, TableBusy
from crypto_lakehouse.schemas import table_spec
from crypto_lakehouse.storage import TABLE_PROPERTIES, Catalog

__all__ = ["CompactionBusy", "MaintenanceReport", "checkpoint", "compact", "pinned_versions", "retention", "vacuum"]

LOG = logging.getLogger(__name__)


@dataclass(slots=True)
class MaintenanceReport:
    table: str
    action: str
    files_before: int
    files_after: int
    bytes_freed: int = 0
    detail: str = ""


def pinned_versions(catalog: Catalog, table: str) -> list[int]:
    """Versions of ``table`` that tags pin (they must stay readable)."""
    if not catalog.exists("meta.tags"):
        return []
    tags = catalog.frame("meta.tags")
    return sorted(set(tags.filter(pl.col("table") == table)["version"].to_list()))


def _files(catalog: Catalog, table: str) -> tuple[int, int]:
    s = catalog.summary(table)
    return s.get("files", 0), s.get("bytes", 0)


def compact(
    catalog: Catalog,
    table: str,
    *,
    target_size: int | None = None,
    z_order: Sequence[str] | None = None,
    retries: int = 5,
    wait: bool = True,
) -> MaintenanceReport:
    """Rewrite small files into large ones (no data change). Safe while writers append; a
    conflicting concurrent commit is retried on a reloaded table. ``z_order`` columns rewrite
    every file of each partition clustered by them instead (see docs/maintenance.md for when
    that pays off).

    Compactions of one table take turns (a lock, see :func:`_compaction_lock`): delta-rs 1.6
    commits two concurrent compactions of the same files both, which duplicates their rows.
    ``wait=False`` raises :class:`CompactionBusy` instead of waiting for the other one."""
    if z_order:
        unknown = set(z_order) - set(table_spec(table).schema.names)
        if unknown:
            raise LakehouseError(f"{table} has no column(s) {sorted(unknown)} to z-order by")
    with _compaction_lock(catalog, table, wait=wait):
        for attempt in range(retries + 1):
            try:
                dt = catalog.open(table)
                before = len(dt.file_uris())  # of the snapshot compacted (no second load of the log)
                if z_order:
                    metrics = dt.optimize.z_order(list(z_order), target_size=target_size)
                else:
                    metrics = dt.optimize.compact(target_size=target_size)
                break
            except CommitFailedError as exc:
                if attempt == retries:
                    raise LakehouseError(f"compaction of {table} kept conflicting with writers: {exc}") from None
                LOG.info("compaction of %s conflicted (%s); retrying", table, exc)
                time.sleep(0.2 * (attempt + 1))
        else:
            raise AssertionError("unreachable: the last attempt breaks or raises")
    after = before - metrics.get("numFilesRemoved", 0) + metrics.get("numFilesAdded", 0)
    how = f" z-ordered by {', '.join(z_order)}" if z_order else ""
    return MaintenanceReport(
        table,
        "compact",
        before,
        after,
        detail=f"{metrics.get('numFilesRemoved', 0)} files merged into {metrics.get('numFilesAdded', 0)}{how}",
    )


class CompactionBusy(TableBusy):
    """Another compaction of the table is running (``compact(wait=False)``)."""


@contextmanager
def _compaction_lock(catalog: Catalog, table: str, *, wait: bool) -> Iterator[None]:
    """The table's rewrite lock (:meth:`Catalog.lock`), held while it is compacted: shared with
    the commits of fanned-out jobs that replace files. Beside the data for a local root (every
    process using that root shares it); for an object store, in the host's temp directory:
    compactions on different hosts are not serialised (docs/maintenance.md)."""
    with ExitStack() as held:
        try:
            held.enter_context(catalog.lock(table, purpose="rewrite", wait=wait))
        except TableBusy:
            raise CompactionBusy(
                f"{table} is being compacted (or its files replaced) by another process or thread"
            ) from None
        yield


def checkpoint(catalog: Catalog, table: str) -> MaintenanceReport:
    """Write a checkpoint (table loads stay fast as commits grow). Old log entries are cleaned
    only when no tag pins a version: a tagged version needs its log to be read. A table created
    with other retention properties than its layer's (an older release) gets its layer's first."""
    n, _ = _files(catalog, table)
    dt = catalog.open(table)
    wanted = TABLE_PROPERTIES[table_spec(table).layer]
    current = dt.metadata().configuration
    stale = {k: v for k, v in wanted.items() if current.get(k) != v}
    if stale:
        dt.alter.set_table_properties(stale)
        LOG.info("%s: table properties set to %s", table, stale)
    dt.create_checkpoint()
    pinned = pinned_versions(catalog, table)
    if pinned:
        detail = f"checkpoint at v{dt.version()}; log kept for tagged versions {pinned}"
    else:
        dt.cleanup_metadata()
        detail = f"checkpoint at v{dt.version()}; expired log entries cleaned"
    return MaintenanceReport(table, "checkpoint", n, n, detail=detail)


def vacuum(catalog: Catalog, table: str, *, horizon: timedelta | None = None) -> MaintenanceReport:
    """Delete files no version within ``horizon`` (default: the table's
    ``delta.deletedFileRetentionDuration``) needs, except those of tagged versions.

    A "full" vacuum: besides the files the log lists as removed, it deletes files older than
    ``horizon`` that no version references (removed files whose tombstones already left the
    checkpoints, debris of failed writes), so nothing leaks. That is safe only while
    ``horizon`` does not exceed the table's ``delta.deletedFileRetentionDuration`` (every
    file a version inside the horizon needs is then still listed): checked here."""
    dt = catalog.open(table)
    listed = _interval(dt.metadata().configuration.get("delta.deletedFileRetentionDuration", "interval 7 days"))
    horizon = listed if horizon is None else horizon
    if horizon > listed:
        raise LakehouseError(
            f"vacuum horizon {horizon} exceeds {table}'s delta.deletedFileRetentionDuration ({listed}): versions "
            f"inside the horizon could lose files; lower maintenance.vacuum_horizon.{table_spec(table).layer}"
        )
    hours = math.ceil(horizon.total_seconds() / 3600)  # delta-rs takes whole hours: round up (never delete more)
    rounded = ""
    if hours * 3600 != horizon.total_seconds():
        rounded = f"; horizon {format_duration(horizon)} rounded up to {hours}h (delta-rs vacuums by whole hours)"
        LOG.warning("%s: vacuum%s", table, rounded.removeprefix(";"))
    before, size_before = catalog.stored_files(table)
    pinned = pinned_versions(catalog, table)
    removed = dt.vacuum(
        retention_hours=hours,
        dry_run=False,
        enforce_retention_duration=False,
        full=True,
        keep_versions=pinned or None,
    )
    after, size_after = catalog.stored_files(table)
    return MaintenanceReport(
        table,
        "vacuum",
        before,
        after,
        bytes_freed=max(0, size_before - size_after),
        detail=f"{len(removed)} files deleted; kept tagged versions {pinned}{rounded}",
    )


_UNITS = {"second": 1, "minute": 60, "hour": 3600, "day": 86_400, "week": 604_800}


def _interval(value: str) -> timedelta:
    """A Delta table property duration (``interval 7 days``) as a timedelta."""
    parts = value.lower().removeprefix("interval").split()
    if len(parts) != 2 or parts[1].rstrip("s") not in _UNITS:
        raise LakehouseError(f"cannot read the table property duration {value!r}")
    return timedelta(seconds=float(parts[0]) * _UNITS[parts[1].rstrip("s")])


def retention(catalog: Catalog, table: str, *, keep: timedelta, now: datetime | None = None) -> MaintenanceReport:
    """Delete rows older than ``keep`` (whole UTC days, by the ``date`` partition). Tagged
    versions still read them: vacuum keeps their files."""
    spec = table_spec(table)
    if "date" not in spec.partition_by:
        raise LakehouseError(f"retention works on date-partitioned tables; {table} is not")
    before, _ = _files(catalog, table)
    cutoff = ((now or datetime.now(UTC)) - keep).date()
    metrics = catalog.open(table).delete(f"date < '{cutoff.isoformat()}'")
    after, _ = _files(catalog, table)
    return MaintenanceReport(
        table, "retention", before, after, detail=f"rows before {cutoff} deleted: {metrics.get('num_deleted_rows', 0)}"
    )
