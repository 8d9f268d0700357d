"""The compiled stream callbacks (``ingest/_callbacks.pyx`` through ``ingest/compiled.py``) write
exactly what the Python callbacks write: the same values, of the same types, in the same columns,
with the same update ids, into a real writer's buffers; a message that raises buffers nothing;
and the stream uses them when they are built. No sockets: cryptofeed's own objects, as its
parsers make them, fed to both."""

from __future__ import annotations

import asyncio
import inspect
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from cryptofeed.defines import ASK, BID, L2_BOOK, TICKER, TRADES
from cryptofeed.types import OrderBook, Ticker, Trade

import crypto_lakehouse.ingest.compiled as compiled
from crypto_lakehouse.ingest import BronzeWriter
from crypto_lakehouse.ingest.stream import bronze_callbacks
from crypto_lakehouse.ingest.writer import CHUNK_ROWS
from crypto_lakehouse.schemas import ROW_LAYOUT
from crypto_lakehouse.storage import Catalog

EX, SYM = "BINANCE_FUTURES", "BTC-USDT-PERP"
T0, RECEIPT = 1_704_067_200.123, 1_704_067_200.5
CHANNELS = [TRADES, TICKER, L2_BOOK]
TABLES = ["bronze.trades", "bronze.ticker", "bronze.book"]


def _book(seq: int, delta: dict[str, list[tuple[Any, ...]]] | None, **levels: Any) -> OrderBook:
    b = OrderBook(EX, SYM, **levels)
    b.timestamp, b.sequence_number, b.delta = T0 + seq, seq, delta
    return b


def _messages() -> list[tuple[str, Any]]:
    """Every shape the busy channels deliver, in an order that interleaves them."""
    d = Decimal
    return [
        (TRADES, Trade(EX, SYM, "sell", d("0.00100000"), d("60001.43"), T0, id="42", type="market")),
        (TRADES, Trade(EX, SYM, "buy", d("1E-7"), d("1E+2"), T0 + 1, id="43", type=None)),  # exponents
        (TICKER, Ticker(EX, SYM, d("60001.4"), d("60001.5"), T0, raw={"u": 9, "B": "1.5", "A": "2.5"})),
        (TICKER, Ticker("BYBIT", SYM, d("1.1"), d("1.2"), T0, raw={"u": 9, "B": "x", "A": "y"})),  # not Binance's raw
        (TICKER, Ticker(EX, SYM, d("1.1"), d("1.2"), None, raw=None)),
        (L2_BOOK, _book(1, None, bids={d("100.1"): d("2")}, asks={d("100.2"): d("3")})),  # snapshot: Python's path
        (L2_BOOK, _book(2, {BID: [(d("100.1"), d("0")), (d("100.0"), d("1.50"))], ASK: [(d("100.3"), d("4E-8"))]})),
        (L2_BOOK, _book(3, {BID: [], ASK: [(d("100.2"), d("0"))]})),  # asks only
        (L2_BOOK, _book(4, {BID: [(d("99"), d("1"))], ASK: []})),  # bids only
        (L2_BOOK, _book(5, {BID: [], ASK: []})),  # a delta with no level: one row, Python's path
        (TRADES, Trade(EX, SYM, "buy", d("2"), d("60000"), T0 + 9, id="44", type=None)),
    ]


def _writer(root: Path, *, compiled_callbacks: bool) -> tuple[BronzeWriter, dict[str, Any]]:
    w = BronzeWriter(Catalog(root), writer_id="w", spool_dir=root / "spool")
    return w, bronze_callbacks(w, CHANNELS, compiled=compiled_callbacks)


def _deliver(callbacks: dict[str, Any], messages: list[tuple[str, Any]]) -> None:
    async def run() -> None:  # as cryptofeed's Feed.callback does: await cb(obj, receipt)
        for channel, obj in messages:
            await callbacks[channel](obj, RECEIPT)

    asyncio.run(run())


def _buffered(w: BronzeWriter, table: str) -> list[tuple[tuple[type, Any], ...]]:
    """The rows ``w`` holds for ``table``, each value with its type (True and 1 differ)."""
    return [tuple((type(v), v) for v in row) for row in w.column_buffer(table).rows()]


def test_the_compiled_callbacks_are_built_for_todays_row_layout() -> None:
    """`make setup` compiles them (gcc and Python's headers are on every machine this project
    runs on); without this, every other test here would pass on the Python path alone."""
    assert compiled.BUILT, "crypto_lakehouse.ingest._callbacks is not built: is gcc installed? run `make setup`"
    assert compiled.stale_layouts() == {}


