"""Bronze rows: built in :data:`~crypto_lakehouse.schemas.ROW_LAYOUT` order, converted to Arrow once.

A bronze row's layout is defined in one place, ``schemas.ROW_LAYOUT`` (each table's schema less
the columns the writer fills in). Everything here derives from it:

* :func:`row_builder` gives each table a function that takes every column **by keyword** and
  returns the row tuple in layout order, so a producer names what it puts in each column and
  cannot put it in the wrong place.
* :class:`ColumnBuffer` is the writer's buffer: one list per layout column. The stream's hot
  path puts rows straight into it with :attr:`ColumnBuffer.put` (every column by keyword, each
  value appended to its column: no tuple, no dict) and a book update's levels with
  :attr:`ColumnBuffer.put_levels`; tuples go in with :meth:`ColumnBuffer.append`.
* Prices and sizes (:data:`DECIMAL_TEXT` columns) may be buffered as ``str`` of the ``Decimal``
  cryptofeed parsed (or the Decimal itself): the conversion writes any exponent notation out
  (:func:`decimal_texts`), so the hot path pays one C-level ``str`` a value. (Not the Decimal:
  Python 3.13's Decimals are garbage-collector tracked, and a buffer of them made full
  collections cost about 1.4 us a message in the e2e benchmark.)
* :func:`columns_to_arrow` (the writer's and the archive importer's whole columns) and
  :func:`rows_to_arrow` (tuples, transposed first) are one conversion to the bronze table's
  schema: timestamp columns arrive as float epoch seconds and are rounded to UTC microseconds,
  ``date`` is the UTC date of ``ts`` (of ``receipt_ts`` when the exchange sent no time; of
  ``received_at`` for the dead letter), ``writer_id`` and ``batch_id`` are the commit's.
"""

from __future__ import annotations

import keyword
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from itertools import repeat
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from crypto_lakehouse.schemas import BRONZE, DECIMAL_TEXT, ROW_LAYOUT

try:
    import crypto_lakehouse.ingest._columns as _columns

    _COMPILED = True
except ImportError:  # built without a C compiler (ingest/compiled.py): the Python conversion does the same
    _COMPILED = False

__all__ = [
    "DECIMAL_TEXT",
    "LEVEL_COLUMNS",
    "ROW_LAYOUT",
    "Column",
    "ColumnBuffer",
    "Gathered",
    "Row",
    "RowBuilder",
    "RowPutter",
    "assemble",
    "columns_to_arrow",
    "convert_column",
    "decimal_text",
    "decimal_texts",
    "gather",
    "row_builder",
    "rows_to_arrow",
]

type Column = Sequence[Any] | pa.Array[Any]  # (a `type` alias: evaluated lazily, pa.Array is not subscriptable)
"""One column of rows: Python values (the writer) or an Arrow array (the archive importer)."""

Row = tuple[Any, ...]
"""A bronze row: its table's :data:`ROW_LAYOUT` columns in order, each any Python value the
column's Arrow type converts (a value that does not is found at commit: the dead letter)."""

RowBuilder = Callable[..., Row]
"""Every column of a table's row layout by keyword -> the row tuple in layout order."""

RowPutter = Callable[..., None]
"""Buffers rows given every column of a table's row layout by keyword (:attr:`ColumnBuffer.put`;
:attr:`ColumnBuffer.put_levels` takes the row count first)."""

LEVEL_COLUMNS: dict[str, tuple[str, ...]] = {
    "bronze.book": ("side", "price", "size"),
    "bronze.l3_book": ("side", "order_id", "price", "size"),
}
"""The last columns of a book table's layout, one value per level (or order) of an update; the
columns before them are the update's, the same in each of its rows (:attr:`ColumnBuffer.put_levels`)."""
for _table, _tail in LEVEL_COLUMNS.items():
    assert ROW_LAYOUT[_table][-len(_tail) :] == _tail, f"{_table}'s layout must end with {_tail}"


