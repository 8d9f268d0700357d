"""Delta appends in two steps: pyarrow writes the Parquet data files, delta-rs commits them.

deltalake 1.6.6's own writer (``write_deltalake``) spends about 1.7x pyarrow's CPU to encode the
same Parquet, and encodes one table's partitions one after the other. Here the rows are split by
partition with Arrow compute, each partition's file is written by pyarrow's C++ writer in its own
thread (it releases the GIL), and the files are committed in one Delta transaction of ``add``
actions by :meth:`deltalake.DeltaTable.create_write_transaction`:

* :func:`split` - a table's partitions (their values as Delta records them, and their rows);
* :func:`write_partitions` - one Parquet file per partition, in parallel -> ``add`` actions;
* :func:`commit` - those ``add`` actions (from any number of writers) and application
  transactions as one append commit.

Files are laid out and named as delta-rs names them
(``exchange=X/symbol=Y/date=D/part-00000-<uuid4>-c000.zstd.parquet``), partition columns are not
stored in them, and each ``add`` carries statistics in Delta's format that are correct bounds of
the file's rows (see :func:`file_stats`). A file whose commit fails is never referenced: vacuum
removes it.
"""

from __future__ import annotations

import json
import math
import re
import time
import uuid
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, cast

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from deltalake import CommitProperties, DeltaTable, Transaction
from deltalake.transaction import AddAction, RemoveAction

__all__ = ["STRING_STATS_LIMIT", "Partition", "commit", "file_stats", "split", "write_partitions"]

STRING_STATS_LIMIT = 32
"""A string statistic longer than this (in characters) is written as a shorter bound: the minimum's
prefix of this length, the maximum's prefix with its last character incremented."""

_SAFE = re.compile(r"[A-Za-z0-9._-]+")  # a partition value written in a path as it is
_MAX_THREADS = 8  # files written at once (CPU-bound locally; more keep an object store busy)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS_PER_UNIT = {"s": (1000, 1), "ms": (1, 1), "us": (1, 1000), "ns": (1, 1_000_000)}  # (multiply, divide)


@dataclass(frozen=True, slots=True)
class Partition:
    """The rows of one partition of a table: ``values`` maps each partition column to its value
    as Delta records it (text; a date as ``YYYY-MM-DD``); the rows are ``data`` itself, or the
    rows ``indices`` of it (taken in the writing thread)."""

    values: Mapping[str, str]
    data: pa.Table
    indices: pa.Array[Any] | None = None

    @property
    def num_rows(self) -> int:
        return self.data.num_rows if self.indices is None else len(self.indices)

    def rows(self) -> pa.Table:
        return self.data if self.indices is None else self.data.take(self.indices)


def split(data: pa.Table, partition_by: Sequence[str]) -> list[Partition] | None:
    """``data``'s partitions by ``partition_by`` (all of it when there are none), rows in their
    order in ``data``. None when a partition value cannot be written in a path unescaped: null,
    empty, of a type other than text, date or integer, or with a character outside
    ``[A-Za-z0-9._-]`` (delta-rs escapes those; its writer is used for them).

    Vectorised, no Python per row. When each partition is one run of rows (one symbol's batch,
    a batch grouped by symbol) the partitions are zero-copy slices, found by comparing each row
    with the one before. Otherwise each partition column is coded by its distinct values, the
    codes combined into one key per row, and a stable counting sort of the key gives each
    partition the indices of its rows (taken in the thread that writes it)."""
    if not partition_by:
        return [Partition({}, data)]
    columns = [data.column(name) for name in partition_by]
    if not data.num_rows or any(c.null_count for c in columns):
        return None
    starts = _run_starts(columns)
    if starts is not None:
        heads = [_partition_text(_array(c.take(starts))) for c in columns]  # each run's values
        if any(h is None or not all(_SAFE.fullmatch(v) for v in h) for h in heads):
            return None
        keys = list(zip(*heads, strict=True))
        if len(set(keys)) == len(keys):
            bounds = [*starts, data.num_rows]
            return [
                Partition(dict(zip(partition_by, k, strict=True)), data.slice(a, b - a))
                for k, a, b in zip(keys, bounds, bounds[1:], strict=False)
            ]
    return _grouped(data, partition_by)


_MAX_RUNS = 1024  # more runs of rows than this: the rows are interleaved, group them by key


def _run_starts(columns: Sequence[pa.ChunkedArray[Any]]) -> list[int] | None:
    """The first row of each run of rows with the same partition values (None: too many runs)."""
    n = len(columns[0])
    if n == 1:
        return [0]
    change: pa.ChunkedArray[Any] | pa.Array[Any] | None = None
    for c in columns:
        differs = pc.not_equal(c.slice(1), c.slice(0, n - 1))
        change = differs if change is None else pc.or_(change, differs)
    assert change is not None
    if cast(int, pc.sum(change).as_py() or 0) >= _MAX_RUNS:
        return None
    return [0, *(i + 1 for i in _ints(_array(pc.indices_nonzero(change))))]


