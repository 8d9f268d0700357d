"""The bronze row layout: one definition (``schemas.ROW_LAYOUT``), and every producer follows it.

Fast unit tests, no sockets and no Delta: each stream callback, fed cryptofeed's own objects,
builds rows whose columns mean what the layout says; the archive importer and the stream turn the
same trade (and the same best bid/ask) into identical Arrow rows; the one conversion rounds
seconds to microseconds and fills the writer's columns.
"""

from __future__ import annotations

import inspect
import io
import zipfile
from collections.abc import Callable, Coroutine
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest
from cryptofeed.defines import (
    ASK,
    BID,
    CANDLES,
    FUNDING,
    INDEX,
    L1_BOOK,
    L2_BOOK,
    L3_BOOK,
    LIQUIDATIONS,
    OPEN_INTEREST,
    TICKER,
    TRADES,
)
from cryptofeed.types import Candle, Funding, Index, L1Book, Liquidation, OpenInterest, OrderBook, Ticker, Trade

from crypto_lakehouse.ingest import archive
from crypto_lakehouse.ingest.rows import (
    ColumnBuffer,
    assemble,
    columns_to_arrow,
    decimal_texts,
    gather,
    row_builder,
    rows_to_arrow,
)
from crypto_lakehouse.ingest.stream import bronze_callbacks
from crypto_lakehouse.schemas import BRONZE, DECIMAL_TEXT, ROW_LAYOUT, WRITER_FILLED

EX, SYM = "BINANCE_FUTURES", "BTC-USDT-PERP"
T0, RECEIPT = 1_704_067_200.123, 1_704_067_200.5


class _Rows:
    """Stands in for the writer: its own buffers (one :class:`ColumnBuffer` per table), read back
    as rows with prices and sizes as the text the conversion stores."""

    def __init__(self) -> None:
        self.buffers: dict[str, ColumnBuffer] = {}

    def _buffer(self, table: str) -> ColumnBuffer:
        return self.buffers.setdefault(table, ColumnBuffer(table))

    def putter(self, table: str) -> Callable[..., None]:
        return self._buffer(table).put

    def levels_putter(self, table: str) -> Callable[..., None]:
        put = self._buffer(table).put_levels
        assert put is not None
        return put

    @property
    def rows(self) -> dict[str, list[tuple]]:
        out = {}
        for table, buffer in self.buffers.items():
            texts = [
                decimal_texts(column) if name in DECIMAL_TEXT[table] else column
                for name, column in zip(ROW_LAYOUT[table], buffer.columns, strict=True)
            ]
            if len(buffer):
                out[table] = list(zip(*texts, strict=True))
        return out


def _run(callback: Coroutine[Any, Any, None]) -> None:
    """Run a callback coroutine to its end without an event loop: it never waits on anything."""
    try:
        callback.send(None)
    except StopIteration:
        return
    raise AssertionError("a bronze callback waited on something")


def _feed(channel: str, obj: Any, receipt: float = RECEIPT) -> dict[str, list[dict[str, Any]]]:
    """``obj`` through the bronze callback of ``channel``: table -> rows as {column: value}."""
    sink = _Rows()
    _run(bronze_callbacks(sink, [channel])[channel](obj, receipt))  # type: ignore[arg-type]  # a duck-typed writer
    return {t: [dict(zip(ROW_LAYOUT[t], row, strict=True)) for row in rows] for t, rows in sink.rows.items()}


def test_the_layout_is_the_schema_less_the_writer_filled_columns() -> None:
    assert set(ROW_LAYOUT) == set(BRONZE)
    for name, spec in BRONZE.items():
        assert ROW_LAYOUT[name] == tuple(n for n in spec.schema.names if n not in WRITER_FILLED)
        assert set(spec.schema.names) - set(ROW_LAYOUT[name]) == set(WRITER_FILLED)


