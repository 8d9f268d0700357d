"""How derived tables are rewritten: gold builders replace the rows of some windows in one
commit with their progress; state tables recomputed from others (``silver.gaps``,
``gold.completeness``) are rebuilt one at a time, again when a commit elsewhere wins."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable

import polars as pl
from deltalake.exceptions import CommitFailedError, DeltaError

from crypto_lakehouse.errors import LakehouseError, TableNotFound
from crypto_lakehouse.schemas import GOLD
from crypto_lakehouse.storage import Catalog

__all__ = ["rebuild", "replace_windows"]

LOG = logging.getLogger(__name__)

_ATTEMPTS = 30  # rebuilds lost to concurrent commits before giving up (each one reads again)


def replace_windows(
    catalog: Catalog, table: str, data: pl.DataFrame, predicates: list[str], app: tuple[str, int]
) -> None:
    """Replace the rows of gold ``table`` matching any of ``predicates`` (SQL, one per window
    run; none: nothing replaced) with ``data``, in one commit recording ``app`` (app id, the
    silver version consumed)."""
    spec = GOLD[table]
    catalog.replace(
        table,
        data.select(spec.schema.names).to_arrow().cast(spec.schema),
        predicate=" OR ".join(predicates) if predicates else "false",
        app_id=app[0],
        version=app[1],
    )


def rebuild[T](catalog: Catalog, table: str, build: Callable[[], T]) -> T:
    """Run ``build`` (which reads ``table`` and what it is derived from, computes its rows and
    commits them in one overwrite or replace) as the only rebuild of ``table`` on this host: a
    second one waits for the table's ``rebuild`` lock, then reads what the first wrote. When the
    commit loses anyway (a rebuild on another host, a compaction of the table), ``build`` runs
    again, so it must read everything it decides from afresh each call. Two promotes ending at
    the same moment made the second fail (CI at 11fc9ae).

    A commit lost is ``CommitFailedError``, or, when the winner replaced rows by a predicate on
    a column named like a SQL keyword (gold's ``interval``), deltalake 1.6.6's "sql parser
    error": it stores that predicate unquoted and cannot parse it back to check the conflict.
    That error counts as a lost commit only if ``table`` has a new version since ``build``
    started (else it is the build's own, raised).

    A rebuild of ``table`` started inside one in the same thread (a coordinator running another
    as its runner) does not wait for the lock its caller holds."""
    last: Exception | None = None
    with catalog.lock(table, purpose="rebuild", reentrant=True):
        for attempt in range(_ATTEMPTS):
            before = _version(catalog, table)
            try:
                return build()
            except CommitFailedError as exc:
                last = exc
            except DeltaError as exc:
                if _UNPARSABLE_PREDICATE not in str(exc) or _version(catalog, table) == before:
                    raise
                last = exc
            LOG.info("%s: a concurrent commit won (%s); rebuilding again (%d)", table, last, attempt + 1)
            time.sleep(random.uniform(0, 0.02 * (attempt + 1)))
    raise LakehouseError(
        f"rebuilding {table} lost {_ATTEMPTS} times in a row to concurrent commits; run it again"
    ) from last


_UNPARSABLE_PREDICATE = "sql parser error"  # deltalake 1.6.6, re-reading a winner's stored predicate


def _version(catalog: Catalog, table: str) -> int | None:
    """``table``'s latest version (None: it does not exist yet)."""
    try:
        return catalog.open(table).version()
    except TableNotFound:
        return None