def decimal_text(v: Any) -> str | None:  # Any: a Decimal, str, float or None (`v.__class__ is` does not narrow)
    """The text bronze stores for a price or size: plain decimal notation, never an exponent.

    cryptofeed 3.0.1 parses the exchange's text into ``Decimal`` (``Decimal("0.00000010")``),
    whose ``str`` switches to exponent notation for small and some round values (``1.0E-7``,
    ``1E+2``). This returns ``format(d, "f")`` for those: the digits and the exponent Decimal
    kept, written out (``"0.00000010"``, ``"100"``), so every plain decimal the exchange sent
    comes back as its own text, trailing zeros included. Text is taken as the number it writes:
    plain text is kept as it is, text in exponent notation (``str`` of such a Decimal, or a raw
    field sent so) written out the same way (``str`` of a Decimal is exact, so
    ``Decimal(str(d))`` has ``d``'s digits and exponent); None stays None; a float is written
    from its shortest repr (``1e-07`` -> ``"0.0000001"``). Text with an ``e`` that is no number
    is kept as it is."""
    if v is None:
        return None
    s = v if v.__class__ is str else str(v)
    if "E" in s or "e" in s:  # exponent notation: write it out
        try:
            return format(v if v.__class__ is Decimal else Decimal(s), "f")
        except InvalidOperation:
            return s
    return s


_NUMBERS = frozenset({Decimal, str, float, int, type(None)})


def decimal_texts(values: Sequence[Any]) -> list[str | None]:
    """:func:`decimal_text` of each value, a batch at a time: ``str`` of every value at C speed
    (``map``), and the value by value path only for a batch where some text has an exponent or
    some value is None (one search of the joined texts tells). A value that is no ``Decimal``,
    ``str``, ``int``, ``float`` or None is a ``TypeError`` (a row that does not fit)."""
    kinds = set(map(type, values))
    if not kinds <= _NUMBERS:
        bad = next(v for v in values if type(v) not in _NUMBERS)
        raise TypeError(f"a price or size is a Decimal, str, int or float, not {type(bad).__name__}: {bad!r}")
    texts = list(values) if kinds == {str} else list(map(str, values))  # (the stream hands text: no str again)
    joined = "\x00".join(texts)
    if "E" in joined or "e" in joined or "None" in joined:
        return [decimal_text(v) for v in values]
    return texts


_GENERATED_LOCALS = re.compile(r"buf|n|[ace][0-9]+")  # the names the generated code uses itself


def _checked_names(table: str) -> tuple[str, ...]:
    """``table``'s layout, each name checked to be usable as a keyword parameter of generated code."""
    names = ROW_LAYOUT[table]
    for name in names:
        if not name.isidentifier() or keyword.iskeyword(name) or _GENERATED_LOCALS.fullmatch(name):
            raise ValueError(f"{table}: column {name!r} cannot be a keyword argument")
    return names


def _builder(table: str) -> RowBuilder:
    """Generate ``table``'s row builder from its layout: a plain function with one keyword-only
    parameter per column returning them as a tuple (as :func:`collections.namedtuple` generates
    its constructor), so a call costs one function call and no dict."""
    names = _checked_names(table)
    func = table.replace(".", "_") + "_row"
    params = ", ".join(names)
    namespace: dict[str, Any] = {}
    exec(f"def {func}(*, {params}):\n    return ({params},)\n", namespace)  # names checked above
    built: RowBuilder = namespace[func]
    built.__doc__ = f"A {table} row: every column by keyword, in ROW_LAYOUT order ({', '.join(names)})."
    built.__module__ = __name__
    return built


_BUILDERS: dict[str, RowBuilder] = {table: _builder(table) for table in ROW_LAYOUT}


def _appender_factory(table: str) -> Callable[[list[list[Any]]], Callable[[Row], None]]:
    """Generate, once per table, a factory of appenders: given one list per layout column, an
    appender unpacks a row (a ``ValueError``/``TypeError`` for a row of another width or no
    sequence, raised before any column is touched) and appends each value to its column, unrolled
    (one bound ``list.append`` call per column: no loop, no tuple kept)."""
    width = len(ROW_LAYOUT[table])
    appends = ", ".join(f"a{i}" for i in range(width))
    values = ", ".join(f"v{i}" for i in range(width))
    body = "".join(f"        a{i}(v{i})\n" for i in range(width))
    source = (
        f"def make(columns):\n    {appends}, = [c.append for c in columns]\n"
        f"    def append(row):\n        {values}, = row\n{body}    return append\n"
    )
    namespace: dict[str, Any] = {}
    exec(source, namespace)  # generated from the width alone: no name of the layout goes in
    made: Callable[[list[list[Any]]], Callable[[Row], None]] = namespace["make"]
    return made


