"""Prefect flow ``backfill``: one symbol's trades for an explicit time range, over REST with ccxt."""

from __future__ import annotations

from datetime import UTC, datetime

from prefect import flow, get_run_logger

from crypto_lakehouse.config import load_settings
from crypto_lakehouse.ingest.backfill import Backfiller
from crypto_lakehouse.storage import Catalog
from crypto_lakehouse.transform.silver import SilverOptions, backfill, parse_window


@flow(name="backfill")
def backfill_flow(
    exchange: str,
    symbol: str,
    start: str,
    end: str | None = None,
    config: str | None = None,
    root: str | None = None,
) -> int:
    """Fetch ``exchange``/``symbol`` trades in [start, end) into silver (source='backfill')."""
    s = load_settings(config, root=root)
    added = backfill(
        Catalog.from_settings(s),
        Backfiller(s.silver.backfill_rest),
        exchange=exchange.upper(),
        symbol=symbol,
        start=parse_window(start),
        end=parse_window(end) or datetime.now(UTC),
        options=SilverOptions.from_settings(s.silver),
    )
    get_run_logger().info("backfilled %d %s %s trades", added, exchange, symbol)
    return added
