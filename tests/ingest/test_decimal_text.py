"""Prices and sizes land in bronze as plain decimal text, never exponent notation.

cryptofeed 3.0.1 hands Decimals to the callbacks; ``str(Decimal("0.00000010"))`` is ``1.0E-7``.
Bronze stores ``format(d, "f")``: the exchange's text for every plain decimal it sent
(``"0.00000010"`` stays ``"0.00000010"``, trailing zeros kept), and exponent forms expanded
(``1E+2`` -> ``"100"``).
"""

from __future__ import annotations

import asyncio
import re
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest
from cryptofeed.defines import ASK, BID, CANDLES, FUNDING, L2_BOOK, LIQUIDATIONS, TICKER, TRADES
from cryptofeed.types import Candle, Funding, Liquidation, OrderBook, Ticker, Trade

from crypto_lakehouse.ingest import BronzeWriter, stream
from crypto_lakehouse.ingest.stream import bronze_callbacks
from crypto_lakehouse.loopback import MarketSpec
from crypto_lakehouse.loopback.recording import write_synthetic_recording
from crypto_lakehouse.loopback.replay import ingest_recording
from crypto_lakehouse.storage import Catalog

TINY, TINY_TEXT = Decimal("0.00000010"), "0.00000010"  # str() of it: '1.0E-7'
HUNDRED, HUNDRED_TEXT = Decimal("1E+2"), "100"  # str() of it: '1E+2'
T0 = 1_700_000_000.0


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (Decimal("0.00000010"), "0.00000010"),
        (Decimal("1E+2"), "100"),
        (Decimal("1.0E-7"), "0.00000010"),
        (Decimal("5E-10"), "0.0000000005"),
        (Decimal("60001.43"), "60001.43"),
        (Decimal("0.00100000"), "0.00100000"),
        (Decimal("-0.000001"), "-0.000001"),
        (Decimal("0"), "0"),
        (None, None),
        ("0.00000010", "0.00000010"),  # plain text (a raw field): kept as it is
        ("1.0E-7", "0.00000010"),  # text in exponent notation (str of a Decimal the stream buffered): written out
        ("1e-07", "0.0000001"),  # (str of a float)
        ("Refused", "Refused"),  # text with an e that is no number: kept as it is
    ],
)
def test_decimal_text_is_plain_and_keeps_trailing_zeros(value: Decimal | str | None, text: str | None) -> None:
    assert stream.decimal_text(value) == text


def _read(root: Path, kind: str) -> pl.DataFrame:
    return pl.read_delta(str(root / "bronze" / kind))


