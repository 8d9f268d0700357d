"""Archive import against a local HTTP server serving generated archives in Binance's layout."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import io
import json
import subprocess
import sys
import threading
import zipfile
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import polars as pl
import pytest

from crypto_lakehouse.ingest import BronzeWriter
from crypto_lakehouse.ingest.archive import archive_files, import_archives
from crypto_lakehouse.schemas import BRONZE
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
    day = (datetime.now(UTC) - timedelta(days=1)).date()  # yesterday: every row's receipt_ts >= ts < now
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
                    t0 + i + 1,  # received a second after the trade, a day before the archive
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
    promote_silver(catalog, backfiller=None)
    silver = pl.read_delta(catalog.uri("silver.trades")).sort("id")
    assert silver["id"].to_list() == list(range(5_000, 5_200))  # no duplicate where they overlap
    sources = dict(zip(silver["id"].to_list(), silver["source"].to_list(), strict=True))
    assert {sources[i] for i in range(5_100, 5_150)} == {"stream"}  # received first
    assert {sources[i] for i in range(5_000, 5_100)} == {"archive"}


# ------------------------------------------------------------------ identity = the full archive path
def _import(catalog: Catalog, base: str, cache: Path, *, market: str, kind: str, day: date, symbol: str = "BTCUSDT"):
    files = archive_files(market=market, kind=kind, symbols=[symbol], start=day, end=day)
    return import_archives(catalog, files, base_url=base, cache_dir=cache, progress=False)


def test_spot_and_futures_files_of_the_same_name_are_separate_identities(server, tmp_path: Path) -> None:
    """Spot and USD-M futures publish ``BTCUSDT-aggTrades-2024-01-01.zip`` under the same file
    name; replacing the futures file (changed checksum) must leave the spot rows alone."""
    site, base = server
    day = date(2024, 1, 1)
    spot = "data/spot/daily/aggTrades/BTCUSDT/BTCUSDT-aggTrades-2024-01-01.zip"
    _publish(site, spot, _agg_csv(1, 100, day, header=False, micros=False))
    _publish(site, _path("2024-01-01"), _agg_csv(10_001, 100, day, header=True, micros=False))
    catalog = Catalog(tmp_path / "lake")
    assert _import(catalog, base, tmp_path / "c1", market="spot", kind="aggTrades", day=day).imported == {spot: 100}
    assert _import(catalog, base, tmp_path / "c1", market="um", kind="aggTrades", day=day).ok
    _publish(site, _path("2024-01-01"), _agg_csv(10_001, 90, day, header=True, micros=False))  # corrected upstream
    changed = _import(catalog, base, tmp_path / "c2", market="um", kind="aggTrades", day=day)
    assert changed.imported == {_path("2024-01-01"): 90}
    trades = pl.read_delta(catalog.uri("bronze.trades"))
    spot_rows = trades.filter(pl.col("exchange") == "BINANCE").height
    assert spot_rows == 100  # the spot rows survived the futures file's replacement
    per_writer = dict(trades.group_by("writer_id").len().iter_rows())
    assert per_writer == {f"archive:{spot}": 100, f"archive:{_path('2024-01-01')}": 90}
    manifest = pl.read_delta(catalog.uri("meta.archive_manifest"))
    assert dict(manifest.select("file", "rows").iter_rows()) == {spot: 100, _path("2024-01-01"): 90}


def test_rows_of_the_file_name_identity_written_before_are_replaced_too(server, tmp_path: Path) -> None:
    """Lakes imported before the full-path identity hold ``archive:<file name>`` rows: a changed
    file replaces those of its own market (exchange) and leaves the other market's alone."""
    site, base = server
    day = date(2024, 1, 1)
    spot = "data/spot/daily/aggTrades/BTCUSDT/BTCUSDT-aggTrades-2024-01-01.zip"
    _publish(site, spot, _agg_csv(1, 100, day, header=False, micros=False))
    _publish(site, _path("2024-01-01"), _agg_csv(10_001, 100, day, header=True, micros=False))
    catalog = Catalog(tmp_path / "lake")
    assert _import(catalog, base, tmp_path / "c1", market="spot", kind="aggTrades", day=day).ok
    assert _import(catalog, base, tmp_path / "c1", market="um", kind="aggTrades", day=day).ok
    old = pl.read_delta(catalog.uri("bronze.trades")).with_columns(  # as the file-name identity wrote them
        pl.lit("archive:BTCUSDT-aggTrades-2024-01-01.zip").alias("writer_id")
    )
    catalog.replace("bronze.trades", old.to_arrow().cast(BRONZE["bronze.trades"].schema))
    _publish(site, _path("2024-01-01"), _agg_csv(10_001, 90, day, header=True, micros=False))
    assert _import(catalog, base, tmp_path / "c2", market="um", kind="aggTrades", day=day).ok
    trades = pl.read_delta(catalog.uri("bronze.trades"))
    assert dict(trades.group_by("exchange").len().iter_rows()) == {"BINANCE": 100, "BINANCE_FUTURES": 90}


