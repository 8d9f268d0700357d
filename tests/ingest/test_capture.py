"""cryptofeed's own captures into bronze: a capture recorded here with a plain ``FeedHandler(
record=...)`` from the loopback exchange's synthetic market, replayed by ``ingest_capture``
through ``cryptofeed.capture.playback_async``. Bronze holds what the recording's callbacks saw,
the trades equal the market's ground truth, and a capture is ingested exactly once."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import zstandard
from cryptofeed import FeedHandler
from cryptofeed.capture import read_capture
from cryptofeed.capture.pcap import (
    META_ADDRESS,
    META_CONN_ID,
    META_EXCHANGE,
    META_ORDINAL,
    META_SUBSCRIPTION,
    HTTPStream,
    PcapFile,
    WSStream,
)
from cryptofeed.capture.recorder import metadata_path
from cryptofeed.connection import connection_stats
from cryptofeed.defines import ASK, BID, CANDLES, FUNDING, L2_BOOK, LIQUIDATIONS, TICKER, TRADES
from deltalake import DeltaTable

from crypto_lakehouse.errors import InvalidArgument, LakehouseError
from crypto_lakehouse.ingest.capture import capture_files, capture_writer_id, ingest_capture, is_pcap_capture
from crypto_lakehouse.ingest.writer import BronzeWriter
from crypto_lakehouse.loopback import LoopbackExchange, MarketSpec
from crypto_lakehouse.storage import Catalog
from crypto_lakehouse.venues.clients import feed_class

START = 1_700_000_000_000
SYMBOLS = ["BTCUSDT", "ETHUSDT"]
CHANNEL_TABLE = {
    TRADES: "bronze.trades",
    L2_BOOK: "bronze.book",
    TICKER: "bronze.ticker",
    FUNDING: "bronze.funding",
    LIQUIDATIONS: "bronze.liquidations",
    CANDLES: "bronze.candles",
}


@dataclass
class Recorded:
    """A capture and what the recording saw: bronze rows per table its callbacks imply, the
    trades they received and the market's ground truth ((symbol, id, price, amount), sorted)."""

    path: Path
    rows: Counter[str] = field(default_factory=Counter)
    trades: list[tuple[str, str, str, str]] = field(default_factory=list)
    truth: list[tuple[str, str, str, str]] = field(default_factory=list)
    receipts: dict[tuple[str, str], float] = field(default_factory=dict)  # (symbol, trade id) -> receipt time


def _counting_callbacks(rec: Recorded) -> dict[str, Any]:
    """The recording's own callbacks: rows per bronze table (a book update is one row per level)."""

    def count(channel: str) -> Any:
        async def cb(obj: Any, receipt: float) -> None:
            if channel == L2_BOOK:
                n = (
                    len(obj.book.bids) + len(obj.book.asks)
                    if obj.delta is None
                    else len(obj.delta[BID] + obj.delta[ASK])
                )
            else:
                n = 1
            rec.rows[CHANNEL_TABLE[channel]] += n
            if channel == TRADES:
                rec.trades.append((obj.symbol, str(obj.id), str(obj.price), str(obj.amount)))
                rec.receipts[obj.symbol, str(obj.id)] = receipt

        return cb

    return {c: count(c) for c in CHANNEL_TABLE}


