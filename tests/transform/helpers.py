"""What the transform tests share: streaming a loopback exchange running in its own thread into
bronze from this thread's loop (so that synchronous ccxt backfill can later reach the same
exchange), writing bronze rows as the writer would, and one valid row per bronze table."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptofeed.connection import connection_stats

from crypto_lakehouse import jobs
from crypto_lakehouse.ingest import BronzeWriter, stream_to_bronze
from crypto_lakehouse.loopback import LoopbackExchange
from crypto_lakehouse.loopback.replay import synthetic_target
from crypto_lakehouse.storage import Catalog


def stream_into_bronze(
    ex: LoopbackExchange, root: Path, *, writer_id: str = "w", channels: list[str] | None = None
) -> BronzeWriter:
    """Stream the synthetic market (every channel the venue streams by default, or ``channels``)
    into bronze under ``root`` until it has ended and the client has received every frame."""
    v = ex.venue
    target = synthetic_target(ex, channels=channels)
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


LAKEHOUSE = [sys.executable, "-m", "crypto_lakehouse.cli"]


def lakehouse_stream(ex: LoopbackExchange, root: Path, symbol: str, *extra: str, **env: str) -> subprocess.Popen:
    """`lakehouse stream` of ``symbol``'s trades from the loopback exchange into ``root``, as a
    real process (writer ``proc``, commits every 200 ms unless ``env`` says otherwise)."""
    return subprocess.Popen(
        [*LAKEHOUSE, "stream", "--endpoint", ex.rest_url, "--root", str(root), "--symbols", symbol,
         "--channels", "trades", "--no-progress", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=root.parent,
        env={**os.environ, "LAKEHOUSE_WRITER__ID": "proc", "LAKEHOUSE_WRITER__MAX_AGE": "200ms", **env},
    )  # fmt: skip


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


def valid_bronze_fields(t0: datetime) -> dict[str, dict[str, Any]]:
    """One valid row per bronze table, less exchange, symbol and the times (each test sets
    those), for an exchange time of ``t0``: what the validation tests change one field of."""
    return {
        "bronze.trades": {"id": "1", "side": "buy", "price": "100.5", "amount": "0.25"},
        "bronze.book": {"sequence": 1, "snapshot": False, "side": "bid", "price": "100.5", "size": "2"},
        "bronze.ticker": {"sequence": 1, "bid": "100.0", "bid_size": "1", "ask": "100.5", "ask_size": "2"},
        "bronze.funding": {
            "mark_price": "100.0",
            "index_price": "100.1",
            "rate": "0.0001",
            "predicted_rate": "0.0002",
            "next_funding_time": t0 + timedelta(hours=8),
        },
        "bronze.liquidations": {"id": "1", "side": "sell", "quantity": "0.5", "price": "99.5", "status": "filled"},
        "bronze.candles": {
            "interval": "1m",
            "start": t0 - timedelta(minutes=1),
            "stop": t0 - timedelta(milliseconds=1),
            "trades": 3,
            "open": "100",
            "high": "101",
            "low": "99",
            "close": "100.5",
            "volume": "3",
            "closed": True,
        },
    }


class CrashingRunner(jobs.InProcess):
    """A fanned-out job's runner whose last task's worker dies after the others wrote their files."""

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any], /) -> list[Any]:
        done = super().map(fn, items[:-1])
        if len(items) > 1:
            raise RuntimeError("worker lost")
        return done


def interleave_after(
    monkeypatch: pytest.MonkeyPatch, module: object, name: str, parties: int, *, unless_serialised: float = 0
) -> None:
    """Each thread's first call of ``module.name`` (a read a write is then decided from) waits,
    once it returned, until ``parties`` threads have made theirs. ``unless_serialised``: a
    writer that lets only one of them in at a time passes (the others cannot get there), so the
    first goes on after that many seconds."""
    barrier = threading.Barrier(parties, timeout=unless_serialised or 60)
    seen = threading.local()
    real = getattr(module, name)

    def wrapped(*args, **kwargs):
        out = real(*args, **kwargs)
        if not getattr(seen, "waited", False):
            seen.waited = True
            try:
                barrier.wait()
            except threading.BrokenBarrierError:
                if not unless_serialised:
                    raise
        return out

    monkeypatch.setattr(module, name, wrapped)


def run_together(*work: Callable[[], object]) -> None:
    """Run each of ``work`` in a thread, all at once; any one's exception fails the test."""
    errors: list[BaseException] = []

    def run(job: Callable[[], object]) -> None:
        try:
            job()
        except BaseException as exc:  # noqa: BLE001 - re-raised below in the test thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(job,)) for job in work]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
