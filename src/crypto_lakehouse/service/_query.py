"""Running one ``POST /query/sql``: a concurrency slot, the sandbox, a deadline, and the result
streamed batch by batch from DuckDB through an encoder, counting rows and bytes against the
limits.

The first ``PREFETCH_BYTES`` of the encoded result are produced before the response starts: a
result that fits (most) is answered whole with its exact status, so an error, a timeout or a
limit met early is a proper 4xx. A bigger result streams; a limit met or a timeout after the
response has started cuts it off (the connection closes before the final chunk), so a client
sees an incomplete response, never a silently short one.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Generator, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import duckdb
import pyarrow as pa

import crypto_lakehouse.service._encode as _encode
from crypto_lakehouse.errors import LakehouseError
from crypto_lakehouse.service.sandbox import Deadline, check_sql, sandbox, sql_hash

if TYPE_CHECKING:
    from crypto_lakehouse.config import ApiLimits
    from crypto_lakehouse.query import AsOf, Lakehouse

__all__ = ["PREFETCH_BYTES", "QueryFailed", "QueryResult", "Slots", "run_query"]

LOG = logging.getLogger(__name__)
PREFETCH_BYTES = 1 << 20
BATCH_ROWS = 65_536


class QueryFailed(LakehouseError):
    """A query that cannot be answered: ``status`` is the HTTP status (400 bad SQL, 404 no such
    version or tag, 408 timed out, 413 past a limit, 429 too many queries)."""

    def __init__(self, status: int, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


class Slots:
    """At most ``size`` queries at once; :meth:`take` never waits (429 is the answer)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._used = 0
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            if self._used >= self.size:
                return False
            self._used += 1
            return True

    def give(self) -> None:
        with self._lock:
            self._used -= 1

    @property
    def used(self) -> int:
        return self._used


@dataclass
class QueryResult:
    """An answered query: ``head`` (encoded bytes produced so far), ``rest`` (the remainder as
    a stream, or None when ``head`` is the whole answer). ``rows`` and ``bytes`` count as the
    stream is consumed; :meth:`close` (idempotent) frees the connection and the slot."""

    media_type: str
    head: list[bytes]
    rest: Generator[bytes] | None
    rows: int = 0
    bytes: int = 0
    _stack: ExitStack = field(default_factory=ExitStack)

    def close(self) -> None:
        self._stack.close()


def run_query(
    lakehouse: Lakehouse,
    lock: threading.Lock,
    slots: Slots,
    *,
    sql: str,
    as_of: AsOf,
    fmt: _encode.Format,
    limits: ApiLimits,
) -> QueryResult:
    """Check ``sql``, take a slot, run it in the sandbox and encode its first batches (see the
    module docstring); :class:`QueryFailed` or :class:`~.sandbox.QueryRejected` otherwise."""
    check_sql(sql)
    if not slots.take():
        raise QueryFailed(
            429, f"{slots.size} queries are running, the most this service runs at once: retry later", reason="busy"
        )
    stack = ExitStack()
    stack.callback(slots.give)
    try:
        with lock:  # Lakehouse caches opened tables in a dict: one attach at a time
            con = stack.enter_context(sandbox(lakehouse, sql, as_of=as_of, limits=limits))
        deadline = Deadline(con, limits.timeout_s)
        stack.callback(deadline.cancel)
        result = QueryResult(_encode.MEDIA_TYPES[fmt], [], None, _stack=stack)
        batches = _batches(con, sql, deadline, limits)
        schema, _ = next(batches)
        assert schema is not None
        stream = _encoded(batches, _encode.encoder(fmt, schema), result, limits)
        size = 0
        for chunk in stream:
            result.head.append(chunk)
            size += len(chunk)
            if size >= PREFETCH_BYTES:
                result.rest = _closing(stream, result)
                break
        else:
            stack.close()
        LOG.info("query %s: %s, %d rows so far, %d bytes", sql_hash(sql), fmt, result.rows, result.bytes)
        return result
    except BaseException:
        stack.close()
        raise


def _batches(
    con: duckdb.DuckDBPyConnection, sql: str, deadline: Deadline, limits: ApiLimits
) -> Iterator[tuple[pa.Schema | None, pa.RecordBatch | None]]:
    """The schema with the first batch, then each batch; DuckDB errors as :class:`QueryFailed`."""
    try:
        reader = con.sql(sql).to_arrow_reader(BATCH_ROWS)
        yield reader.schema, None
        for batch in reader:
            yield None, batch
    except duckdb.InterruptException:
        if deadline.expired:
            raise QueryFailed(
                408, f"the query ran longer than {limits.timeout_s:g} s and was interrupted", reason="timeout"
            ) from None
        raise
    except duckdb.OutOfMemoryException as exc:
        raise QueryFailed(
            413, f"the query needs more than the memory limit ({limits.memory_limit}): {_line(exc)}", reason="memory"
        ) from None
    except (duckdb.Error, pa.ArrowInvalid) as exc:
        if deadline.expired:
            raise QueryFailed(
                408, f"the query ran longer than {limits.timeout_s:g} s and was interrupted", reason="timeout"
            ) from None
        raise QueryFailed(400, _line(exc), reason="sql") from None


def _line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _encoded(
    batches: Iterator[tuple[pa.Schema | None, pa.RecordBatch | None]],
    enc: _encode.Encoder,
    result: QueryResult,
    limits: ApiLimits,
) -> Iterator[bytes]:
    """The encoded answer (after the schema, ``batches`` holds batches), checking the row and
    byte limits as it goes."""
    for _, batch in batches:
        assert batch is not None
        result.rows += batch.num_rows
        if result.rows > limits.max_rows:
            raise QueryFailed(
                413,
                f"the result has more than {limits.max_rows} rows (max_rows): aggregate or add a LIMIT",
                reason="rows",
            )
        data = enc.batch(batch)
        _count(result, data, limits)
        if data:
            yield data
    data = enc.end()
    _count(result, data, limits)
    yield data


def _count(result: QueryResult, data: bytes, limits: ApiLimits) -> None:
    result.bytes += len(data)
    if result.bytes > limits.max_bytes:
        raise QueryFailed(
            413,
            f"the result is larger than {limits.max_bytes} bytes (max_bytes): select fewer columns or rows",
            reason="bytes",
        )


def _closing(stream: Iterator[bytes], result: QueryResult) -> Generator[bytes]:
    """``stream``, closing ``result`` when it ends, fails or is abandoned."""
    try:
        yield from stream
    finally:
        result.close()
