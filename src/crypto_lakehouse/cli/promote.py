"""``lakehouse promote``: bronze -> silver -> gold."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from crypto_lakehouse import jobs
from crypto_lakehouse.cli._common import ConfigOpt, RootOpt, csv, settings

__all__ = ["app"]

app = typer.Typer(
    help="Promote data between layers (bronze -> silver -> gold).",
    rich_markup_mode=None,
    epilog=("\b\nExamples:\n  lakehouse promote silver --tables trades --start -1h\n  lakehouse promote gold"),
)

WindowOpt = Annotated[
    str | None, typer.Option(help="Exchange-time bound: 2024-01-01, 2024-01-01T12:00:00Z or -2h (ago).")
]


@app.command("silver")
def promote_silver(
    config: ConfigOpt = None,
    root: RootOpt = None,
    start: WindowOpt = None,
    end: WindowOpt = None,
    tables: Annotated[str | None, typer.Option(help="Only these tables (trades,book,...), comma-separated.")] = None,
) -> None:
    """bronze -> silver: validate, quarantine, deduplicate, fill gaps (ccxt). Only new bronze commits,
    unless --start/--end reprocess a window (idempotent either way). Prints a JSON summary."""
    result = jobs.promote_silver(settings(config, root), start=start, end=end, tables=csv(tables))
    print(json.dumps(result.summary()))


@app.command("gold")
def promote_gold(config: ConfigOpt = None, root: RootOpt = None) -> None:
    """silver -> gold: OHLCV at every configured interval, exchange candles, funding. Incremental;
    rerunning with nothing new writes nothing. Prints a JSON summary."""
    r = jobs.promote_gold(settings(config, root))
    print(
        json.dumps(
            {
                "bars_written": r.bars_written,
                "exchange_candles": r.exchange_candles,
                "funding_rows": r.funding_rows,
                "silver_versions": r.silver_versions,
            }
        )
    )
