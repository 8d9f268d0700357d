"""A live terminal view of the bronze writer: rows committed, buffered and rows/s, commits, retries and the
(adaptive) batch age per table."""

from __future__ import annotations

import asyncio
import time

from rich.console import Console
from rich.live import Live
from rich.table import Table

from crypto_lakehouse.ingest.writer import BronzeWriter

__all__ = ["live_progress"]


def _render(writer: BronzeWriter, rates: dict[str, float], title: str) -> Table:
    t = Table(title=title)
    for col in ("table", "rows committed", "rows/s", "buffered", "commits", "retries", "batch age", "spooled"):
        t.add_column(col, justify="left" if col == "table" else "right")
    for name, s in writer.summary().items():
        t.add_row(
            name,
            f"{s['rows_committed']:,}",
            f"{rates.get(name, 0):,.0f}",
            f"{s['rows_buffered']:,}",
            f"{s['commits']:,}",
            f"{s['retries']:,}",
            f"{writer.stats[name].batch_age_s:.1f}s",  # adaptive: grows while commits are slow (pacing.py)
            f"{s['rows_spooled']:,}",
        )
    return t


async def live_progress(writer: BronzeWriter, stop: asyncio.Event, *, console: Console, title: str) -> None:
    """Redraw twice a second until ``stop``; rows/s counts committed + buffered rows."""
    last: dict[str, int] = {}
    last_t = time.monotonic()
    rates: dict[str, float] = {}
    with Live(_render(writer, rates, title), console=console, refresh_per_second=4, transient=False) as live:
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), 0.5)
            except TimeoutError:
                pass
            now = time.monotonic()
            for name, s in writer.summary().items():
                # (a batch being committed has left the buffer but is not counted committed yet:
                # the sum dips for a moment; never show that as a negative rate)
                total = max(s["rows_committed"] + s["rows_buffered"], last.get(name, 0))
                rates[name] = (total - last.get(name, 0)) / max(now - last_t, 1e-6)
                last[name] = total
            last_t = now
            live.update(_render(writer, rates, title))
