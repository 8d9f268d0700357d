"""Every fault kind is observable by a client, and none of them takes the server down."""

from __future__ import annotations

import asyncio
import json

import pytest

from crypto_lakehouse.loopback import MALFORMED_KINDS, FaultPlan, LoopbackExchange, MarketSpec

from .helpers import read_frames, stream_until_finished

START = 1_700_000_000_000


def _spec(**kw) -> MarketSpec:
    return MarketSpec(
        first_id=1_000_000, exchange="BINANCE_FUTURES", symbols=["BTCUSDT"], rate=20_000, start_ms=START, **kw
    )


async def _read_all(ex: LoopbackExchange, streams: str) -> tuple[list[str], bool]:
    """Raw websocket client: every text frame until the market ends; and whether it was dropped."""
    return await read_frames(ex, f"/stream?streams={streams}")


def _trade_ids(frames: list[str]) -> list[int]:
    ids = []
    for f in frames:
        try:
            data = json.loads(f)["data"]
        except (ValueError, KeyError, TypeError):
            continue
        if isinstance(data, dict) and data.get("e") == "aggTrade" and isinstance(data.get("p"), str) and data["a"] > 1:
            ids.append(data["a"])
    return ids


def test_skipped_trades_are_missing_on_the_stream_but_served_by_rest() -> None:
    async def run():
        async with LoopbackExchange(
            market=_spec(max_trades=500), faults=FaultPlan(skip_trades=[(1_000_100, 1_000_149)])
        ) as ex:
            frames, _ = await _read_all(ex, "btcusdt@aggTrade")
            rest = ex.market.agg_trades("BTCUSDT", from_id=1_000_100, start_ms=None, end_ms=None, limit=50)
            return _trade_ids(frames), rest, ex.status()

    ids, rest, status = asyncio.run(run())
    assert ids == [i for i in range(1_000_000, 1_000_500) if not 1_000_100 <= i <= 1_000_149]
    assert [t["a"] for t in rest] == list(range(1_000_100, 1_000_150))
    assert status["trades_skipped"] == 50


def test_duplicates_arrive_twice() -> None:
    async def run():
        async with LoopbackExchange(market=_spec(max_trades=300), faults=FaultPlan(duplicate_every=10)) as ex:
            frames, _ = await _read_all(ex, "btcusdt@aggTrade")
            return _trade_ids(frames)

    ids = asyncio.run(run())
    assert len(ids) == 300 + 30
    assert sorted(set(ids)) == list(range(1_000_000, 1_000_300))
    assert {i for i in ids if ids.count(i) == 2} == {i for i in range(1_000_000, 1_000_300) if i % 10 == 0}


def test_frames_sent_are_counted_per_stream_kind_duplicates_included_malformed_not() -> None:
    async def run():
        async with LoopbackExchange(
            market=_spec(max_trades=300), faults=FaultPlan(duplicate_every=10, malformed_every=40)
        ) as ex:
            frames, _ = await _read_all(ex, "btcusdt@aggTrade/btcusdt@bookTicker")
            return frames, ex.status()

    frames, status = asyncio.run(run())
    kinds: dict[str, int] = {}
    for f in frames:  # the good frames (a malformed one is an aggTrade with id 1, or no JSON)
        try:
            msg = json.loads(f)
            stream, data = msg["stream"], msg["data"]
            good = data["e"] == "bookTicker" or (data["a"] > 1 and isinstance(data["p"], str) and data["T"] > 1)
        except (ValueError, KeyError, TypeError):
            continue
        if good:
            kind = stream.partition("@")[2]
            kinds[kind] = kinds.get(kind, 0) + 1
    assert status["sent_by_channel"] == kinds
    assert kinds["aggTrade"] == 330 and kinds["bookTicker"] > 0