def test_compiled_and_python_callbacks_buffer_the_same_rows(tmp_path: Path) -> None:
    messages = _messages()
    py, py_cbs = _writer(tmp_path / "py", compiled_callbacks=False)
    cy, cy_cbs = _writer(tmp_path / "cy", compiled_callbacks=True)
    assert all(not inspect.iscoroutinefunction(type(cy_cbs[c]).__call__) for c in CHANNELS)  # really the compiled
    _deliver(py_cbs, messages)
    _deliver(cy_cbs, messages)
    for table in TABLES:
        assert _buffered(cy, table) == _buffered(py, table), table
        assert cy.live_arrow(table).equals(py.live_arrow(table)), table
    layout = ROW_LAYOUT["bronze.book"]
    ids = [r[layout.index("update_id")] for r in cy.column_buffer("bronze.book").rows()]
    assert ids == [1, 1, 2, 2, 2, 3, 4, 5]  # snapshot (2 levels), 3 levels, 1, 1, the empty delta's row


def test_a_book_delta_with_a_malformed_level_buffers_nothing_on_either_path(tmp_path: Path) -> None:
    d = Decimal
    bad = _book(2, {BID: [(d("1"), d("1")), (d("2"), d("2"), "extra")], ASK: [(d("3"), d("3"))]})
    good = _book(3, {BID: [(d("1"), d("5"))], ASK: []})
    for name, flag in (("py", False), ("cy", True)):
        w, cbs = _writer(tmp_path / name, compiled_callbacks=flag)
        with pytest.raises(ValueError, match="unpack"):
            _deliver(cbs, [(L2_BOOK, bad)])
        assert w.pending("bronze.book") == 0, name
        assert all(c == [] for c in w.column_buffer("bronze.book").columns), name  # no column left longer
        _deliver(cbs, [(L2_BOOK, good)])
        layout = ROW_LAYOUT["bronze.book"]
        [row] = w.column_buffer("bronze.book").rows()
        assert row[layout.index("update_id")] == 1 and row[layout.index("size")] == "5", name  # no id spent


def test_a_trade_missing_a_field_buffers_nothing(tmp_path: Path) -> None:
    class NoType:  # a Trade-like object without `type`: its row cannot be read whole
        exchange, symbol, timestamp, id, side, price, amount = EX, SYM, T0, "1", "buy", Decimal(1), Decimal(1)

    w, cbs = _writer(tmp_path, compiled_callbacks=True)
    with pytest.raises(AttributeError):
        _deliver(cbs, [(TRADES, NoType())])
    assert w.pending("bronze.trades") == 0 and all(c == [] for c in w.column_buffer("bronze.trades").columns)


def test_compiled_trades_are_gathered_in_chunks_and_committed_in_order(tmp_path: Path) -> None:
    """The buffer's hooks fire from the compiled callback as from the putter: the batch clock
    starts, every CHUNK_ROWS rows are gathered into Arrow, and the commit holds every row in the
    order it arrived."""
    n = 2 * CHUNK_ROWS + 10
    root = tmp_path / "lake"

    async def run() -> tuple[int, int]:
        w = BronzeWriter(Catalog(root), writer_id="w", spool_dir=tmp_path / "spool", max_rows=10 * n)
        await w.start()
        trade = bronze_callbacks(w, [TRADES], compiled=True)[TRADES]
        for i in range(n):
            await trade(Trade(EX, SYM, "buy", Decimal("1.5"), Decimal(i), T0 + i / 1000, id=str(i)), RECEIPT)
        in_lists = len(w.column_buffer("bronze.trades"))
        pending = w.pending("bronze.trades")
        await w.flush()
        return in_lists, pending

    in_lists, pending = asyncio.run(run())
    assert pending == n and in_lists == n % CHUNK_ROWS  # two chunks gathered out of the lists
    assert pl.read_delta(str(root / "bronze" / "trades"))["id"].to_list() == [str(i) for i in range(n)]


def test_the_stream_uses_them_for_its_own_writer_and_not_for_a_wrapping_subclass(tmp_path: Path) -> None:
    class Wrapping(BronzeWriter):  # e.g. the capture replay's view, whose putters skip rows
        pass

    plain = bronze_callbacks(BronzeWriter(Catalog(tmp_path / "a"), writer_id="a", spool_dir=tmp_path / "s"), CHANNELS)
    wrapped = bronze_callbacks(Wrapping(Catalog(tmp_path / "b"), writer_id="b", spool_dir=tmp_path / "t"), CHANNELS)
    assert {c: type(cb).__module__ for c, cb in plain.items()} == dict.fromkeys(
        CHANNELS, "crypto_lakehouse.ingest._callbacks"
    )
    assert {c: cb.__module__ for c, cb in wrapped.items()} == dict.fromkeys(CHANNELS, "crypto_lakehouse.ingest.stream")