@pytest.mark.parametrize("table", sorted(BRONZE))
def test_each_row_builder_takes_its_layout_by_keyword_and_returns_a_plain_tuple(table: str) -> None:
    build = row_builder(table)
    params = inspect.signature(build).parameters.values()
    assert tuple(p.name for p in params) == ROW_LAYOUT[table]
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params)
    row = build(**{name: f"<{name}>" for name in ROW_LAYOUT[table]})
    assert type(row) is tuple
    assert row == tuple(f"<{name}>" for name in ROW_LAYOUT[table])
    with pytest.raises(TypeError):  # a column left out
        build(**{name: None for name in ROW_LAYOUT[table][1:]})
    with pytest.raises(TypeError):  # a column the table does not have
        build(**{name: None for name in ROW_LAYOUT[table]}, not_a_column=1)


def test_trade_callback_row() -> None:
    trade = Trade(EX, SYM, "sell", Decimal("0.00100000"), Decimal("60001.43"), T0, id="42", type="market")
    assert _feed(TRADES, trade) == {
        "bronze.trades": [
            {
                "exchange": EX,
                "symbol": SYM,
                "ts": T0,
                "receipt_ts": RECEIPT,
                "id": "42",
                "side": "sell",
                "price": "60001.43",
                "amount": "0.00100000",
                "type": "market",
            }
        ]
    }


def _level(
    seq: int, snapshot: bool, side: str | None, price: str | None, size: str | None, ts: float = T0, *, levels: int
) -> dict[str, Any]:
    return {
        "exchange": EX,
        "symbol": SYM,
        "ts": ts,
        "receipt_ts": RECEIPT,
        "update_id": 1,  # each _feed makes new callbacks: the first update they see
        "levels": levels,
        "sequence": seq,
        "snapshot": snapshot,
        "side": side,
        "price": price,
        "size": size,
    }


def test_book_callback_rows_of_a_snapshot_and_a_delta() -> None:
    snapshot = OrderBook(EX, SYM, bids={Decimal("100.10"): Decimal("2")}, asks={Decimal("100.20"): Decimal("3.5")})
    snapshot.timestamp, snapshot.sequence_number, snapshot.delta = T0, 7, None
    assert _feed(L2_BOOK, snapshot) == {
        "bronze.book": [
            _level(7, True, "bid", "100.10", "2", levels=2),
            _level(7, True, "ask", "100.20", "3.5", levels=2),
        ]
    }
    delta = OrderBook(EX, SYM)
    delta.timestamp, delta.sequence_number = T0 + 1, 8
    delta.delta = {
        BID: [(Decimal("100.10"), Decimal("0")), (Decimal("100.00"), Decimal("1"))],
        ASK: [(Decimal("100.30"), Decimal("4"))],
    }
    assert _feed(L2_BOOK, delta) == {
        "bronze.book": [
            _level(8, False, "bid", "100.10", "0", T0 + 1, levels=3),
            _level(8, False, "bid", "100.00", "1", T0 + 1, levels=3),
            _level(8, False, "ask", "100.30", "4", T0 + 1, levels=3),
        ]
    }


def test_a_book_update_without_levels_keeps_one_row() -> None:
    """Deribit delivers an empty snapshot: it must not vanish from the update count."""
    empty = OrderBook(EX, SYM)
    empty.timestamp, empty.sequence_number, empty.delta = T0, 5, None
    assert _feed(L2_BOOK, empty) == {"bronze.book": [_level(5, True, None, None, None, levels=0)]}


def test_update_ids_count_every_delivered_update() -> None:
    sink = _Rows()
    book = bronze_callbacks(sink, [L2_BOOK])[L2_BOOK]
    for seq in (1, 2, 3):
        b = OrderBook(EX, SYM, bids={Decimal(seq): Decimal("1")})
        b.timestamp, b.sequence_number, b.delta = T0, seq, None
        _run(book(b, RECEIPT))  # type: ignore[arg-type]
    layout = ROW_LAYOUT["bronze.book"]
    assert [r[layout.index("update_id")] for r in sink.rows["bronze.book"]] == [1, 2, 3]


