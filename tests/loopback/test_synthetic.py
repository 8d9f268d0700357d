"""The synthetic market is deterministic, consistent, and its REST answers follow Binance."""

from __future__ import annotations

import json

import pytest

from crypto_lakehouse.loopback import MarketSpec, SyntheticMarket
from crypto_lakehouse.loopback.synthetic import RestError

START = 1_700_000_000_000


def _run(rounds: int, **kw) -> tuple[SyntheticMarket, list]:
    m = SyntheticMarket(MarketSpec(start_ms=START, **kw))
    events = [e for _ in range(rounds) for e in m.step()]
    return m, events


def test_same_seed_same_market_other_seed_other_market() -> None:
    _, a = _run(500, seed=1)
    _, b = _run(500, seed=1)
    _, c = _run(500, seed=2)
    assert a == b
    assert a != c


@pytest.mark.parametrize("exchange", ["BINANCE", "BINANCE_US", "BINANCE_FUTURES", "BINANCE_DELIVERY"])
def test_trade_ids_contiguous_book_sequenced_and_never_crossed(exchange: str) -> None:
    symbols = ["BTCUSD_PERP", "ETHUSD_PERP"] if exchange == "BINANCE_DELIVERY" else ["BTCUSDT", "ETHUSDT"]
    m, events = _run(3_000, exchange=exchange, symbols=symbols)
    last_trade: dict[str, int] = {}
    last_u: dict[str, int] = {}
    books: dict[str, tuple[dict, dict]] = {s: ({}, {}) for s in symbols}
    for key, payload, trade_id in events:
        data = json.loads(payload)
        if key.endswith("@aggTrade"):
            s = data["s"]
            assert data["a"] == trade_id
            if s in last_trade:
                assert trade_id == last_trade[s] + 1
            last_trade[s] = trade_id
        elif key.endswith("@depth"):
            s = data["s"]
            if s in last_u:
                assert data["U"] == last_u[s] + 1
                if m.venue.is_futures:
                    assert data["pu"] == last_u[s]
            last_u[s] = data["u"]
            bids, asks = books[s]
            for side, book in (("b", bids), ("a", asks)):
                for p, q in data[side]:
                    if float(q) == 0:
                        book.pop(p, None)
                    else:
                        book[p] = q
        elif key.endswith("@bookTicker"):
            assert float(data["b"]) < float(data["a"])
    for s in symbols:
        tape = m.tape(s)
        assert last_trade[s] == tape.last_id and len(tape) == 3_000
        snap = m.depth_snapshot(s, 5000)
        assert snap["lastUpdateId"] == last_u[s]
        assert float(snap["bids"][0][0]) < float(snap["asks"][0][0])
        # the deltas applied on top of the initial book reproduce the snapshot's changed levels
        bids, asks = books[s]
        assert all(dict(snap["bids"]).get(p) == q for p, q in bids.items())
        assert all(dict(snap["asks"]).get(p) == q for p, q in asks.items())


def test_agg_trades_by_id_time_and_latest_follow_binance_rules() -> None:
    m, _ = _run(2_000, symbols=["BTCUSDT"])
    tape = m.tape("BTCUSDT")
    by_id = m.agg_trades("BTCUSDT", from_id=tape.first_id + 10, start_ms=None, end_ms=None, limit=5)
    assert [t["a"] for t in by_id] == list(range(tape.first_id + 10, tape.first_id + 15))
    t0, t1 = tape.time_ms[100], tape.time_ms[200]
    by_time = m.agg_trades("BTCUSDT", from_id=None, start_ms=t0, end_ms=t1, limit=1000)
    assert all(t0 <= t["T"] <= t1 for t in by_time)
    assert len(by_time) == sum(1 for t in tape.time_ms if t0 <= t <= t1)
    latest = m.agg_trades("BTCUSDT", from_id=None, start_ms=None, end_ms=None, limit=3)
    assert [t["a"] for t in latest] == [tape.last_id - 2, tape.last_id - 1, tape.last_id]
    with pytest.raises(RestError, match="More than 1 hours"):
        m.agg_trades("BTCUSDT", from_id=None, start_ms=START, end_ms=START + 3_600_001, limit=10)
    with pytest.raises(RestError, match="Invalid symbol"):
        m.agg_trades("NOPEUSDT", from_id=None, start_ms=None, end_ms=None, limit=10)


