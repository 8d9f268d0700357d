"""``lakehouse maintain``: compact, checkpoint, vacuum and retention of the tables."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import TYPE_CHECKING, Annotated

import typer

from crypto_lakehouse import jobs
from crypto_lakehouse.cli._common import ConfigOpt, RootOpt, settings

if TYPE_CHECKING:
    from crypto_lakehouse.maintenance import MaintenanceReport

__all__ = ["app"]

app = typer.Typer(
    help="Table maintenance (never loses data, never breaks a tag).",
    rich_markup_mode=None,
    epilog=(
        "\b\nExamples:\n"
        "  lakehouse maintain compact --table silver.trades\n"
        "  lakehouse maintain checkpoint\n"
        "  lakehouse maintain vacuum"
    ),
)

TableOpt = Annotated[list[str] | None, typer.Option("--table", help="Only this table (repeatable); default: all.")]


def _print(reports: list[MaintenanceReport]) -> None:
    print(json.dumps([asdict(r) for r in reports], default=str))


@app.command("compact")
def maintain_compact(
    tables: TableOpt = None,
    z_order: Annotated[
        list[str] | None,
        typer.Option("--z-order", help="Cluster each partition by these columns (repeatable); docs/maintenance.md."),
    ] = None,
    config: ConfigOpt = None,
    root: RootOpt = None,
) -> None:
    """Merge small files (safe while the writer appends)."""
    _print(jobs.compact(settings(config, root), tables=tables, z_order=z_order))


@app.command("checkpoint")
def maintain_checkpoint(tables: TableOpt = None, config: ConfigOpt = None, root: RootOpt = None) -> None:
    """Write checkpoints; clean expired log entries unless a tag needs them."""
    _print(jobs.checkpoint(settings(config, root), tables=tables))


@app.command("vacuum")
def maintain_vacuum(tables: TableOpt = None, config: ConfigOpt = None, root: RootOpt = None) -> None:
    """Delete files older than the layer's maintenance.vacuum_horizon that no tagged version needs."""
    _print(jobs.vacuum(settings(config, root), tables=tables))


@app.command("retention")
def maintain_retention(tables: TableOpt = None, config: ConfigOpt = None, root: RootOpt = None) -> None:
    """Delete data older than maintenance.data_retention.<layer> (tagged versions still read it)."""
    _print(jobs.delete_old_data(settings(config, root), tables=tables))