def _grouped(data: pa.Table, partition_by: Sequence[str]) -> list[Partition] | None:
    """:func:`split` for rows of partitions interleaved: by a key per row, sorted stably."""
    labels: list[list[str]] = []
    key: pa.Array[Any] | None = None
    cardinality = 1
    for name in partition_by:
        column = data.column(name)
        distinct = _array(pc.unique(column))
        text = _partition_text(distinct)
        if text is None or not all(_SAFE.fullmatch(v) for v in text):
            return None
        cardinality *= len(text)
        if cardinality >= 2**62:  # (never for real partitions: their combinations are few)
            return None
        labels.append(text)
        codes = _array(pc.index_in(column, value_set=distinct).cast(pa.int64()))
        key = codes if key is None else pc.add(pc.multiply(key, len(text)), codes)
    assert key is not None

    def values_of(code: int) -> dict[str, str]:
        out: dict[str, str] = {}
        for name, text in zip(reversed(partition_by), reversed(labels), strict=True):
            code, digit = divmod(code, len(text))
            out[name] = text[digit]
        return {name: out[name] for name in partition_by}

    counts = pc.value_counts(key)
    order = pc.array_sort_indices(key)  # stable: rows keep their order within a partition
    parts, offset = [], 0
    for code, count in sorted(zip(_ints(counts.field("values")), _ints(counts.field("counts")), strict=True)):
        parts.append(Partition(values_of(code), data, order.slice(offset, count)))
        offset += count
    return parts


def _array(values: pa.Array[Any] | pa.ChunkedArray[Any]) -> pa.Array[Any]:
    return values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values


def _ints(values: pa.Array[Any]) -> list[int]:
    return cast(list[int], values.to_pylist())


def _partition_text(values: pa.Array[Any]) -> list[str] | None:
    """Distinct partition values as Delta writes them in ``partitionValues`` and paths (None: a
    type kept out of this writer)."""
    t = values.type
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return [str(v) for v in values.to_pylist()]
    if pa.types.is_date32(t):
        return [cast(date, v).isoformat() for v in values.to_pylist()]
    if pa.types.is_integer(t):
        return [str(v) for v in values.to_pylist()]
    return None


def write_partitions(
    parts: Sequence[Partition],
    *,
    filesystem: pafs.FileSystem,
    root: str,
    schema: pa.Schema,
    local: bool,
    compression_level: int = 3,
) -> list[AddAction]:
    """Write each partition of ``parts`` as one ZSTD Parquet file under ``root`` (the table's
    directory in ``filesystem``), partitions in parallel threads; return their ``add`` actions
    (path relative to ``root``, size, partition values, modification time, statistics).

    ``schema``: the files' columns (the table's, less its partition columns), to which every
    partition's rows are cast. ``local``: create the partition directories (object stores have
    none)."""

    def write(part: Partition) -> AddAction:
        rows = part.rows().select(schema.names).cast(schema)
        directory = "/".join(f"{k}={v}" for k, v in part.values.items())
        name = f"part-00000-{uuid.uuid4()}-c000.zstd.parquet"
        path = f"{directory}/{name}" if directory else name
        if local and directory:
            filesystem.create_dir(f"{root}/{directory}", recursive=True)
        with filesystem.open_output_stream(f"{root}/{path}") as out:
            pq.write_table(rows, out, compression="zstd", compression_level=compression_level)
            size = out.tell()
        return AddAction(
            path=path,
            size=size,
            partition_values=dict(part.values),
            modification_time=int(time.time() * 1000),
            data_change=True,
            stats=file_stats(rows),
        )

    if len(parts) == 1:
        return [write(parts[0])]
    with ThreadPoolExecutor(min(len(parts), _MAX_THREADS), thread_name_prefix="parquet-append") as pool:
        return list(pool.map(write, parts))


def commit(
    table: DeltaTable,
    actions: Sequence[AddAction | RemoveAction],
    *,
    partition_by: Sequence[str],
    transactions: Sequence[tuple[str, int]] = (),
) -> None:
    """Commit ``actions`` (files already in ``table``'s directory, and ``remove`` actions of
    files of ``table``) as one commit, with the application transactions ``transactions``
    (app id, version) in the same commit.

    ``table`` is the snapshot the caller checked the schema of; delta-rs checks the commits made
    since for a conflict (appends never conflict with appends) and retries, then runs the
    post-commit hook (a checkpoint every ``delta.checkpointInterval`` versions). The schema
    passed is the table's own, so the commit never changes its metadata."""
    apps = [Transaction(app_id=a, version=v) for a, v in transactions]
    table.create_write_transaction(
        list(actions),
        mode="append",
        schema=table.schema(),
        partition_by=list(partition_by) or None,
        commit_properties=CommitProperties(app_transactions=apps) if apps else None,
    )


