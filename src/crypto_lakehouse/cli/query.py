"""``lakehouse query``, ``history`` and ``tables``: read the lakehouse (DuckDB SQL, commits, tables)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from crypto_lakehouse.cli._common import ConfigOpt, RootOpt, emit, settings

if TYPE_CHECKING:
    from crypto_lakehouse.query import Lakehouse

__all__ = ["history", "query", "tables"]


def _lakehouse(config: Path | None, root: str | None) -> Lakehouse:
    from crypto_lakehouse.query import Lakehouse  # Polars, delta-rs, DuckDB: only for the commands that read

    s = settings(config, root)
    return Lakehouse(s.root, config=s)


def _as_of(text: str | None) -> int | str | None:
    return int(text) if text is not None and text.isdigit() else text


def query(
    sql: Annotated[
        str, typer.Argument(metavar="SQL", help="DuckDB SQL; tables are bronze.trades, silver.trades, gold.ohlcv, ...")
    ],
    as_of: Annotated[str | None, typer.Option(help="Delta version, RFC 3339 time or tag name.")] = None,
    format: Annotated[str, typer.Option("--format", help="table, csv, json or parquet.")] = "table",
    output: Annotated[Path | None, typer.Option(help="Write the result to this file.")] = None,
    config: ConfigOpt = None,
    root: RootOpt = None,
) -> None:
    """Run SQL over the lakehouse (DuckDB). Bad SQL prints DuckDB's message and exits with 2."""
    emit(_lakehouse(config, root).sql(sql, as_of=_as_of(as_of)), format, output)


def history(
    table: Annotated[str, typer.Argument(metavar="TABLE", help="e.g. silver.trades")],
    config: ConfigOpt = None,
    root: RootOpt = None,
) -> None:
    """Commits of a table, newest first."""
    from crypto_lakehouse.schemas import table_name

    emit(_lakehouse(config, root).history(table_name(table)), "table", None)


def tables(config: ConfigOpt = None, root: RootOpt = None) -> None:
    """Tables that exist under the root: table, uri, version, rows, files, bytes."""
    emit(_lakehouse(config, root).tables(), "table", None)
