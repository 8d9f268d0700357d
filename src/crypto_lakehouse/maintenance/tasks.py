"""The maintenance tasks, one table at a time; each returns what it did."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import polars as pl
from deltalake.exceptions import CommitFailedError

from crypto_lakehouse.errors import LakehouseError
from crypto_lakehouse.schemas import table_spec
from crypto_lakehouse.storage import Catalog

__all__ = ["MaintenanceReport", "checkpoint", "compact", "pinned_versions", "retention", "vacuum"]

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
    tags = pl.read_delta(catalog.uri("meta.tags"), storage_options=catalog.storage_options)
    return sorted(set(tags.filter(pl.col("table") == table)["version"].to_list()))


def _files(catalog: Catalog, table: str) -> tuple[int, int]:
    s = catalog.summary(table)
    return s.get("files", 0), s.get("bytes", 0)


def compact(catalog: Catalog, table: str, *, target_size: int | None = None, retries: int = 5) -> MaintenanceReport:
    """Rewrite small files into large ones (no data change). Safe while writers append; a
    conflicting concurrent commit is retried on a reloaded table."""
    before, _ = _files(catalog, table)
    for attempt in range(retries + 1):
        try:
            metrics = catalog.open(table).optimize.compact(target_size=target_size)
            break
        except CommitFailedError as exc:
            if attempt == retries:
                raise LakehouseError(f"compaction of {table} kept conflicting with writers: {exc}") from None
            LOG.info("compaction of %s conflicted (%s); retrying", table, exc)
            time.sleep(0.2 * (attempt + 1))
    after, _ = _files(catalog, table)
    return MaintenanceReport(
        table,
        "compact",
        before,
        after,
        detail=f"{metrics.get('numFilesRemoved', 0)} files merged into {metrics.get('numFilesAdded', 0)}",
    )


def checkpoint(catalog: Catalog, table: str) -> MaintenanceReport:
    """Write a checkpoint (table loads stay fast as commits grow). Old log entries are cleaned
    only when no tag pins a version: a tagged version needs its log to be read."""
    n, _ = _files(catalog, table)
    dt = catalog.open(table)
    dt.create_checkpoint()
    pinned = pinned_versions(catalog, table)
    if pinned:
        detail = f"checkpoint at v{dt.version()}; log kept for tagged versions {pinned}"
    else:
        dt.cleanup_metadata()
        detail = f"checkpoint at v{dt.version()}; expired log entries cleaned"
    return MaintenanceReport(table, "checkpoint", n, n, detail=detail)


def vacuum(catalog: Catalog, table: str, *, retention: timedelta = timedelta(days=7)) -> MaintenanceReport:
    """Delete files no version within ``retention`` needs, except those of tagged versions."""
    before, size_before = _files_on_disk(catalog, table)
    dt = catalog.open(table)
    pinned = pinned_versions(catalog, table)
    removed = dt.vacuum(
        retention_hours=int(retention.total_seconds() // 3600),
        dry_run=False,
        enforce_retention_duration=False,
        keep_versions=pinned or None,
    )
    after, size_after = _files_on_disk(catalog, table)
    return MaintenanceReport(
        table,
        "vacuum",
        before,
        after,
        bytes_freed=max(0, size_before - size_after),
        detail=f"{len(removed)} files deleted; kept tagged versions {pinned}",
    )


def _files_on_disk(catalog: Catalog, table: str) -> tuple[int, int]:
    if not catalog.is_local:
        return _files(catalog, table)
    from pathlib import Path

    files = [p for p in Path(catalog.uri(table)).rglob("*.parquet")]
    return len(files), sum(p.stat().st_size for p in files)


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
