"""Prefect flows ``compact``, ``checkpoint``, ``vacuum`` and ``retention``: one task per table,
each reporting files before/after and bytes freed as a table artifact. Deployments run them
with a concurrency limit of 1, so one table is never compacted twice at once."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any  # the reports are asdict(MaintenanceReport)s: dict[str, Any]

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact

from crypto_lakehouse import jobs
from crypto_lakehouse.config import load_settings
from crypto_lakehouse.storage import Catalog


@task(retries=2, retry_delay_seconds=10)
def _run(catalog: Catalog, step: jobs.MaintenanceStep) -> dict[str, Any]:
    return asdict(jobs.run_maintenance_step(catalog, step))


def _maintain(
    action: jobs.MaintenanceAction,
    config: str | None,
    root: str | None,
    tables: list[str] | None,
    z_order: list[str] | None = None,
) -> list[dict[str, Any]]:
    s = load_settings(config, root=root)
    catalog = Catalog.from_settings(s)
    plan = jobs.plan_maintenance(catalog, action, settings=s.maintenance, tables=tables, z_order=z_order)
    reports = [_run(catalog, step) for step in plan]
    create_table_artifact(
        key=f"maintenance-{action}",
        table=[{k: str(v) for k, v in r.items()} for r in reports] or [{"note": "no table to maintain"}],
        description=f"{action} of {len(reports)} tables",
    )
    get_run_logger().info("%s: %s", action, reports)
    return reports


@flow(name="compact")
def compact_flow(
    config: str | None = None,
    root: str | None = None,
    tables: list[str] | None = None,
    z_order: list[str] | None = None,
) -> list[dict[str, Any]]:
    """Merge small files of ``tables`` (default: all); ``z_order`` columns cluster each partition."""
    return _maintain("compact", config, root, tables, z_order)


@flow(name="checkpoint")
def checkpoint_flow(
    config: str | None = None, root: str | None = None, tables: list[str] | None = None
) -> list[dict[str, Any]]:
    """Checkpoints of ``tables`` (default: all); expired log entries cleaned unless a tag needs them."""
    return _maintain("checkpoint", config, root, tables)


@flow(name="vacuum")
def vacuum_flow(
    config: str | None = None, root: str | None = None, tables: list[str] | None = None
) -> list[dict[str, Any]]:
    """Delete files past the layer's vacuum horizon that no tagged version needs."""
    return _maintain("vacuum", config, root, tables)


@flow(name="retention")
def retention_flow(
    config: str | None = None, root: str | None = None, tables: list[str] | None = None
) -> list[dict[str, Any]]:
    """Delete data older than ``maintenance.data_retention.<layer>`` (tagged versions still read it)."""
    return _maintain("retention", config, root, tables)
