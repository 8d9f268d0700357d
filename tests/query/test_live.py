"""The live buffer: a running writer's uncommitted rows are queryable, unioned with Delta without
duplicates; with no writer running, reads are Delta alone."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import polars as pl
import pytest

from crypto_lakehouse import Lakehouse, LakehouseError, load_settings
from crypto_lakehouse.exchange import LoopbackExchange, MarketSpec
from crypto_lakehouse.ingest import BronzeWriter, FeedTarget, stream_to_bronze
from crypto_lakehouse.storage import Catalog


def test_uncommitted_ticks_are_queryable_and_deduplicated(tmp_path: Path) -> None:
    settings = load_settings(root=str(tmp_path / "lake"), writer={"spool_dir": str(tmp_path / "spool")})
    lh = Lakehouse(config=settings)
    catalog = Catalog(settings.root)
    writer = BronzeWriter(catalog, writer_id="live", spool_dir=tmp_path / "spool", max_age_s=3600)
    seen: dict[str, object] = {}

    async def go() -> None:
        spec = MarketSpec(exchange="BINANCE", symbols=["BTCUSDT"], rate=2_000)
        async with LoopbackExchange(market=spec) as ex:
            target = FeedTarget("BINANCE", ["BTC-USDT"], ["trades", "ticker"], ex.ws_url, ex.rest_url, ex.cert_pem)
            stop = asyncio.Event()
            task = asyncio.create_task(stream_to_bronze([target], writer, stop=stop, live_port=0))
            while len(writer.buffered("bronze.trades")) < 200:
                await asyncio.sleep(0.05)
            registry = json.loads((tmp_path / "spool" / "live" / "live.json").read_text())
            assert registry["url"].startswith("http://127.0.0.1:")
            live = await asyncio.to_thread(lh.read, "bronze.trades", live=True)
            seen["live"] = live
            seen["buffered_then"] = len(writer.buffered("bronze.trades"))
            seen["delta_exists"] = catalog.exists("bronze.trades")
            seen["sql"] = await asyncio.to_thread(lh.sql, "select count(*) as n from bronze.trades", live=True)
            await writer.flush()  # now in Delta; then the same rows arrive again in the buffer
            committed = lh.read("bronze.trades")
            writer.add_many(
                "bronze.trades",
                [
                    tuple(r)
                    for r in committed.select(
                        "exchange",
                        "symbol",
                        pl.col("ts").dt.epoch("us") / 1e6,
                        pl.col("receipt_ts").dt.epoch("us") / 1e6,
                        "id",
                        "side",
                        "price",
                        "amount",
                        "type",
                    ).rows()
                ],
            )
            seen["both"] = await asyncio.to_thread(lh.read, "bronze.trades", live=True)
            seen["committed"] = committed
            stop.set()
            await task

    asyncio.run(go())
    live = seen["live"]
    assert not seen["delta_exists"]  # nothing committed yet (max_age of an hour) ...
    assert live.height >= 200 and live["id"].n_unique() == live.height  # ... yet the ticks are readable
    assert seen["sql"]["n"][0] >= 200
    both, committed = seen["both"], seen["committed"]
    assert both.select("exchange", "symbol", "id").n_unique() == both.height  # no duplicates
    assert set(committed["id"]) <= set(both["id"])
    # writer stopped: its registry is gone and reads fall back to Delta alone
    assert not (tmp_path / "spool" / "live" / "live.json").exists()
    delta_keys = lh.read("bronze.trades").select("exchange", "symbol", "id").unique()  # bronze keeps the repeats
    assert lh.read("bronze.trades", live=True).height == delta_keys.height


def test_dead_writer_registry_is_ignored_and_bad_live_reads_are_errors(tmp_path: Path) -> None:
    settings = load_settings(root=str(tmp_path / "lake"), writer={"spool_dir": str(tmp_path / "spool")})
    (tmp_path / "spool" / "live").mkdir(parents=True)
    (tmp_path / "spool" / "live" / "gone.json").write_text(json.dumps({"url": "http://127.0.0.1:9", "pid": 1}))
    lh = Lakehouse(config=settings)
    t0 = time.monotonic()
    assert lh.read("bronze.trades", live=True).is_empty()  # no Delta table, no live writer: empty
    assert time.monotonic() - t0 < 5
    with pytest.raises(LakehouseError, match="bronze tables"):
        lh.scan("silver.trades", live=True)
    with pytest.raises(LakehouseError, match="as_of"):
        lh.scan("bronze.trades", live=True, as_of=0)