def test_malformed_frames_of_every_kind_reach_the_client_and_the_stream_goes_on() -> None:
    async def run():
        async with LoopbackExchange(market=_spec(max_trades=400), faults=FaultPlan(malformed_every=25)) as ex:
            frames, dropped = await _read_all(ex, "btcusdt@aggTrade/btcusdt@depth@100ms")
            return frames, dropped, ex.status()

    frames, dropped, status = asyncio.run(run())
    assert not dropped
    assert _trade_ids(frames) == list(range(1_000_000, 1_000_400))  # every good trade still arrives
    bad = []
    for f in frames:
        try:
            msg = json.loads(f)
            data = msg["data"]
            ok = (
                data.get("e") in ("aggTrade", "depthUpdate")
                and isinstance(data.get("p", ""), str)
                and (data.get("e") != "aggTrade" or "p" in data)
                and isinstance(data.get("T", 0), int)
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            ok = False
        if not ok:
            bad.append(f)
    assert len(bad) == sum(status["malformed_sent"].values()) > 0
    assert set(status["malformed_sent"]) == set(MALFORMED_KINDS)


def test_dropped_connection_is_cut_at_the_given_message_count() -> None:
    async def run():
        async with LoopbackExchange(market=_spec(max_trades=2_000), faults=FaultPlan(drop_at=120)) as ex:
            frames, dropped = await _read_all(ex, "btcusdt@aggTrade")
            return frames, dropped, ex.status()

    frames, dropped, status = asyncio.run(run())
    assert dropped and len(frames) == 120
    assert status["connections_dropped"] == 1


def test_cryptofeed_survives_malformed_frames_and_a_drop_by_reconnecting() -> None:
    """The real handler raises on a malformed frame and reconnects; the server keeps serving."""

    async def run():
        faults = FaultPlan(malformed_every=1_500, drop_at=3_000)
        spec = MarketSpec(
            first_id=1_000_000, exchange="BINANCE_FUTURES", symbols=["BTCUSDT"], rate=3_000, max_trades=3_000
        )
        async with LoopbackExchange(market=spec, faults=faults) as ex:  # ~3 s of market
            got = await stream_until_finished(ex, ["BTC-USDT-PERP"], ["trades"], settle=0.5)
            return got, ex.status()

    got, status = asyncio.run(run())
    assert status["connections_opened"] >= 2  # it came back after the errors
    assert got.reconnects >= 1
    assert got.counts["trades"] > 0


@pytest.mark.parametrize(
    ("exchange", "symbols"),
    [
        ("BINANCE", ["BTC-USDT", "ETH-USDT"]),
        ("BINANCE_US", ["BTC-USDT"]),
        ("BINANCE_FUTURES", ["BTC-USDT-PERP", "ETH-USDT-PERP"]),
        ("BINANCE_DELIVERY", ["BTC-USD-PERP"]),
    ],
)
def test_unmodified_cryptofeed_classes_stream_the_synthetic_market(exchange: str, symbols: list[str]) -> None:
    """N trades per symbol arrive as exactly N distinct ids, and every channel delivers."""
    n = 200  # at 6 ms of exchange time per round: 1.2 s, so klines and mark prices fall due
    exch_syms = [
        s.replace("-PERP", "").replace("-", "") + ("_PERP" if exchange == "BINANCE_DELIVERY" else "") for s in symbols
    ]

    async def run():
        spec = MarketSpec(
            first_id=1_000_000,
            exchange=exchange,
            symbols=exch_syms,
            rate=500 * len(symbols),
            max_trades=n,
            liquidation_every=50,
        )
        async with LoopbackExchange(market=spec) as ex:
            return await stream_until_finished(ex, symbols, candle_closed_only=False)

    got = asyncio.run(run())
    for s in symbols:
        ids = [int(t.id) for t in got.objects["trades"] if t.symbol == s]
        assert len(ids) == len(set(ids)) == n
    expected_channels = {"trades", "l2_book", "ticker", "candles"}
    if exchange in ("BINANCE_FUTURES", "BINANCE_DELIVERY"):
        expected_channels |= {"funding", "liquidations"}
    assert {c for c, k in got.counts.items() if k > 0} == expected_channels
