"""What the command modules share: the ``--config``/``--root`` options, the consoles, loading
settings and printing results."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from crypto_lakehouse.config import Settings, load_settings
from crypto_lakehouse.errors import LakehouseError

if TYPE_CHECKING:
    import polars as pl

__all__ = ["ConfigOpt", "RootOpt", "console", "csv", "emit", "out", "set_global_options", "settings"]

console = Console(stderr=True, soft_wrap=True)  # messages and errors
out = Console(width=None if sys.stdout.isatty() else 140)  # results

ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="YAML config file (default: embedded defaults = config/local.yaml)."),
]
RootOpt = Annotated[
    str | None,
    typer.Option(
        "--root", help="Storage root, a local path or s3://bucket/prefix (overrides config and LAKEHOUSE_ROOT)."
    ),
]


_GLOBAL: dict[str, Path | str | None] = {"config": None, "root": None}


def set_global_options(*, config: Path | None, root: str | None) -> None:
    """``lakehouse --config C --root R <command>``: the defaults of every command's own options."""
    _GLOBAL.update(config=config, root=root)


def settings(config: Path | None, root: str | None) -> Settings:
    """The effective settings: ``config`` (or the embedded defaults), LAKEHOUSE_* and ``root``;
    a command's own ``--config``/``--root`` win over those given before the command."""
    return load_settings(config or _GLOBAL["config"], root=root or _GLOBAL["root"])


def csv(text: str | None) -> list[str] | None:
    """A comma-separated option as a list (None when not given or empty)."""
    return [x.strip() for x in text.split(",") if x.strip()] if text else None


def emit(df: pl.DataFrame, fmt: str, output: Path | None) -> None:
    """Print ``df`` (or write it to ``output``) as a table, CSV, JSON or Parquet."""
    fmt = fmt.lower()
    if fmt == "parquet":
        if output is None:
            raise LakehouseError("--format parquet needs --output FILE")
        df.write_parquet(output)
        return
    if fmt == "csv":
        text = df.write_csv()
    elif fmt == "json":
        text = df.write_json()
    elif fmt == "table":
        import polars as pl  # loaded by every caller already: the data frame is Polars

        with pl.Config(tbl_rows=50, tbl_cols=30, tbl_width_chars=200):
            text = str(df)
    else:
        raise LakehouseError(f"unknown --format {fmt!r}: choose table, csv, json or parquet")
    if output is not None:
        output.write_text(text)
    else:
        print(text)
