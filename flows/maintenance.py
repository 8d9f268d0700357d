"""Prefect flows ``compact``, ``checkpoint``, ``vacuum`` and ``retention``: one task per table,
each reporting files before/after and bytes freed as a table artifact. Deployments run them
with a concurrency limit of 1, so one table is never compacted twice at once."""

from __future__ import annotations

from dataclasses import asdict
from datetime import timedelta

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact

from crypto_lakehouse import maintenance
from crypto_lakehouse.config import load_settings
from crypto_lakehouse.schemas import TABLES
from crypto_lakehouse.storage import Catalog


@task(retries=2, retry_delay_seconds=10)
def _run(action: str, catalog: Catalog, table: str, horizon: timedelta | None) -> dict:
    if action == "compact":
        return asdict(maintenance.compact(catalog, table))
    if action == "checkpoint":
        return asdict(maintenance.checkpoint(catalog, table))
    if action == "vacuum":
        return asdict(maintenance.vacuum(catalog, table, retention=horizon))
    return asdict(maintenance.retention(catalog, table, keep=horizon))


def _maintain(action: str, config: str | None, root: str | None) -> list[dict]:
    s = load_settings(config, root=root)
    catalog = Catalog.from_settings(s)
    jobs: list[tuple[str, timedelta | None]] = []
    for t in TABLES:
        if t.startswith("meta.") or not catalog.exists(t):
            continue
        if action == "retention":
            keep = s.maintenance.retention.get(t.split(".")[0])
            if keep is not None and "date" in TABLES[t].partition_by:
                jobs.append((t, keep))
        else:
            jobs.append((t, s.maintenance.vacuum_horizon(t) if action == "vacuum" else None))
    reports = [_run(action, catalog, t, horizon) for t, horizon in jobs]
    create_table_artifact(
        key=f"maintenance-{action}",
        table=[{k: str(v) for k, v in r.items()} for r in reports] or [{"note": "no table to maintain"}],
        description=f"{action} of {len(reports)} tables",
    )
    get_run_logger().info("%s: %s", action, reports)
    return reports


@flow(name="compact")
def compact_flow(config: str | None = None, root: str | None = None) -> list[dict]:
    return _maintain("compact", config, root)


@flow(name="checkpoint")
def checkpoint_flow(config: str | None = None, root: str | None = None) -> list[dict]:
    return _maintain("checkpoint", config, root)


@flow(name="vacuum")
def vacuum_flow(config: str | None = None, root: str | None = None) -> list[dict]:
    return _maintain("vacuum", config, root)


@flow(name="retention")
def retention_flow(config: str | None = None, root: str | None = None) -> list[dict]:
    return _maintain("retention", config, root)