_APPENDERS = {table: _appender_factory(table) for table in ROW_LAYOUT}


def _nothing() -> None:
    return None


def _generated(source: str, table: str) -> Callable[[ColumnBuffer], RowPutter]:
    namespace: dict[str, Any] = {}
    exec(source, namespace)  # built from the layout's names, each checked to be a plain identifier
    made: Callable[[ColumnBuffer], RowPutter] = namespace["make"]
    made.__qualname__ = f"{table}.make"
    return made


def _putter_factory(table: str) -> Callable[[ColumnBuffer], RowPutter]:
    """Generate, once per table, the factory of :attr:`ColumnBuffer.put`: a function with one
    keyword-only parameter per layout column (Python checks them all before the body runs:
    all or nothing) appending each value to its column, unrolled, with the buffer's hooks."""
    names = _checked_names(table)
    body = "".join(f"        a{i}({name})\n" for i, name in enumerate(names))
    source = (
        f"def make(buf):\n    {', '.join(f'a{i}' for i in range(len(names)))}, = [c.append for c in buf.columns]\n"
        f"    c0 = buf.columns[0]\n"
        f"    def put(*, {', '.join(names)}):\n"
        f"        if not c0:\n            buf.on_first()\n{body}"
        f"        if len(c0) >= buf.limit:\n            buf.on_full()\n"
        f"    return put\n"
    )
    return _generated(source, table)


def _level_putter_factory(table: str) -> Callable[[ColumnBuffer], RowPutter]:
    """:func:`_putter_factory` for a book table's updates (:attr:`ColumnBuffer.put_levels`): ``n``
    rows, each column before :data:`LEVEL_COLUMNS` extended with its value ``n`` times, each level
    column with its sequence (all of length ``n``, checked first: all or nothing)."""
    names = _checked_names(table)
    tail = LEVEL_COLUMNS[table]
    head = names[: -len(tail)]
    lengths = " or ".join(f"len({name}) != n" for name in tail)
    body = "".join(f"        e{i}([{name}] * n)\n" for i, name in enumerate(head))  # (twice as fast as repeat)
    body += "".join(f"        e{len(head) + i}({name})\n" for i, name in enumerate(tail))
    source = (
        f"def make(buf):\n    {', '.join(f'e{i}' for i in range(len(names)))}, = [c.extend for c in buf.columns]\n"
        f"    c0 = buf.columns[0]\n"
        f"    def put_levels(n, *, {', '.join(names)}):\n"
        f"        if {lengths}:\n"
        f"            raise ValueError(f'{table}: the columns {', '.join(tail)} must hold {{n}} values each')\n"
        f"        if not c0:\n            buf.on_first()\n{body}"
        f"        if len(c0) >= buf.limit:\n            buf.on_full()\n"
        f"    return put_levels\n"
    )
    return _generated(source, table)


_PUTTERS = {table: _putter_factory(table) for table in ROW_LAYOUT}
_LEVEL_PUTTERS = {table: _level_putter_factory(table) for table in LEVEL_COLUMNS}


