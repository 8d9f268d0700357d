"""Promote-silver while writers stream and maintenance runs: no bronze commit is ever skipped.

The chaos run that found it: two writers appending into one root while compaction and
promote-silver loop beside them. With backfill **disabled** (nothing can re-fetch what promote
skipped), silver must end equal to bronze's trades, and no silver row may say `backfill`.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from crypto_lakehouse.ingest import BronzeWriter
from crypto_lakehouse.maintenance import compact
from crypto_lakehouse.storage import Catalog
from crypto_lakehouse.transform.silver import SilverOptions, promote_silver

DURATION_S = float(os.environ.get("LAKEHOUSE_CHAOS_SECONDS", "60"))


def _write(catalog: Catalog, tmp: Path, name: str, symbol: str, stop: threading.Event, counts: dict) -> None:
    """One streaming writer: small commits of contiguous trade ids of one symbol, fast."""
    writer = BronzeWriter(catalog, writer_id=name, spool_dir=tmp / "spool", max_age_s=0.05, compact_every=7)

    async def go() -> None:
        await writer.start()
        next_id = 0
        while not stop.is_set():
            now = datetime.now(UTC).timestamp()
            n = 20 + next_id % 37
            rows = [(  "BINANCE", symbol, now, now, str(i), "buy", "100.5", "0.1", None)
                    for i in range(next_id, next_id + n)]  # fmt: skip
            writer.add_many("bronze.trades", rows)
            await writer.flush()
            next_id += n
            await asyncio.sleep(0.01)
        counts[symbol] = next_id

    asyncio.run(go())


def test_promote_beside_two_writers_and_compaction_skips_no_bronze_commit(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path / "lake")
    stop = threading.Event()
    counts: dict[str, int] = {}
    threads = [
        threading.Thread(target=_write, args=(catalog, tmp_path, f"w{k}", sym, stop, counts))
        for k, sym in enumerate(["BTC-USDT", "ETH-USDT"])
    ]

    def maintain() -> None:
        while not stop.is_set():
            if catalog.exists("bronze.trades"):
                compact(catalog, "bronze.trades")
            stop.wait(0.5)

    threads.append(threading.Thread(target=maintain))
    for t in threads:
        t.start()
    options = SilverOptions(backfill=False)
    promotes = 0
    deadline = time.monotonic() + DURATION_S
    try:
        while time.monotonic() < deadline:
            if catalog.exists("bronze.trades"):
                promote_silver(catalog, tables=["silver.trades"], options=options)
                promotes += 1
            time.sleep(0.2)
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    promote_silver(catalog, tables=["silver.trades"], options=options)

    bronze = pl.read_delta(catalog.uri("bronze.trades")).select("symbol", pl.col("id").cast(pl.Int64))
    silver = pl.read_delta(catalog.uri("silver.trades"))
    assert promotes >= 20 and set(counts) == {"BTC-USDT", "ETH-USDT"}
    for symbol, n in counts.items():  # bronze holds exactly what the writers sent...
        assert sorted(bronze.filter(symbol=symbol)["id"].to_list()) == list(range(n))
    # ...and silver exactly bronze, without a single row re-fetched (backfill is off)
    assert silver.height == bronze.height
    assert silver.select("symbol", "id").sort("symbol", "id").equals(bronze.sort("symbol", "id"))
    assert silver.filter(pl.col("source") != "stream").is_empty()
