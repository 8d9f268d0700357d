"""Backfill pages each venue's trade history the way its ccxt client reaches back (the registry's
``ccxt_paging``): the pure paging walks, the venues that cannot backfill, and OKX's id cursor
against the loopback OKX REST with the real ``ccxt.okx``."""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl
import pytest

from crypto_lakehouse.errors import GapUnfillable, InvalidArgument
from crypto_lakehouse.ingest.backfill import Backfiller, exchange_symbol, since_pages, unfillable_reason, walk_back
from crypto_lakehouse.loopback import MarketSpec, SyntheticMarket, running_exchange
from crypto_lakehouse.venues.clients import CcxtTrade
from crypto_lakehouse.venues.registry import VENUES, venue

START = 1_700_000_000_000


def _trade(tid: int, ts: int) -> CcxtTrade:
    return {"id": str(tid), "timestamp": ts, "side": "buy", "price": 1.0, "amount": 1.0, "info": {}}


TAPE = [_trade(100 + i, START + 10 * (i // 3)) for i in range(1_000)]  # 3 trades per 10 ms


def _okx_like(params: dict) -> list[CcxtTrade]:
    """OKX's history-trades over TAPE: 100 older than ``after`` (an id, or a time with type=2)."""
    older = [t for t in TAPE if (t["timestamp"] if params["type"] == 2 else int(t["id"])) < params["after"]]
    return sorted(older[-100:], key=lambda t: t["timestamp"])  # ccxt sorts each page by time


def test_walk_back_pages_by_id_until_the_first_id_is_reached() -> None:
    calls: list[dict] = []

    def page(params: dict) -> list[CcxtTrade]:
        calls.append(params)
        return _okx_like(params)

    rows = walk_back(page, {"type": 1, "after": 851}, reached=lambda t: int(t["id"]) <= 600)
    assert {int(t["id"]) for t in rows} >= set(range(600, 851))
    assert calls == [{"type": 1, "after": a} for a in (851, 751, 651)]  # 100 a page, no more


def test_walk_back_stops_at_the_oldest_trade_and_when_the_cursor_stops_moving() -> None:
    rows = walk_back(_okx_like, {"type": 2, "after": START + 100_000}, reached=lambda t: False)
    assert sorted(int(t["id"]) for t in rows) == list(range(100, 1_100))  # walked to the venue's first trade
    stuck = walk_back(lambda p: TAPE[:5], {"type": 1, "after": 10}, reached=lambda t: False)
    assert len(stuck) == 10  # the same page twice, then it gave up rather than loop


def test_since_pages_cover_the_range_once_each_even_when_a_millisecond_spans_pages() -> None:
    def page(since: int) -> list[CcxtTrade]:
        return [t for t in TAPE if t["timestamp"] >= since][:7]  # 7 a page: a 3-trade ms is split

    got = since_pages(page, START + 50, START + 900)
    assert [int(t["id"]) for t in got] == [int(t["id"]) for t in TAPE if START + 50 <= t["timestamp"] < START + 900]


@pytest.mark.parametrize("paging", ["latest_only", "none"])
def test_venues_without_history_raise_gap_unfillable_naming_venue_and_paging(paging: str) -> None:
    exchange = next(v.exchange for v in VENUES.values() if v.ccxt_paging == paging and v.ccxt_id)
    t0, t1 = datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 2, tzinfo=UTC)
    b = Backfiller({exchange: "http://127.0.0.1:9"})  # never called: refused before any request
    for call in (
        lambda: b.trades_by_id(exchange, "BTC-USDT", 1, 5),
        lambda: b.trades_by_time(exchange, "BTC-USDT", t0, t1),
    ):
        with pytest.raises(GapUnfillable, match=f"{exchange}.*paging {paging}"):
            call()
    assert b.requests == 0
    assert unfillable_reason(venue(exchange)) is not None
    assert unfillable_reason(venue("OKX")) is None and unfillable_reason(venue("BINANCE")) is None


def test_exchange_symbols_are_the_ccxt_market_ids() -> None:
    assert exchange_symbol("OKX", "BTC-USDT-PERP") == "BTC-USDT-SWAP"
    assert exchange_symbol("OKX", "ETH-USDT") == "ETH-USDT"
    assert exchange_symbol("BINANCE_FUTURES", "BTC-USDT-PERP") == "BTCUSDT"
    assert exchange_symbol("BINANCE_DELIVERY", "BTC-USD-PERP") == "BTCUSD_PERP"
    with pytest.raises(InvalidArgument, match="OKX"):
        exchange_symbol("OKX", "BTC-USD-22K27")  # dated futures are not mapped
    with pytest.raises(InvalidArgument, match="KRAKEN"):
        exchange_symbol("KRAKEN", "BTC-USD")


def test_okx_id_cursor_against_the_loopback_rest_with_the_real_ccxt_client() -> None:
    market = SyntheticMarket(
        MarketSpec(first_id=1_000_000, exchange="OKX", symbols=["BTC-USDT-SWAP", "ETH-USDT"], start_ms=START)
    )
    for _ in range(1_500):
        market.step()
    tape = market.tape("BTC-USDT-SWAP")
    with running_exchange(market=market) as ex:
        b = Backfiller({"OKX": ex.rest_url}, rate_limit_ms=1)
        assert b.latest_trade_id("OKX", "BTC-USDT-PERP") == tape.last_id == 1_001_499
        assert b.latest_trade_id("OKX", "ETH-USDT") == 2_001_499
        before = b.requests
        by_id = b.trades_by_id("OKX", "BTC-USDT-PERP", 1_000_150, 1_000_420)
        assert b.requests - before == 3  # 100 a page, walking back from 1,000,420
        t0, t1 = tape.time_ms[200], tape.time_ms[1_200]
        by_time = b.trades_by_time(
            "OKX", "ETH-USDT", datetime.fromtimestamp(t0 / 1000, UTC), datetime.fromtimestamp(t1 / 1000, UTC)
        )
    assert by_id["id"].cast(pl.Int64).to_list() == list(range(1_000_150, 1_000_421))
    i = 150
    assert by_id.row(0, named=True) | {"receipt_ts": None} == {
        "exchange": "OKX",
        "symbol": "BTC-USDT-PERP",
        "ts": datetime.fromtimestamp(tape.time_ms[i] / 1000, UTC),
        "receipt_ts": None,
        "id": "1000150",
        "side": "sell" if tape.buyer_maker[i] else "buy",
        "price": tape.record(i)["p"],
        "amount": tape.record(i)["q"],
    }
    eth = market.tape("ETH-USDT")
    want = [eth.first_id + i for i in range(len(eth)) if t0 <= eth.time_ms[i] < t1]
    assert by_time["id"].cast(pl.Int64).to_list() == want
