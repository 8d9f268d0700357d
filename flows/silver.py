"""Prefect flow ``promote-silver``: bronze -> silver, with the data-quality report as an artifact."""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact

from crypto_lakehouse import jobs
from crypto_lakehouse.config import load_settings


@flow(name="promote-silver")
def promote_silver_flow(
    config: str | None = None,
    root: str | None = None,
    start: str | None = None,
    end: str | None = None,
    tables: list[str] | None = None,
) -> dict[str, dict[str, int]]:
    """Promote new bronze commits (or reprocess ``start``..``end``) into silver and fill gaps;
    ``tables``: only these (trades, book, ...)."""
    result = jobs.promote_silver(load_settings(config, root=root), start=start, end=end, tables=tables).promotion
    report = result.report.to_dicts() if result.report is not None else []
    create_table_artifact(
        key="silver-dq-report",
        table=[{k: str(v) for k, v in row.items()} for row in report] or [{"note": "nothing new to promote"}],
        description=f"promote-silver run {result.run_id}: rows in/out, duplicates, quarantine rules, gaps",
    )
    get_run_logger().info("promote-silver %s: %s", result.run_id, result.totals())
    return result.totals()


if __name__ == "__main__":
    promote_silver_flow()