def test_l3_book_callback_rows_of_a_snapshot_and_a_delta() -> None:
    snapshot = OrderBook(EX, SYM)
    snapshot.book.bids[Decimal("100.1")] = {"o1": Decimal("2"), "o2": Decimal("1")}
    snapshot.book.asks[Decimal("100.2")] = {"o3": Decimal("3")}
    snapshot.timestamp, snapshot.sequence_number, snapshot.delta = T0, 7, None
    head = {"exchange": EX, "symbol": SYM, "ts": T0, "receipt_ts": RECEIPT, "update_id": 1, "sequence": 7}
    assert _feed(L3_BOOK, snapshot) == {
        "bronze.l3_book": [
            {**head, "levels": 3, "snapshot": True, "side": "bid", "order_id": "o1", "price": "100.1", "size": "2"},
            {**head, "levels": 3, "snapshot": True, "side": "bid", "order_id": "o2", "price": "100.1", "size": "1"},
            {**head, "levels": 3, "snapshot": True, "side": "ask", "order_id": "o3", "price": "100.2", "size": "3"},
        ]
    }
    delta = OrderBook(EX, SYM)
    delta.timestamp, delta.sequence_number = T0, 8
    delta.delta = {BID: [], ASK: [(42, Decimal("100.2"), Decimal("0"))]}
    assert _feed(L3_BOOK, delta) == {
        "bronze.l3_book": [
            {
                **head,
                "sequence": 8,
                "levels": 1,
                "snapshot": False,
                "side": "ask",
                "order_id": "42",
                "price": "100.2",
                "size": "0",
            }  # fmt: skip
        ]
    }


def test_l1_book_lands_in_the_ticker_table_with_its_sizes() -> None:
    l1 = L1Book(EX, SYM, Decimal("1.1"), Decimal("2"), Decimal("1.2"), Decimal("3"), T0)
    assert _feed(L1_BOOK, l1) == {
        "bronze.ticker": [
            {
                "exchange": EX,
                "symbol": SYM,
                "ts": T0,
                "receipt_ts": RECEIPT,
                "sequence": None,
                "bid": "1.1",
                "bid_size": "2",
                "ask": "1.2",
                "ask_size": "3",
                "channel": "l1_book",
            }  # fmt: skip
        ]
    }


def test_a_non_binance_ticker_does_not_read_binance_fields() -> None:
    """Only Binance's raw u/B/A mean update id and sizes: another venue's raw keys are not read."""
    ticker = Ticker("BYBIT", SYM, Decimal("1.1"), Decimal("1.2"), T0, raw={"u": 9, "B": "x", "A": "y"})
    [row] = _feed(TICKER, ticker)["bronze.ticker"]
    assert (row["sequence"], row["bid_size"], row["ask_size"], row["channel"]) == (None, None, None, "ticker")


def test_open_interest_and_index_callback_rows() -> None:
    head = {"exchange": EX, "symbol": SYM, "ts": T0, "receipt_ts": RECEIPT}
    oi = OpenInterest(EX, SYM, Decimal("1234.50"), T0)
    assert _feed(OPEN_INTEREST, oi) == {"bronze.open_interest": [{**head, "open_interest": "1234.50"}]}
    index = Index(EX, SYM, Decimal("60000.10"), T0)
    assert _feed(INDEX, index) == {"bronze.index": [{**head, "price": "60000.10"}]}


def test_ticker_callback_row() -> None:
    raw = {"u": 9, "b": "100.10", "B": "2.000", "a": "100.20", "A": "3.500"}
    ticker = Ticker(EX, SYM, Decimal("100.10"), Decimal("100.20"), T0, raw=raw)
    assert _feed(TICKER, ticker) == {
        "bronze.ticker": [
            {
                "exchange": EX,
                "symbol": SYM,
                "ts": T0,
                "receipt_ts": RECEIPT,
                "sequence": 9,
                "bid": "100.10",
                "bid_size": "2.000",
                "ask": "100.20",
                "ask_size": "3.500",
                "channel": "ticker",
            }
        ]
    }


def test_funding_callback_row() -> None:
    raw = {"i": "60000.50"}
    funding = Funding(
        EX, SYM, Decimal("60001.00"), Decimal("0.00010000"), T0 + 3600, T0, predicted_rate=Decimal("0.0002"), raw=raw
    )
    assert _feed(FUNDING, funding) == {
        "bronze.funding": [
            {
                "exchange": EX,
                "symbol": SYM,
                "ts": T0,
                "receipt_ts": RECEIPT,
                "mark_price": "60001.00",
                "index_price": "60000.50",
                "rate": "0.00010000",
                "predicted_rate": "0.0002",
                "next_funding_time": T0 + 3600,
            }
        ]
    }


