"""Prefect flow ``build-gold``: silver -> gold (OHLCV at every configured interval, funding).

With ``scale.runner`` set (local, or a Dask scheduler address) the trade bars of each group of
(exchange, symbol) are built as Prefect tasks on prefect-dask's ``DaskTaskRunner`` (a subflow
``build-gold-groups``) and committed to gold.ohlcv once (docs/scaling.md)."""

from __future__ import annotations

from typing import TypedDict

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact

from crypto_lakehouse import jobs
from crypto_lakehouse.config import load_settings
from crypto_lakehouse.jobs._prefect import PrefectTasks, dask_task_runner
from crypto_lakehouse.transform.book import BookBuild
from crypto_lakehouse.transform.gold import GoldResult


class GoldFlowResult(TypedDict):
    bars_written: dict[str, int]  # interval -> bars (re)written
    exchange_candles: int
    funding_rows: int


@flow(name="build-gold")
def build_gold_flow(config: str | None = None, root: str | None = None) -> GoldFlowResult:
    """Recompute the gold bars touched by new silver rows, and gold funding."""
    settings = load_settings(config, root=root)
    runner = dask_task_runner(settings.scale)
    if runner is None:
        r = jobs.promote_gold(settings)
    else:
        r = _groups.with_options(task_runner=runner)(config=config, root=root)
    rows = [{"interval": k, "bars_written": v} for k, v in r.bars_written.items()]
    book = r.book or BookBuild()
    create_table_artifact(
        key="gold-bars-written",
        table=rows or [{"note": "nothing new in silver"}],
        description=(
            f"exchange candles: {r.exchange_candles}, funding rows: {r.funding_rows}, "
            f"tick/volume/dollar bars: {r.info_bars or 'none'}, "
            f"book snapshots / quotes / microstructure rows: {book.snapshots} / {book.quotes} / {book.microstructure}, "
            f"anomalies: {r.anomalies}"
        ),
    )
    get_run_logger().info("build-gold: %s", r.bars_written)
    return {"bars_written": r.bars_written, "exchange_candles": r.exchange_candles, "funding_rows": r.funding_rows}


@flow(name="build-gold-groups")
def _groups(config: str | None, root: str | None) -> GoldResult:
    """The groups of a gold build as tasks on the flow's Dask task runner, committed once."""
    return jobs.promote_gold(load_settings(config, root=root), runner=PrefectTasks())


if __name__ == "__main__":
    build_gold_flow()
