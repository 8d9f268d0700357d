"""Bronze rows: built in :data:`~crypto_lakehouse.schemas.ROW_LAYOUT` order, converted to Arrow once.

A bronze row's layout is defined in one place, ``schemas.ROW_LAYOUT`` (each table's schema less
the columns the writer fills in). Everything here derives from it:

* :func:`row_builder` gives each table a function that takes every column **by keyword** and
  returns the row tuple in layout order, so a producer (the stream callbacks) names what it puts
  in each column and cannot put it in the wrong place: the hot path still builds one tuple per
  row, no dict.
* :class:`ColumnBuffer` is the writer's buffer: one list per layout column, rows spread over
  them as they arrive (a book update's levels as columns, :meth:`ColumnBuffer.extend_repeated`).
* :func:`columns_to_arrow` (the writer's and the archive importer's whole columns) and
  :func:`rows_to_arrow` (tuples, transposed first) are one conversion to the bronze table's
  schema: timestamp columns arrive as float epoch seconds and are rounded to UTC microseconds,
  ``date`` is the UTC date of ``ts`` (of ``receipt_ts`` when the exchange sent no time; of
  ``received_at`` for the dead letter), ``writer_id`` and ``batch_id`` are the commit's.
"""

from __future__ import annotations

import keyword
from collections.abc import Callable, Mapping, Sequence
from itertools import repeat
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from crypto_lakehouse.schemas import BRONZE, ROW_LAYOUT

__all__ = [
    "ROW_LAYOUT",
    "Column",
    "ColumnBuffer",
    "Row",
    "RowBuilder",
    "columns_to_arrow",
    "convert_column",
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


def _builder(table: str) -> RowBuilder:
    """Generate ``table``'s row builder from its layout: a plain function with one keyword-only
    parameter per column returning them as a tuple (as :func:`collections.namedtuple` generates
    its constructor), so a call costs one function call and no dict."""
    names = ROW_LAYOUT[table]
    for name in names:
        if not name.isidentifier() or keyword.iskeyword(name):
            raise ValueError(f"{table}: column {name!r} cannot be a keyword argument")
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


class ColumnBuffer:
    """Rows of one bronze table held as one Python list per :data:`ROW_LAYOUT` column.

    The writer's buffer: a row handed in as a tuple is spread over the columns at once and the
    tuple is dropped, so the garbage collector never walks the buffered rows (a buffer of tuples
    cost a young collection about 0.7 us a row here) and the commit converts whole columns
    (:func:`columns_to_arrow`) with no transposition. A row of the wrong width or that is no
    sequence raises at :meth:`append`, leaving every column as it was."""

    __slots__ = ("append", "columns", "table")

    def __init__(self, table: str) -> None:
        self.table = table
        self.columns: list[list[Any]] = [[] for _ in ROW_LAYOUT[table]]
        self.append: Callable[[Row], None] = _APPENDERS[table](self.columns)
        """Buffer one row (its layout's width; raises ValueError/TypeError otherwise)."""

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
        """The buffered columns, leaving the buffer empty."""
        taken = self.columns
        self.columns = [[] for _ in taken]
        self.append = _APPENDERS[self.table](self.columns)
        return taken

    def rows(self) -> list[Row]:
        """The buffered rows as tuples, oldest first (for the live view; not the hot path)."""
        return list(zip(*self.columns, strict=True))


def row_builder(table: str) -> RowBuilder:
    """The function building ``table``'s rows: ``row_builder("bronze.trades")(exchange=...,
    symbol=..., ts=..., ...)`` -> the tuple the writer buffers. A missing or unknown column is
    a ``TypeError`` at the call."""
    return _BUILDERS[table]


def convert_column(typ: pa.DataType, values: Column) -> pa.Array[Any]:
    """One column as bronze stores it: a timestamp column from float epoch seconds to
    microseconds (rounded), any other as ``typ``."""
    if pa.types.is_timestamp(typ):
        secs = _as_arrow(values, pa.float64())
        return pc.cast(pc.round(pc.multiply(secs, 1_000_000.0)), pa.int64()).cast(typ)
    return _as_arrow(values, typ)


def _as_arrow(values: Column, typ: pa.DataType) -> pa.Array[Any]:
    if isinstance(values, pa.Array):
        return values.cast(typ)
    return pa.array(values, type=typ)


def columns_to_arrow(table: str, columns: Mapping[str, Column], *, writer_id: str, batch_id: int) -> pa.Table:
    """Columns named as ``table``'s row layout -> an Arrow table in its bronze schema (see
    module doc). Raises ``ValueError`` for a null in a non-nullable column, Arrow's errors for
    values a column cannot hold."""
    spec, layout = BRONZE[table], ROW_LAYOUT[table]
    if columns.keys() != set(layout):
        raise ValueError(f"{table} rows have the columns {', '.join(layout)}, not {', '.join(columns)}")
    arrays: dict[str, pa.Array[Any]] = {
        name: convert_column(spec.schema.field(name).type, columns[name]) for name in layout
    }
    when = arrays["ts"] if "ts" in arrays else arrays["received_at"]  # every table has one of them
    if "receipt_ts" in arrays:
        when = pc.coalesce(arrays["ts"], arrays["receipt_ts"])
    arrays["date"] = pc.cast(when, pa.date32())
    for f in spec.schema:
        if not f.nullable and f.name in arrays and arrays[f.name].null_count:
            raise ValueError(f"{arrays[f.name].null_count} null value(s) in non-nullable column {f.name}")
    n = len(when)
    arrays["writer_id"] = pa.repeat(pa.scalar(writer_id, pa.string()), n)
    arrays["batch_id"] = pa.repeat(pa.scalar(batch_id, pa.int64()), n)
    return pa.Table.from_arrays([arrays[f.name] for f in spec.schema], schema=spec.schema)


def rows_to_arrow(table: str, rows: Sequence[Row], *, writer_id: str, batch_id: int) -> pa.Table:
    """Row tuples in ``table``'s row layout -> an Arrow table in its bronze schema (vectorised:
    the rows are transposed into columns once). A row of the wrong width is a ``ValueError``."""
    layout = ROW_LAYOUT[table]
    cols = list(zip(*rows, strict=True)) if rows else [() for _ in layout]
    return columns_to_arrow(table, dict(zip(layout, cols, strict=True)), writer_id=writer_id, batch_id=batch_id)