class ColumnBuffer:
    """Rows of one bronze table held as one Python list per :data:`ROW_LAYOUT` column.

    The writer's buffer: a row is spread over the columns as it arrives and no tuple is kept, so
    the garbage collector never walks the buffered rows (a buffer of tuples cost a young
    collection about 0.7 us a row here) and the commit converts whole columns
    (:func:`columns_to_arrow`) with no transposition. Every way in is all or nothing: a row of
    the wrong width, a missing or unknown keyword, level columns of the wrong length raise
    before any column is touched.

    ``on_first`` is called when a row goes into the empty buffer, ``on_full`` after a row that
    brings it to ``limit`` rows (the writer starts the batch's clock and wakes its flush). The
    columns are the same list objects for the buffer's life (:meth:`take` copies and empties
    them), so :attr:`put`, :attr:`put_levels` and :attr:`append` stay valid: a producer keeps them."""

    __slots__ = ("append", "columns", "limit", "on_first", "on_full", "put", "put_levels", "table")

    def __init__(
        self,
        table: str,
        *,
        on_first: Callable[[], None] | None = None,
        on_full: Callable[[], None] | None = None,
        limit: int = sys.maxsize,
    ) -> None:
        self.table = table
        self.columns: list[list[Any]] = [[] for _ in ROW_LAYOUT[table]]
        self.limit = limit
        self.on_first: Callable[[], None] = on_first or _nothing
        self.on_full: Callable[[], None] = on_full or _nothing
        self.append: Callable[[Row], None] = _APPENDERS[table](self.columns)
        """Buffer one row tuple (its layout's width; raises ValueError/TypeError otherwise). No hooks."""
        self.put: RowPutter = _PUTTERS[table](self)
        """Buffer one row given every column by keyword (a ``TypeError`` for a missing or unknown one)."""
        self.put_levels: RowPutter | None = _LEVEL_PUTTERS[table](self) if table in _LEVEL_PUTTERS else None
        """A book table's update: ``put_levels(n, **columns)``, its :data:`LEVEL_COLUMNS` as
        sequences of ``n`` values (one per row), every other column a value all ``n`` rows hold."""

    def __len__(self) -> int:
        return len(self.columns[0])

    def extend(self, rows: Sequence[Row]) -> None:
        """Buffer ``rows`` (transposed at C speed); all or none: a row of the wrong width raises
        ``ValueError``/``TypeError`` with nothing buffered."""
        width = len(self.columns)
        spread = list(zip(*rows, strict=True))
        if rows and len(spread) != width:
            raise ValueError(f"{self.table} rows have {width} values ({', '.join(ROW_LAYOUT[self.table])})")
        for column, values in zip(self.columns, spread, strict=False):
            column.extend(values)

    def extend_repeated(self, head: Row, tail: Sequence[Sequence[Any]]) -> None:
        """Buffer ``len(tail[0])`` rows given as columns: the layout's first ``len(head)`` columns
        hold ``head``'s values in every row, the last ``len(tail)`` the values of ``tail``'s
        columns (a book update: its symbol, times and sequence once; its levels' side, price and
        size as three lists). No tuple per row; all or none: a shape that does not fill the
        layout, or tail columns of unequal lengths, raise ``ValueError`` with nothing buffered."""
        width = len(self.columns)
        lengths = {len(column) for column in tail}
        if len(head) + len(tail) != width or len(lengths) != 1:
            raise ValueError(
                f"{self.table} rows have {width} values ({', '.join(ROW_LAYOUT[self.table])}): got {len(head)} "
                f"repeated and {len(tail)} columns of lengths {sorted(lengths)}"
            )
        (n,) = lengths
        for column, value in zip(self.columns, head, strict=False):
            column.extend(repeat(value, n))
        for column, values in zip(self.columns[len(head) :], tail, strict=True):
            column.extend(values)

    def take(self) -> list[list[Any]]:
        """The buffered columns (copies), leaving the buffer empty (the same lists, emptied)."""
        taken = [column.copy() for column in self.columns]
        for column in self.columns:
            column.clear()
        return taken

    def rows(self) -> list[Row]:
        """The buffered rows as tuples, oldest first (to inspect a buffer; not the hot path)."""
        return list(zip(*self.columns, strict=True))


def row_builder(table: str) -> RowBuilder:
    """The function building ``table``'s rows: ``row_builder("bronze.trades")(exchange=...,
    symbol=..., ts=..., ...)`` -> the tuple the writer buffers. A missing or unknown column is
    a ``TypeError`` at the call."""
    return _BUILDERS[table]


def convert_column(typ: pa.DataType, values: Column, *, decimal: bool = False) -> pa.Array[Any]:
    """One column as bronze stores it: a timestamp column from float epoch seconds to
    microseconds (rounded), a ``decimal`` column's Python values as :func:`decimal_texts`, any
    other as ``typ``. A list of plain values goes through the compiled fast path where it is
    built (``_columns.pyx``: the same array, straight into Arrow's buffers)."""
    if _COMPILED and values.__class__ is list:
        fast = _columns.convert(typ, values, decimal)
        if fast is not None:
            return fast
    return _convert_in_python(typ, values, decimal=decimal)


def _convert_in_python(typ: pa.DataType, values: Column, *, decimal: bool) -> pa.Array[Any]:
    if decimal and not isinstance(values, pa.Array):
        values = decimal_texts(values)
    if pa.types.is_timestamp(typ):
        secs = _as_arrow(values, pa.float64())
        return pc.cast(pc.round(pc.multiply(secs, 1_000_000.0)), pa.int64()).cast(typ)
    return _as_arrow(values, typ)


