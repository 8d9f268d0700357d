"""Maintenance jobs: ``compact``, ``checkpoint``, ``vacuum``, ``delete_old_data`` (the
``retention`` command and flow) and ``maintain``, which runs any of them in turn.

Each plans one step per table (:func:`plan_maintenance`: which tables, with which horizon from
``settings.maintenance``) and runs it (:func:`run_maintenance_step`); the Prefect flows run each
step as a task of its own."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal, get_args

from crypto_lakehouse import maintenance
from crypto_lakehouse.config import MaintenanceSettings, Settings
from crypto_lakehouse.maintenance import MaintenanceReport
from crypto_lakehouse.schemas import TABLES, table_spec
from crypto_lakehouse.storage import Catalog

__all__ = [
    "MAINTENANCE_ACTIONS",
    "MaintenanceAction",
    "MaintenanceStep",
    "checkpoint",
    "compact",
    "delete_old_data",
    "maintain",
    "maintenance_steps",
    "plan_maintenance",
    "run_maintenance_step",
    "vacuum",
]

MaintenanceAction = Literal["retention", "compact", "checkpoint", "vacuum"]
MAINTENANCE_ACTIONS: tuple[MaintenanceAction, ...] = get_args(MaintenanceAction)
"""Every action, in the order :func:`maintain` runs them by default: old data deleted first,
so compaction does not rewrite it and vacuum can later free its files."""


@dataclass(frozen=True, slots=True)
class MaintenanceStep:
    """One action on one table. ``horizon``: the vacuum horizon (vacuum) or how long data is
    kept (retention); None for the other actions."""

    action: MaintenanceAction
    table: str
    horizon: timedelta | None = None
    z_order: tuple[str, ...] = ()


def maintenance_steps(
    action: MaintenanceAction,
    tables: Sequence[str],
    *,
    settings: MaintenanceSettings,
    z_order: Sequence[str] = (),
) -> list[MaintenanceStep]:
    """The steps of ``action`` over ``tables``. Retention skips a table whose layer keeps data
    forever (``maintenance.data_retention.<layer>`` null) or that is not partitioned by date."""
    if action not in MAINTENANCE_ACTIONS:
        raise ValueError(f"unknown maintenance action {action!r}")
    steps: list[MaintenanceStep] = []
    for table in tables:
        horizon = None
        if action == "vacuum":
            horizon = settings.horizon_of(table)
        elif action == "retention":
            horizon = settings.data_retention_of(table)
            if horizon is None or "date" not in table_spec(table).partition_by:
                continue
        steps.append(MaintenanceStep(action, table, horizon, tuple(z_order) if action == "compact" else ()))
    return steps


def _maintained_tables(catalog: Catalog) -> list[str]:
    """Every data table that exists (``meta.*`` tables are bookkeeping, never maintained)."""
    return [t for t in TABLES if not t.startswith("meta.") and catalog.exists(t)]


def plan_maintenance(
    catalog: Catalog,
    action: MaintenanceAction,
    *,
    settings: MaintenanceSettings,
    tables: Sequence[str] | None = None,
    z_order: Sequence[str] | None = None,
) -> list[MaintenanceStep]:
    """The steps of ``action`` over ``tables`` (default: every existing data table)."""
    names = list(tables) if tables else _maintained_tables(catalog)
    return maintenance_steps(action, names, settings=settings, z_order=z_order or ())


def run_maintenance_step(catalog: Catalog, step: MaintenanceStep) -> MaintenanceReport:
    """Run one step (see :mod:`crypto_lakehouse.maintenance`: none loses data or breaks a tag)."""
    if step.action == "compact":
        return maintenance.compact(catalog, step.table, z_order=step.z_order or None)
    if step.action == "checkpoint":
        return maintenance.checkpoint(catalog, step.table)
    if step.action == "vacuum":
        return maintenance.vacuum(catalog, step.table, horizon=step.horizon)
    assert step.horizon is not None  # maintenance_steps skips tables that keep data forever
    return maintenance.retention(catalog, step.table, keep=step.horizon)


def maintain(
    settings: Settings,
    *,
    actions: Sequence[MaintenanceAction] = MAINTENANCE_ACTIONS,
    tables: Sequence[str] | None = None,
    z_order: Sequence[str] | None = None,
) -> list[MaintenanceReport]:
    """Run ``actions`` in turn, each over ``tables`` (default: every existing data table);
    ``z_order`` columns cluster compaction. One report per table and action."""
    catalog = Catalog.from_settings(settings)
    reports: list[MaintenanceReport] = []
    for action in actions:
        plan = plan_maintenance(catalog, action, settings=settings.maintenance, tables=tables, z_order=z_order)
        reports += [run_maintenance_step(catalog, step) for step in plan]
    return reports


def compact(
    settings: Settings, *, tables: Sequence[str] | None = None, z_order: Sequence[str] | None = None
) -> list[MaintenanceReport]:
    """Merge small files (safe while the writer appends); ``z_order`` columns cluster each
    partition by them (docs/maintenance.md)."""
    return maintain(settings, actions=["compact"], tables=tables, z_order=z_order)


def checkpoint(settings: Settings, *, tables: Sequence[str] | None = None) -> list[MaintenanceReport]:
    """Write checkpoints; clean expired log entries unless a tag needs them."""
    return maintain(settings, actions=["checkpoint"], tables=tables)


def vacuum(settings: Settings, *, tables: Sequence[str] | None = None) -> list[MaintenanceReport]:
    """Delete files older than the layer's vacuum horizon that no tagged version needs."""
    return maintain(settings, actions=["vacuum"], tables=tables)


def delete_old_data(settings: Settings, *, tables: Sequence[str] | None = None) -> list[MaintenanceReport]:
    """Delete data older than ``maintenance.data_retention.<layer>`` (tagged versions still read it)."""
    return maintain(settings, actions=["retention"], tables=tables)
