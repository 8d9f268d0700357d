"""Prefect flow ``promote-silver``: bronze -> silver, with the data-quality report as an artifact."""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact

from crypto_lakehouse.config import load_settings
from crypto_lakehouse.ingest.backfill import backfiller_from_settings
from crypto_lakehouse.transform.silver import parse_window, promote_from_settings


@flow(name="promote-silver")
def promote_silver_flow(
    config: str | None = None, root: str | None = None, start: str | None = None, end: str | None = None
) -> dict:
    """Promote new bronze commits (or reprocess ``start``..``end``) into silver and fill gaps."""
    settings = load_settings(config, root=root)
    result = promote_from_settings(
        settings, start=parse_window(start), end=parse_window(end), backfiller=backfiller_from_settings(settings)
    )
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