def _as_arrow(values: Column, typ: pa.DataType) -> pa.Array[Any]:
    if isinstance(values, pa.Array):
        return values.cast(typ)
    return pa.array(values, type=typ)


type Gathered = list[pa.Array[Any]]  # (a `type` alias: pa.Array is not subscriptable at run time)
"""A run of a table's rows read into Arrow, a step before its schema: one array per
:data:`ROW_LAYOUT` column (:func:`gather`), put together with other runs by :func:`assemble`."""


def gather(table: str, columns: Sequence[Column]) -> Gathered:
    """The step of the conversion that reads Python values: each of ``table``'s layout columns
    (``columns``, in layout order, all of one length) as :func:`convert_column` stores it. What
    follows (:func:`assemble`) is Arrow's own vectorised work and cannot fail on a value.
    Raises ``ValueError`` for a null in a non-nullable column, Arrow's errors for values a
    column cannot hold."""
    spec, layout, decimals = BRONZE[table], ROW_LAYOUT[table], DECIMAL_TEXT[table]
    if len(columns) != len(layout):
        raise ValueError(f"{table} rows have {len(layout)} columns ({', '.join(layout)}), not {len(columns)}")
    out = []
    for name, values in zip(layout, columns, strict=True):
        f = spec.schema.field(name)
        arr = convert_column(f.type, values, decimal=name in decimals)
        if not f.nullable and arr.null_count:
            raise ValueError(f"{arr.null_count} null value(s) in non-nullable column {name}")
        out.append(arr)
    return out


def assemble(table: str, runs: Sequence[Gathered], *, writer_id: str, batch_id: int) -> pa.Table:
    """Runs of rows (each from :func:`gather`), in order, as one Arrow table in ``table``'s bronze schema
    (see module doc): each column's runs concatenated, the ``date``, ``writer_id`` and
    ``batch_id`` columns added. Vectorised: no Python per row."""
    spec, layout = BRONZE[table], ROW_LAYOUT[table]
    arrays: dict[str, pa.Array[Any]] = {}
    for i, name in enumerate(layout):
        parts = [run[i] for run in runs]
        arrays[name] = parts[0] if len(parts) == 1 else pa.concat_arrays(parts)
    when = arrays["ts"] if "ts" in arrays else arrays["received_at"]  # every table has one of them
    if "receipt_ts" in arrays:
        when = pc.coalesce(arrays["ts"], arrays["receipt_ts"])
    arrays["date"] = pc.cast(when, pa.date32())
    n = len(when)
    arrays["writer_id"] = pa.repeat(pa.scalar(writer_id, pa.string()), n)
    arrays["batch_id"] = pa.repeat(pa.scalar(batch_id, pa.int64()), n)
    return pa.Table.from_arrays([arrays[f.name] for f in spec.schema], schema=spec.schema)


def columns_to_arrow(table: str, columns: Mapping[str, Column], *, writer_id: str, batch_id: int) -> pa.Table:
    """Columns named as ``table``'s row layout -> an Arrow table in its bronze schema
    (:func:`gather` then :func:`assemble`). Raises ``ValueError`` for a null in a non-nullable
    column, Arrow's errors for values a column cannot hold."""
    layout = ROW_LAYOUT[table]
    if columns.keys() != set(layout):
        raise ValueError(f"{table} rows have the columns {', '.join(layout)}, not {', '.join(columns)}")
    runs = [gather(table, [columns[name] for name in layout])]
    return assemble(table, runs, writer_id=writer_id, batch_id=batch_id)


def rows_to_arrow(table: str, rows: Sequence[Row], *, writer_id: str, batch_id: int) -> pa.Table:
    """Row tuples in ``table``'s row layout -> an Arrow table in its bronze schema (vectorised:
    the rows are transposed into columns once). A row of the wrong width is a ``ValueError``."""
    layout = ROW_LAYOUT[table]
    cols = list(zip(*rows, strict=True)) if rows else [() for _ in layout]
    return columns_to_arrow(table, dict(zip(layout, cols, strict=True)), writer_id=writer_id, batch_id=batch_id)
