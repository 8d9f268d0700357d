"""``lakehouse tag``: named versions for reproducible backtests."""

from __future__ import annotations

from typing import Annotated

import typer

from crypto_lakehouse import jobs
from crypto_lakehouse.cli._common import ConfigOpt, RootOpt, emit, settings

__all__ = ["app"]

app = typer.Typer(
    help="Named versions for reproducible backtests.",
    rich_markup_mode=None,
    epilog=(
        "\b\nExamples:\n"
        "  lakehouse tag create backtest-v1 --note 'data of run 17'\n"
        "  lakehouse tag list\n"
        "  lakehouse query 'select count(*) from silver.trades' --as-of backtest-v1"
    ),
)


@app.command("create")
def tag_create(
    name: Annotated[str, typer.Argument(metavar="NAME", help="Tag name.")],
    tables: Annotated[
        list[str] | None,
        typer.Option("--table", help="Only this table (repeatable); default: every silver and gold table."),
    ] = None,
    note: Annotated[str | None, typer.Option(help="Free text kept with the tag.")] = None,
    config: ConfigOpt = None,
    root: RootOpt = None,
) -> None:
    """Pin the current version of every silver and gold table (or the given ones) under NAME."""
    emit(jobs.create_tag(settings(config, root), name=name, tables=tables, note=note), "table", None)


@app.command("list")
def tag_list(config: ConfigOpt = None, root: RootOpt = None) -> None:
    """Every tag with the versions it pins."""
    emit(jobs.list_tags(settings(config, root)), "table", None)


@app.command("delete")
def tag_delete(
    name: Annotated[str, typer.Argument(metavar="NAME", help="Tag name.")],
    config: ConfigOpt = None,
    root: RootOpt = None,
) -> None:
    """Delete a tag (the data stays)."""
    jobs.delete_tag(settings(config, root), name=name)
    print(f"deleted tag {name}")
