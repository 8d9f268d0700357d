"""``lakehouse quality``: the completeness ledger (docs/quality.md), as a table or JSON."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from crypto_lakehouse import jobs
from crypto_lakehouse.cli._common import ConfigOpt, RootOpt, out, settings

if TYPE_CHECKING:
    import polars as pl

__all__ = ["ledger_table", "quality"]


def _count(v: int | None) -> str:
    return "-" if v is None else f"{v:,}"


def ledger_table(ledger: pl.DataFrame) -> Table:
    """The ledger as a rich table: one line per stream and day, the score last."""
    table = Table(title="completeness ledger (docs/quality.md)")
    for name in ("day", "exchange", "symbol", "channel", "rows", "quarantined", "covered", "ids", "gaps o/f/u"):
        table.add_column(name, justify="left" if name in ("day", "exchange", "symbol", "channel") else "right")
    table.add_column("breaks", justify="right")
    table.add_column("score", justify="right")
    for r in ledger.iter_rows(named=True):
        covered = "-" if r["covered_seconds"] is None else f"{r['covered_seconds'] / max(r['day_seconds'], 1e-9):.2%}"
        ids = "-" if r["ids_expected"] is None else f"{_count(r['ids_present'])}/{_count(r['ids_expected'])}"
        gaps = f"{r['gaps_open']}/{r['gaps_filled']}/{r['gaps_unfillable']}"
        mark = "[green]complete[/]" if r["complete"] else f"{r['score']:.4f}"
        table.add_row(
            str(r["date"]),
            r["exchange"],
            r["symbol"],
            r["channel"],
            _count(r["rows"]),
            _count(r["quarantined"]),
            covered,
            ids,
            gaps,
            str(r["sequence_breaks"]),
            mark,
        )
    return table


def quality(
    day: Annotated[str | None, typer.Option(help="Only this UTC day, YYYY-MM-DD.")] = None,
    exchange: Annotated[str | None, typer.Option(help="Only this exchange (cryptofeed id, e.g. BINANCE).")] = None,
    symbol: Annotated[str | None, typer.Option(help="Only this symbol, e.g. BTC-USDT.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON, one object per row, every column.")] = False,
    config: ConfigOpt = None,
    root: RootOpt = None,
) -> None:
    """The completeness ledger: per exchange, symbol, channel and UTC day, rows, quarantined rows, time
    covered by sessions, trade ids present/expected, gaps open/filled/unfillable, book sequence breaks
    and the DQ score (promote silver builds it)."""
    ledger = jobs.quality(settings(config, root), day=day, exchange=exchange, symbol=symbol)
    if as_json:
        print(ledger.write_json())
    else:
        out.print(ledger_table(ledger))
