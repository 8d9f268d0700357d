"""Archive import speed: MB/s of zipped CSV imported (HTTP download from a local server, sha256
check, parse, one Delta commit per file) vs a bare unzip + pyarrow CSV read of the same files.

Last line: {"archive_mb_per_s": ..., "archive_vs_bare_read": ...}
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import io
import json
import sys
import tempfile
import threading
import time
import zipfile
from datetime import date, timedelta
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pyarrow.csv as pacsv

from crypto_lakehouse.ingest.archive import archive_files, import_archives
from crypto_lakehouse.storage import Catalog


def make_site(site: Path, days: int, rows: int) -> list[Path]:
    zips = []
    for d in range(days):
        day = date(2024, 1, 1) + timedelta(days=d)
        path = site / f"data/futures/um/daily/aggTrades/BTCUSDT/BTCUSDT-aggTrades-{day}.zip"
        path.parent.mkdir(parents=True, exist_ok=True)
        t0 = int(time.mktime(day.timetuple())) * 1000
        lines = ["agg_trade_id,price,quantity,first_trade_id,last_trade_id,transact_time,is_buyer_maker"]
        lines += [
            f"{d * rows + i},{42000 + i % 500}.{i % 100:02d},0.{i % 997 + 1:03d},{i},{i},{t0 + i * 80},"
            f"{'true' if i % 3 else 'false'}"
            for i in range(rows)
        ]
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr(path.name.replace(".zip", ".csv"), "\n".join(lines) + "\n")
        path.write_bytes(buf.getvalue())
        (path.parent / f"{path.name}.CHECKSUM").write_text(
            f"{hashlib.sha256(buf.getvalue()).hexdigest()}  {path.name}\n"
        )
        zips.append(path)
    return zips


def bare_read(zips: list[Path]) -> float:
    t0 = time.perf_counter()
    for z in zips:
        with zipfile.ZipFile(z) as f:
            pacsv.read_csv(io.BytesIO(f.read(f.namelist()[0])))
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description="archive import benchmark")
    ap.add_argument("--days", type=int, default=8)
    ap.add_argument("--rows", type=int, default=1_000_000, help="trades per daily file")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    zips = make_site(tmp / "site", args.days, args.rows)
    mb = sum(z.stat().st_size for z in zips) / 1e6
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(tmp / "site"))
    handler.log_message = lambda *a, **k: None  # type: ignore[method-assign]
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    files = archive_files(
        market="um",
        kind="aggTrades",
        symbols=["BTCUSDT"],
        start=date(2024, 1, 1),
        end=date(2024, 1, 1) + timedelta(days=args.days - 1),
    )
    t0 = time.perf_counter()
    r = import_archives(
        Catalog(tmp / "lake"),
        files,
        base_url=f"http://127.0.0.1:{httpd.server_address[1]}",
        cache_dir=tmp / "cache",
        progress=False,
    )
    secs = time.perf_counter() - t0
    assert r.ok and sum(r.imported.values()) == args.days * args.rows, r.failed
    bare = bare_read(zips)
    httpd.shutdown()
    print(
        f"{len(zips)} archives, {mb:.1f} MB zipped, {args.days * args.rows:,} rows: import {secs:.2f} s, "
        f"bare unzip + pyarrow CSV read {bare:.2f} s",
        file=sys.stderr,
    )
    print(json.dumps({"archive_mb_per_s": round(mb / secs, 2), "archive_vs_bare_read": round(bare / secs, 3)}))


if __name__ == "__main__":
    main()
