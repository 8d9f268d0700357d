"""Result encoders of ``POST /query/sql``: Arrow record batches in, bytes out, one batch at a
time (nothing holds the whole result): JSON (an array of row objects), CSV (with a header),
Arrow IPC stream, Parquet (one row group per batch)."""

from __future__ import annotations

import io
from typing import Literal, Protocol

import polars as pl
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

__all__ = ["FORMATS", "MEDIA_TYPES", "Encoder", "Format", "encoder"]

Format = Literal["json", "csv", "arrow", "parquet"]
FORMATS: tuple[Format, ...] = ("json", "csv", "arrow", "parquet")
MEDIA_TYPES: dict[Format, str] = {
    "json": "application/json",
    "csv": "text/csv; charset=utf-8",
    "arrow": "application/vnd.apache.arrow.stream",
    "parquet": "application/vnd.apache.parquet",
}


class Encoder(Protocol):
    def batch(self, batch: pa.RecordBatch) -> bytes: ...

    def end(self) -> bytes: ...


class _Sink:
    """A growing buffer the pyarrow writers write into; :meth:`take` hands its bytes on."""

    def __init__(self) -> None:
        self.buffer = io.BytesIO()

    def take(self) -> bytes:
        data = self.buffer.getvalue()
        self.buffer.seek(0)
        self.buffer.truncate()
        return data


class _Json:
    """``[{"col": value, ...}, ...]``; times as ISO 8601 text (Polars' JSON)."""

    def __init__(self) -> None:
        self._first = True

    def batch(self, batch: pa.RecordBatch) -> bytes:
        if batch.num_rows == 0:
            return b""
        frame = pl.DataFrame(pl.from_arrow(batch))
        lines = frame.write_ndjson().rstrip("\n").replace("\n", ",")
        out = ("[" if self._first else ",") + lines
        self._first = False
        return out.encode()

    def end(self) -> bytes:
        return b"[]" if self._first else b"]"


class _Writer:
    """The pyarrow writers (IPC stream, CSV, Parquet) over one :class:`_Sink`."""

    def __init__(self, fmt: Format, schema: pa.Schema) -> None:
        self._sink = _Sink()
        self._writer: ipc.RecordBatchStreamWriter | pacsv.CSVWriter | pq.ParquetWriter
        if fmt == "arrow":
            self._writer = ipc.new_stream(self._sink.buffer, schema)
        elif fmt == "csv":
            self._writer = pacsv.CSVWriter(self._sink.buffer, schema)
        else:
            self._writer = pq.ParquetWriter(self._sink.buffer, schema)

    def batch(self, batch: pa.RecordBatch) -> bytes:
        if batch.num_rows:
            self._writer.write_batch(batch)
        return self._sink.take()

    def end(self) -> bytes:
        self._writer.close()
        return self._sink.take()


def encoder(fmt: Format, schema: pa.Schema) -> Encoder:
    """An encoder of batches of ``schema`` into ``fmt``."""
    return _Json() if fmt == "json" else _Writer(fmt, schema)