async def _record(path: Path) -> Recorded:
    rec = Recorded(path)
    spec = MarketSpec(
        exchange="BINANCE_FUTURES", symbols=SYMBOLS, first_id=1_000_000, rate=20_000, start_ms=START, max_trades=400
    )
    async with LoopbackExchange(market=spec) as ex:
        cls = feed_class(ex.venue.exchange, ws_url=ex.ws_url, rest_url=ex.rest_url, cert_pem=ex.cert_pem)
        feed = cls(
            symbols=[ex.venue.std_symbol(s) for s in SYMBOLS],
            channels=list(CHANNEL_TABLE),
            callbacks=_counting_callbacks(rec),
            candle_closed_only=False,
        )
        log = {"log": {"filename": str(path.parent / "feedhandler.log"), "level": "WARNING"}}
        fh = FeedHandler(config=log, record=str(path))  # a plain FeedHandler, recording
        fh.add_feed(feed)
        started = time.time()
        run = asyncio.create_task(fh.run_async(install_signal_handlers=False))
        await asyncio.wait_for(ex.finished.wait(), 30)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # every frame sent has reached cryptofeed
            if (
                sum(s.received for s in connection_stats(ex.venue.exchange, since=started).values())
                >= ex.stats.messages_sent
            ):
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)  # their callbacks
        fh.request_stop()
        await asyncio.wait_for(run, 30)
        for s in SYMBOLS:
            tape = ex.market.tape(s)
            std = ex.venue.std_symbol(s)
            rec.truth += [(std, str(r["a"]), r["p"], r["q"]) for r in map(tape.record, range(len(tape)))]
    rec.trades.sort()
    rec.truth.sort()
    return rec


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Recorded:
    rec = asyncio.run(_record(tmp_path_factory.mktemp("capture") / "binance.pcap.zst"))
    assert rec.trades == rec.truth and len(rec.truth) == 2 * 400  # the recording saw every trade
    return rec


def _ingest(path: Path, root: Path, **writer_kw: Any) -> dict[str, Any]:
    writer = BronzeWriter(Catalog(str(root)), writer_id=capture_writer_id(capture_files(path)), **writer_kw)
    return dict(asyncio.run(ingest_capture(path, writer)))


def _rows(root: Path) -> dict[str, int]:
    catalog = Catalog(str(root))
    return {
        t: catalog.frame(t).height if catalog.exists(t) else 0 for t in [*CHANNEL_TABLE.values(), "bronze.dead_letter"]
    }


def _trades(root: Path) -> list[tuple[str, str, str, str]]:
    df = Catalog(str(root)).frame("bronze.trades").select("symbol", "id", "price", "amount")
    return sorted(df.iter_rows())


def test_a_capture_lands_as_recorded_and_twice_adds_nothing(recorded: Recorded, tmp_path: Path) -> None:
    capture = recorded.path
    assert capture.exists() and Path(metadata_path(str(capture))).exists()
    assert is_pcap_capture(capture) and not is_pcap_capture(Path(metadata_path(str(capture))))
    zst = tmp_path / "frames.jsonl.zst"  # zstd, not a pcap inside; and zstd's magic before junk
    zst.write_bytes(zstandard.ZstdCompressor().compress(b'{"a": 1}\n'))
    junk = tmp_path / "junk.zst"
    junk.write_bytes(b"\x28\xb5\x2f\xfd" + b"\xff" * 40)
    assert not is_pcap_capture(zst) and not is_pcap_capture(junk) and not is_pcap_capture(tmp_path / "none")

    first = _ingest(capture, tmp_path)
    assert first["exchanges"] == ["BINANCE_FUTURES"]  # read from the capture
    assert first["writer_id"].startswith("capture:")
    want = {**recorded.rows, "bronze.dead_letter": 0}
    assert _rows(tmp_path) == want
    assert {t: n for t, n in first["rows"].items() if n} == {t: n for t, n in want.items() if n}
    assert _trades(tmp_path) == recorded.truth  # ids, prices, amounts: the market's ground truth
    landed = Catalog(str(tmp_path)).frame("bronze.trades").select("symbol", "id", "receipt_ts").iter_rows()
    # the receipt times the recording's callbacks got, not the replay's (bronze keeps microseconds)
    assert max(abs(ts.timestamp() - recorded.receipts[sym, tid]) for sym, tid, ts in landed) < 2e-6

    second = _ingest(capture, tmp_path)
    assert _rows(tmp_path) == want
    assert not any(second["rows"].values())
    assert second["skipped"] == {t: n for t, n in want.items() if n}


