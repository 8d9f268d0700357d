"""Archive import against a local HTTP server serving generated archives in Binance's layout."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import io
import json
import os
import subprocess
import sys
import threading
import time
import zipfile
from datetime import UTC, date, datetime
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import polars as pl
import pytest

from crypto_lakehouse.ingest import BronzeWriter
from crypto_lakehouse.ingest.archive import archive_files, import_archives
from crypto_lakehouse.storage import Catalog
from crypto_lakehouse.transform.silver import promote_silver

DAY_MS = 86_400_000


def _agg_csv(first_id: int, n: int, day: date, *, header: bool, micros: bool, corrupt: bool = False) -> bytes:
    t0 = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1000)
    lines = ["agg_trade_id,price,quantity,first_trade_id,last_trade_id,transact_time,is_buyer_maker"] if header else []
    for i in range(n):
        ts = (t0 + i * 1000) * (1000 if micros else 1)
        lines.append(f"{first_id + i},{100 + i % 7}.50,0.{i % 9 + 1}00,{i},{i},{ts},{'true' if i % 2 else 'false'}")
    if corrupt:
        lines[len(lines) // 2] = "12,not-a-row"
    return ("\n".join(lines) + "\n").encode()


def _publish(root: Path, path: str, csv: bytes, *, checksum: bytes | None = None, truncate: bool = False) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(path.rsplit("/", 1)[-1].replace(".zip", ".csv"), csv)
    data = buf.getvalue()[: len(buf.getvalue()) // 2] if truncate else buf.getvalue()
    target = root / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    digest = checksum or hashlib.sha256(data).hexdigest().encode()
    (root / f"{path}.CHECKSUM").write_bytes(digest + b"  " + path.rsplit("/", 1)[-1].encode() + b"\n")


class _Handler(SimpleHTTPRequestHandler):
    """Serves the site; a path containing "reset" has its connection cut mid-response."""

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if "reset" in self.path and self.path.endswith(".zip"):
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            self.wfile.write(b"PK\x03\x04partial")
            self.wfile.flush()
            import socket

            self.connection.shutdown(socket.SHUT_RDWR)
            return
        super().do_GET()


@pytest.fixture
def server(tmp_path: Path):
    site = tmp_path / "site"
    site.mkdir()
    handler = functools.partial(_Handler, directory=str(site))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield site, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def _path(day: str) -> str:
    return f"data/futures/um/daily/aggTrades/BTCUSDT/BTCUSDT-aggTrades-{day}.zip"


def test_archive_layout_prefers_monthly_files_for_whole_months() -> None:
    files = archive_files(
        market="um", kind="aggTrades", symbols=["BTCUSDT"], start=date(2024, 1, 30), end=date(2024, 3, 2)
    )
    names = [f.path.rsplit("/", 1)[-1] for f in files]
    assert names == [
        "BTCUSDT-aggTrades-2024-01-30.zip",
        "BTCUSDT-aggTrades-2024-01-31.zip",
        "BTCUSDT-aggTrades-2024-02.zip",
        "BTCUSDT-aggTrades-2024-03-01.zip",
        "BTCUSDT-aggTrades-2024-03-02.zip",
    ]
    assert files[2].path == "data/futures/um/monthly/aggTrades/BTCUSDT/BTCUSDT-aggTrades-2024-02.zip"
    kl = archive_files(
        market="spot", kind="klines:1m", symbols=["ETHUSDT"], start=date(2024, 1, 1), end=date(2024, 1, 1)
    )
    assert kl[0].path == "data/spot/daily/klines/ETHUSDT/1m/ETHUSDT-1m-2024-01-01.zip"
    from crypto_lakehouse.errors import LakehouseError

    with pytest.raises(LakehouseError, match="import 'aggTrades' instead"):
        archive_files(market="spot", kind="trades", symbols=["BTCUSDT"], start=date(2024, 1, 1), end=date(2024, 1, 1))


def test_import_verifies_resumes_skips_and_replaces_changed_files(server, tmp_path: Path) -> None:
    site, base = server
    _publish(site, _path("2024-01-01"), _agg_csv(1_000, 300, date(2024, 1, 1), header=True, micros=False))
    _publish(site, _path("2024-01-02"), _agg_csv(1_300, 300, date(2024, 1, 2), header=False, micros=True))
    catalog = Catalog(tmp_path / "lake")
    files = archive_files(
        market="um", kind="aggTrades", symbols=["BTCUSDT"], start=date(2024, 1, 1), end=date(2024, 1, 2)
    )
    # a partial download left by an interrupted run is resumed (kept bytes + the rest)
    partial = tmp_path / "cache" / (_path("2024-01-01") + ".part")
    partial.parent.mkdir(parents=True)
    partial.write_bytes((site / _path("2024-01-01")).read_bytes()[:100])
    r = import_archives(catalog, files, base_url=base, cache_dir=tmp_path / "cache", progress=False)
    assert r.ok and sorted(r.imported.values()) == [300, 300]
    trades = pl.read_delta(catalog.uri("bronze.trades"))
    assert sorted(trades["id"].cast(pl.Int64).to_list()) == list(range(1_000, 1_600))
    day2 = trades.filter(pl.col("id").cast(pl.Int64) == 1_300)["ts"][0]
    assert day2 == datetime(2024, 1, 2, tzinfo=UTC)  # µs timestamps read as µs, ms as ms
    again = import_archives(catalog, files, base_url=base, cache_dir=tmp_path / "cache", progress=False)
    assert sorted(again.skipped) == sorted(f.path for f in files) and not again.imported
    # upstream replaced day 1 (a corrected file): its rows are replaced, nothing duplicated
    _publish(site, _path("2024-01-01"), _agg_csv(1_000, 250, date(2024, 1, 1), header=True, micros=False))
    changed = import_archives(catalog, files, base_url=base, cache_dir=tmp_path / "cache2", progress=False)
    assert changed.imported == {_path("2024-01-01"): 250} and changed.skipped == [_path("2024-01-02")]
    ids = pl.read_delta(catalog.uri("bronze.trades"))["id"].cast(pl.Int64)
    assert ids.n_unique() == ids.len() == 550
    manifest = pl.read_delta(catalog.uri("meta.archive_manifest"))
    assert manifest.height == 2 and set(manifest["rows"]) == {250, 300}


def test_bad_files_are_not_committed_and_the_others_are(server, tmp_path: Path) -> None:
    site, base = server
    _publish(site, _path("2024-01-01"), _agg_csv(1, 100, date(2024, 1, 1), header=True, micros=False))
    _publish(
        site, _path("2024-01-02"), _agg_csv(101, 100, date(2024, 1, 2), header=True, micros=False), checksum=b"0" * 64
    )  # checksum mismatch
    _publish(
        site, _path("2024-01-03"), _agg_csv(201, 100, date(2024, 1, 3), header=True, micros=False), truncate=True
    )  # truncated zip (its checksum matches the truncated bytes)
    _publish(site, _path("2024-01-04"), _agg_csv(301, 100, date(2024, 1, 4), header=True, micros=False, corrupt=True))
    # 2024-01-05 is missing: 404
    catalog = Catalog(tmp_path / "lake")
    files = archive_files(
        market="um", kind="aggTrades", symbols=["BTCUSDT"], start=date(2024, 1, 1), end=date(2024, 1, 5)
    )
    r = import_archives(catalog, files, base_url=base, cache_dir=tmp_path / "cache", progress=False)
    assert list(r.imported) == [_path("2024-01-01")]
    assert set(r.failed) == {_path(f"2024-01-0{d}") for d in (2, 3, 4, 5)}
    assert "checksum mismatch" in r.failed[_path("2024-01-02")]
    assert "404" in r.failed[_path("2024-01-05")]
    assert "row" in r.failed[_path("2024-01-04")] or "corrupt" in r.failed[_path("2024-01-04")]
    assert pl.read_delta(catalog.uri("bronze.trades")).height == 100  # nothing of the bad files
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "crypto_lakehouse.cli",
            "archive",
            "import",
            "--market",
            "um",
            "--kind",
            "aggTrades",
            "--symbols",
            "BTCUSDT",
            "--start",
            "2024-01-01",
            "--end",
            "2024-01-05",
            "--base-url",
            base,
            "--root",
            str(tmp_path / "lake2"),
            "--cache-dir",
            str(tmp_path / "cache3"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 1 and len(json.loads(res.stdout.strip().splitlines()[-1])["failed"]) == 4


def test_archive_rows_are_promoted_with_source_archive_and_deduplicated_against_the_stream(
    server, tmp_path: Path
) -> None:
    site, base = server
    now = datetime.now(UTC)
    day = now.date()
    _publish(site, _path(f"{day}"), _agg_csv(5_000, 200, day, header=True, micros=False))
    catalog = Catalog(tmp_path / "lake")

    async def stream_rows() -> None:  # the stream saw ids 5100..5149 of the same day first
        w = BronzeWriter(catalog, writer_id="w", spool_dir=tmp_path / "spool")
        await w.start()
        t0 = datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()
        w.add_many(
            "bronze.trades",
            [
                (
                    "BINANCE_FUTURES",
                    "BTC-USDT-PERP",
                    t0 + i,
                    time.time() - 3600,
                    str(5_000 + i),
                    "sell" if i % 2 else "buy",
                    f"{100 + i % 7}.50",
                    f"0.{i % 9 + 1}00",
                    None,
                )
                for i in range(100, 150)
            ],
        )
        await w.flush()

    asyncio.run(stream_rows())
    files = archive_files(market="um", kind="aggTrades", symbols=["BTCUSDT"], start=day, end=day)
    assert import_archives(catalog, files, base_url=base, cache_dir=tmp_path / "cache", progress=False).ok
    os.environ["LAKEHOUSE_SILVER__MAX_FUTURE_SKEW"] = "1d"
    try:
        promote_silver(catalog, backfiller=None)
    finally:
        os.environ.pop("LAKEHOUSE_SILVER__MAX_FUTURE_SKEW")
    silver = pl.read_delta(catalog.uri("silver.trades")).sort("id")
    assert silver["id"].to_list() == list(range(5_000, 5_200))  # no duplicate where they overlap
    sources = dict(zip(silver["id"].to_list(), silver["source"].to_list(), strict=True))
    assert {sources[i] for i in range(5_100, 5_150)} == {"stream"}  # received first
    assert {sources[i] for i in range(5_000, 5_100)} == {"archive"}
