"""Prefect flow ``backfill``: one symbol's trades for an explicit time range, over REST with ccxt."""

from __future__ import annotations

from prefect import flow, get_run_logger

from crypto_lakehouse import jobs
from crypto_lakehouse.config import load_settings


@flow(name="backfill")
def backfill_flow(
    exchange: str,
    symbol: str,
    start: str,
    end: str | None = None,
    config: str | None = None,
    root: str | None = None,
    rest: str | None = None,
) -> int:
    """Fetch ``exchange``/``symbol`` trades in [start, end) into silver (source='backfill');
    ``rest``: a REST base for ``exchange`` (a loopback exchange) instead of the configured one."""
    r = jobs.backfill(
        load_settings(config, root=root), exchange=exchange, symbol=symbol, start=start, end=end, rest=rest
    )
    get_run_logger().info("backfilled %d %s %s trades", r.rows_added, exchange, symbol)
    return r.rows_added