def test_an_interrupted_ingest_is_completed_without_duplicates(recorded: Recorded, tmp_path: Path) -> None:
    _ingest(recorded.path, tmp_path, max_rows=100)
    trades = DeltaTable(str(tmp_path / "bronze" / "trades"))
    batches = sorted(Catalog(str(tmp_path)).frame("bronze.trades")["batch_id"].unique())
    assert len(batches) >= 2
    trades.delete(f"batch_id > {batches[0]}")  # as if the run had died after its first trades commit
    assert _rows(tmp_path)["bronze.trades"] < len(recorded.truth)

    again = _ingest(recorded.path, tmp_path, max_rows=100)
    assert 0 < again["rows"]["bronze.trades"] < len(recorded.truth)
    assert _trades(tmp_path) == recorded.truth
    assert _rows(tmp_path) == {**recorded.rows, "bronze.dead_letter": 0}


BAD_FRAMES = [
    '{"stream":"btcusdt@aggTrade","data":{"e":"aggTrade","s":"BTCUSDT","p":"oops"}}',  # cryptofeed raises
    "not json at all",
    '{"stream":"btcusdt@mystery","data":{"e":"mystery"}}',  # cryptofeed logs and drops it
]


def _copy_with_frames(src: Path, dst: Path, frames: list[str], *, after: int) -> None:
    """``src`` rewritten with cryptofeed's own pcap writer, ``frames`` received on its first
    websocket stream after its ``after``-th frame; its metadata copied along."""
    capture = read_capture(str(src))
    pcap = PcapFile(str(dst))
    port = 50_000
    for h in capture.http:
        stream = HTTPStream(pcap, port, h.opened_ns, {META_CONN_ID: h.conn_id, META_EXCHANGE: h.exchange})
        for ts, method, url, body, request_body in h.requests:
            stream.exchange(ts, method, url, body, request_body)
        stream.close(h.requests[-1][0])
        port += 1
    for i, ws in enumerate(capture.ws):
        meta = {
            META_CONN_ID: ws.conn_id,
            META_EXCHANGE: ws.exchange,
            META_ADDRESS: ws.address,
            META_ORDINAL: str(ws.connect_ordinal),
            META_SUBSCRIPTION: json.dumps(ws.subscription),
        }
        stream = WSStream(pcap, port, ws.opened_ns, ws.address, meta)
        received = 0
        for ts, direction, payload in ws.messages:
            if direction == "out":
                stream.sent(ts, payload)
                continue
            stream.message(ts, payload)
            received += 1
            if i == 0 and received == after:
                for frame in frames:
                    stream.message(ts, frame)
        stream.close(ws.messages[-1][0])
        port += 1
    pcap.close()
    shutil.copy(metadata_path(str(src)), metadata_path(str(dst)))


def test_frames_cryptofeed_cannot_parse_go_to_the_dead_letter(recorded: Recorded, tmp_path: Path) -> None:
    capture = tmp_path / "bad.pcap.zst"
    _copy_with_frames(recorded.path, capture, BAD_FRAMES, after=10)
    assert capture_writer_id([capture]) != capture_writer_id([recorded.path])

    _ingest(capture, tmp_path / "root")
    assert _rows(tmp_path / "root") == {**recorded.rows, "bronze.dead_letter": len(BAD_FRAMES)}
    assert _trades(tmp_path / "root") == recorded.truth
    dead = Catalog(str(tmp_path / "root")).frame("bronze.dead_letter").sort("payload")
    assert sorted(dead["payload"]) == sorted(BAD_FRAMES)  # verbatim
    by_payload = {p: (c, e) for p, c, e in dead.select("payload", "channel", "error").iter_rows()}
    assert by_payload[BAD_FRAMES[0]][0] == "btcusdt@aggTrade"
    assert by_payload[BAD_FRAMES[1]][0] is None and "127.0.0.1" in by_payload[BAD_FRAMES[1]][1]
    assert by_payload[BAD_FRAMES[2]] == ("btcusdt@mystery", "unexpected message type")

    again = _ingest(capture, tmp_path / "root")
    assert not any(again["rows"].values())
    assert _rows(tmp_path / "root")["bronze.dead_letter"] == len(BAD_FRAMES)