# ------------------------------------------------------------------ one file = one idempotent import
class _StorageError(OSError):
    """The injected failure: storage refusing one write."""


def _fail_once(monkeypatch: pytest.MonkeyPatch, catalog: Catalog, table: str) -> list[str]:
    """Make the next write (append or replace) of ``table`` through ``catalog`` raise, once; the
    returned list records the failure. Every other write reaches the real Delta table."""
    failed: list[str] = []
    for name in ("append", "replace"):
        real = getattr(catalog, name)

        def write(target: str, *args: object, _real=real, **kwargs: object) -> object:
            if target == table and not failed:
                failed.append(target)
                raise _StorageError(f"injected: storage refused the write to {target}")
            return _real(target, *args, **kwargs)

        monkeypatch.setattr(catalog, name, write)
    return failed


def test_a_failure_between_the_bronze_commit_and_the_manifest_imports_nothing_twice(
    server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site, base = server
    day = date(2024, 1, 1)
    _publish(site, _path("2024-01-01"), _agg_csv(1, 100, day, header=True, micros=False))
    catalog = Catalog(tmp_path / "lake")
    failed = _fail_once(monkeypatch, catalog, "meta.archive_manifest")  # bronze commits, the manifest write fails
    first = _import(catalog, base, tmp_path / "cache", market="um", kind="aggTrades", day=day)
    assert failed and list(first.failed) == [_path("2024-01-01")] and "injected" in first.failed[_path("2024-01-01")]
    again = _import(catalog, base, tmp_path / "cache", market="um", kind="aggTrades", day=day)
    assert again.imported == {_path("2024-01-01"): 100}
    ids = pl.read_delta(catalog.uri("bronze.trades"))["id"].cast(pl.Int64)
    assert ids.len() == 100 and sorted(ids) == list(range(1, 101))  # each id exactly once
    assert pl.read_delta(catalog.uri("meta.archive_manifest"))["rows"].to_list() == [100]


def test_a_failed_replacement_of_a_changed_file_keeps_its_old_rows(
    server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site, base = server
    day = date(2024, 1, 1)
    _publish(site, _path("2024-01-01"), _agg_csv(1, 100, day, header=True, micros=False))
    catalog = Catalog(tmp_path / "lake")
    assert _import(catalog, base, tmp_path / "c1", market="um", kind="aggTrades", day=day).ok
    _publish(site, _path("2024-01-01"), _agg_csv(1, 80, day, header=True, micros=False))  # corrected upstream
    failed = _fail_once(monkeypatch, catalog, "bronze.trades")
    assert not _import(catalog, base, tmp_path / "c2", market="um", kind="aggTrades", day=day).ok and failed
    kept = pl.read_delta(catalog.uri("bronze.trades")).height
    assert kept == 100  # the old file's rows, as the manifest (unchanged) says
    assert pl.read_delta(catalog.uri("meta.archive_manifest"))["rows"].to_list() == [100]
    assert _import(catalog, base, tmp_path / "c2", market="um", kind="aggTrades", day=day).imported == {
        _path("2024-01-01"): 80
    }
    ids = pl.read_delta(catalog.uri("bronze.trades"))["id"].cast(pl.Int64)
    assert sorted(ids) == list(range(1, 81))


def test_concurrent_imports_of_the_same_file_commit_its_rows_once(server, tmp_path: Path) -> None:
    """Two imports (say the CLI and the flow) start together on a new lake: both see no manifest."""
    site, base = server
    day = date(2024, 1, 1)
    _publish(site, _path("2024-01-01"), _agg_csv(1, 100, day, header=True, micros=False))
    catalog = Catalog(tmp_path / "lake")
    files = archive_files(market="um", kind="aggTrades", symbols=["BTCUSDT"], start=day, end=day)
    start = threading.Barrier(2)
    results = []

    def run(i: int) -> None:
        start.wait()
        results.append(import_archives(catalog, files, base_url=base, cache_dir=tmp_path / f"c{i}", progress=False))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert len(results) == 2 and all(r.ok for r in results), [r.failed for r in results]
    ids = pl.read_delta(catalog.uri("bronze.trades"))["id"].cast(pl.Int64)
    assert ids.len() == 100 and ids.n_unique() == 100
    assert pl.read_delta(catalog.uri("meta.archive_manifest")).height == 1


# ------------------------------------------------------------------ every kind the CLI offers, real formats
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
T0 = datetime(2024, 1, 1, tzinfo=UTC)


def _ms(t: datetime) -> int:
    return (t - EPOCH) // timedelta(milliseconds=1)


@dataclass(frozen=True)
class _Kind:
    """One archive kind in Binance's real CSV format and the bronze rows it must become."""

    kind: str
    market: str
    period: tuple[date, date]
    path: str
    header: str
    lines: list[str]
    table: str
    exchange: str
    symbol: str
    expected: list[dict]  # bronze columns (besides exchange/symbol/date/writer_id) per row, by ts


_KINDS = [
    _Kind(  # spot: 8 columns (the last is is_best_match), capitalised booleans, no header in real files
        "aggTrades",
        "spot",
        (date(2024, 1, 1), date(2024, 1, 1)),
        "data/spot/daily/aggTrades/BTCUSDT/BTCUSDT-aggTrades-2024-01-01.zip",
        "agg_trade_id,price,quantity,first_trade_id,last_trade_id,transact_time,is_buyer_maker,is_best_match",
        [
            f"3371227474,42283.58000000,0.00100000,3371227474,3371227476,{_ms(T0) + 1},True,True",
            f"3371227475,42283.59000000,0.02000000,3371227477,3371227477,{_ms(T0) + 2},False,True",
        ],
        "bronze.trades",
        "BINANCE",
        "BTC-USDT",
        [
            {
                "ts": T0 + timedelta(milliseconds=1),
                "id": "3371227474",
                "side": "sell",
                "price": "42283.58000000",
                "amount": "0.00100000",
                "type": None,
            },
            {
                "ts": T0 + timedelta(milliseconds=2),
                "id": "3371227475",
                "side": "buy",
                "price": "42283.59000000",
                "amount": "0.02000000",
                "type": None,
            },
        ],
    ),
    _Kind(  # USD-M futures: header row in real files, lower-case booleans
        "aggTrades",
        "um",
        (date(2024, 1, 1), date(2024, 1, 1)),
        _path("2024-01-01"),
        "agg_trade_id,price,quantity,first_trade_id,last_trade_id,transact_time,is_buyer_maker",
        [f"1960436791,42314.0,0.020,4440155826,4440155826,{_ms(T0) + 67},true"],
        "bronze.trades",
        "BINANCE_FUTURES",
        "BTC-USDT-PERP",
        [
            {
                "ts": T0 + timedelta(milliseconds=67),
                "id": "1960436791",
                "side": "sell",
                "price": "42314.0",
                "amount": "0.020",
                "type": None,
            }
        ],
    ),
    _Kind(
        "klines:1m",
        "spot",
        (date(2024, 1, 1), date(2024, 1, 1)),
        "data/spot/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2024-01-01.zip",
        "open_time,open,high,low,close,volume,close_time,quote_volume,count,taker_buy_volume,"
        "taker_buy_quote_volume,ignore",
        [
            f"{_ms(T0)},42283.58000000,42298.62000000,42261.02000000,42298.61000000,35.92724000,"
            f"{_ms(T0) + 59_999},1519196.17880070,1327,21.61088000,913862.04396790,0",
            f"{_ms(T0) + 60_000},42298.62000000,42320.00000000,42298.61000000,42320.00000000,21.07084000,"
            f"{_ms(T0) + 119_999},891337.11829760,1029,11.46541000,485026.32006300,0",
        ],
        "bronze.candles",
        "BINANCE",
        "BTC-USDT",
        [
            {
                "ts": T0 + timedelta(milliseconds=59_999),
                "interval": "1m",
                "start": T0,
                "stop": T0 + timedelta(milliseconds=59_999),
                "trades": 1327,
                "open": "42283.58000000",
                "high": "42298.62000000",
                "low": "42261.02000000",
                "close": "42298.61000000",
                "volume": "35.92724000",
                "closed": True,
            },
            {
                "ts": T0 + timedelta(milliseconds=119_999),
                "interval": "1m",
                "start": T0 + timedelta(minutes=1),
                "stop": T0 + timedelta(milliseconds=119_999),
                "trades": 1029,
                "open": "42298.62000000",
                "high": "42320.00000000",
                "low": "42298.61000000",
                "close": "42320.00000000",
                "volume": "21.07084000",
                "closed": True,
            },
        ],
    ),
    _Kind(  # a calendar month: the archive spells the interval 1mo
        "klines:1mo",
        "um",
        (date(2024, 1, 1), date(2024, 1, 31)),
        "data/futures/um/monthly/klines/BTCUSDT/1mo/BTCUSDT-1mo-2024-01.zip",
        "open_time,open,high,low,close,volume,close_time,quote_volume,count,taker_buy_volume,"
        "taker_buy_quote_volume,ignore",
        [
            f"{_ms(T0)},42314.00,48969.48,38555.00,42580.00,7650548.311,{_ms(datetime(2024, 2, 1, tzinfo=UTC)) - 1},"
            "329129826505.99870,63270891,3807285.426,163853186297.12470,0"
        ],
        "bronze.candles",
        "BINANCE_FUTURES",
        "BTC-USDT-PERP",
        [
            {
                "ts": datetime(2024, 2, 1, tzinfo=UTC) - timedelta(milliseconds=1),
                "interval": "1mo",
                "start": T0,
                "stop": datetime(2024, 2, 1, tzinfo=UTC) - timedelta(milliseconds=1),
                "trades": 63270891,
                "open": "42314.00",
                "high": "48969.48",
                "low": "38555.00",
                "close": "42580.00",
                "volume": "7650548.311",
                "closed": True,
            }
        ],
    ),
    _Kind(
        "fundingRate",
        "um",
        (date(2024, 1, 1), date(2024, 1, 31)),
        "data/futures/um/monthly/fundingRate/BTCUSDT/BTCUSDT-fundingRate-2024-01.zip",
        "calc_time,funding_interval_hours,last_funding_rate",
        [f"{_ms(T0)},8,0.00037409", f"{_ms(T0) + 8 * 3_600_000 + 2},8,-0.00001250"],
        "bronze.funding",
        "BINANCE_FUTURES",
        "BTC-USDT-PERP",
        [
            {
                "ts": T0,
                "rate": "0.00037409",
                "mark_price": None,
                "index_price": None,
                "predicted_rate": None,
                "next_funding_time": None,
            },
            {
                "ts": T0 + timedelta(hours=8, milliseconds=2),
                "rate": "-0.00001250",
                "mark_price": None,
                "index_price": None,
                "predicted_rate": None,
                "next_funding_time": None,
            },
        ],
    ),
    _Kind(  # ts is the event time, as the stream's ticker (cryptofeed uses the message's E)
        "bookTicker",
        "um",
        (date(2024, 1, 1), date(2024, 1, 1)),
        "data/futures/um/daily/bookTicker/BTCUSDT/BTCUSDT-bookTicker-2024-01-01.zip",
        "update_id,best_bid_price,best_bid_qty,best_ask_price,best_ask_qty,transaction_time,event_time",
        [
            f"3818226453214,42313.90,9.093,42314.00,1.702,{_ms(T0) + 4},{_ms(T0) + 7}",
            f"3818226453290,42313.90,9.101,42314.00,1.690,{_ms(T0) + 11},{_ms(T0) + 12}",
        ],
        "bronze.ticker",
        "BINANCE_FUTURES",
        "BTC-USDT-PERP",
        [
            {
                "ts": T0 + timedelta(milliseconds=7),
                "sequence": 3818226453214,
                "bid": "42313.90",
                "bid_size": "9.093",
                "ask": "42314.00",
                "ask_size": "1.702",
            },
            {
                "ts": T0 + timedelta(milliseconds=12),
                "sequence": 3818226453290,
                "bid": "42313.90",
                "bid_size": "9.101",
                "ask": "42314.00",
                "ask_size": "1.690",
            },
        ],
    ),
    _Kind(
        "bookTicker",
        "cm",
        (date(2024, 1, 1), date(2024, 1, 1)),
        "data/futures/cm/daily/bookTicker/BTCUSD_PERP/BTCUSD_PERP-bookTicker-2024-01-01.zip",
        "update_id,best_bid_price,best_bid_qty,best_ask_price,best_ask_qty,transaction_time,event_time",
        [f"782210418531,42300.1,1250,42300.2,311,{_ms(T0) + 30},{_ms(T0) + 31}"],
        "bronze.ticker",
        "BINANCE_DELIVERY",
        "BTC-USD-PERP",
        [
            {
                "ts": T0 + timedelta(milliseconds=31),
                "sequence": 782210418531,
                "bid": "42300.1",
                "bid_size": "1250",
                "ask": "42300.2",
                "ask_size": "311",
            }
        ],
    ),
]


@pytest.mark.parametrize("header", [True, False], ids=["header", "no-header"])
@pytest.mark.parametrize("case", _KINDS, ids=[f"{k.market}-{k.kind}" for k in _KINDS])
def test_every_kind_the_cli_offers_imports_its_real_csv_format(server, tmp_path: Path, case: _Kind, header: bool):
    site, base = server
    _publish(site, case.path, ("\n".join(([case.header] if header else []) + case.lines) + "\n").encode())
    catalog = Catalog(tmp_path / "lake")
    symbol = case.path.rsplit("/", 1)[-1].split("-", 1)[0]
    files = archive_files(
        market=case.market, kind=case.kind, symbols=[symbol], start=case.period[0], end=case.period[1]
    )
    assert [f.path for f in files] == [case.path]
    r = import_archives(catalog, files, base_url=base, cache_dir=tmp_path / "cache", progress=False)
    assert r.failed == {} and r.imported == {case.path: len(case.lines)}
    rows = pl.read_delta(catalog.uri(case.table)).sort("ts")
    assert rows.select("exchange", "symbol").unique().rows() == [(case.exchange, case.symbol)]
    assert rows["writer_id"].str.starts_with("archive:").all()  # silver's source='archive'
    assert rows["date"].to_list() == [e["ts"].date() for e in case.expected]
    assert rows.select(list(case.expected[0])).to_dicts() == case.expected
