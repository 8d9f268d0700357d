"""``lakehouse demo``: the main job on embedded defaults, printing what it did.

1. recorded sessions replayed through each venue's unmodified cryptofeed handler into the bronze
   Delta tables: cryptofeed's older BINANCE_FUTURES recording and the COINBASE, OKX and BYBIT
   captures of ``shared/data/cryptofeed-captures`` (each served by the loopback exchange);
2. two synthetic markets at once, Binance USD-M futures and OKX, streamed by one process for
   ``seconds`` with a live progress table;
3. promote-silver (validation, dedup, each venue's gaps backfilled with ccxt from its own
   exchange, the completeness ledger) and build-gold (OHLCV at every configured interval, the
   cross-venue and spike checks);
4. rows per venue and table, a summary per table (rows, Delta version, files, location), and the
   two synthetic venues' BTC 1m closes side by side from one SQL query.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import polars as pl
from rich.console import Console
from rich.table import Table

from crypto_lakehouse.config import Settings
from crypto_lakehouse.ingest import BronzeWriter, stream_to_bronze
from crypto_lakehouse.ingest.backfill import Backfiller
from crypto_lakehouse.ingest.progress import live_progress
from crypto_lakehouse.loopback import LoopbackExchange, MarketSpec
from crypto_lakehouse.loopback.replay import ingest_recording, load_any_recording, synthetic_target
from crypto_lakehouse.query import Lakehouse
from crypto_lakehouse.schemas import BRONZE, GOLD, SILVER
from crypto_lakehouse.storage import Catalog
from crypto_lakehouse.transform.anomalies import AnomalyOptions, build_anomalies
from crypto_lakehouse.transform.gold import build_gold
from crypto_lakehouse.transform.silver import SilverOptions, promote_silver

__all__ = ["CAPTURED_VENUES", "run_demo"]

CAPTURED_VENUES = ("COINBASE", "OKX", "BYBIT")
"""The recorded sessions (``<captures>/NAME.jsonl.zst``) the demo replays."""

# the second synthetic venue: OKX perpetual swaps, at a quarter of the configured rate (ccxt pages
# OKX's history 100 trades a request: what the market trades while promote runs is backfilled)
_OKX_SYMBOLS = ["BTC-USDT-SWAP", "ETH-USDT-SWAP"]
# what the per-venue table counts
_PER_VENUE = (
    "bronze.trades",
    "bronze.book",
    "bronze.ticker",
    "bronze.candles",
    "bronze.funding",
    "bronze.open_interest",
    "silver.trades",
    "silver.book",
    "gold.ohlcv",
    "gold.info_bars",
    "gold.book_snapshots",
    "gold.quotes",
    "gold.microstructure",
)


async def _replay(recordings: list[Path], writer: BronzeWriter, console: Console) -> None:
    for path in recordings:
        rec = load_any_recording(path)
        summary = await ingest_recording(rec, writer)
        console.print(f"   {summary['exchange']:<16} {rec.name}: {summary['frames']:,} frames")


def _per_venue(catalog: Catalog) -> Table:
    counts: dict[str, dict[str, int]] = {}
    for name in _PER_VENUE:
        if catalog.exists(name):
            for exchange, n in catalog.scan(name).group_by("exchange").len().collect().iter_rows():
                counts.setdefault(exchange, {})[name] = n
    table = Table(title="rows per venue and table")
    table.add_column("venue")
    for name in _PER_VENUE:
        table.add_column(name, justify="right")
    for exchange in sorted(counts):
        table.add_row(exchange, *(f"{counts[exchange].get(n, 0):,}" for n in _PER_VENUE))
    return table


async def _demo(
    settings: Settings, writer: BronzeWriter, recordings: list[Path], seconds: float, console: Console
) -> None:
    started = time.monotonic()
    if recordings:
        console.print("[bold]1.[/] recorded sessions, each replayed through its venue's cryptofeed handler")
        await _replay(recordings, writer, console)
    else:
        console.print("[yellow]no recorded session found: skipping the replay step[/]")

    lb = settings.loopback
    binance = MarketSpec(exchange=lb.exchange, symbols=lb.symbols, seed=lb.seed, rate=lb.rate)
    okx = MarketSpec(exchange="OKX", symbols=_OKX_SYMBOLS, seed=lb.seed + 1, rate=lb.rate / 4)
    async with LoopbackExchange(market=binance) as ex1, LoopbackExchange(market=okx) as ex2:
        console.print(
            f"[bold]2.[/] two synthetic markets in one process for {seconds:g} s: {lb.exchange} "
            f"{', '.join(lb.symbols)} at {lb.rate:g} msgs/s and OKX {', '.join(_OKX_SYMBOLS)} at {lb.rate / 4:g}"
        )
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(seconds, stop.set)
        view = asyncio.create_task(live_progress(writer, stop, console=console, title="bronze <- two markets"))
        await stream_to_bronze([synthetic_target(ex1), synthetic_target(ex2)], writer, stop=stop)
        await view
        sent = ex1.stats.messages_sent + ex2.stats.messages_sent
        console.print()
        console.print("[bold]3.[/] promote-silver (each venue's gaps backfilled over its own REST by ccxt), build-gold")
        silver = await asyncio.to_thread(
            promote_silver,
            writer.catalog,
            backfiller=Backfiller({ex1.venue.exchange: ex1.rest_url, "OKX": ex2.rest_url}),
            options=SilverOptions.from_settings(settings.silver),
        )
    gold = await asyncio.to_thread(
        build_gold, writer.catalog, intervals=settings.gold.intervals, bars=settings.gold.bars, book=settings.gold.book
    )
    flagged = await asyncio.to_thread(
        build_anomalies, writer.catalog, options=AnomalyOptions.from_settings(settings.quality)
    )
    for table, metrics in silver.totals().items():
        console.print(f"   {table}: {metrics}")
    console.print(f"   gold.ohlcv bars (re)written per interval: {gold.bars_written}")
    if gold.info_bars:
        console.print(f"   gold.info_bars bars (re)written per kind (gold.bars): {gold.info_bars}")
    ledger = silver.completeness if silver.completeness is not None else pl.DataFrame({"complete": []})
    console.print(
        f"   gold.completeness: {ledger.height} stream-days, {ledger['complete'].sum()} complete "
        f"(lakehouse quality); gold.anomalies: {flagged} 1 m bars flagged (docs/quality.md)"
    )
    if gold.book is not None:
        b = gold.book
        console.print(
            f"   gold.book_snapshots {b.snapshots:,}, gold.quotes {b.quotes:,}, "
            f"gold.microstructure {b.microstructure:,} rows"
        )
    console.print(_per_venue(writer.catalog))

    listing = Table(title=f"tables under {settings.root}")
    for col in ("table", "rows", "version", "files", "MB", "location"):
        listing.add_column(col, justify="left" if col in ("table", "location") else "right", overflow="fold")
    catalog = writer.catalog
    for name in (*BRONZE, *SILVER, *GOLD):
        s = await asyncio.to_thread(catalog.summary, name)
        if s["exists"]:
            listing.add_row(
                name, f"{s['rows']:,}", str(s["version"]), str(s["files"]), f"{s['bytes'] / 1e6:.2f}", s["uri"]
            )
        else:
            listing.add_row(name, "-", "-", "-", "-", "(not created: nothing to write)")
    console.print(listing)
    sym = "BTC-USDT-PERP"
    closes = Lakehouse(config=settings).sql(
        f"""
        SELECT b.window_start, b.close AS {ex1.venue.exchange.lower()}, o.close AS okx,
               round(10000 * (o.close - b.close) / b.close, 2) AS okx_vs_binance_bps
        FROM gold.bars b JOIN gold.bars o USING (window_start, symbol, interval)
        WHERE b.exchange = '{ex1.venue.exchange}' AND o.exchange = 'OKX' AND symbol = '{sym}' AND interval = '1m'
        ORDER BY window_start DESC LIMIT 5
        """
    )
    with pl.Config(tbl_rows=10, tbl_cols=10, tbl_width_chars=140):
        console.print(f"{sym} 1m close on both synthetic venues (one SQL join over gold.bars):")
        console.print(str(closes), markup=False, highlight=False)
    console.print(
        f"the synthetic exchanges sent {sent:,} messages; writer {writer.writer_id!r} committed "
        f"{sum(st.commits for st in writer.stats.values()):,} Delta commits in {time.monotonic() - started:.0f} s. "
        "Read them with polars.scan_delta(...), deltalake.DeltaTable(...) or DuckDB."
    )


def run_demo(
    settings: Settings, writer: BronzeWriter, *, recordings: list[Path], seconds: float, console: Console
) -> None:
    """Run the demo end to end (about ``seconds`` + 20 s): replay ``recordings`` (those that
    exist: legacy prefixes or ``.jsonl.zst`` captures), then the two synthetic markets."""
    present = [p for p in recordings if p.is_file() or Path(f"{p}.0").is_file()]
    asyncio.run(_demo(settings, writer, present, seconds, console))
