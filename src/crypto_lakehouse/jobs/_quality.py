"""The ``quality`` job: the completeness ledger (``gold.completeness``) a user asks about."""

from __future__ import annotations

from datetime import date

import polars as pl

from crypto_lakehouse.config import Settings
from crypto_lakehouse.errors import InvalidArgument, TableNotFound
from crypto_lakehouse.storage import Catalog
from crypto_lakehouse.transform.quality import LEDGER

__all__ = ["quality"]


def _known(values: list[object], *, most: int = 10) -> str:
    shown = ", ".join(str(v) for v in values[:most])
    return shown + (f", ... ({len(values)} in all)" if len(values) > most else "")


def _narrow(ledger: pl.DataFrame, column: str, value: object, what: str) -> pl.DataFrame:
    """``ledger``'s rows whose ``column`` is ``value``; none: an error naming what exists."""
    kept = ledger.filter(pl.col(column) == value)
    if kept.is_empty():
        known = sorted(ledger.get_column(column).unique().to_list())
        raise InvalidArgument(f"no {what} {value} in the completeness ledger; it has: {_known(known) or 'nothing'}")
    return kept


def quality(
    settings: Settings, *, day: str | None = None, exchange: str | None = None, symbol: str | None = None
) -> pl.DataFrame:
    """The completeness ledger (docs/quality.md), one row per (exchange, symbol, channel, UTC
    day), sorted; only ``day`` (``2026-11-23``), ``exchange`` and ``symbol`` when given (any
    case). Built by promote-silver: :class:`TableNotFound` before its first run;
    :class:`InvalidArgument` naming what the ledger holds for a day, exchange or symbol it
    has no row of."""
    catalog = Catalog.from_settings(settings)
    if not catalog.exists(LEDGER):
        raise TableNotFound(f"no completeness ledger under {catalog.root} yet: run `lakehouse promote silver` first")
    ledger = catalog.frame(LEDGER)
    if exchange is not None:
        ledger = _narrow(ledger, "exchange", exchange.upper(), "exchange")
    if symbol is not None:
        ledger = _narrow(ledger, "symbol", symbol.upper(), "symbol")
    if day is not None:
        try:
            wanted = date.fromisoformat(day)
        except ValueError:
            raise InvalidArgument(f"--day {day!r}: give a UTC day as YYYY-MM-DD") from None
        ledger = _narrow(ledger, "date", wanted, "day")
    return ledger.sort("exchange", "symbol", "channel", "date")
