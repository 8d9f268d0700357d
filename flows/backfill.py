"""Prefect flow ``backfill``: one symbol's trades for an explicit time range, over REST with ccxt.

With ``scale.runner`` set, each UTC day of the range is fetched by a Prefect task on
prefect-dask's ``DaskTaskRunner`` (subflow ``backfill-days``) and silver is committed once."""

from __future__ import annotations

from prefect import flow, get_run_logger

from crypto_lakehouse import jobs
from crypto_lakehouse.config import load_settings
from crypto_lakehouse.jobs._prefect import PrefectTasks, dask_task_runner


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
    settings = load_settings(config, root=root)
    runner = dask_task_runner(settings.scale)
    if runner is None:
        r = jobs.backfill(settings, exchange=exchange, symbol=symbol, start=start, end=end, rest=rest)
    else:
        r = _days.with_options(task_runner=runner)(exchange, symbol, start, end, config, root, rest)
    get_run_logger().info("backfilled %d %s %s trades", r.rows_added, exchange, symbol)
    return r.rows_added


@flow(name="backfill-days")
def _days(
    exchange: str, symbol: str, start: str, end: str | None, config: str | None, root: str | None, rest: str | None
) -> jobs.BackfillResult:
    """Each day of the range as a task on the flow's Dask task runner, committed once."""
    settings = load_settings(config, root=root)
    return jobs.backfill(
        settings, exchange=exchange, symbol=symbol, start=start, end=end, rest=rest, runner=PrefectTasks()
    )
