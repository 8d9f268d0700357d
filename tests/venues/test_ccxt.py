"""The real ccxt clients (only ``urls['api']`` rewritten) read the synthetic ground truth."""

from __future__ import annotations

from decimal import Decimal

import pytest

from crypto_lakehouse.loopback import MarketSpec, SyntheticMarket, running_exchange
from crypto_lakehouse.venues import ccxt_client

START = 1_700_000_000_000
CASES = [
    ("BINANCE", "BTCUSDT", "BTC/USDT"),
    ("BINANCE_FUTURES", "BTCUSDT", "BTC/USDT:USDT"),
    ("BINANCE_DELIVERY", "BTCUSD_PERP", "BTC/USD:BTC"),
]


def _market(exchange: str, symbol: str) -> SyntheticMarket:
    m = SyntheticMarket(MarketSpec(exchange=exchange, symbols=[symbol], rate=60, start_ms=START))
    for _ in range(3_500):  # 3,500 trades over ~175 s of exchange time
        m.step()
    return m


@pytest.mark.parametrize(("exchange", "symbol", "unified"), CASES)
def test_ccxt_reads_markets_trades_ohlcv_from_loopback(exchange: str, symbol: str, unified: str) -> None:
    m = _market(exchange, symbol)
    tape = m.tape(symbol)
    truth = [tape.record(i) for i in range(len(tape))]
    with running_exchange(market=m) as ex:
        client = ccxt_client(exchange, rest_url=ex.rest_url, rateLimit=5)  # loopback: no 50 ms spacing
        markets = client.load_markets()
        assert unified in markets and markets[unified]["id"] == symbol

        # by id, paginated by hand with fromId as a backfill does
        got, next_id = [], tape.first_id
        while next_id <= tape.last_id:
            page = client.fetch_trades(unified, limit=1000, params={"fromId": next_id})
            assert len(page) <= 1000
            got += page
            next_id = int(page[-1]["id"]) + 1
        assert [int(t["id"]) for t in got] == [t["a"] for t in truth]
        assert [Decimal(t["info"]["p"]) for t in got] == [Decimal(t["p"]) for t in truth]
        assert [t["side"] for t in got] == ["sell" if t["m"] else "buy" for t in truth]

        # by time, with ccxt's own pagination (backwards from `until`)
        paged = client.fetch_trades(
            unified, since=START, params={"paginate": True, "until": m.now_ms, "paginationCalls": 20}
        )
        assert sorted({int(t["id"]) for t in paged}) == [t["a"] for t in truth]

        ohlcv = client.fetch_ohlcv(unified, "1m", since=START - START % 60_000, limit=1000)
        rest = m.klines(symbol, "1m", start_ms=START - START % 60_000, end_ms=None, limit=1000)
        assert [row[0] for row in ohlcv] == [r[0] for r in rest]
        # ccxt reports coin-M volume in the base asset (kline field 7), the others in field 5
        vol = 7 if exchange == "BINANCE_DELIVERY" else 5
        assert [row[1:6] for row in ohlcv] == [[float(x) for x in (*r[1:5], r[vol])] for r in rest]
        assert sum(r[8] for r in rest) == len(truth)


def test_ccxt_funding_rate_history_is_the_ground_truth() -> None:
    m = _market("BINANCE_FUTURES", "ETHUSDT")
    with running_exchange(market=m) as ex:
        client = ccxt_client("BINANCE_FUTURES", rest_url=ex.rest_url)
        client.load_markets()
        since = START - 10 * 86_400_000
        hist = client.fetch_funding_rate_history("ETH/USDT:USDT", since=since, limit=1000)
    truth = m.funding_history("ETHUSDT", start_ms=since, end_ms=None, limit=1000)
    assert len(hist) == len(truth) == 30
    assert [h["timestamp"] for h in hist] == [t["fundingTime"] for t in truth]
    assert [h["info"]["fundingRate"] for h in hist] == [t["fundingRate"] for t in truth]


def test_binance_errors_reach_ccxt_as_its_own_exceptions() -> None:
    import ccxt

    m = _market("BINANCE_FUTURES", "BTCUSDT")
    with running_exchange(market=m) as ex:
        client = ccxt_client("BINANCE_FUTURES", rest_url=ex.rest_url)
        client.load_markets()
        with pytest.raises(ccxt.BadRequest, match="More than 1 hours"):
            client.fetch_trades("BTC/USDT:USDT", params={"startTime": START, "endTime": START + 7_200_000})
        with pytest.raises(ccxt.BadSymbol):
            client.fetch_trades("NOPE/USDT:USDT")
