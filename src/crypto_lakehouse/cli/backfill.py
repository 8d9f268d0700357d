"""``lakehouse backfill``: one symbol's trades for a time range over REST into silver."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Annotated

import typer

from crypto_lakehouse import jobs
from crypto_lakehouse.cli._common import ConfigOpt, RootOpt, console, settings

__all__ = ["backfill"]


def backfill(
    exchange: Annotated[str, typer.Option(help="BINANCE, BINANCE_US, BINANCE_FUTURES or BINANCE_DELIVERY.")],
    symbol: Annotated[str, typer.Option(help="cryptofeed symbol, e.g. BTC-USDT-PERP.")],
    start: Annotated[str, typer.Option(help="2024-01-01T00:00:00Z or -2h (ago).")],
    end: Annotated[str | None, typer.Option(help="Default: now.")] = None,
    rest: Annotated[
        str | None, typer.Option(help="REST base (a loopback exchange); default: config / the exchange's own.")
    ] = None,
    config: ConfigOpt = None,
    root: RootOpt = None,
) -> None:
    """Fetch one symbol's trades for a time range over REST (ccxt) into silver, validated and deduplicated."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[rows]:,} trades"))
    with Progress(
        *columns, TimeElapsedColumn(), console=console, transient=True, disable=not console.is_terminal
    ) as bar:
        task = bar.add_task(f"backfill {exchange.upper()} {symbol}", total=1.0, rows=0)
        result = jobs.backfill(
            settings(config, root),
            exchange=exchange,
            symbol=symbol,
            start=start,
            end=end,
            rest=rest,
            progress=lambda rows, done: bar.update(task, completed=done, rows=rows),
        )
    print(json.dumps(asdict(result)))
