"""Prefect flow ``build-gold``: silver -> gold (OHLCV at every configured interval, funding)."""

from __future__ import annotations

from typing import TypedDict

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact

from crypto_lakehouse import jobs
from crypto_lakehouse.config import load_settings


class GoldFlowResult(TypedDict):
    bars_written: dict[str, int]  # interval -> bars (re)written
    exchange_candles: int
    funding_rows: int


@flow(name="build-gold")
def build_gold_flow(config: str | None = None, root: str | None = None) -> GoldFlowResult:
    """Recompute the gold bars touched by new silver rows, and gold funding."""
    r = jobs.promote_gold(load_settings(config, root=root))
    rows = [{"interval": k, "bars_written": v} for k, v in r.bars_written.items()]
    create_table_artifact(
        key="gold-bars-written",
        table=rows or [{"note": "nothing new in silver"}],
        description=f"exchange candles: {r.exchange_candles}, funding rows: {r.funding_rows}",
    )
    get_run_logger().info("build-gold: %s", r.bars_written)
    return {"bars_written": r.bars_written, "exchange_candles": r.exchange_candles, "funding_rows": r.funding_rows}


if __name__ == "__main__":
    build_gold_flow()