def test_liquidation_callback_row() -> None:
    liquidation = Liquidation(EX, SYM, "buy", Decimal("0.500"), Decimal("59000.1"), "77", "filled", T0)
    assert _feed(LIQUIDATIONS, liquidation) == {
        "bronze.liquidations": [
            {
                "exchange": EX,
                "symbol": SYM,
                "ts": T0,
                "receipt_ts": RECEIPT,
                "id": "77",
                "side": "buy",
                "quantity": "0.500",
                "price": "59000.1",
                "status": "filled",
            }
        ]
    }


def test_candle_callback_row() -> None:
    d = Decimal
    candle = Candle(
        EX, SYM, T0, T0 + 59.999, "1m", 12, d("1.10"), d("1.15"), d("1.20"), d("1.00"), d("10.0"), False, T0 + 1
    )
    assert _feed(CANDLES, candle) == {
        "bronze.candles": [
            {
                "exchange": EX,
                "symbol": SYM,
                "ts": T0 + 1,
                "receipt_ts": RECEIPT,
                "interval": "1m",
                "start": T0,
                "stop": T0 + 59.999,
                "trades": 12,
                "open": "1.10",
                "high": "1.20",
                "low": "1.00",
                "close": "1.15",
                "volume": "10.0",
                "closed": False,
            }
        ]
    }


def _archive_rows(kind: str, csv: str) -> tuple[str, pa.Table]:
    """One CSV of ``kind`` through the archive importer's parsing and conversion."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr(f"BTCUSDT-{kind}-2024-01-01.csv", csv)
    f = archive.ArchiveFile(f"data/futures/um/daily/{kind}/BTCUSDT/x.zip", "um", kind, None, "BTCUSDT")
    table, df = archive._parse(f, buf.getvalue(), EX, SYM, RECEIPT)
    return table, archive._to_bronze(table, df, writer_id="w")


def _stream_rows(channel: str, obj: Any) -> tuple[str, pa.Table]:
    """The same through the stream callback and the writer's conversion."""
    sink = _Rows()
    _run(bronze_callbacks(sink, [channel])[channel](obj, RECEIPT))  # type: ignore[arg-type]  # a duck-typed writer
    [(table, rows)] = sink.rows.items()
    return table, rows_to_arrow(table, rows, writer_id="w", batch_id=0)


@pytest.mark.parametrize(
    ("kind", "csv", "channel", "obj"),
    [
        pytest.param(
            "aggTrades",  # agg_trade_id,price,quantity,first_trade_id,last_trade_id,transact_time,is_buyer_maker
            "42,60001.43,0.00100000,100,105,1704067200123,true\n",
            TRADES,
            Trade(EX, SYM, "sell", Decimal("0.00100000"), Decimal("60001.43"), 1704067200123 / 1000.0, id="42"),
            id="trade",
        ),
        pytest.param(
            "bookTicker",  # update_id,bid,bid_qty,ask,ask_qty,transaction_time,event_time
            "9,100.10,2.000,100.20,3.500,1704067200001,1704067200002\n",
            TICKER,
            Ticker(
                EX,
                SYM,
                Decimal("100.10"),
                Decimal("100.20"),
                1704067200002 / 1000.0,
                raw={"u": 9, "b": "100.10", "B": "2.000", "a": "100.20", "A": "3.500"},
            ),
            id="ticker",
        ),
    ],
)
def test_archive_and_stream_rows_of_the_same_event_convert_to_identical_arrow_rows(
    kind: str, csv: str, channel: str, obj: Any
) -> None:
    table, from_archive = _archive_rows(kind, csv)
    stream_table, from_stream = _stream_rows(channel, obj)
    assert table == stream_table
    assert from_archive.schema == from_stream.schema == BRONZE[table].schema
    assert from_archive.to_pylist() == from_stream.to_pylist()
    assert from_archive.equals(from_stream)