def file_stats(rows: pa.Table) -> str:
    """Delta's ``stats`` JSON of a file holding ``rows``: ``numRecords``, and per column
    ``nullCount`` (exact) and ``minValues``/``maxValues``, each a **correct bound** of the
    column's values so no reader skips the file wrongly:

    * integers, floats, booleans, dates and strings of at most :data:`STRING_STATS_LIMIT`
      characters exact;
    * timestamps as ``2023-11-14T22:13:20.123Z`` (Delta's millisecond text), the minimum floored
      and the maximum ceiled to the millisecond (delta-rs truncates the maximum: not a bound);
    * a longer string: the minimum's first :data:`STRING_STATS_LIMIT` characters, the maximum's
      with the last of them incremented (every string with that prefix sorts before it);
    * a column whose values are all null: no min/max (as delta-rs); nested columns (lists,
      structs, maps): no statistics (as delta-rs).

    When a column with values has no bound that can be written (a float column holding NaN or an
    infinity, a binary or decimal column), the file gets **no** ``minValues``/``maxValues`` at
    all: deltalake 1.6.6 reads a column missing from them as a null bound, and its pyarrow
    dataset then skips the file for any comparison on that column."""
    lo: dict[str, Any] = {}
    hi: dict[str, Any] = {}
    nulls: dict[str, int] = {}
    bounded = True
    for field, column in zip(rows.schema, rows.columns, strict=True):
        if pa.types.is_nested(field.type):
            continue
        nulls[field.name] = column.null_count
        if column.null_count == len(column):
            continue
        bounds = _bounds(column, field.type)
        if bounds is None:
            bounded = False
        else:
            lo[field.name], hi[field.name] = bounds
    stats: dict[str, Any] = {"numRecords": rows.num_rows}
    if bounded:
        stats |= {"minValues": lo, "maxValues": hi}
    stats["nullCount"] = nulls
    return json.dumps(stats, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _bounds(column: pa.ChunkedArray[Any], t: pa.DataType) -> tuple[Any, Any] | None:
    """(min, max) of a column with a non-null value, as JSON values; None: none can be written."""
    if not (
        pa.types.is_integer(t)
        or pa.types.is_floating(t)
        or pa.types.is_boolean(t)
        or pa.types.is_string(t)
        or pa.types.is_large_string(t)
        or pa.types.is_date(t)
        or pa.types.is_timestamp(t)
    ):
        return None
    try:
        mm = pc.min_max(column)
    except (pa.ArrowNotImplementedError, pa.ArrowTypeError):  # e.g. half floats
        return None
    lo, hi = mm["min"], mm["max"]
    if not (lo.is_valid and hi.is_valid):
        return None
    if pa.types.is_timestamp(t):
        assert isinstance(t, pa.TimestampType)
        if t.tz is None:  # timestampNtz: a newer protocol than these tables use
            return None
        mul, div = _MS_PER_UNIT[t.unit]
        low_ms = lo.cast(pa.int64()).as_py() * mul // div  # floored
        high_ms = -(-hi.cast(pa.int64()).as_py() * mul // div)  # ceiled
        if not _in_range(low_ms, high_ms):
            return None
        return _iso_ms(low_ms), _iso_ms(high_ms)
    if pa.types.is_date(t):
        try:
            return lo.as_py().isoformat(), hi.as_py().isoformat()
        except (OverflowError, ValueError):  # beyond Python's dates
            return None
    low, high = lo.as_py(), hi.as_py()
    if pa.types.is_floating(t):  # (min_max skips NaN: a NaN anywhere is not bounded by them)
        if not (math.isfinite(low) and math.isfinite(high)) or pc.any(pc.is_nan(column)).as_py():
            return None
    elif isinstance(low, str):
        return low[:STRING_STATS_LIMIT], _string_upper_bound(high)
    return low, high


def _string_upper_bound(text: str) -> str:
    """``text`` if it is at most :data:`STRING_STATS_LIMIT` characters; else a shorter string
    greater than every string starting with its first :data:`STRING_STATS_LIMIT` characters
    (that prefix with its last character incremented, carrying past U+10FFFF)."""
    if len(text) <= STRING_STATS_LIMIT:
        return text
    chars = list(text[:STRING_STATS_LIMIT])
    while chars:
        code = ord(chars.pop()) + 1
        code = 0xE000 if 0xD800 <= code <= 0xDFFF else code  # (surrogates are not characters)
        if code <= 0x10FFFF:
            return "".join(chars) + chr(code)
    return text  # every character U+10FFFF: the value itself is the bound


def _in_range(*ms: int) -> bool:
    """Whether every millisecond timestamp of ``ms`` is within years 1..9999."""
    return all(-62_135_596_800_000 <= m <= 253_402_300_799_999 for m in ms)


def _iso_ms(ms: int) -> str:
    """``ms`` since the epoch as Delta writes a timestamp statistic: ``2023-11-14T22:13:20.123Z``."""
    d = _EPOCH + timedelta(milliseconds=ms)
    return (
        f"{d.year:04d}-{d.month:02d}-{d.day:02d}T{d.hour:02d}:{d.minute:02d}:{d.second:02d}."
        f"{d.microsecond // 1000:03d}Z"
    )