def test_a_capture_that_cannot_be_used_fails_in_one_line(recorded: Recorded, tmp_path: Path) -> None:
    catalog = Catalog(str(tmp_path / "root"))
    with pytest.raises(LakehouseError, match="no-such.pcap: no such capture file"):
        capture_files(tmp_path / "no-such.pcap")

    junk = tmp_path / "junk.pcap"
    junk.write_bytes(b"\x00" * 64)
    shutil.copy(metadata_path(str(recorded.path)), metadata_path(str(junk)))
    with pytest.raises(LakehouseError, match="junk.pcap: not a readable cryptofeed capture") as err:
        asyncio.run(ingest_capture(junk, BronzeWriter(catalog, writer_id=capture_writer_id([junk]))))
    assert "\n" not in str(err.value)

    alone = tmp_path / "alone.pcap.zst"
    shutil.copy(recorded.path, alone)  # without its metadata
    with pytest.raises(LakehouseError, match=r"alone.pcap.zst: no alone.meta.json beside it"):
        asyncio.run(ingest_capture(alone, BronzeWriter(catalog, writer_id=capture_writer_id([alone]))))

    with pytest.raises(InvalidArgument, match="writer id 'capture:"):
        asyncio.run(ingest_capture(recorded.path, BronzeWriter(catalog, writer_id="somebody")))
    with pytest.raises(InvalidArgument, match="no OKX in the capture; it holds BINANCE_FUTURES"):
        writer = BronzeWriter(catalog, writer_id=capture_writer_id([recorded.path]))
        asyncio.run(ingest_capture(recorded.path, writer, exchange="OKX"))
    assert not catalog.exists("bronze.trades")  # nothing was written for any of these


def test_the_job_ingests_a_capture_with_the_settings_writer_options(recorded: Recorded, tmp_path: Path) -> None:
    from crypto_lakehouse import jobs, load_settings

    settings = load_settings(root=str(tmp_path / "lake"), writer={"id": "ignored-for-captures", "max_rows": 200})
    result = jobs.ingest_capture(settings, capture=recorded.path)
    assert isinstance(result, jobs.CaptureResult)
    assert result.writer_id == capture_writer_id([recorded.path]) and result.exchanges == ["BINANCE_FUTURES"]
    assert _rows(tmp_path / "lake") == {**recorded.rows, "bronze.dead_letter": 0}
    assert Catalog(str(tmp_path / "lake")).frame("bronze.trades")["batch_id"].n_unique() >= 2  # max_rows applied
    assert not any(jobs.ingest_capture(settings, capture=recorded.path).rows.values())
    with pytest.raises(LakehouseError, match="nope.pcap: no such capture file"):
        jobs.ingest_capture(settings, capture=tmp_path / "nope.pcap")


def test_lakehouse_ingest_recording_takes_a_pcap_capture(recorded: Recorded, tmp_path: Path) -> None:
    """The command a user runs: it tells a pcap capture from a recording by its bytes."""
    import json
    import subprocess
    import sys

    root = tmp_path / "lake"
    cmd = [sys.executable, "-m", "crypto_lakehouse.cli", "--root", str(root), "ingest-recording", str(recorded.path)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True)
    summary = json.loads(done.stdout.splitlines()[-1])
    assert summary["exchanges"] == ["BINANCE_FUTURES"] and summary["writer_id"] == capture_writer_id([recorded.path])
    assert _rows(root) == {**recorded.rows, "bronze.dead_letter": 0}
    wrong = subprocess.run([*cmd, "--exchange", "OKX"], capture_output=True, text=True, timeout=120)
    assert wrong.returncode == 2 and "OKX" in wrong.stderr.strip().splitlines()[-1]
