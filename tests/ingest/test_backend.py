"""The cryptofeed convention: a user's own plain ``FeedHandler`` with the lakehouse as a backend
per channel (``callbacks={TRADES: TradeLakehouse(writer), ...}``), against the loopback
exchange's synthetic market, whose trade tape is the ground truth."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from cryptofeed import FeedHandler
from cryptofeed.backends.backend import BackendCallback, BackendQueue
from cryptofeed.connection import connection_stats
from cryptofeed.defines import CANDLES, FUNDING, L2_BOOK, LIQUIDATIONS, TICKER, TRADES
from deltalake import DeltaTable

from crypto_lakehouse.errors import CommitError, LakehouseError
from crypto_lakehouse.ingest import (
    BookLakehouse,
    BronzeWriter,
    CandlesLakehouse,
    FundingLakehouse,
    LiquidationsLakehouse,
    TickerLakehouse,
    TradeLakehouse,
    lakehouse_callbacks,
)
from crypto_lakehouse.loopback import LoopbackExchange, MarketSpec
from crypto_lakehouse.storage import Catalog
from crypto_lakehouse.venues.clients import feed_class
from crypto_lakehouse.venues.registry import PUBLIC_CHANNELS

ALL = [TRADES, L2_BOOK, TICKER, FUNDING, LIQUIDATIONS, CANDLES]


def _feed_handler(tmp_path: Path) -> FeedHandler:
    # a plain FeedHandler; its log goes to the test's directory instead of ./feedhandler.log
    return FeedHandler(config={"log": {"filename": str(tmp_path / "feedhandler.log"), "level": "WARNING"}})


async def _run_until_played_out(
    fh: FeedHandler, exchanges: list[LoopbackExchange], writer: BronzeWriter, *, timeout: float = 60
) -> tuple[float, dict[str, dict[str, int]]]:
    """Run ``fh`` (cryptofeed's own ``run_async``) until every loopback exchange has played out
    its market and the feeds have received every message sent; then ``request_stop()`` and wait
    for ``run_async`` to return. Returns the seconds it ran and the writer's summary the moment
    ``run_async`` returned."""
    started = time.time()
    run = asyncio.create_task(fh.run_async(install_signal_handlers=False))
    finished = asyncio.gather(*(ex.finished.wait() for ex in exchanges))
    done, _ = await asyncio.wait({run, finished}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    if run in done:
        finished.cancel()
        run.result()  # the handler failed: raise its error
    assert finished in done, f"the loopback exchange did not finish within {timeout} s"
    for ex in exchanges:  # every frame sent has reached cryptofeed
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            stats = connection_stats(ex.venue.exchange, since=started).values()
            if sum(s.received for s in stats) >= ex.stats.messages_sent:
                break
            await asyncio.sleep(0.05)
    await asyncio.sleep(0.2)  # their callbacks
    fh.request_stop()
    await asyncio.wait_for(run, 30)
    return time.time() - started, writer.summary()


def _feed(ex: LoopbackExchange, channels: list[str], callbacks: dict[str, Any], **kw: Any) -> Any:
    """The user's feed: cryptofeed's class for the venue, only pointed at the loopback exchange."""
    cls = feed_class(ex.venue.exchange, ws_url=ex.ws_url, rest_url=ex.rest_url, cert_pem=ex.cert_pem)
    symbols = [ex.venue.std_symbol(s) for s in ex.market.spec.symbols]
    return cls(symbols=symbols, channels=channels, callbacks=callbacks, **kw)


def _table(root: Path, kind: str) -> pl.DataFrame:
    return pl.read_delta(str(root / "bronze" / kind))


def _assert_trades_are_the_tape(trades: pl.DataFrame, ex: LoopbackExchange) -> int:
    """Bronze trades == the market's ground truth, trade for trade: every id once, none missing,
    and each trade's price, amount, time and side as the exchange sent them. Returns the count."""
    checked = 0
    for sym in ex.market.spec.symbols:
        tape = ex.market.tape(sym)
        got = trades.filter(pl.col("symbol") == ex.venue.std_symbol(sym)).sort(pl.col("id").cast(pl.Int64))
        ids = got["id"].cast(pl.Int64).to_list()
        assert ids == list(range(tape.first_id, tape.first_id + len(tape))), sym  # no duplicate, none missing
        want = [tape.record(i) for i in range(len(tape))]
        assert got["price"].to_list() == [r["p"] for r in want]  # the exchange's text
        assert got["amount"].to_list() == [r["q"] for r in want]
        assert got["ts"].dt.epoch("ms").to_list() == [r["T"] for r in want]
        assert got["side"].to_list() == ["sell" if r["m"] else "buy" for r in want]
        checked += len(tape)
    return checked


def test_plain_feedhandler_with_lakehouse_backends_lands_exactly_the_trades_sent(tmp_path: Path) -> None:
    """The user's FeedHandler, one feed, a lakehouse backend per channel; run a few seconds,
    stopped with ``request_stop()``: bronze holds every trade of the market once, the other
    channels landed, in batched exactly-once commits, and the session is recorded."""
    spec = MarketSpec(
        first_id=1_000_000, exchange="BINANCE_FUTURES", symbols=["BTCUSDT", "ETHUSDT"], rate=6_000, max_trades=5_000
    )
    writer = BronzeWriter(Catalog(tmp_path), writer_id="my-fh", spool_dir=tmp_path / "spool", max_age_s=0.25)

    async def go() -> tuple[LoopbackExchange, float, dict]:
        async with LoopbackExchange(market=spec) as ex:
            fh = _feed_handler(tmp_path)
            callbacks = {
                TRADES: TradeLakehouse(writer),
                L2_BOOK: BookLakehouse(writer),
                TICKER: TickerLakehouse(writer),
                FUNDING: FundingLakehouse(writer),
                LIQUIDATIONS: LiquidationsLakehouse(writer),
                CANDLES: CandlesLakehouse(writer),
            }
            fh.add_feed(_feed(ex, ALL, callbacks, candle_closed_only=False))
            return ex, *await _run_until_played_out(fh, [ex], writer)

    ex, seconds, summary = asyncio.run(go())
    assert 1.5 < seconds < 20

    # when fh.run_async() returned, everything was committed (nothing buffered, nothing spooled)
    assert all(s["rows_buffered"] == 0 and s["rows_spooled"] == 0 for s in summary.values())
    trades = _table(tmp_path, "trades")
    assert _assert_trades_are_the_tape(trades, ex) == trades.height == 2 * 5_000
    assert summary["bronze.trades"]["rows_committed"] == trades.height

    # batched: several ACID appends, each an application transaction (writer id, batch id) of this writer
    commits = summary["bronze.trades"]["commits"]
    assert 2 <= commits < 200
    assert DeltaTable(str(tmp_path / "bronze" / "trades")).transaction_version("my-fh") == commits
    assert set(trades["batch_id"].unique()) == set(range(1, commits + 1))

    book = _table(tmp_path, "book")
    assert set(book["symbol"]) == {"BTC-USDT-PERP", "ETH-USDT-PERP"}
    assert book["snapshot"].any() and not book["snapshot"].all()  # the REST snapshot, then updates
    ticker = _table(tmp_path, "ticker")
    assert set(ticker["symbol"]) == {"BTC-USDT-PERP", "ETH-USDT-PERP"} and ticker.height > 100
    assert (ticker["bid"].cast(pl.Float64) < ticker["ask"].cast(pl.Float64)).all()
    for kind in ("funding", "liquidations", "candles"):
        assert _table(tmp_path, kind).height > 0, kind

    sessions = pl.read_delta(str(tmp_path / "bronze" / "sessions")).sort("at")
    assert sessions["event"].to_list() == ["start", "end"]  # no heartbeat yet: they come every 30 s
    assert sessions["at"][0].timestamp() < trades["receipt_ts"].min().timestamp()  # before it connected
    assert sessions["at"][1].timestamp() > trades["receipt_ts"].max().timestamp()
    row = sessions.row(0, named=True)
    assert row["exchange"] == "BINANCE_FUTURES" and row["writer_id"] == "my-fh"
    assert sorted(row["symbols"]) == ["BTC-USDT-PERP", "ETH-USDT-PERP"] and sorted(row["channels"]) == sorted(ALL)
    assert sessions.row(-1, named=True)["reason"] == "stopped"


class _UsersOwnBackend(BackendQueue, BackendCallback):
    """A cryptofeed backend of the user's own (queue + batch writer), on the same channel."""

    numeric_type = str
    none_to = None

    def __init__(self) -> None:
        super().__init__(batch_interval=0.05)
        self.rows: list[dict] = []

    async def write_batch(self, batch: list) -> None:
        self.rows.extend(batch)


def test_the_users_own_callbacks_on_the_same_feed_still_get_everything(tmp_path: Path) -> None:
    """The lakehouse coexists with the user's callbacks: a plain async function and a cryptofeed
    backend of their own, listed with it under the same channels, see every message."""
    spec = MarketSpec(first_id=1_000_000, exchange="BINANCE", symbols=["BTCUSDT"], rate=6_000, max_trades=3_000)
    writer = BronzeWriter(Catalog(tmp_path), writer_id="coexist", spool_dir=tmp_path / "spool", max_age_s=0.25)
    seen: Counter = Counter()
    trade_ids: list[int] = []
    book_sequences: list[int] = []
    theirs = _UsersOwnBackend()

    async def my_trades(t: Any, receipt: float) -> None:
        seen[TRADES] += 1
        trade_ids.append(int(t.id))

    async def my_book(b: Any, receipt: float) -> None:
        seen[L2_BOOK] += 1
        book_sequences.append(b.sequence_number)

    async def my_ticker(t: Any, receipt: float) -> None:
        seen[TICKER] += 1

    async def go() -> LoopbackExchange:
        async with LoopbackExchange(market=spec) as ex:
            fh = _feed_handler(tmp_path)
            callbacks = {
                TRADES: [my_trades, TradeLakehouse(writer), theirs],
                L2_BOOK: [BookLakehouse(writer), my_book],
                TICKER: my_ticker,  # a channel the lakehouse does not get
            }
            fh.add_feed(_feed(ex, [TRADES, L2_BOOK, TICKER], callbacks))
            _, summary = await _run_until_played_out(fh, [ex], writer)
            assert summary["bronze.trades"]["rows_committed"] == 3_000
            return ex

    ex = asyncio.run(go())
    trades = _table(tmp_path, "trades")
    assert _assert_trades_are_the_tape(trades, ex) == 3_000
    assert sorted(trade_ids) == sorted(trades["id"].cast(pl.Int64).to_list())  # theirs saw the same trades
    assert sorted(int(r["id"]) for r in theirs.rows) == sorted(trade_ids)
    assert theirs.stats.written == 3_000 and theirs.stats.dropped_failed == 0
    book = _table(tmp_path, "book")
    assert seen[L2_BOOK] == len(book_sequences) > 10
    assert set(book["sequence"].unique()) == set(book_sequences)  # one update in bronze per update they saw
    assert seen[TICKER] > 0 and not (tmp_path / "bronze" / "ticker").exists()


def test_one_writer_shared_by_two_feeds_is_flushed_once_when_both_stopped(tmp_path: Path) -> None:
    """Spot and USD-M futures in one FeedHandler, one writer: one run of it (one batch sequence)
    serves both feeds, and both land in full."""
    spot = MarketSpec(first_id=1_000_000, exchange="BINANCE", symbols=["BTCUSDT"], rate=6_000, max_trades=1_500)
    perp = MarketSpec(first_id=1_000_000, exchange="BINANCE_FUTURES", symbols=["BTCUSDT"], rate=6_000, max_trades=1_500)
    writer = BronzeWriter(Catalog(tmp_path), writer_id="shared", spool_dir=tmp_path / "spool", max_age_s=0.25)

    async def go() -> tuple[LoopbackExchange, LoopbackExchange]:
        async with LoopbackExchange(market=spot) as a, LoopbackExchange(market=perp) as b:
            fh = _feed_handler(tmp_path)
            for ex in (a, b):
                fh.add_feed(_feed(ex, [TRADES, L2_BOOK], lakehouse_callbacks(writer, [TRADES, L2_BOOK])))
            _, summary = await _run_until_played_out(fh, [a, b], writer)
            assert (
                summary["bronze.trades"]["rows_committed"] == 3_000 and summary["bronze.trades"]["rows_buffered"] == 0
            )
            return a, b

    a, b = asyncio.run(go())
    trades = _table(tmp_path, "trades")
    for ex in (a, b):
        assert _assert_trades_are_the_tape(trades.filter(pl.col("exchange") == ex.venue.exchange), ex) == 1_500
    commits = writer.summary()["bronze.trades"]["commits"]
    assert sorted(trades["batch_id"].unique()) == list(range(1, commits + 1))  # one batch sequence
    sessions = pl.read_delta(str(tmp_path / "bronze" / "sessions"))
    assert Counter(zip(sessions["exchange"], sessions["event"], strict=True)) >= Counter(
        {("BINANCE", "start"): 1, ("BINANCE", "end"): 1, ("BINANCE_FUTURES", "start"): 1, ("BINANCE_FUTURES", "end"): 1}
    )


def test_storage_down_spools_fails_the_handler_and_the_next_run_commits_the_spool_once(tmp_path: Path) -> None:
    """Every commit of a run fails (the root's parent is a file): the rows go to the spool and
    ``run_async`` raises a CommitError saying so; the next run of the same writer id (storage
    back) commits the spool before its own rows: both runs' trades land, once each."""
    blocker = tmp_path / "blocker"
    blocker.write_text("not a directory")
    root = blocker / "lake"
    spec = MarketSpec(first_id=1_000_000, exchange="BINANCE", symbols=["BTCUSDT"], rate=6_000, max_trades=1_000)

    def run(seed: int) -> tuple[LoopbackExchange, dict]:
        writer = BronzeWriter(Catalog(root), writer_id="w", spool_dir=tmp_path / "spool", retries=1, backoff_s=0.01)

        async def go() -> tuple[LoopbackExchange, dict]:
            async with LoopbackExchange(market=MarketSpec(**{**_fields(spec), "seed": seed})) as ex:
                fh = _feed_handler(tmp_path)
                fh.add_feed(_feed(ex, [TRADES], lakehouse_callbacks(writer, [TRADES])))
                try:
                    _, summary = await _run_until_played_out(fh, [ex], writer)
                except BaseExceptionGroup as group:
                    err = _leaf(group)
                    assert isinstance(err, CommitError) and "1,000 rows wait in the spool" in str(err), err
                    summary = writer.summary()
                return ex, summary

        return asyncio.run(go())

    first, summary = run(seed=1)
    assert summary["bronze.trades"]["rows_spooled"] == 1_000 and summary["bronze.trades"]["rows_committed"] == 0
    blocker.unlink()  # storage is back
    second, summary = run(seed=2)
    assert summary["bronze.trades"]["spool_replayed"] >= 1 and summary["bronze.trades"]["rows_spooled"] == 0
    trades = pl.read_delta(str(root / "bronze" / "trades"))
    # the two markets reuse the same ids: a trade is (id, exchange time)
    landed = list(zip(trades["id"].cast(pl.Int64), trades["ts"].dt.epoch("ms"), strict=True))
    assert len(landed) == len(set(landed)) == 2_000
    for ex in (first, second):
        tape = ex.market.tape("BTCUSDT")
        assert {(tape.first_id + i, tape.time_ms[i]) for i in range(len(tape))} <= set(landed)
    assert trades.filter(pl.col("batch_id") == 1)["ts"].max() < trades.filter(pl.col("batch_id") > 1)["ts"].min()


def _fields(spec: MarketSpec) -> dict[str, Any]:
    return {f: getattr(spec, f) for f in spec.__slots__}


class _Boom(Exception):
    pass


def test_a_failing_feed_does_not_hold_up_the_handler_and_what_was_received_is_committed(tmp_path: Path) -> None:
    """Two feeds share a writer; one fails (its user callback raises an error listed in the
    feed's ``exceptions``): cryptofeed cancels the other and raises; the writer is flushed before
    ``run_async`` raises, so every trade received is in bronze, contiguous, once."""
    spot = MarketSpec(first_id=1_000_000, exchange="BINANCE", symbols=["BTCUSDT"], rate=4_000)  # endless markets
    perp = MarketSpec(first_id=1_000_000, exchange="BINANCE_FUTURES", symbols=["BTCUSDT"], rate=4_000)
    writer = BronzeWriter(Catalog(tmp_path), writer_id="w", spool_dir=tmp_path / "spool", max_age_s=0.25)
    received: Counter = Counter()

    async def fails_after_1000(t: Any, receipt: float) -> None:
        received[t.exchange] += 1
        if received[t.exchange] == 1_000:
            raise _Boom("the user's callback failed")

    async def count(t: Any, receipt: float) -> None:
        received[t.exchange] += 1

    perp_callbacks = {TRADES: [TradeLakehouse(writer), count], L2_BOOK: BookLakehouse(writer)}

    async def go() -> dict:
        async with LoopbackExchange(market=spot) as a, LoopbackExchange(market=perp) as b:
            fh = _feed_handler(tmp_path)
            fh.add_feed(_feed(a, [TRADES], {TRADES: [TradeLakehouse(writer), fails_after_1000]}, exceptions=[_Boom]))
            fh.add_feed(_feed(b, [TRADES, L2_BOOK], perp_callbacks))
            with pytest.raises(BaseExceptionGroup) as info:
                await asyncio.wait_for(fh.run_async(install_signal_handlers=False), 30)
            assert isinstance(_leaf(info.value), _Boom)
            return writer.summary()

    summary = asyncio.run(go())
    assert summary["bronze.trades"]["rows_buffered"] == 0 and summary["bronze.book"]["rows_buffered"] == 0
    trades = _table(tmp_path, "trades")
    for exchange in ("BINANCE", "BINANCE_FUTURES"):
        ids = trades.filter(pl.col("exchange") == exchange)["id"].cast(pl.Int64).sort().to_list()
        assert ids == list(range(1_000_000, 1_000_000 + received[exchange])), exchange  # all received, once
    assert received["BINANCE"] == 1_000 and received["BINANCE_FUTURES"] > 0

    # the same writer and backend objects serve the user's next FeedHandler (a new market, later ids)
    later = MarketSpec(first_id=1_000_000, exchange="BINANCE_FUTURES", symbols=["ETHUSDT"], rate=6_000, max_trades=500)

    async def again() -> LoopbackExchange:
        async with LoopbackExchange(market=later) as c:
            fh = _feed_handler(tmp_path)
            fh.add_feed(_feed(c, [TRADES, L2_BOOK], perp_callbacks))
            await _run_until_played_out(fh, [c], writer, timeout=30)
            return c

    c = asyncio.run(again())
    eth = _table(tmp_path, "trades").filter(pl.col("symbol") == "ETH-USDT-PERP")
    assert _assert_trades_are_the_tape(eth, c) == 500
    assert eth["batch_id"].min() > trades["batch_id"].max()  # the writer's batch ids go on


def _start_failing(tmp_path: Path, callbacks: Callable[[BronzeWriter], dict[str, Any]]) -> BaseException:
    """Run a plain FeedHandler whose lakehouse backends cannot start; return what it raised."""
    spec = MarketSpec(first_id=1_000_000, exchange="BINANCE_FUTURES", symbols=["BTCUSDT"], rate=2_000)
    writer = BronzeWriter(Catalog(tmp_path / "lake"), writer_id="w", spool_dir=tmp_path / "spool")

    async def go() -> None:
        async with LoopbackExchange(market=spec) as ex:
            fh = _feed_handler(tmp_path)
            fh.add_feed(_feed(ex, [TRADES, L2_BOOK], callbacks(writer)))
            await asyncio.wait_for(fh.run_async(install_signal_handlers=False), 30)

    with pytest.raises(BaseException) as info:
        asyncio.run(go())
    return info.value


def _leaf(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc


def test_a_writer_that_cannot_start_fails_the_feed_with_its_error(tmp_path: Path) -> None:
    """A spool left for another root: the writer refuses to start, and the user's FeedHandler
    stops with that error instead of streaming into memory."""
    spooled = tmp_path / "spool" / "w" / "bronze.trades"
    spooled.mkdir(parents=True)
    (spooled.parent / "ROOT").write_text("/somewhere/else\n")
    (spooled / "000000000001.arrow").write_bytes(b"")
    started = time.monotonic()
    err = _leaf(_start_failing(tmp_path, lambda w: lakehouse_callbacks(w, [TRADES, L2_BOOK])))
    assert isinstance(err, LakehouseError) and "/somewhere/else" in str(err)
    assert time.monotonic() - started < 15


def test_a_backend_under_another_channels_key_is_refused_at_start(tmp_path: Path) -> None:
    err = _leaf(_start_failing(tmp_path, lambda w: {TRADES: TradeLakehouse(w), L2_BOOK: TradeLakehouse(w)}))
    assert isinstance(err, LakehouseError)
    assert "registered for ['l2_book']" in str(err) and "BookLakehouse" in str(err)


def test_a_writer_started_by_someone_else_is_refused(tmp_path: Path) -> None:
    """The backends run the writer; one the caller started (and may be flushing) would get its
    batch ids read twice."""
    writer = BronzeWriter(Catalog(tmp_path), writer_id="w", spool_dir=tmp_path / "spool")

    async def go() -> None:
        await writer.start()
        async with asyncio.TaskGroup() as tg:
            TradeLakehouse(writer).start_writer(tg, "t")

    with pytest.raises(BaseException) as info:
        asyncio.run(go())
    err = _leaf(info.value)
    assert isinstance(err, LakehouseError) and "bronze_callbacks" in str(err)


def test_lakehouse_callbacks_names_the_channels_it_stores(tmp_path: Path) -> None:
    writer = BronzeWriter(Catalog(tmp_path), writer_id="w")
    cbs = lakehouse_callbacks(writer)  # every public channel: each has a bronze home
    assert list(cbs) == list(PUBLIC_CHANNELS) and all(cb.channel == c and cb.writer is writer for c, cb in cbs.items())
    assert type(cbs[L2_BOOK]) is BookLakehouse and cbs[L2_BOOK].table == "bronze.book"
    assert cbs["l1_book"].table == "bronze.ticker" and cbs["l3_book"].table == "bronze.l3_book"
    with pytest.raises(LakehouseError, match="order_info"):
        lakehouse_callbacks(writer, [TRADES, "order_info"])
