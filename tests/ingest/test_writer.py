"""The streaming writer against the synthetic market: no loss, no duplicates, bad frames kept."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import polars as pl
import pytest

from crypto_lakehouse.errors import LakehouseError
from crypto_lakehouse.ingest import BronzeWriter, FeedTarget, stream_to_bronze
from crypto_lakehouse.loopback import MALFORMED_KINDS, FaultPlan, LoopbackExchange, MarketSpec
from crypto_lakehouse.loopback.replay import stream_until_finished
from crypto_lakehouse.storage import Catalog


def _target(ex: LoopbackExchange, symbols: list[str]) -> FeedTarget:
    v = ex.venue
    return FeedTarget(
        v.exchange,
        symbols=[v.std_symbol(s) for s in symbols],
        channels=v.channels,
        ws_url=ex.ws_url,
        rest_url=ex.rest_url,
        cert_pem=ex.cert_pem,
    )


def _run(spec: MarketSpec, root: Path, faults: FaultPlan | None = None, **writer_kw) -> tuple[BronzeWriter, dict]:
    writer = BronzeWriter(Catalog(root), writer_id="w1", spool_dir=root / "spool", max_age_s=0.2, **writer_kw)

    async def go() -> dict:
        async with LoopbackExchange(market=spec, faults=faults) as ex:
            await stream_until_finished(ex, [_target(ex, spec.symbols)], writer)
            return ex.status()

    return writer, asyncio.run(go())


def test_synthetic_run_of_n_trades_lands_n_distinct_ids(tmp_path: Path) -> None:
    n = 3_000
    spec = MarketSpec(
        first_id=1_000_000, exchange="BINANCE_FUTURES", symbols=["BTCUSDT", "ETHUSDT"], rate=20_000, max_trades=n
    )
    writer, _ = _run(spec, tmp_path)
    trades = pl.read_delta(str(tmp_path / "bronze" / "trades"))
    for sym, first in (("BTC-USDT-PERP", 1_000_000), ("ETH-USDT-PERP", 2_000_000)):
        ids = trades.filter(pl.col("symbol") == sym)["id"].cast(pl.Int64)
        assert ids.n_unique() == ids.len() == n
        assert ids.sort().to_list() == list(range(first, first + n))
    assert writer.stats["bronze.trades"].commits >= 2  # batched by age, several ACID appends
    for kind in ("book", "ticker", "funding", "liquidations", "candles"):
        assert pl.scan_delta(str(tmp_path / "bronze" / kind)).select(pl.len()).collect().item() > 0, kind


def test_malformed_frames_go_to_dead_letter_and_good_ones_land(tmp_path: Path) -> None:
    n = 2_000
    spec = MarketSpec(first_id=1_000_000, exchange="BINANCE_FUTURES", symbols=["BTCUSDT"], rate=20_000, max_trades=n)
    _, status = _run(spec, tmp_path, FaultPlan(malformed_every=97))
    trades = pl.read_delta(str(tmp_path / "bronze" / "trades"))
    assert sorted(trades["id"].cast(pl.Int64).to_list()) == list(range(1_000_000, 1_000_000 + n))
    dead = pl.read_delta(str(tmp_path / "bronze" / "dead_letter"))
    assert dead.height == sum(status["malformed_sent"].values()) > len(MALFORMED_KINDS)
    assert status["connections_opened"] == 2  # the bad frames did not cost a reconnect
    assert dead["payload"].str.len_chars().min() > 0 and dead["error"].null_count() == 0
    assert set(dead["exchange"]) == {"BINANCE_FUTURES"}
    # each kind is recognisable in the kept payloads
    payloads = "\n".join(dead["payload"].to_list())
    assert "502 Bad Gateway" in payloads and "mysteryEvent" in payloads and '"oops"' in payloads


class _SaysWhatItSent(LoopbackExchange):
    """The loopback exchange, keeping every malformed frame it queued (kind, exact bytes); with
    ``only`` set, every malformed frame is of that kind. ``after_drop``: the frames queued once
    a connection had been dropped (on the connection that replaced it)."""

    def __init__(self, *, only: str | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.only = only
        self.malformed: list[tuple[str, bytes]] = []
        self.after_drop: list[bytes] = []

    def _malformed(self, name: bytes, *, okx_framing: bool = False) -> bytes:
        if self.only is not None:
            self._malformed_seq = MALFORMED_KINDS.index(self.only)
        kind = MALFORMED_KINDS[self._malformed_seq % len(MALFORMED_KINDS)]
        frame = super()._malformed(name, okx_framing=okx_framing)
        self.malformed.append((kind, frame))
        if self.stats.connections_dropped:
            self.after_drop.append(frame)
        return frame


def _stream_of(frame: str) -> str | None:
    """The combined-stream name a frame carries (``{"stream":"btcusdt@aggTrade",...``)."""
    head = '{"stream":"'
    return frame[len(head) : frame.index('"', len(head))] if frame.startswith(head) else None


@pytest.mark.parametrize("kind", MALFORMED_KINDS)
def test_dead_letter_keeps_the_exact_frame_and_its_stream(tmp_path: Path, kind: str) -> None:
    """Each malformed kind the loopback exchange injects, through the real cryptofeed handler:
    every dead-letter row is one frame the server sent, character for character (not a repr of
    what cryptofeed parsed), with the frame's combined-stream name as channel when it has one."""
    spec = MarketSpec(first_id=1_000_000, exchange="BINANCE_FUTURES", symbols=["BTCUSDT"], rate=20_000, max_trades=600)
    writer = BronzeWriter(Catalog(tmp_path), writer_id="w1", spool_dir=tmp_path / "spool", max_age_s=0.2)

    async def go() -> _SaysWhatItSent:
        async with _SaysWhatItSent(market=spec, faults=FaultPlan(malformed_every=41), only=kind) as ex:
            await stream_until_finished(ex, [_target(ex, spec.symbols)], writer)
            return ex

    ex = asyncio.run(go())
    sent = [frame.decode() for k, frame in ex.malformed]
    assert len(sent) > 5 and {k for k, _ in ex.malformed} == {kind}
    dead = pl.read_delta(str(tmp_path / "bronze" / "dead_letter"))
    assert Counter(dead["payload"]) == Counter(sent)
    assert dead["channel"].to_list() == [_stream_of(p) for p in dead["payload"]]
    if kind != "not_json":
        assert dead["channel"].null_count() == 0
        assert set(dead["channel"]) <= {
            "btcusdt@aggTrade",
            "btcusdt@depth@100ms",
            "btcusdt@bookTicker",
            "btcusdt@markPrice",
            "btcusdt@forceOrder",
            "btcusdt@kline_1m",
        }
    assert set(dead["exchange"]) == {"BINANCE_FUTURES"} and dead["error"].null_count() == 0


def test_with_every_fault_the_dead_letter_holds_only_the_malformed_frames_verbatim(tmp_path: Path) -> None:
    """Skips, duplicates, a dropped connection and malformed frames of every kind at once: the
    dead letter holds malformed frames only, each exactly as sent with its stream, and every one
    sent on the connection that replaced the dropped one (frames in flight on the dropped
    connection never reach the client: how many depends on timing, hence <= for those)."""
    # paced (~2 s of market) so that the market still runs once cryptofeed has reconnected
    spec = MarketSpec(first_id=1_000_000, exchange="BINANCE", symbols=["BTCUSDT"], rate=3_000, max_trades=4_000)
    faults = FaultPlan(skip_trades=[(1_000_100, 1_000_109)], duplicate_every=50, malformed_every=37, drop_at=1_000)
    writer = BronzeWriter(Catalog(tmp_path), writer_id="w1", spool_dir=tmp_path / "spool", max_age_s=0.2)

    async def go() -> _SaysWhatItSent:
        async with _SaysWhatItSent(market=spec, faults=faults) as ex:
            await stream_until_finished(ex, [_target(ex, spec.symbols)], writer)
            return ex

    ex = asyncio.run(go())
    assert ex.stats.connections_dropped == 1 and ex.stats.trades_skipped and ex.stats.trades_duplicated
    sent = Counter(frame.decode() for _, frame in ex.malformed)
    dead = pl.read_delta(str(tmp_path / "bronze" / "dead_letter"))
    got = Counter(dead["payload"])
    assert got <= sent
    assert ex.after_drop and all(got[frame.decode()] for frame in ex.after_drop)
    kinds = {k for k, frame in ex.malformed if got[frame.decode()]}
    assert kinds == set(MALFORMED_KINDS)
    assert dead["channel"].to_list() == [_stream_of(p) for p in dead["payload"]]


def test_duplicates_and_skips_are_kept_as_received(tmp_path: Path) -> None:
    """Bronze is what the exchange said: a duplicate frame is two rows, a skipped trade is absent
    (silver dedups and backfills)."""
    spec = MarketSpec(first_id=1_000_000, exchange="BINANCE", symbols=["BTCUSDT"], rate=20_000, max_trades=1_000)
    _run(spec, tmp_path, FaultPlan(duplicate_every=100, skip_trades=[(1_000_500, 1_000_509)]))
    ids = pl.read_delta(str(tmp_path / "bronze" / "trades"))["id"].cast(pl.Int64).to_list()
    skipped = set(range(1_000_500, 1_000_510))
    doubled = {i for i in range(1_000_000, 1_001_000, 100)} - skipped
    assert len(ids) == 1_000 - len(skipped) + len(doubled)
    assert not skipped & set(ids)
    assert {i for i in ids if ids.count(i) == 2} == doubled


def test_several_exchanges_in_one_process_write_concurrently(tmp_path: Path) -> None:
    """One FeedHandler, two feeds (spot and USD-M futures), one writer: both land in full."""
    spot = MarketSpec(first_id=1_000_000, exchange="BINANCE", symbols=["BTCUSDT"], rate=10_000, max_trades=1_500)
    perp = MarketSpec(
        first_id=1_000_000, exchange="BINANCE_FUTURES", symbols=["BTCUSDT"], rate=10_000, max_trades=1_500
    )
    writer = BronzeWriter(Catalog(tmp_path), writer_id="multi", spool_dir=tmp_path / "spool", max_age_s=0.2)

    async def go() -> None:
        async with LoopbackExchange(market=spot) as a, LoopbackExchange(market=perp) as b:
            stop = asyncio.Event()
            task = asyncio.create_task(
                stream_to_bronze([_target(a, spot.symbols), _target(b, perp.symbols)], writer, stop=stop)
            )
            await asyncio.wait_for(asyncio.gather(a.finished.wait(), b.finished.wait()), 60)
            await asyncio.sleep(1.0)
            stop.set()
            await task

    asyncio.run(go())
    trades = pl.read_delta(str(tmp_path / "bronze" / "trades"))
    per = trades.group_by("exchange", "symbol").agg(pl.col("id").n_unique().alias("ids"), pl.len()).sort("exchange")
    assert per.rows() == [("BINANCE", "BTC-USDT", 1_500, 1_500), ("BINANCE_FUTURES", "BTC-USDT-PERP", 1_500, 1_500)]


def test_auto_compaction_merges_small_files_and_loses_nothing(tmp_path: Path) -> None:
    writer = BronzeWriter(Catalog(tmp_path), writer_id="w1", spool_dir=tmp_path / "spool", compact_every=4)
    now = time.time()

    async def stream() -> None:
        await writer.start()
        for k in range(14):  # 14 commits of 100 trades, two symbols
            rows = [
                ("BINANCE", ("BTC-USDT", "ETH-USDT")[i % 2], now + i, now + i, str(i), "buy", "1.5", "2", None)
                for i in range(k * 100, (k + 1) * 100)
            ]
            writer.add_many("bronze.trades", rows)
            await writer.flush()

    asyncio.run(stream())
    st = writer.stats["bronze.trades"]
    assert (st.commits, st.compactions) == (14, 3)
    trades = pl.read_delta(str(tmp_path / "bronze" / "trades"))
    assert sorted(trades["id"].cast(pl.Int64).to_list()) == list(range(1_400))
    dt = Catalog(tmp_path).open("bronze.trades")
    assert [h["operation"] for h in dt.history()].count("OPTIMIZE") == 3
    # per partition: the merged file plus one file per commit since the last compaction (2)
    per_partition = Counter(uri.rsplit("/", 1)[0] for uri in dt.file_uris())
    assert max(per_partition.values()) <= 3
    assert sum(per_partition.values()) < 14


def test_flush_entered_while_a_finished_commits_callback_is_queued_returns(tmp_path: Path) -> None:
    """The stop path raced a commit that had just finished (its done callback queued, not run):
    a gather of done tasks does not yield, so flush() spun forever without letting the callback
    clear the in-flight entry (seen as a `lakehouse stream --duration 2` that never exited)."""
    import threading

    writer = BronzeWriter(Catalog(tmp_path), writer_id="w1", spool_dir=tmp_path / "spool")

    async def go() -> None:
        await writer.start()
        finished = asyncio.get_running_loop().create_future()  # a commit that has finished...
        finished.set_result([])
        writer._inflight["bronze.trades"] = finished
        asyncio.get_running_loop().call_soon(writer._done, "bronze.trades", finished)  # ...its callback queued
        writer.add("bronze.trades", ("BINANCE", "BTC-USDT", 1.7e9, 1.7e9, "1", "buy", "1.5", "2", None))
        await writer.flush()

    # in a thread: with the bug, flush() never yields (no timeout inside the loop could fire)
    thread = threading.Thread(target=asyncio.run, args=(go(),), daemon=True)
    thread.start()
    thread.join(30)
    assert not thread.is_alive(), "flush() spun forever"
    assert pl.read_delta(str(tmp_path / "bronze" / "trades"))["id"].to_list() == ["1"]


class _BreaksMidStream(LoopbackExchange):
    """A loopback exchange whose pump fails at its first malformed frame (an exchange-side bug)."""

    def _malformed(self, name: bytes, *, okx_framing: bool = False) -> bytes:
        raise TypeError("the exchange's own bug")


def test_a_crashed_loopback_exchange_fails_the_replay_at_once_instead_of_hanging(tmp_path: Path) -> None:
    spec = MarketSpec(first_id=1_000_000, exchange="BINANCE_FUTURES", symbols=["BTCUSDT"], rate=20_000, max_trades=600)
    writer = BronzeWriter(Catalog(tmp_path), writer_id="w1", spool_dir=tmp_path / "spool", max_age_s=0.2)

    async def go() -> None:
        async with _BreaksMidStream(market=spec, faults=FaultPlan(malformed_every=41)) as ex:
            await stream_until_finished(ex, [_target(ex, spec.symbols)], writer, timeout=60)

    started = time.monotonic()
    with pytest.raises(LakehouseError, match="the loopback exchange failed: TypeError"):
        asyncio.run(go())
    assert time.monotonic() - started < 20  # not the 60 s timeout
