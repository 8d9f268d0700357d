"""The compiled parts of the hot path make exactly what the Python code makes.

The stream callbacks (``ingest/_callbacks.pyx`` through ``ingest/compiled.py``): the same values,
of the same types, in the same columns, with the same update ids, into a real writer's buffers;
a message that raises buffers nothing; the stream uses them when they are built. No sockets:
cryptofeed's own objects, as its parsers make them, fed to both. The gathering
(``ingest/_columns.pyx`` in ``rows.convert_column``): the same Arrow arrays as the Python
conversion, or None (the Python path then converts or raises)."""

from __future__ import annotations

import asyncio
import inspect
import random
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pytest
from cryptofeed.defines import ASK, BID, L2_BOOK, TICKER, TRADES
from cryptofeed.types import OrderBook, Ticker, Trade

import crypto_lakehouse.ingest.compiled as compiled
import crypto_lakehouse.ingest.rows as rows
from crypto_lakehouse.ingest import BronzeWriter
from crypto_lakehouse.ingest.stream import bronze_callbacks
from crypto_lakehouse.ingest.writer import CHUNK_ROWS
from crypto_lakehouse.schemas import BRONZE, ROW_LAYOUT
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


# ---------------------------------------------------------------------------- the gathering
TS = BRONZE["bronze.trades"].schema.field("ts").type
_RNG = random.Random(20)
_FLOATS = [_RNG.uniform(-2e9, 4e9) for _ in range(2000)]
_TIES = [0.5e-6, 1.5e-6, 2.5e-6, -0.5e-6, -1.5e-6, 1_704_067_200.0000005, 1_704_067_200.0000015]
CONVERSIONS: list[tuple[str, pa.DataType, list[Any], bool, bool]] = [
    # (case, type, values, decimal text, the compiled path takes it)
    ("text", pa.string(), ["BINANCE", "", "é€✓", None, "x" * 300, None], False, True),
    ("text, all null", pa.string(), [None, None], False, True),
    ("no rows", pa.string(), [], False, True),
    ("prices", pa.string(), ["60001.43", "0.00100000", None, "100"], True, True),
    ("a price in exponent notation", pa.string(), ["1", "1E-7"], True, False),
    ("an exponent outside prices", pa.string(), ["1E-7"], False, True),
    ("bytes in text", pa.string(), ["a", b"b"], False, False),
    ("a lone surrogate", pa.string(), ["\ud800"], False, False),
    ("seconds", TS, _FLOATS + _TIES + [None, 0.0, -0.0], False, True),
    ("an int of seconds", TS, [1.5, 2], False, False),
    ("seconds beyond int64 microseconds", TS, [1e300], False, False),
    ("NaN seconds", TS, [float("nan")], False, False),
    ("ints", pa.int64(), [0, None, -(2**63), 2**63 - 1, 7], False, True),
    ("an int beyond 64 bits", pa.int64(), [2**63], False, False),
    ("a bool as an int", pa.int64(), [1, True], False, False),
    ("bools", pa.bool_(), [True, False, None] * 7, False, True),
    ("an int as a bool", pa.bool_(), [True, 1], False, False),
]


def _in_python(typ: pa.DataType, values: list[Any], decimal: bool) -> pa.Array | type[BaseException]:
    try:
        return rows._convert_in_python(typ, values, decimal=decimal)
    except Exception as exc:  # noqa: BLE001  # compared: the fallback must raise the same
        return type(exc)


@pytest.mark.parametrize(
    ("typ", "values", "decimal", "fast"), [c[1:] for c in CONVERSIONS], ids=[c[0] for c in CONVERSIONS]
)
def test_the_compiled_gathering_builds_the_array_the_python_conversion_builds(
    typ: pa.DataType, values: list[Any], decimal: bool, fast: bool
) -> None:
    """Straight into Arrow's buffers where the values are plain; otherwise None, so that
    convert_column takes the Python path (which writes exponents out, or raises)."""
    assert rows._COMPILED
    compiled_array = rows._columns.convert(typ, values, decimal)
    expected = _in_python(typ, values, decimal)
    if not fast:  # convert_column falls back: the Python path's array, or its error
        assert compiled_array is None
        try:
            got: pa.Array | type[BaseException] = rows.convert_column(typ, values, decimal=decimal)
        except Exception as exc:  # noqa: BLE001
            got = type(exc)
        assert got.equals(expected) if isinstance(got, pa.Array) else got is expected
        return
    assert isinstance(expected, pa.Array), expected
    assert compiled_array is not None
    compiled_array.validate(full=True)
    assert compiled_array.type == expected.type and compiled_array.equals(expected)
    assert compiled_array.null_count == expected.null_count
    assert rows.convert_column(typ, values, decimal=decimal).equals(expected)  # the way gather calls it