def test_every_callback_stores_plain_decimal_text(tmp_path: Path) -> None:
    """cryptofeed's own objects, as its handlers build them, through the bronze callbacks and the
    real writer into Delta: no value is stored in exponent notation."""
    writer = BronzeWriter(Catalog(tmp_path), writer_id="w", spool_dir=tmp_path / "spool")
    cb = bronze_callbacks(writer, [TRADES, L2_BOOK, TICKER, FUNDING, LIQUIDATIONS, CANDLES])
    sym = "SHIB-USDT-PERP"

    snapshot = OrderBook("BINANCE_FUTURES", sym, bids={TINY: HUNDRED}, asks={Decimal("0.00000020"): TINY})
    snapshot.timestamp, snapshot.sequence_number, snapshot.delta = T0, 1, None
    delta = OrderBook("BINANCE_FUTURES", sym, bids={TINY: HUNDRED}, asks={})
    delta.timestamp, delta.sequence_number = T0 + 1, 2
    delta.delta = {BID: [(TINY, Decimal("0E-8"))], ASK: [(Decimal("0.00000030"), HUNDRED)]}

    async def go() -> None:
        await writer.start()
        await cb[TRADES](Trade("BINANCE_FUTURES", sym, "buy", HUNDRED, TINY, T0, id="1"), T0)
        await cb[L2_BOOK](snapshot, T0)
        await cb[L2_BOOK](delta, T0 + 1)
        raw = {"u": 7, "B": "1000.00", "A": "2000.00"}
        await cb[TICKER](Ticker("BINANCE_FUTURES", sym, TINY, Decimal("0.00000020"), T0, raw=raw), T0)
        raw = {"i": "0.00000011"}
        await cb[FUNDING](Funding("BINANCE_FUTURES", sym, TINY, Decimal("0.00010000"), T0, T0, raw=raw), T0)
        liq = Liquidation("BINANCE_FUTURES", sym, "sell", HUNDRED, TINY, "9", "filled", T0)
        await cb[LIQUIDATIONS](liq, T0)
        candle = Candle(
            "BINANCE_FUTURES", sym, T0, T0 + 60, "1m", 3, TINY, TINY, Decimal("0.00000012"), TINY, HUNDRED, True, T0
        )
        await cb[CANDLES](candle, T0)
        await writer.flush()

    asyncio.run(go())
    trade = _read(tmp_path, "trades").row(0, named=True)
    assert (trade["price"], trade["amount"]) == (TINY_TEXT, HUNDRED_TEXT)
    book = _read(tmp_path, "book").sort("sequence", "side", "price").select("sequence", "side", "price", "size")
    assert book.rows() == [
        (1, "ask", "0.00000020", TINY_TEXT),
        (1, "bid", TINY_TEXT, HUNDRED_TEXT),
        (2, "ask", "0.00000030", HUNDRED_TEXT),
        (2, "bid", TINY_TEXT, "0.00000000"),
    ]
    ticker = _read(tmp_path, "ticker").row(0, named=True)
    assert (ticker["bid"], ticker["ask"], ticker["bid_size"], ticker["ask_size"]) == (
        TINY_TEXT,
        "0.00000020",
        "1000.00",
        "2000.00",
    )
    funding = _read(tmp_path, "funding").row(0, named=True)
    assert (funding["mark_price"], funding["index_price"], funding["rate"]) == (TINY_TEXT, "0.00000011", "0.00010000")
    liq = _read(tmp_path, "liquidations").row(0, named=True)
    assert (liq["price"], liq["quantity"]) == (TINY_TEXT, HUNDRED_TEXT)
    c = _read(tmp_path, "candles").row(0, named=True)
    assert (c["open"], c["close"], c["high"], c["low"], c["volume"]) == (
        TINY_TEXT,
        TINY_TEXT,
        "0.00000012",
        TINY_TEXT,
        HUNDRED_TEXT,
    )


def test_small_prices_from_the_wire_land_as_the_exchange_sent_them(tmp_path: Path) -> None:
    """End to end: a recorded session whose aggTrade and bookTicker frames carry 8-decimal
    prices below 1e-6 (``"0.00000010"``), replayed by the loopback exchange to the real
    cryptofeed Binance handler and the writer: the stored text is the frame's text."""
    prefix = write_synthetic_recording(
        MarketSpec(exchange="BINANCE", symbols=["BTCUSDT"], rate=300), tmp_path / "rec" / "BINANCE", rounds=200
    )
    ws = prefix.with_name(prefix.name + ".ws.1.0")
    sent_trades: dict[str, tuple[str, str]] = {}
    sent_bids: set[str] = set()

    def tiny(line: str) -> str:
        if '"e":"aggTrade"' in line:
            n = len(sent_trades) % 90 + 10  # 0.00000010 .. 0.00000099
            price, qty = f"0.000000{n:02d}", f"{n * 1000}.00000000"
            line = re.sub(r'"p":"[^"]*"', f'"p":"{price}"', line)
            line = re.sub(r'"q":"[^"]*"', f'"q":"{qty}"', line)
            sent_trades[re.search(r'"a":(\d+)', line).group(1)] = (price, qty)
        elif '"b":"' in line and '"e"' not in line:  # spot bookTicker
            line = re.sub(r'"b":"[^"]*"', '"b":"0.00000010"', line)
            line = re.sub(r'"a":"[^"]*"', '"a":"0.00000020"', line)
            sent_bids.add("0.00000010")
        return line

    lines = ws.read_text().splitlines()
    ws.write_text("\n".join([lines[0], *(tiny(line) for line in lines[1:])]) + "\n")
    assert sent_trades and sent_bids

    writer = BronzeWriter(Catalog(tmp_path / "lake"), writer_id="w", spool_dir=tmp_path / "spool")
    asyncio.run(ingest_recording(prefix, writer))
    trades = _read(tmp_path / "lake", "trades")
    assert {r[0]: (r[1], r[2]) for r in trades.select("id", "price", "amount").iter_rows()} == sent_trades
    ticker = _read(tmp_path / "lake", "ticker")
    assert ticker.height > 0
    assert set(ticker["bid"]) == sent_bids and set(ticker["ask"]) == {"0.00000020"}