def _trade(**overrides: Any) -> tuple:
    values = {
        "exchange": EX,
        "symbol": SYM,
        "ts": T0,
        "receipt_ts": RECEIPT,
        "id": "1",
        "side": "buy",
        "price": "1.5",
        "amount": "2",
        "type": None,
    }
    return row_builder("bronze.trades")(**{**values, **overrides})


def test_conversion_rounds_seconds_and_fills_the_writer_columns() -> None:
    rows = [_trade(ts=1_704_067_199.9999996), _trade(id="2", ts=None, receipt_ts=1_704_153_600.0)]
    got = rows_to_arrow("bronze.trades", rows, writer_id="w-1", batch_id=12).to_pylist()
    assert [(r["ts"], r["receipt_ts"], r["date"]) for r in got] == [
        (datetime(2024, 1, 1, tzinfo=UTC), datetime.fromtimestamp(RECEIPT, UTC), date(2024, 1, 1)),
        (None, datetime(2024, 1, 2, tzinfo=UTC), date(2024, 1, 2)),  # no exchange time: the receipt's date
    ]
    assert {(r["writer_id"], r["batch_id"]) for r in got} == {("w-1", 12)}
    assert rows_to_arrow("bronze.trades", [], writer_id="w", batch_id=1).schema == BRONZE["bronze.trades"].schema


def test_dead_letter_date_is_that_of_its_receipt() -> None:
    row = row_builder("bronze.dead_letter")(
        received_at=1_704_067_200.0, exchange=None, channel="c", error="e", payload="p"
    )
    [got] = rows_to_arrow("bronze.dead_letter", [row], writer_id="w", batch_id=1).to_pylist()
    assert (got["received_at"], got["date"]) == (datetime(2024, 1, 1, tzinfo=UTC), date(2024, 1, 1))


