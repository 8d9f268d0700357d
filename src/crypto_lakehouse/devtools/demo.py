"""``lakehouse demo``: the main job on embedded defaults, printing what it did.

1. the loopback exchange replays the recorded BINANCE_FUTURES session, streamed by the real
   cryptofeed handler into the bronze Delta tables;
2. then a synthetic market with a few symbols for ``seconds``, with a live progress table;
3. promote-silver (validation, dedup, gaps backfilled with ccxt from the same exchange) and
   build-gold (OHLCV at every configured interval);
4. a summary per table (rows, Delta version, files, location) and the last 1m bars of a symbol.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import polars as pl
from rich.console import Console
from rich.table import Table

from crypto_lakehouse.config import Settings
from crypto_lakehouse.ingest import BronzeWriter, FeedTarget, stream_to_bronze
from crypto_lakehouse.ingest.backfill import Backfiller
from crypto_lakehouse.ingest.progress import live_progress
from crypto_lakehouse.loopback import LoopbackExchange, MarketSpec, load_recording
from crypto_lakehouse.loopback.replay import ingest_recording
from crypto_lakehouse.schemas import BRONZE, GOLD, SILVER
from crypto_lakehouse.transform.gold import build_gold
from crypto_lakehouse.transform.silver import SilverOptions, promote_silver

__all__ = ["run_demo"]


async def _demo(settings: Settings, writer: BronzeWriter, recording: Path, seconds: float, console: Console) -> None:
    started = time.monotonic()
    if Path(f"{recording}.0").is_file():
        rec = load_recording(recording)
        console.print(
            f"[bold]1.[/] replaying the recorded {rec.exchange} session {rec.name} ({len(rec.frames)} frames)"
        )
        summary = await ingest_recording(rec, writer)
        console.print(f"   rows: { {k: v for k, v in summary['rows'].items() if v} }")
    else:
        console.print(f"[yellow]recording {recording} not found: skipping the replay step[/]")

    lb = settings.loopback
    spec = MarketSpec(exchange=lb.exchange, symbols=lb.symbols, seed=lb.seed, rate=lb.rate)
    async with LoopbackExchange(market=spec) as ex:
        console.print(
            f"[bold]2.[/] synthetic {lb.exchange} market {', '.join(lb.symbols)} at {lb.rate:g} msgs/s for "
            f"{seconds:g} s ({ex.ws_url})"
        )
        v = ex.venue
        target = FeedTarget(
            v.exchange,
            symbols=[v.std_symbol(s) for s in lb.symbols],
            channels=v.channels,
            ws_url=ex.ws_url,
            rest_url=ex.rest_url,
            cert_pem=ex.cert_pem,
        )
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(seconds, stop.set)
        view = asyncio.create_task(live_progress(writer, stop, console=console, title="bronze <- synthetic market"))
        await stream_to_bronze([target], writer, stop=stop)
        await view
        sent = ex.stats.messages_sent
        console.print()
        console.print(
            "[bold]3.[/] promote-silver (gaps backfilled over REST by ccxt from this exchange) and build-gold"
        )
        silver = await asyncio.to_thread(
            promote_silver,
            writer.catalog,
            backfiller=Backfiller({v.exchange: ex.rest_url}),
            options=SilverOptions.from_settings(settings.silver),
        )
    gold = await asyncio.to_thread(build_gold, writer.catalog, intervals=settings.gold.intervals)
    for table, metrics in silver.totals().items():
        console.print(f"   {table}: {metrics}")
    console.print(f"   gold.ohlcv bars (re)written per interval: {gold.bars_written}")

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
    sym = v.std_symbol(lb.symbols[0])
    bars = (
        catalog.scan("gold.ohlcv")
        .filter((pl.col("source") == "trades") & (pl.col("interval") == "1m") & (pl.col("symbol") == sym))
        .sort("window_start")
        .tail(5)
        .select("window_start", "open", "high", "low", "close", "volume", "trades", "vwap")
        .collect()
    )
    with pl.Config(tbl_rows=10, tbl_cols=10, tbl_width_chars=140):
        console.print(f"last 1m bars of {sym} (gold.ohlcv):")
        console.print(str(bars), markup=False, highlight=False)
    console.print(
        f"synthetic exchange sent {sent:,} messages; writer {writer.writer_id!r} committed "
        f"{sum(st.commits for st in writer.stats.values()):,} Delta commits in {time.monotonic() - started:.0f} s. "
        "Read them with polars.scan_delta(...), deltalake.DeltaTable(...) or DuckDB."
    )


def run_demo(settings: Settings, writer: BronzeWriter, *, recording: Path, seconds: float, console: Console) -> None:
    """Run the demo end to end (about ``seconds`` + 10 s)."""
    asyncio.run(_demo(settings, writer, recording, seconds, console))
