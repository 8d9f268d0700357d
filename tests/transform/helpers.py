"""Stream a loopback exchange running in its own thread into bronze from this thread's loop, so
that synchronous ccxt backfill can later reach the same exchange."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from cryptofeed.connection import connection_stats

from crypto_lakehouse.ingest import BronzeWriter, FeedTarget, stream_to_bronze
from crypto_lakehouse.loopback import LoopbackExchange
from crypto_lakehouse.storage import Catalog


def stream_into_bronze(ex: LoopbackExchange, root: Path, *, writer_id: str = "w") -> BronzeWriter:
    v = ex.venue
    symbols = [v.std_symbol(s) for s in ex.market.symbols]
    target = FeedTarget(v.exchange, symbols, v.channels, ex.ws_url, ex.rest_url, ex.cert_pem)
    writer = BronzeWriter(Catalog(root), writer_id=writer_id, spool_dir=root / "spool", max_age_s=0.3)

    async def go() -> None:
        started = time.time()
        stop = asyncio.Event()
        task = asyncio.create_task(stream_to_bronze([target], writer, stop=stop))
        deadline = time.monotonic() + 120
        while not ex.status()["finished"]:
            assert time.monotonic() < deadline, "market did not finish"
            await asyncio.sleep(0.1)
        while sum(s.received for s in connection_stats(v.exchange, since=started).values()) < ex.stats.messages_sent:
            assert time.monotonic() < deadline, "client did not receive everything"
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
        stop.set()
        await task

    asyncio.run(go())
    return writer


def write_bronze(catalog: Catalog, table: str, rows: list[dict]) -> None:
    """Append ``rows`` (dicts of bronze columns; ``date``, ``writer_id``, ``batch_id`` and
    nullable columns may be left out) to ``table`` as one commit, as the writer would."""
    import polars as pl

    from crypto_lakehouse.schemas import BRONZE

    spec = BRONZE[table]
    schema = pl.from_arrow(spec.schema.empty_table()).schema  # type: ignore[union-attr]
    filled = [{"writer_id": "test", "batch_id": 0, "date": None, **r} for r in rows]
    df = pl.DataFrame(filled, schema={c: schema[c] for c in filled[0]})
    df = df.with_columns(pl.coalesce("ts", "receipt_ts").dt.date().alias("date"))
    df = df.with_columns(pl.lit(None, dtype=t).alias(c) for c, t in schema.items() if c not in df.columns)
    catalog.append(table, df.select(spec.schema.names).to_arrow().cast(spec.schema))
