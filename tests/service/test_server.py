"""The service on a real uvicorn server on a loopback port: results bigger than the prefetch
stream out batch by batch and pyarrow reads the Arrow IPC stream straight off the socket; a
limit met mid-stream cuts the response off (never a silently short result)."""

from __future__ import annotations

import http.client
import io
import json
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest

from crypto_lakehouse.service._query import PREFETCH_BYTES
from tests.service.conftest import Running, auth, settings_for

ROWS = 400_000  # 8 bytes a row in Arrow: about 3 times the prefetch


def _post(base: str, key: str, body: dict) -> http.client.HTTPResponse:
    request = urllib.request.Request(
        f"{base}/query/sql",
        data=json.dumps(body).encode(),
        headers={**auth(key), "Content-Type": "application/json"},
        method="POST",
    )
    return urllib.request.urlopen(request, timeout=30)


def test_arrow_and_parquet_stream_from_a_real_server(lake_root: Path, keys: dict[str, str]) -> None:
    assert ROWS * 8 > 2 * PREFETCH_BYTES
    with Running(settings_for(lake_root)) as base:
        sql = f"SELECT range AS i, range % 7 AS k FROM range({ROWS})"
        with _post(base, keys["reader"], {"sql": sql, "format": "arrow"}) as response:
            assert response.headers["Content-Type"] == "application/vnd.apache.arrow.stream"
            assert response.headers["Transfer-Encoding"] == "chunked"  # streamed, no Content-Length
            reader = ipc.open_stream(response)  # pyarrow reads the socket as it arrives
            batches = list(reader)
        assert len(batches) > 1 and sum(b.num_rows for b in batches) == ROWS
        table = pa.Table.from_batches(batches)
        assert table.column("i").to_pylist()[-3:] == [ROWS - 3, ROWS - 2, ROWS - 1]

        with _post(base, keys["reader"], {"sql": sql, "format": "parquet"}) as response:
            data = response.read()
        parquet = pq.ParquetFile(io.BytesIO(data))
        assert parquet.metadata.num_rows == ROWS and parquet.metadata.num_row_groups > 1

        with _post(
            base,
            keys["reader"],
            {"sql": "SELECT symbol, price FROM silver.trades ORDER BY symbol, id", "format": "csv"},
        ) as response:
            lines = response.read().decode().splitlines()
        assert lines[0] == '"symbol","price"' and len(lines) == 1 + 1200


def test_a_limit_met_after_streaming_began_cuts_the_response(lake_root: Path, keys: dict[str, str]) -> None:
    with Running(settings_for(lake_root, max_bytes=2 * PREFETCH_BYTES)) as base:
        with _post(
            base, keys["reader"], {"sql": f"SELECT range AS i FROM range({ROWS})", "format": "arrow"}
        ) as response:
            assert response.status == 200  # the first MiB was fine
            with pytest.raises((http.client.IncompleteRead, pa.ArrowInvalid, OSError)):
                ipc.open_stream(response).read_all()
        # early enough, the same limit is a proper 413
        with pytest.raises(urllib.error.HTTPError) as refused:
            _post(base, keys["reader"], {"sql": "SELECT repeat('x', 3000000) AS s"})
        assert refused.value.code == 413


def _slot_comes_back(base: str, key: str, *, within: float) -> float:
    """Seconds until a query gets a slot again (429 until then)."""
    started = time.monotonic()
    while True:
        try:
            with _post(base, key, {"sql": "SELECT 1 AS x"}) as response:
                assert json.load(response) == [{"x": 1}]
                return time.monotonic() - started
        except urllib.error.HTTPError as exc:
            assert exc.code == 429 and time.monotonic() - started < within, exc.code
            time.sleep(0.1)


def test_a_client_that_goes_away_or_stops_reading_gives_its_slot_back(lake_root: Path, keys: dict[str, str]) -> None:
    big = json.dumps({"sql": f"SELECT range AS i FROM range({50 * ROWS})", "format": "arrow"})
    headers = {**auth(keys["reader"]), "Content-Type": "application/json"}
    with Running(settings_for(lake_root, max_concurrent=1, timeout_s=2)) as base:
        host, port = base.removeprefix("http://").split(":")
        # goes away after the first 100 kB: the slot is back at once
        gone = http.client.HTTPConnection(host, int(port))
        gone.request("POST", "/query/sql", body=big, headers=headers)
        response = gone.getresponse()
        assert response.status == 200
        response.read(100_000)
        response.close()
        gone.close()
        assert _slot_comes_back(base, keys["reader"], within=1.5) < 1.5
        # stops reading and keeps the connection open: the slot is back after timeout_s (+1 s)
        stalled = socket.create_connection((host, int(port)))
        body = big.encode()
        head = f"POST /query/sql HTTP/1.1\r\nHost: {host}\r\nContent-Length: {len(body)}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        stalled.sendall(head.encode() + body)
        time.sleep(0.5)
        try:
            assert 1.0 < _slot_comes_back(base, keys["reader"], within=5) < 5
        finally:
            stalled.close()
