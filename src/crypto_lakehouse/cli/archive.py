"""``lakehouse archive``: Binance public-data archives into bronze."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Annotated

import typer

from crypto_lakehouse import jobs
from crypto_lakehouse.cli._common import ConfigOpt, RootOpt, csv, out, settings
from crypto_lakehouse.errors import LakehouseError

__all__ = ["app"]

app = typer.Typer(
    help="Binance public-data archives (data.binance.vision layout).",
    rich_markup_mode=None,
    epilog=(
        "\b\nExamples:\n"
        "  lakehouse archive import --market um --kind aggTrades --symbols BTCUSDT\n"
        "      --start 2024-01-01 --end 2024-01-02 --base-url http://127.0.0.1:PORT"
    ),
)


@app.command("import")
def archive_import(
    market: Annotated[str, typer.Option(help="spot, um (USD-M futures) or cm (coin-M futures).")],
    kind: Annotated[str, typer.Option(help="aggTrades, klines:<interval>, fundingRate or bookTicker.")],
    symbols: Annotated[str, typer.Option(help="Exchange symbols, comma-separated (BTCUSDT,ETHUSDT).")],
    start: Annotated[str, typer.Option(help="First day, YYYY-MM-DD.")],
    end: Annotated[str, typer.Option(help="Last day (inclusive), YYYY-MM-DD.")],
    base_url: Annotated[str, typer.Option(help="Archive server.")] = "https://data.binance.vision",
    workers: Annotated[int, typer.Option(help="Parallel downloads.")] = 4,
    cache_dir: Annotated[Path, typer.Option(help="Where downloads (and resumable partial ones) are kept.")] = Path(
        "./lakehouse_archive_cache"
    ),
    config: ConfigOpt = None,
    root: RootOpt = None,
) -> None:
    """Import archives into bronze: checksum-verified, one commit per file, re-runs skip done files.
    Exits with 1 if any file failed (the others are imported)."""
    s = settings(config, root)
    try:
        first, last = date.fromisoformat(start), date.fromisoformat(end)
    except ValueError as exc:
        raise LakehouseError(f"--start/--end must be YYYY-MM-DD: {exc}") from None
    result = jobs.archive_import(
        s,
        market=market,
        kind=kind,
        symbols=csv(symbols) or [],
        start=first,
        end=last,
        base_url=base_url,
        workers=workers,
        cache_dir=cache_dir,
        progress=out.is_terminal,
    )
    print(json.dumps({"imported": result.imported, "skipped": result.skipped, "failed": result.failed}))
    if not result.ok:
        raise typer.Exit(1)