@pytest.mark.parametrize(
    ("convert", "message"),
    [
        (lambda: rows_to_arrow("bronze.trades", [_trade()[:-1]], writer_id="w", batch_id=1), "shorter"),
        (lambda: rows_to_arrow("bronze.trades", [_trade(side=None)], writer_id="w", batch_id=1), "side"),
        (
            lambda: columns_to_arrow("bronze.trades", {"exchange": [EX]}, writer_id="w", batch_id=1),
            "have the columns",
        ),
    ],
)
def test_rows_that_do_not_fit_the_layout_are_refused(convert: Callable[[], pa.Table], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        convert()


def test_a_column_buffer_holds_rows_as_columns_and_takes_them_all_or_none() -> None:
    layout = ROW_LAYOUT["bronze.book"]
    head = (EX, SYM, T0, RECEIPT, 7, 3, 42, False)
    buffer = ColumnBuffer("bronze.book")
    buffer.append((*head, "bid", "100.5", "1"))
    buffer.extend_repeated(head, [["bid", "ask", "ask"], ["100.4", "100.6", "100.7"], ["2", "0", "3"]])
    buffer.extend([(*head, "ask", "101", "4")])
    assert len(buffer) == 5
    assert buffer.rows()[1] == (*head, "bid", "100.4", "2")
    assert [row[-3:] for row in buffer.rows()] == [
        ("bid", "100.5", "1"), ("bid", "100.4", "2"), ("ask", "100.6", "0"), ("ask", "100.7", "3"), ("ask", "101", "4"),
    ]  # fmt: skip
    assert all(row[: len(head)] == head for row in buffer.rows())
    assert len(buffer.columns) == len(layout)

    before = buffer.rows()
    for head_, tail in (
        (head, [["bid"], ["1"]]),  # a column short
        (head[:-1], [["bid"], ["1"], ["1"]]),  # the head short
        (head, [["bid", "ask"], ["1"], ["1", "2"]]),  # columns of unequal lengths
    ):
        with pytest.raises(ValueError, match="bronze.book rows have 11 values"):
            buffer.extend_repeated(head_, tail)
    with pytest.raises(ValueError):
        buffer.append((*head, "bid", "1"))
    with pytest.raises(ValueError):
        buffer.extend([(*head, "bid", "1", "1"), (*head, "bid", "1")])
    assert buffer.rows() == before  # nothing of a misshapen row is kept

    taken = buffer.take()
    assert [len(c) for c in taken] == [5] * len(layout) and len(buffer) == 0
    buffer.append((*head, "bid", "1", "1"))
    assert len(buffer) == 1 and len(taken[0]) == 5  # the taken columns are no longer the buffer's


def test_put_buffers_a_row_by_keyword_all_or_nothing_with_the_hooks() -> None:
    events: list[str] = []
    buffer = ColumnBuffer(
        "bronze.trades", on_first=lambda: events.append("first"), on_full=lambda: events.append("full"), limit=2
    )
    put = buffer.put
    row = _trade()
    put(**dict(zip(ROW_LAYOUT["bronze.trades"], row, strict=True)))
    assert buffer.rows() == [row] and events == ["first"]
    with pytest.raises(TypeError):  # a column left out: nothing of the row is kept
        put(**dict(zip(ROW_LAYOUT["bronze.trades"][1:], row[1:], strict=True)))
    with pytest.raises(TypeError):  # a column the table does not have
        put(**dict(zip(ROW_LAYOUT["bronze.trades"], row, strict=True)), not_a_column=1)
    assert buffer.rows() == [row] and events == ["first"]
    put(**dict(zip(ROW_LAYOUT["bronze.trades"], row, strict=True)))
    assert events == ["first", "full"]  # the limit reached
    taken = buffer.take()
    assert [len(c) for c in taken] == [2] * len(row) and len(buffer) == 0
    put(**dict(zip(ROW_LAYOUT["bronze.trades"], row, strict=True)))  # the same put, after a take
    assert buffer.rows() == [row] and events == ["first", "full", "first"] and len(taken[0]) == 2


def test_put_levels_repeats_the_update_and_checks_the_level_columns_first() -> None:
    head = dict(zip(ROW_LAYOUT["bronze.book"][:-3], (EX, SYM, T0, RECEIPT, 7, 3, 42, False), strict=True))
    buffer = ColumnBuffer("bronze.book")
    assert buffer.put_levels is not None and ColumnBuffer("bronze.trades").put_levels is None
    buffer.put_levels(3, **head, side=("bid", "ask", "ask"), price=("100.4", "100.6", "100.7"), size=("2", "0", "3"))
    u = tuple(head.values())
    assert buffer.rows() == [(*u, "bid", "100.4", "2"), (*u, "ask", "100.6", "0"), (*u, "ask", "100.7", "3")]
    with pytest.raises(ValueError, match="must hold 2 values each"):  # a level column short: nothing kept
        buffer.put_levels(2, **head, side=("bid", "ask"), price=("1",), size=("1", "2"))
    assert len(buffer) == 3


@pytest.mark.parametrize(
    "values",
    [
        [Decimal("0.00000010"), Decimal("1E+2"), Decimal("60001.43"), "0.5", None, 1e-07, 2.5, Decimal("5E-10")],
        [Decimal("0.00100000"), Decimal("100.10"), "7"],
        [None, None],
        [],
    ],
)
def test_a_batch_of_decimal_texts_is_each_values_decimal_text(values: list[Any]) -> None:
    from crypto_lakehouse.ingest.rows import decimal_text

    assert decimal_texts(values) == [decimal_text(v) for v in values]


def test_runs_gathered_apart_and_assembled_equal_one_conversion_of_all_rows() -> None:
    """gather + assemble (the writer gathers every chunk of rows as they arrive) give the very
    table one conversion of the whole batch gives, rows in order; a null where the schema has
    none fails the gather of its run, not the assembly."""
    rows = [
        _trade(id=str(i), ts=1_700_000_000.0 + i / 7, price=f"{i}.5" if i % 3 else Decimal("1E-7")) for i in range(10)
    ]
    columns = [list(c) for c in zip(*rows, strict=True)]
    runs = [gather("bronze.trades", [c[a:b] for c in columns]) for a, b in ((0, 4), (4, 5), (5, 10))]
    got = assemble("bronze.trades", runs, writer_id="w", batch_id=3)
    assert got.equals(rows_to_arrow("bronze.trades", rows, writer_id="w", batch_id=3))
    assert got["price"].to_pylist()[:2] == ["0.0000001", "1.5"]
    with pytest.raises(ValueError, match="non-nullable column side"):
        gather("bronze.trades", [[v] for v in _trade(side=None)])