def test_rest_klines_aggregate_the_ground_truth_exactly() -> None:
    from decimal import Decimal

    m, _ = _run(5_000, symbols=["ETHUSDT"], rate=200)
    tape = m.tape("ETHUSDT")
    rows = m.klines("ETHUSDT", "1m", start_ms=None, end_ms=None, limit=1000)
    assert sum(r[8] for r in rows) == len(tape)
    for row in rows:
        t = row[0]
        idx = [i for i in range(len(tape)) if t <= tape.time_ms[i] < t + 60_000]
        prices = [Decimal(tape.price[i]) / 100 for i in idx]
        qty = [Decimal(tape.qty[i]) / 1000 for i in idx]
        assert Decimal(row[1]) == prices[0] and Decimal(row[4]) == prices[-1]
        assert Decimal(row[2]) == max(prices) and Decimal(row[3]) == min(prices)
        assert Decimal(row[5]) == sum(qty)
        assert Decimal(row[7]) == sum(p * q for p, q in zip(prices, qty, strict=True))


def test_stream_klines_close_with_the_rest_values() -> None:
    m, events = _run(5_000, symbols=["ETHUSDT"], rate=50)
    closed = [json.loads(p)["k"] for k, p, _ in events if k.endswith("@kline_1m") and b'"x":true' in p]
    assert len(closed) >= 2, "5000 rounds of 30 ms span 2.5 minutes"
    rest = {r[0]: r for r in m.klines("ETHUSDT", "1m", start_ms=None, end_ms=None, limit=1000)}
    for k in closed:
        r = rest[k["t"]]
        assert [k["o"], k["h"], k["l"], k["c"], k["v"], k["n"], k["q"]] == [r[1], r[2], r[3], r[4], r[5], r[8], r[7]]


def test_funding_history_is_8h_settlements_and_deterministic() -> None:
    m, _ = _run(10, exchange="BINANCE_FUTURES", symbols=["BTCUSDT"])
    hist = m.funding_history("BTCUSDT", start_ms=None, end_ms=None, limit=1000)
    assert len(hist) == 30 * 3 or len(hist) == 30 * 3 + 1
    times = [h["fundingTime"] for h in hist]
    assert all(b - a == 8 * 3_600_000 for a, b in zip(times, times[1:], strict=False))
    again, _ = _run(10, exchange="BINANCE_FUTURES", symbols=["BTCUSDT"])
    assert again.funding_history("BTCUSDT", start_ms=None, end_ms=None, limit=1000) == hist


def test_bad_market_specs_are_clear_errors() -> None:
    from crypto_lakehouse.errors import LakehouseError

    with pytest.raises(LakehouseError, match="unknown exchange"):
        SyntheticMarket(MarketSpec(exchange="KRAKEN"))
    with pytest.raises(LakehouseError, match="rate"):
        SyntheticMarket(MarketSpec(rate=0))
    with pytest.raises(RestError, match="Invalid interval"):
        SyntheticMarket(MarketSpec()).add_kline_interval("7m")


def test_a_market_started_later_continues_the_ids_and_prices_of_one_that_ran_before() -> None:
    """`make demo` then `make serve` into one root: the second market's trade ids are above every
    id the first one issued (its ids restarted at 1,000,000 and silver dropped the new trades as
    duplicates), and it opens near the first one's opening price (no jump back)."""
    t0 = 1_763_900_000_000
    first = SyntheticMarket(MarketSpec(exchange="BINANCE", symbols=["BTCUSDT", "ETHUSDT"], rate=100_000, start_ms=t0))
    for _ in range(20_000):  # ~0.4 s of exchange time at 100k messages/s
        first.step()
    ran_until = t0 + 10 * 60_000  # the first market ran ten minutes at most...
    later = SyntheticMarket(
        MarketSpec(exchange="BINANCE", symbols=["BTCUSDT", "ETHUSDT"], rate=100_000, start_ms=ran_until)
    )
    for _ in range(1_000):
        later.step()
    for sym in ("BTCUSDT", "ETHUSDT"):
        before, after = first.tape(sym), later.tape(sym)
        assert before.first_id >= t0 * 1000 and after.first_id > before.last_id  # ...and its ids continue
        opened = [first.tape(sym).price[0], later.tape(sym).price[0]]
        assert abs(opened[1] - opened[0]) / opened[0] < 0.01  # ten minutes apart: within 1%
    assert first.tape("ETHUSDT").first_id - first.tape("BTCUSDT").first_id == 1_000_000  # per-symbol spacing
    pinned = SyntheticMarket(MarketSpec(exchange="BINANCE", symbols=["BTCUSDT"], first_id=1_000_000, start_ms=t0))
    pinned.step()
    assert pinned.tape("BTCUSDT").first_id == 1_000_000  # an explicit first id (tests, fault plans by id)
