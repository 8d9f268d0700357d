"""The sessions ledger: which writer streamed which symbols of which exchange, and when.

A streaming session appends ``start`` to ``bronze.sessions`` **before** it connects, ``alive``
every ``heartbeat_s`` while it runs, and ``end`` (with the reason) when it stops cleanly. A
session killed before its first bronze commit therefore still leaves a trace, and silver can
tell time that no session covered (a writer stopped, crashed or never started) from time a
session covered and found quiet: see :func:`crypto_lakehouse.transform.gaps.detect_gaps`.

Ledger commits are small and rare (one per heartbeat per writer); a failed one is logged and
never stops the stream (the next heartbeat is the retry).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import polars as pl
import pyarrow as pa

from crypto_lakehouse.schemas import SESSIONS
from crypto_lakehouse.storage import Catalog

__all__ = ["HEARTBEAT_S", "SessionLedger", "Subscription", "recorded_rest_urls"]

LOG = logging.getLogger(__name__)
HEARTBEAT_S = 30.0


@dataclass(frozen=True, slots=True)
class Subscription:
    """What one session streams from one exchange."""

    exchange: str
    symbols: Sequence[str]
    channels: Sequence[str]
    rest_url: str | None = None  # None: the exchange's own


class SessionLedger:
    """Appends one session's ``start`` / ``alive`` / ``end`` events for its subscriptions."""

    def __init__(
        self,
        catalog: Catalog,
        *,
        writer_id: str,
        subscriptions: Sequence[Subscription],
        heartbeat_s: float = HEARTBEAT_S,
    ):
        self.catalog = catalog
        self.writer_id = writer_id
        self.session_id = uuid.uuid4().hex
        self.subscriptions = list(subscriptions)
        self.heartbeat_s = heartbeat_s

    def record(self, event: str, *, reason: str | None = None, at: datetime | None = None) -> bool:
        """Append ``event`` for every subscription in one commit; False (logged) if it failed."""
        when = at or datetime.now(UTC)
        rows = [
            {
                "exchange": s.exchange,
                "writer_id": self.writer_id,
                "session_id": self.session_id,
                "event": event,
                "at": when,
                "symbols": list(s.symbols),
                "channels": list(s.channels),
                "reason": reason,
                "rest_url": s.rest_url,
            }
            for s in self.subscriptions
        ]
        try:
            self.catalog.append(SESSIONS.name, pa.Table.from_pylist(rows, schema=SESSIONS.schema), retries=2)
        except Exception as exc:  # noqa: BLE001 - the ledger never stops the stream; next heartbeat retries
            LOG.warning("sessions ledger: could not record %s (%s)", event, exc)
            return False
        return True

    async def heartbeat(self, stop: asyncio.Event) -> None:
        """``alive`` every ``heartbeat_s`` until ``stop``."""
        while True:
            try:
                await asyncio.wait_for(stop.wait(), self.heartbeat_s)
                return
            except TimeoutError:
                await asyncio.to_thread(self.record, "alive")


def recorded_rest_urls(catalog: Catalog) -> dict[str, str]:
    """Exchange -> the REST base its latest streaming session under this root used, for the
    exchanges whose latest session streamed from a loopback exchange (or any endpoint other
    than the exchange's own). A root filled from a loopback exchange is then backfilled from
    it, never from the real venue. Empty when nothing was streamed (or by an earlier release)."""
    if not catalog.exists(SESSIONS.name):
        return {}
    sessions = catalog.frame(SESSIONS.name)
    if "rest_url" not in sessions.columns or sessions.is_empty():
        return {}
    latest = sessions.filter(pl.col("event") == "start").sort("at").group_by("exchange").last()
    return {row["exchange"]: row["rest_url"] for row in latest.iter_rows(named=True) if row["rest_url"]}
