"""The synthetic market speaks OKX v5: the unmodified cryptofeed ``OKX`` handler streams every
channel it serves, FaultPlan faults reach a raw client in OKX's framing, and REST pages trades
the way OKX does (ccxt.okx against it: tests/ingest/test_backfill_paging.py)."""

from __future__ import annotations

import asyncio
import json

import pytest

from crypto_lakehouse.errors import InvalidArgument
from crypto_lakehouse.loopback import MALFORMED_KINDS, FaultPlan, LoopbackExchange, MarketSpec, SyntheticMarket, okx

from .helpers import read_frames, stream_until_finished

START = 1_700_000_000_000


def _spec(**kw) -> MarketSpec:
    return MarketSpec(first_id=1_000_000, exchange="OKX", symbols=["BTC-USDT-SWAP"], rate=20_000, start_ms=START, **kw)


async def _read_all(ex: LoopbackExchange, args: list[dict], path: str = okx.PUBLIC_PATH) -> tuple[list[str], bool]:
    """Raw websocket client: subscribe to ``args``, then every text frame until the market ends."""
    return await read_frames(ex, path, send=json.dumps({"op": "subscribe", "args": args}))


def _trade_ids(frames: list[str]) -> list[int]:
    ids = []
    for f in frames:
        try:
            msg = json.loads(f)
            (t,) = msg["data"]
            if msg["arg"]["channel"] == "trades" and isinstance(t.get("px"), str) and t["tradeId"] != "1":
                ids.append(int(t["tradeId"]))
        except (ValueError, KeyError, TypeError, AttributeError):
            continue
    return ids


TRADES = [{"channel": "trades", "instId": "BTC-USDT-SWAP"}]


def test_skipped_trades_are_missing_on_the_stream_and_duplicates_arrive_twice() -> None:
    async def run():
        faults = FaultPlan(skip_trades=[(1_000_100, 1_000_149)], duplicate_every=10)
        async with LoopbackExchange(market=_spec(max_trades=500), faults=faults) as ex:
            frames, _ = await _read_all(ex, TRADES)
            return frames, ex.status()

    frames, status = asyncio.run(run())
    assert json.loads(frames[0]) == {"event": "subscribe", "arg": TRADES[0], "connId": "0100loop"}
    ids = _trade_ids(frames)
    kept = [i for i in range(1_000_000, 1_000_500) if not 1_000_100 <= i <= 1_000_149]
    assert sorted(set(ids)) == kept
    assert [i for i in kept if ids.count(i) == 2] == [i for i in kept if i % 10 == 0]
    assert status["trades_skipped"] == 50


def test_malformed_frames_of_every_kind_and_a_drop_reach_the_client() -> None:
    async def run():
        async with LoopbackExchange(market=_spec(max_trades=400), faults=FaultPlan(malformed_every=25)) as ex:
            frames, dropped = await _read_all(ex, TRADES)
            status = ex.status()
        async with LoopbackExchange(market=_spec(max_trades=2_000), faults=FaultPlan(drop_at=120)) as ex:
            cut, cut_dropped = await _read_all(ex, TRADES)
        return frames, dropped, status, cut, cut_dropped

    frames, dropped, status, cut, cut_dropped = asyncio.run(run())
    assert not dropped
    assert _trade_ids(frames) == list(range(1_000_000, 1_000_400))  # every good trade still arrives
    assert set(status["malformed_sent"]) == set(MALFORMED_KINDS)
    bad = len(frames) - 1 - 400  # less the acknowledgement and the good trades
    assert bad == sum(status["malformed_sent"].values()) > 0
    assert cut_dropped and len(cut) == 120


def test_channels_are_served_on_their_okx_address_only() -> None:
    async def run():
        async with LoopbackExchange(market=_spec(max_trades=50)) as ex:
            public, _ = await _read_all(ex, [{"channel": "candle1m", "instId": "BTC-USDT-SWAP"}, *TRADES])
            business, _ = await _read_all(ex, [{"channel": "candle1H", "instId": "BTC-USDT-SWAP"}], okx.BUSINESS_PATH)
            return public, business

    public, business = asyncio.run(run())
    first = json.loads(public[0])
    assert first["event"] == "error" and first["code"] == "60018" and "candle1m" in first["msg"]
    assert json.loads(public[1])["event"] == "subscribe"
    assert json.loads(business[0]) == {
        "event": "subscribe",
        "arg": {"channel": "candle1H", "instId": "BTC-USDT-SWAP"},
        "connId": "0100loop",
    }


def test_unmodified_cryptofeed_okx_streams_every_served_channel() -> None:
    n = 300

    async def run():
        spec = MarketSpec(
            first_id=1_000_000, exchange="OKX", symbols=["BTC-USDT-PERP", "ETH-USDT"], rate=1_000, max_trades=n
        )
        async with LoopbackExchange(market=spec) as ex:
            channels = ["trades", "l2_book", "ticker", "funding", "candles"]
            got = await stream_until_finished(ex, ["BTC-USDT-PERP", "ETH-USDT"], channels, candle_closed_only=False)
            return got, ex.market

    got, market = asyncio.run(run())
    for std, inst in (("BTC-USDT-PERP", "BTC-USDT-SWAP"), ("ETH-USDT", "ETH-USDT")):
        trades = [t for t in got.objects["trades"] if t.symbol == std]
        tape = market.tape(inst)
        assert [int(t.id) for t in trades] == list(range(tape.first_id, tape.first_id + n))
        assert [str(t.price) for t in trades] == [tape.record(i)["p"] for i in range(n)]
        book = next(b for b in reversed(got.objects["l2_book"]) if b.symbol == std).book
        sym = market.symbols[inst]
        assert {float(p): float(q) for p, q in book.bids.to_dict().items()} == {
            p / 100: q / 1000 for p, q in sym.bids.items()
        }  # the snapshot plus every update is the exchange's book
    assert {c for c, k in got.counts.items() if k > 0} == {"trades", "l2_book", "ticker", "funding", "candles"}
    assert {f.symbol for f in got.objects["funding"]} == {"BTC-USDT-PERP"}  # swaps only


def test_history_trades_page_back_by_trade_id_or_time_newest_first() -> None:
    m = SyntheticMarket(_spec())
    for _ in range(1_000):
        m.step()
    tape = m.tape("BTC-USDT-SWAP")

    def ids(**q: str) -> list[int]:
        status, body = okx.rest(m, "/api/v5/market/history-trades", {"instId": "BTC-USDT-SWAP", **q})
        assert status == 200 and body["code"] == "0"
        return [int(t["tradeId"]) for t in body["data"]]

    assert ids() == list(range(1_000_999, 1_000_899, -1))  # the newest 100
    assert ids(type="1", after="1000500", limit="3") == [1_000_499, 1_000_498, 1_000_497]
    assert ids(type="1", before="1000500", limit="2") == [1_000_502, 1_000_501]
    assert ids(type="1", after="1000010", limit="500") == list(range(1_000_009, 999_999, -1))  # at most 100, none older
    t = tape.time_ms[500]
    assert all(tape.time_ms[i - tape.first_id] < t for i in ids(type="2", after=str(t)))
    status, body = okx.rest(m, "/api/v5/market/trades", {"instId": "NOPE-USDT"})
    assert body["code"] == "51001" and body["data"] == []
    with pytest.raises(InvalidArgument, match="OKX"):
        SyntheticMarket(MarketSpec(exchange="OKX", symbols=["BTCUSDT"]))
