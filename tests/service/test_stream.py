"""``GET /query/stream`` on a real server with a real writer streaming from the loopback
exchange: a client that connects mid-stream receives every trade the exchange sent exactly once,
across the catch-up/live seam and across the writer's commits; it resumes with Last-Event-ID."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from crypto_lakehouse import Lakehouse, load_settings
from crypto_lakehouse.config import Settings
from crypto_lakehouse.ingest import BronzeWriter, FeedTarget, stream_to_bronze
from crypto_lakehouse.loopback import MarketSpec, SyntheticMarket, running_exchange
from crypto_lakehouse.loopback.server import LoopbackExchange
from crypto_lakehouse.service._stream import MAX_STREAMS, Cursor, parse_cursor
from crypto_lakehouse.service.keys import create_key
from crypto_lakehouse.storage import Catalog
from tests.service.conftest import Running, auth
from tests.transform.helpers import write_bronze

TRADES = 1_500


@contextmanager
def streaming_writer(ex: LoopbackExchange, settings: Settings) -> Iterator[BronzeWriter]:
    """A BronzeWriter streaming ``ex``'s BTC-USDT trades in a thread, committing every 0.2 s and
    serving its live buffer; on exit it stops and commits the rest."""
    spool = settings.writer.spool_dir
    assert spool is not None
    writer = BronzeWriter(Catalog(settings.root), writer_id="w", spool_dir=spool, max_age_s=0.2)
    target = FeedTarget("BINANCE", ["BTC-USDT"], ["trades"], ex.ws_url, ex.rest_url, ex.cert_pem)
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    thread = threading.Thread(
        target=loop.run_until_complete,
        args=(stream_to_bronze([target], writer, stop=stop, live_port=0, sessions=False),),
        daemon=True,
    )
    thread.start()
    try:
        yield writer
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(30)


class Listener:
    """An SSE client in a thread: every event's id and data, and the comments, as they arrive."""

    def __init__(self, url: str, key: str, params: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.comments: list[str] = []
        self.status = 0
        self._args = (url, {**auth(key), **(headers or {})}, params)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        url, headers, params = self._args
        with httpx.stream("GET", url, headers=headers, params=params, timeout=30) as r:
            self.status = r.status_code
            event_id = None
            for line in r.iter_lines():
                if self._stop.is_set():
                    return
                if line.startswith("id: "):
                    event_id = line[4:]
                elif line.startswith("data: "):
                    assert event_id is not None
                    self.events.append((event_id, json.loads(line[6:])))
                elif line.startswith(":"):
                    self.comments.append(line)

    def __enter__(self) -> Listener:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def wait(self, predicate: Any, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, f"timed out with {len(self.events)} events"
            time.sleep(0.05)

    def trade_ids(self) -> list[int]:
        return [int(d["id"]) for _, d in self.events if d["table"] == "bronze.trades"]


def test_a_client_gets_every_trade_once_across_the_seam_and_commits_and_resumes(tmp_path: Path) -> None:
    settings = load_settings(root=str(tmp_path / "lake"), writer={"spool_dir": str(tmp_path / "spool")})
    key = create_key(Catalog(settings.root), role="reader")[1]
    market = SyntheticMarket(MarketSpec(exchange="BINANCE", symbols=["BTCUSDT"], rate=1_500, max_trades=TRADES))
    began = datetime.now(UTC) - timedelta(minutes=1)
    lh = Lakehouse(config=settings)
    with running_exchange(market=market) as ex, Running(settings) as base, streaming_writer(ex, settings) as writer:
        deadline = time.monotonic() + 60
        # connect once rows are both committed (catch-up from Delta) and buffered (live)
        while lh.version("bronze.trades") is None or lh.read("bronze.trades").height < 100:
            assert time.monotonic() < deadline, "the writer committed nothing"
            time.sleep(0.05)
        params = {"tables": "trades", "symbols": "btc-usdt", "since": began.isoformat(), "heartbeat_s": 0.5}
        with Listener(f"{base}/query/stream", key, params) as first:
            first.wait(lambda: len(first.events) > 0)
            caught_up = len(first.events)
            assert ex.wait_finished(60)
            tape = market.tape("BTCUSDT")
            expected = list(range(tape.first_id, tape.last_id + 1))
            assert len(expected) == TRADES
            first.wait(lambda: len(first.events) >= TRADES)
            first.wait(lambda: bool(first.comments))  # a heartbeat once nothing arrives
        assert first.status == 200
        commits = lh.history("bronze.trades").height
    ids = first.trade_ids()
    assert sorted(ids) == expected  # every trade the exchange sent, once
    assert 0 < caught_up < TRADES  # the client joined mid-stream: some from the catch-up, the rest live
    assert commits >= 5  # across several commits of the writer
    assert writer.stats["bronze.trades"].rows_committed == TRADES
    event_ids = [parse_cursor(i) for i, _ in first.events]
    assert len(set(event_ids)) == TRADES
    # resume after the 1000th event (now all committed): exactly the events after it, no repeats
    cut = event_ids[999]
    later = {c for c in event_ids if c > cut}
    with Running(settings) as base:
        with Listener(f"{base}/query/stream", key, params, {"Last-Event-ID": str(cut)}) as resumed:
            resumed.wait(lambda: bool(resumed.comments))
    assert {parse_cursor(i) for i, _ in resumed.events} == later
    assert len(resumed.events) == len(later) > 0


def test_stream_refuses_what_it_cannot_stream(tmp_path: Path) -> None:
    settings = load_settings(root=str(tmp_path / "lake"), writer={"spool_dir": str(tmp_path / "spool")})
    key = create_key(Catalog(settings.root), role="reader")[1]
    from crypto_lakehouse.service import create_app

    with TestClient(create_app(settings, audit=False)) as client:
        assert client.get("/query/stream").status_code == 401
        r = client.get("/query/stream", params={"tables": "silver.trades"}, headers=auth(key))
        assert r.status_code == 400 and "bronze.trades" in r.json()["detail"]
        r = client.get("/query/stream", headers={**auth(key), "Last-Event-ID": "yesterday"})
        assert r.status_code == 400 and "Last-Event-ID" in r.json()["detail"]
        r = client.get("/query/stream", params={"since": "not a time"}, headers=auth(key))
        assert r.status_code == 400


def test_a_catch_up_past_max_rows_is_413_and_closed_streams_give_their_slot_back(tmp_path: Path) -> None:
    settings = load_settings(root=str(tmp_path / "lake"), writer={"spool_dir": str(tmp_path / "spool")})
    key = create_key(Catalog(settings.root), role="reader")[1]
    t0 = datetime.now(UTC) - timedelta(seconds=30)
    rows = [
        {"exchange": "BINANCE", "symbol": "BTC-USDT", "ts": t0, "receipt_ts": t0, "id": str(i), "side": "buy",
         "price": "1", "amount": "1"}
        for i in range(5)
    ]  # fmt: skip
    write_bronze(Catalog(settings.root), "bronze.trades", rows)
    limited = settings.model_copy(
        update={
            "api": settings.api.model_copy(update={"limits": settings.api.limits.model_copy(update={"max_rows": 4})})
        }
    )
    with Running(limited) as base:
        params = {"since": "-1m"}
        r = httpx.get(f"{base}/query/stream", params=params, headers=auth(key))
        assert r.status_code == 413 and "max_rows" in r.json()["detail"]
        for _ in range(MAX_STREAMS + 8):  # more streams than may be open at once, one after another
            with httpx.stream("GET", f"{base}/query/stream", params={"since": "-10s"}, headers=auth(key)) as s:
                assert s.status_code == 200
                assert next(s.iter_lines()) == ": caught up"
        time.sleep(0.5)
        with httpx.stream("GET", f"{base}/query/stream", params={"since": "-10s"}, headers=auth(key)) as s:
            assert s.status_code == 200  # every earlier stream gave its slot back


@pytest.mark.parametrize("text", ["1700000000000000.0a1b2c", " 5.ff "])
def test_event_ids_parse_back_and_order_by_receipt_then_digest(text: str) -> None:
    c = parse_cursor(text)
    assert parse_cursor(str(c)) == c
    assert Cursor(c.receipt_us, "00") < Cursor(c.receipt_us + 1, "00")
