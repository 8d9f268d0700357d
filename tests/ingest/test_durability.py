"""Durability: retries then spool on failing storage, exactly-once re-append, SIGTERM flushes,
SIGKILL leaves readable versions and the spool re-applies on restart without duplicates."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
from deltalake import DeltaTable

from crypto_lakehouse.ingest import BronzeWriter
from crypto_lakehouse.loopback import MarketSpec, running_exchange
from crypto_lakehouse.storage import Catalog, state

LAKEHOUSE = [sys.executable, "-m", "crypto_lakehouse.cli"]


def _trade_row(i: int) -> tuple:
    return ("BINANCE", "BTC-USDT", 1_700_000_000.0 + i / 1000, time.time(), str(i), "buy", "1.5", "0.001", None)


def _broken_root(tmp_path: Path) -> Path:
    """A root whose parent is a regular file: every write fails (root can write anywhere else)."""
    blocker = tmp_path / "blocker"
    blocker.write_text("not a directory")
    return blocker / "lake"


def _fix(tmp_path: Path) -> None:
    (tmp_path / "blocker").unlink()
    (tmp_path / "blocker").mkdir()


def test_failing_storage_retries_then_spools_and_next_start_reappends(tmp_path: Path, caplog) -> None:
    root = _broken_root(tmp_path)
    spool = tmp_path / "spool"

    async def first_run() -> BronzeWriter:
        w = BronzeWriter(Catalog(root), writer_id="w", spool_dir=spool, retries=3, backoff_s=0.01)
        await w.start()
        for batch in range(3):
            w.add_many("bronze.trades", [_trade_row(batch * 100 + i) for i in range(100)])
            await w.flush()
        return w

    with caplog.at_level(logging.WARNING):
        w = asyncio.run(first_run())
    retries = [r for r in caplog.records if "retry" in r.getMessage()]
    assert len(retries) == 3  # the first batch: 3 retries, then the spool; later batches queue behind it
    assert w.stats["bronze.trades"].batches_spooled == 3
    assert sorted(p.name for p in (spool / "w" / "bronze.trades").iterdir()) == [
        "000000000001.arrow",
        "000000000002.arrow",
        "000000000003.arrow",
    ]

    _fix(tmp_path)

    async def second_run() -> BronzeWriter:
        w = BronzeWriter(Catalog(root), writer_id="w", spool_dir=spool)
        await w.start()
        return w

    w2 = asyncio.run(second_run())
    assert w2.stats["bronze.trades"].spool_replayed == 3
    assert not list((spool / "w" / "bronze.trades").iterdir())
    ids = pl.read_delta(str(root / "bronze" / "trades"))["id"].cast(pl.Int64)
    assert sorted(ids.to_list()) == list(range(300))
    assert DeltaTable(str(root / "bronze" / "trades")).transaction_version("w") == 3
    assert asyncio.run(second_run()).stats["bronze.trades"].spool_replayed == 0  # nothing left to do


def test_spooled_batch_that_did_commit_is_not_appended_twice(tmp_path: Path) -> None:
    """An ambiguous failure: the commit landed but the writer spooled the batch anyway."""
    root, spool = tmp_path / "lake", tmp_path / "spool"

    async def run() -> BronzeWriter:
        w = BronzeWriter(Catalog(root), writer_id="w", spool_dir=spool)
        await w.start()
        w.add_many("bronze.trades", [_trade_row(i) for i in range(50)])
        await w.flush()
        return w

    w = asyncio.run(run())
    from crypto_lakehouse.ingest.rows import rows_to_arrow

    data = rows_to_arrow("bronze.trades", [_trade_row(i) for i in range(50)], writer_id="w", batch_id=1)
    w._spool("bronze.trades", 1, data)  # the same batch id that already committed

    async def restart() -> BronzeWriter:
        w2 = BronzeWriter(Catalog(root), writer_id="w", spool_dir=spool)
        await w2.start()
        return w2

    w2 = asyncio.run(restart())
    assert w2.stats["bronze.trades"].spool_skipped == 1
    assert pl.read_delta(str(root / "bronze" / "trades")).height == 50


def _stream_proc(rest_url: str, root: Path, tmp_path: Path, *extra: str, env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        [
            *LAKEHOUSE,
            "stream",
            "--endpoint",
            rest_url,
            "--root",
            str(root),
            "--symbols",
            "BTC-USDT",
            "--channels",
            "trades,l2_book,ticker",
            "--no-progress",
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "LAKEHOUSE_WRITER__ID": "proc", **env},
    )


def _wait_for(predicate, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.1)


def test_sigterm_flushes_every_buffered_row(tmp_path: Path) -> None:
    root = tmp_path / "lake"
    spec = MarketSpec(first_id=1_000_000, exchange="BINANCE", symbols=["BTCUSDT"], rate=3_000)
    with running_exchange(market=spec) as ex:
        # max_age of an hour: nothing is committed before the signal, everything must be after it
        proc = _stream_proc(ex.rest_url, root, tmp_path, env={"LAKEHOUSE_WRITER__MAX_AGE": "1h"})
        _wait_for(lambda: ex.stats.messages_sent > 3_000)
        assert not (root / "bronze" / "trades").exists()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    ids = sorted(pl.read_delta(str(root / "bronze" / "trades"))["id"].cast(pl.Int64).to_list())
    assert len(ids) == summary["tables"]["bronze.trades"]["rows_committed"] > 1_000
    assert ids == list(range(ids[0], ids[0] + len(ids)))  # contiguous: nothing received was lost
    assert ids[0] == 1_000_000


def test_sigkill_leaves_readable_versions_and_spool_reapplies_once_on_restart(tmp_path: Path) -> None:
    root = _broken_root(tmp_path)
    spool_dir = state.spool_dir(root) / "proc" / "bronze.trades"  # the root's state, not the working directory
    spec = MarketSpec(first_id=1_000_000, exchange="BINANCE", symbols=["BTCUSDT"], rate=3_000)
    env = {
        "LAKEHOUSE_WRITER__MAX_AGE": "200ms",
        "LAKEHOUSE_WRITER__RETRIES": "1",
        "LAKEHOUSE_WRITER__RETRY_BACKOFF": "10ms",
    }
    with running_exchange(market=spec) as ex:
        proc = _stream_proc(ex.rest_url, root, tmp_path, env=env)
        _wait_for(lambda: spool_dir.is_dir() and len(list(spool_dir.glob("*.arrow"))) >= 3)
        proc.kill()
        proc.communicate(timeout=30)
        spooled = sorted(spool_dir.glob("*.arrow"))
        import pyarrow.ipc as ipc

        spooled_ids = {int(i) for p in spooled for i in ipc.open_file(str(p)).read_all().column("id").to_pylist()}
        _fix(tmp_path)
        proc = _stream_proc(ex.rest_url, root, tmp_path, "--duration", "3", env=env)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert not list(spool_dir.glob("*.arrow"))
    uri = str(root / "bronze" / "trades")
    ids = pl.read_delta(uri)["id"].cast(pl.Int64)
    assert ids.n_unique() == ids.len()  # no duplicates
    assert spooled_ids <= set(ids.to_list())  # everything spooled before the kill landed
    latest = DeltaTable(uri).version()
    for v in range(latest + 1):  # every committed version is readable
        DeltaTable(uri, version=v).to_pyarrow_table()


@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM"])
def test_stream_stops_cleanly_on_signals(tmp_path: Path, signame: str) -> None:
    spec = MarketSpec(first_id=1_000_000, exchange="BINANCE", symbols=["BTCUSDT"], rate=1_000)
    with running_exchange(market=spec) as ex:
        proc = _stream_proc(ex.rest_url, tmp_path / "lake", tmp_path, env={})
        _wait_for(lambda: ex.stats.messages_sent > 500)
        proc.send_signal(getattr(signal, signame))
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and "Traceback" not in err, err
    assert json.loads(out.strip().splitlines()[-1])["tables"]["bronze.trades"]["rows_committed"] > 0


def test_rows_that_do_not_fit_the_schema_go_to_dead_letter_not_the_spool(tmp_path: Path) -> None:
    root, spool = tmp_path / "lake", tmp_path / "spool"

    async def run() -> None:
        w = BronzeWriter(Catalog(root), writer_id="w", spool_dir=spool)
        await w.start()
        w.add_many("bronze.trades", [_trade_row(1), ("BINANCE", "BTC-USDT", 1.0, 2.0, "2", None, "1", "1", None)])
        await w.flush()
        w.add("bronze.trades", _trade_row(3))  # the table is not blocked afterwards
        await w.flush()

    asyncio.run(run())
    dead = pl.read_delta(str(root / "bronze" / "dead_letter"))
    assert dead.height == 1 and dead["error"].str.contains("non-nullable column side").all()
    assert sorted(pl.read_delta(str(root / "bronze" / "trades"))["id"].to_list()) == ["1", "3"]
    assert not (spool / "w" / "bronze.trades").exists()


def test_a_bad_row_goes_alone_to_dead_letter_and_the_good_rows_of_its_batch_land(tmp_path: Path) -> None:
    """Row-level isolation: one batch, 1,000 rows, three that do not fit (each for its own
    reason): 997 rows in bronze.trades, exactly three dead letters, each with its own error,
    all committed by the same flush."""
    root, spool = tmp_path / "lake", tmp_path / "spool"
    rows = [_trade_row(i) for i in range(1_000)]
    rows[0] = ("BINANCE", "BTC-USDT", 1.0, 2.0, "0", None, "1", "1", None)  # side NULL
    rows[500] = ("BINANCE", "BTC-USDT", "noon", 2.0, "500", "buy", "1", "1", None)  # ts not a number
    rows[999] = ("BINANCE", "BTC-USDT", 1.0, 2.0, "999", "buy", b"1.5", "1", None)  # price neither text nor a number

    async def run() -> BronzeWriter:
        w = BronzeWriter(Catalog(root), writer_id="w", spool_dir=spool)
        await w.start()
        w.add_many("bronze.trades", rows)
        await w.flush()
        return w

    w = asyncio.run(run())
    ids = pl.read_delta(str(root / "bronze" / "trades"))["id"].cast(pl.Int64).sort().to_list()
    assert ids == [i for i in range(1_000) if i not in (0, 500, 999)]
    dead = pl.read_delta(str(root / "bronze" / "dead_letter")).sort("payload")
    assert dead.height == 3
    assert set(dead["channel"]) == {"bronze.trades"} and set(dead["exchange"]) == {"BINANCE"}
    by_id = {eval(p)[4]: e for p, e in dead.select("payload", "error").iter_rows()}  # payload: repr of the row
    assert sorted(by_id) == ["0", "500", "999"]
    assert "non-nullable column side" in by_id["0"]
    assert "noon" in by_id["500"]
    assert "does not fit bronze.trades" in by_id["999"]
    assert w.summary()["bronze.dead_letter"]["rows_buffered"] == 0
    assert w.stats["bronze.trades"].rows_committed == 997


def test_rows_gathered_in_chunks_keep_their_order_and_a_bad_chunk_loses_only_its_bad_row(tmp_path: Path) -> None:
    """The stream's putter gathers every CHUNK_ROWS rows into Arrow on the event loop: a batch of
    several chunks and a tail commits every good row in the order it was put (the live view
    shows the same rows before the commit), and a value that does not convert keeps only its
    own chunk as Python values, whose one bad row goes to the dead letter."""
    from crypto_lakehouse.ingest.writer import CHUNK_ROWS

    root, spool = tmp_path / "lake", tmp_path / "spool"
    n = 2 * CHUNK_ROWS + 100
    bad = {CHUNK_ROWS + 7, 2 * CHUNK_ROWS + 50}  # one in the second chunk, one in the tail
    seen: dict[str, object] = {}

    async def run() -> BronzeWriter:
        w = BronzeWriter(Catalog(root), writer_id="w", spool_dir=spool, max_rows=10 * n)
        await w.start()
        put = w.putter("bronze.trades")
        for i in range(n):
            put(exchange="BINANCE", symbol="BTC-USDT", ts=1_700_000_000.0 + i / 1000, receipt_ts=1_700_000_001.0,
                id=str(i), side="buy", price=b"1.5" if i in bad else "1.5", amount="0.001", type=None)  # fmt: skip
        seen["pending"] = w.pending("bronze.trades")
        seen["live"] = w.live_arrow("bronze.trades")["id"].to_pylist()
        await w.flush()
        return w

    w = asyncio.run(run())
    want = [str(i) for i in range(n) if i not in bad]
    assert seen["pending"] == n
    assert seen["live"] == want
    assert pl.read_delta(str(root / "bronze" / "trades"))["id"].to_list() == want  # one file: in put order
    dead = pl.read_delta(str(root / "bronze" / "dead_letter"))
    assert sorted(eval(p)[4] for p in dead["payload"]) == sorted(str(i) for i in bad)
    assert w.stats["bronze.trades"].rows_committed == n - 2 and w.pending("bronze.trades") == 0


def test_final_flush_commits_rows_rerouted_to_dead_letter(tmp_path: Path) -> None:
    """A row that does not fit, added just before stop: the stop's final flush re-routes it to
    the dead letter while committing trades, and must commit that too before returning."""
    root, spool = tmp_path / "lake", tmp_path / "spool"

    async def run() -> BronzeWriter:
        w = BronzeWriter(Catalog(root), writer_id="w", spool_dir=spool, max_age_s=3600)
        await w.start()
        stop = asyncio.Event()
        flusher = asyncio.create_task(w.run(stop))
        w.add_many("bronze.trades", [_trade_row(i) for i in range(10)])
        await asyncio.sleep(0.05)
        w.add("bronze.trades", ("BINANCE", "BTC-USDT", 1.0, 2.0, "bad", None, "1", "1", None))
        stop.set()
        await flusher
        return w

    w = asyncio.run(run())
    assert w.summary()["bronze.dead_letter"]["rows_buffered"] == 0
    dead = pl.read_delta(str(root / "bronze" / "dead_letter"))
    assert dead.height == 1 and "'bad'" in dead["payload"][0]
    assert pl.read_delta(str(root / "bronze" / "trades")).height == 10


def test_a_writer_id_is_held_by_one_process(tmp_path: Path) -> None:
    code = (
        "import asyncio, sys, time\n"
        "from crypto_lakehouse.ingest import BronzeWriter\n"
        "from crypto_lakehouse.storage import Catalog\n"
        f"w = BronzeWriter(Catalog({str(tmp_path / 'lake')!r}), writer_id='w', spool_dir={str(tmp_path / 'spool')!r})\n"
        "asyncio.run(w.start()); print('locked', flush=True); time.sleep(30)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(Exception, match="in use by another process"):
            asyncio.run(BronzeWriter(Catalog(tmp_path / "lake"), writer_id="w", spool_dir=tmp_path / "spool").start())
    finally:
        holder.kill()
        holder.wait()
