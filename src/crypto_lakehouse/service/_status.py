"""What ``/health`` and ``/metrics`` report of the pipeline, read from the tables: when each
venue's writer was last heard of, its recent ingest rate, and open gaps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TypedDict

import polars as pl

from crypto_lakehouse.storage import Catalog

__all__ = ["VenueSeen", "ingest_rates", "last_seen", "open_gaps"]

RATE_WINDOW = timedelta(minutes=5)


class VenueSeen(TypedDict):
    exchange: str
    at: datetime
    event: str  # start, alive, end (bronze.sessions) or commit (a bronze.trades row received)


def last_seen(catalog: Catalog) -> list[VenueSeen]:
    """Per exchange, the latest event of its writers in ``bronze.sessions``; for an exchange
    with no session (data imported, or written before the ledger), the latest ``receipt_ts``
    of ``bronze.trades``."""
    seen: dict[str, VenueSeen] = {}
    if catalog.exists("bronze.trades"):
        latest = catalog.scan("bronze.trades").group_by("exchange").agg(pl.col("receipt_ts").max()).collect()
        for row in latest.iter_rows(named=True):
            if row["receipt_ts"] is not None:
                seen[row["exchange"]] = {"exchange": row["exchange"], "at": row["receipt_ts"], "event": "commit"}
    if catalog.exists("bronze.sessions"):
        latest = catalog.scan("bronze.sessions").sort("at").group_by("exchange").last().collect()
        for row in latest.iter_rows(named=True):
            seen[row["exchange"]] = {"exchange": row["exchange"], "at": row["at"], "event": row["event"]}
    return sorted(seen.values(), key=lambda v: v["exchange"])


def ingest_rates(catalog: Catalog, *, now: datetime | None = None) -> dict[str, float]:
    """Rows per second each exchange's ``bronze.trades`` received over the last 5 minutes
    (today's and yesterday's date partitions only)."""
    if not catalog.exists("bronze.trades"):
        return {}
    now = now or datetime.now(UTC)
    since = now - RATE_WINDOW
    counts = (
        catalog.scan("bronze.trades")
        .filter(pl.col("date") >= since.date(), pl.col("receipt_ts") >= since)
        .group_by("exchange")
        .len()
        .collect()
    )
    return {row["exchange"]: row["len"] / RATE_WINDOW.total_seconds() for row in counts.iter_rows(named=True)}


def open_gaps(catalog: Catalog) -> dict[str, int]:
    """Open gaps (``silver.gaps`` status ``open``) per exchange."""
    if not catalog.exists("silver.gaps"):
        return {}
    counts = catalog.scan("silver.gaps").filter(pl.col("status") == "open").group_by("exchange").len().collect()
    return {row["exchange"]: int(row["len"]) for row in counts.iter_rows(named=True)}
