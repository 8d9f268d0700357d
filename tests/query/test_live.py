"""The live buffer: a running writer's uncommitted rows are queryable, unioned with Delta without
duplicates; with no writer running, reads are Delta alone."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import time
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from crypto_lakehouse import Lakehouse, LakehouseError, load_settings
from crypto_lakehouse.ingest import BronzeWriter, FeedTarget, stream_to_bronze
from crypto_lakehouse.ingest.live import LiveServer
from crypto_lakehouse.loopback import LoopbackExchange, MarketSpec
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
            while writer.pending("bronze.trades") < 200:
                await asyncio.sleep(0.05)
            registry = json.loads((tmp_path / "spool" / "live" / "live.json").read_text())
            assert registry["url"].startswith("http://127.0.0.1:")
            live = await asyncio.to_thread(lh.read, "bronze.trades", live=True)
            seen["live"] = live
            seen["buffered_then"] = writer.pending("bronze.trades")
            seen["delta_exists"] = catalog.exists("bronze.trades")
            seen["sql"] = await asyncio.to_thread(lh.sql, "select count(*) as n from bronze.trades", live=True)
            stop.set()  # the stream ends: its final flush commits every row, its live endpoint goes away
            await task
            seen["registry_after_stop"] = (tmp_path / "spool" / "live" / "live.json").exists()
        committed = lh.read("bronze.trades")
        # the same rows arrive again in a (serving) writer's buffer: live = Delta + buffer, deduplicated
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
        server = await LiveServer(writer, spool_dir=tmp_path / "spool").start()
        seen["both"] = await asyncio.to_thread(lh.read, "bronze.trades", live=True)
        seen["committed"] = committed
        await server.stop()
        await writer.flush()  # the repeats are committed too: bronze keeps what it receives

    asyncio.run(go())
    live = seen["live"]
    assert not seen["delta_exists"]  # nothing committed yet (max_age of an hour) ...
    assert live.height >= 200 and live["id"].n_unique() == live.height  # ... yet the ticks are readable
    assert seen["sql"]["n"][0] >= 200
    both, committed = seen["both"], seen["committed"]
    assert both.select("exchange", "symbol", "id").n_unique() == both.height  # no duplicates
    assert set(committed["id"]) <= set(both["id"])
    # writer stopped: its registry is gone and reads fall back to Delta alone
    assert not seen["registry_after_stop"] and not (tmp_path / "spool" / "live" / "live.json").exists()
    assert lh.read("bronze.trades").height == 2 * committed.height
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


def _write_in_a_loop(
    root: str, spool: str, accepted: Any, committed: Any, ready: Any, halt: Any, finished: Any
) -> None:
    """A writer process: hands rows with ids 1, 2, ... to a real BronzeWriter (5 every ms) that
    commits a batch whenever its oldest row is 5 ms old, serving its live buffer meanwhile;
    ``accepted`` is the last id handed over, ``committed`` (a little late) the last id committed.
    On ``halt`` it flushes everything, stops and sets ``finished``."""

    async def produce() -> None:
        writer = BronzeWriter(Catalog(root), writer_id="race", spool_dir=spool, max_age_s=0.005)
        await writer.start()
        server = await LiveServer(writer, spool_dir=spool).start()
        stop = asyncio.Event()
        flusher = asyncio.create_task(writer.run(stop))
        next_id = 1
        try:
            while not halt.is_set():
                now = time.time()
                ids = range(next_id, next_id + 5)
                writer.add_many(
                    "bronze.trades", [("BINANCE", "BTC-USDT", now, now, str(i), "buy", "1", "1", None) for i in ids]
                )
                next_id += 5
                accepted.value = next_id - 1
                committed.value = writer.stats["bronze.trades"].rows_committed  # batches commit in order
                ready.set()
                await asyncio.sleep(0.001)
        finally:
            stop.set()
            await flusher
            await server.stop()

    asyncio.run(produce())
    finished.set()


def test_live_reads_miss_no_row_the_writer_accepted_before_the_read(tmp_path: Path) -> None:
    """A real writer (its own process) commits small batches in a loop while hundreds of live
    reads run: every read holds every row the writer had accepted before the read started,
    committed or not. A batch that commits while a read runs must be in the live answer or in the
    Delta version the read pins (in both is fine: the key deduplicates); reading Delta first and
    the live buffer second lost such batches."""
    spool = tmp_path / "spool"
    settings = load_settings(root=str(tmp_path / "lake"), writer={"spool_dir": str(spool)})
    ctx = multiprocessing.get_context("spawn")
    accepted, committed = ctx.Value("q", 0), ctx.Value("q", 0)
    ready, halt, finished = ctx.Event(), ctx.Event(), ctx.Event()
    args = (settings.root, str(spool), accepted, committed, ready, halt, finished)
    proc = ctx.Process(target=_write_in_a_loop, args=args)
    proc.start()
    # (read, rows accepted before it, of them committed before it, accepted missing, committed missing)
    misses: list[tuple[int, int, int, int, int]] = []
    reads, reused = 300, Lakehouse(config=settings)
    try:
        assert ready.wait(60)
        for k in range(reads):
            done, hi = committed.value, accepted.value
            # every other read from a fresh Lakehouse, as a CLI query makes (loading the table's
            # log is time for a batch to commit between a Delta pin and the live fetch), the
            # others from one reused Lakehouse (its table updated incrementally)
            lh = Lakehouse(config=settings) if k % 2 else reused
            ids = lh.read("bronze.trades", live=True, columns=["id"])["id"].cast(pl.Int64)
            missing = hi - ids.filter(ids <= hi).n_unique()
            if missing:
                misses.append((k, hi, done, missing, done - ids.filter(ids <= done).n_unique()))
    finally:
        halt.set()
        proc.join(60)
    assert finished.is_set(), f"the writer did not finish its final flush (exit code {proc.exitcode})"
    lh = Lakehouse(config=settings)
    assert lh.history("bronze.trades").height >= 50  # batches really committed while the reads ran
    assert not misses, (
        f"{len(misses)} of {reads} live reads missed rows (read, accepted before it, committed before it, "
        f"accepted missing, committed missing): {misses[:8]}"
    )
    final = lh.read("bronze.trades")["id"].cast(pl.Int64)
    assert final.n_unique() == final.len() == accepted.value  # all committed once, after the stop


def test_the_live_buffer_keeps_spooled_batches_and_skips_only_rows_that_do_not_fit(tmp_path: Path) -> None:
    """The live answer holds every row the writer has and Delta does not: a batch whose commit
    failed and went to the spool stays in it until the spool drains, and a row that does not fit
    the schema (it goes to the dead letter at commit) does not hide the rest of the buffer."""
    blocked = tmp_path / "not-a-directory" / "lake"
    blocked.parent.write_text("a file where the lake's parent should be: every commit fails")
    writer = BronzeWriter(Catalog(blocked), writer_id="spooler", spool_dir=tmp_path / "spool", retries=0, backoff_s=0)
    now = time.time()

    def trade(i: int, price: object = "100.0") -> tuple:
        return ("BINANCE", "BTC-USDT", now, now, str(i), "buy", price, "0.1", None)

    async def go() -> None:
        await writer.start()
        writer.add_many("bronze.trades", [trade(i) for i in range(1, 4)])
        await writer.flush()  # the commit fails: spooled (batch 1)
        assert writer.stats["bronze.trades"].batches_spooled == 1 and not writer.pending("bronze.trades")
        writer.add_many("bronze.trades", [trade(4), trade(5, price=b"1.5"), trade(6)])  # 5: bytes, no price

    asyncio.run(go())
    live = pl.from_arrow(writer.live_arrow("bronze.trades"))
    assert sorted(live["id"].cast(pl.Int64).to_list()) == [1, 2, 3, 4, 6]
    assert live.filter(pl.col("id") == "1")["batch_id"].to_list() == [1]  # spooled: its batch id
    assert live.filter(pl.col("id") == "4")["batch_id"].to_list() == [-1]  # buffered: not committed yet
