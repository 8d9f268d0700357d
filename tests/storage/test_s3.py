"""The whole medallion on an ``s3://`` root: a real S3 API server (moto's, in its own process),
the real delta-rs object store and s3fs; nothing in the project knows it is not AWS."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from crypto_lakehouse import Lakehouse
from crypto_lakehouse.config import load_settings
from crypto_lakehouse.ingest import BronzeWriter
from crypto_lakehouse.maintenance import checkpoint, compact, vacuum
from crypto_lakehouse.storage import Catalog
from crypto_lakehouse.transform.gold import build_gold
from crypto_lakehouse.transform.silver import SilverOptions, promote_silver


@pytest.fixture(scope="module")
def s3_options() -> Iterator[dict[str, str]]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        endpoint = f"http://127.0.0.1:{port}"
        import s3fs

        fs = s3fs.S3FileSystem(key="test", secret="test", client_kwargs={"endpoint_url": endpoint})
        fs.call_s3("create_bucket", Bucket="lake")
        yield {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_REGION": "us-east-1",
            "AWS_ALLOW_HTTP": "true",
            "AWS_CONDITIONAL_PUT": "etag",  # delta-rs commits with conditional puts, no lock table
        }
    finally:
        server.terminate()
        server.wait(10)


def test_stream_promote_read_tag_and_maintain_on_s3(s3_options: dict[str, str], tmp_path) -> None:
    root = "s3://lake/prod"
    catalog = Catalog(root, storage_options=s3_options)
    writer = BronzeWriter(catalog, writer_id="w", spool_dir=tmp_path / "spool", compact_every=3)
    t0 = (datetime.now(UTC) - timedelta(minutes=30)).replace(second=0, microsecond=0).timestamp()

    async def stream() -> None:
        await writer.start()
        for k in range(6):  # six commits of 100 trades, one a second apart in exchange time
            rows = [
                ("BINANCE", "BTC-USDT", t0 + i / 100, t0 + i / 100, str(i), "buy", "100", "1", None)
                for i in range(k * 100, k * 100 + 100)
            ]
            writer.add_many("bronze.trades", rows)
            await writer.flush()

    asyncio.run(stream())
    assert writer.stats["bronze.trades"].compactions == 2
    promote_silver(catalog, options=SilverOptions(backfill=False))
    build_gold(catalog, intervals=[timedelta(minutes=1)])
    # whole-table reads and commit kinds go through pyarrow's native S3 filesystem (see Catalog.dataset)
    assert sorted(catalog.read("silver.trades").column("id").to_pylist()) == list(range(600))
    bronze_version = catalog.open("bronze.trades").version()
    assert (
        catalog.changes("bronze.trades", after=0, upto=bronze_version).num_rows == 500
    )  # the 5 appends after v0; compactions add no rows

    lh = Lakehouse(config=load_settings().model_copy(update={"root": root, "storage_options": s3_options}))
    trades = lh.read("silver.trades")
    assert sorted(trades["id"].to_list()) == list(range(600))
    bars = lh.read("gold.ohlcv").filter(interval="1m")
    assert bars["trades"].sum() == 600
    assert lh.sql("select count(*) as n from silver.trades")["n"][0] == 600

    lh.tag("s3-bt")
    pinned = lh.read("gold.ohlcv", as_of="s3-bt").sort("interval", "window_start")
    for name in ("bronze.trades", "silver.trades", "gold.ohlcv"):
        compact(catalog, name)
        checkpoint(catalog, name)
        vacuum(catalog, name, horizon=timedelta(0))  # zero horizon: only tags and the present are kept
    assert lh.read("gold.ohlcv", as_of="s3-bt").sort("interval", "window_start").equals(pinned)
    assert lh.read("bronze.trades").height == 600
