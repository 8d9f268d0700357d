"""The ``lakehouse`` command: one module per command group, each a thin wrapper over
:mod:`crypto_lakehouse.jobs`. Every command accepts ``--config`` and ``--root``.

Errors a user can cause print one line and exit with code 2; no tracebacks.
"""

from __future__ import annotations

import contextlib
import sys

import click
import typer

from crypto_lakehouse.cli import archive, backfill, config, demo, exchange, ingest, maintain, promote, query, tag
from crypto_lakehouse.cli._common import console
from crypto_lakehouse.errors import LakehouseError

__all__ = ["app", "main"]

app = typer.Typer(
    name="lakehouse",
    help="crypto-lakehouse: a Delta Lake medallion lakehouse for crypto market data.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
# commands, then groups, in the order `lakehouse --help` lists them
app.command("stream")(ingest.stream)
app.command("ingest-recording")(ingest.ingest_recording)
app.command("backfill")(backfill.backfill)
app.command("query")(query.query)
app.command("history")(query.history)
app.command("tables")(query.tables)
app.command("demo")(demo.demo)
app.add_typer(exchange.app, name="exchange")
app.add_typer(promote.app, name="promote")
app.add_typer(tag.app, name="tag")
app.add_typer(archive.app, name="archive")
app.add_typer(maintain.app, name="maintain")
app.add_typer(config.app, name="config")


def main() -> None:
    """Entry point of the ``lakehouse`` console script."""
    try:
        rc = app(standalone_mode=False)  # without standalone mode, click returns typer.Exit codes
        if isinstance(rc, int) and rc:
            sys.exit(rc)
    except LakehouseError as exc:
        console.print(f"[bold red]error:[/] {exc}", highlight=False)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        console.print("aborted")
        sys.exit(130)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    with contextlib.suppress(Exception):
        sys.stdout.flush()
