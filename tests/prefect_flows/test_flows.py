"""The Prefect flows run for real (Prefect's test harness: a temporary server and database)
and publish their data-quality artifacts."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from crypto_lakehouse.ingest import BronzeWriter
from crypto_lakehouse.storage import Catalog

ROOT = Path(__file__).resolve().parents[2]


def _bronze(root: Path) -> None:
    now = time.time()

    async def write() -> None:
        w = BronzeWriter(Catalog(root), writer_id="w", spool_dir=root / "spool")
        await w.start()
        w.add_many(
            "bronze.trades",
            [("BINANCE", "BTC-USDT", now - 5, now, str(i), "buy", "100", "1", None) for i in (1, 2, 3, 3, 9)],
        )  # a duplicate, and ids 4..8 missing
        w.add("bronze.trades", ("BINANCE", "BTC-USDT", now - 5, now, "10", "buy", "0", "1", None))  # price 0
        await w.flush()

    asyncio.run(write())


@pytest.fixture(scope="module")
def harness():
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=90):
        yield


def test_promote_silver_flow_runs_and_publishes_the_dq_report(harness, tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT))
    from prefect.client.orchestration import get_client

    from flows.silver import promote_silver_flow

    root = tmp_path / "lake"
    _bronze(root)
    env = {"LAKEHOUSE_SILVER__BACKFILL": "false"}
    os.environ.update(env)
    try:
        totals = promote_silver_flow(root=str(root))
    finally:
        for k in env:
            os.environ.pop(k)
    assert totals["silver.trades"]["rows_out"] == 4 and totals["silver.trades"]["duplicates"] == 1
    assert totals["silver.trades"]["quarantined:price_not_positive"] == 1
    assert pl.read_delta(str(root / "silver" / "trades"))["id"].sort().to_list() == [1, 2, 3, 9]

    async def artifacts(key: str = "silver-dq-report") -> list:
        async with get_client() as client:
            from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

            return await client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))

    found = asyncio.run(artifacts())
    assert found and found[0].type == "table"
    assert "price_not_positive" in json.dumps(found[0].data)

    # the completeness ledger of the day it touched: ids 4..8 missing (backfill off), one row quarantined
    (ledger,) = asyncio.run(artifacts("completeness"))
    (row,) = json.loads(ledger.data) if isinstance(ledger.data, str) else ledger.data
    assert (row["exchange"], row["symbol"], row["channel"]) == ("BINANCE", "BTC-USDT", "trades")
    assert (row["ids_present"], row["ids_expected"], row["gaps_open"], row["quarantined"]) == ("4", "9", "1", "1")
    assert row["complete"] == "False" and float(row["score"]) < 1

    from flows.gold import build_gold_flow

    gold = build_gold_flow(root=str(root))
    assert gold["bars_written"]["1d"] == 1  # the four good trades fall in one day...
    bars = pl.read_delta(str(root / "gold" / "ohlcv")).filter(pl.col("interval") == "1d")
    assert bars["trades"].to_list() == [4] and bars["volume"].to_list() == [4.0]  # ...as one daily bar


def test_promote_silver_cli_prints_a_summary(tmp_path: Path) -> None:
    root = tmp_path / "lake"
    _bronze(root)
    res = subprocess.run(
        [sys.executable, "-m", "crypto_lakehouse.cli", "promote", "silver", "--root", str(root)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "LAKEHOUSE_SILVER__BACKFILL": "false"},
    )
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["tables"]["silver.trades"]["rows_out"] == 4 and out["open_gaps"] == 1  # ids 4..8, backfill off
    again = subprocess.run(
        [sys.executable, "-m", "crypto_lakehouse.cli", "promote", "silver", "--root", str(root)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "LAKEHOUSE_SILVER__BACKFILL": "false"},
    )
    assert json.loads(again.stdout.strip().splitlines()[-1])["tables"].get("silver.trades", {}).get("rows_out") is None


def test_archive_import_flow_reports_each_file_and_fails_on_a_bad_one(harness, tmp_path: Path) -> None:
    import functools
    import hashlib
    import io
    import threading
    import zipfile
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from flows.archive import archive_import_flow

    site = tmp_path / "site"
    for day, good in (("2024-01-01", True), ("2024-01-02", False)):
        path = site / f"data/futures/um/daily/aggTrades/BTCUSDT/BTCUSDT-aggTrades-{day}.zip"
        path.parent.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            z.writestr(path.name.replace(".zip", ".csv"), "1,100.0,0.5,1,1,1704067200000,true\n")
        path.write_bytes(buf.getvalue())
        digest = hashlib.sha256(buf.getvalue()).hexdigest() if good else "0" * 64
        (path.parent / f"{path.name}.CHECKSUM").write_text(f"{digest}  {path.name}\n")
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(site))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        with pytest.raises(RuntimeError, match="1 archive"):
            archive_import_flow(
                market="um",
                kind="aggTrades",
                symbols=["BTCUSDT"],
                start="2024-01-01",
                end="2024-01-02",
                base_url=f"http://127.0.0.1:{httpd.server_address[1]}",
                root=str(tmp_path / "lake"),
            )
    finally:
        httpd.shutdown()

    async def artifact() -> list:
        async with get_client() as client:
            return await client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["archive-import"]))
            )

    data = json.dumps(asyncio.run(artifact())[0].data)
    assert "imported" in data and "FAILED" in data and "checksum mismatch" in data
    assert pl.read_delta(str(tmp_path / "lake" / "bronze" / "trades")).height == 1


def test_compact_flow_merges_files_and_publishes_its_report(harness, tmp_path: Path) -> None:
    from flows.maintenance import compact_flow

    root = tmp_path / "lake"
    for _ in range(3):
        _bronze(root)
    reports = compact_flow(root=str(root))
    trades = next(r for r in reports if r["table"] == "bronze.trades")
    assert trades["files_after"] < trades["files_before"]
    assert pl.read_delta(str(root / "bronze" / "trades")).height == 18  # 3 x 6 rows, none lost


def test_compact_flow_takes_the_commands_tables_and_z_order(harness, tmp_path: Path) -> None:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from flows.maintenance import compact_flow

    root = tmp_path / "lake"
    for _ in range(2):
        _bronze(root)
    reports = compact_flow(root=str(root), tables=["bronze.trades"], z_order=["ts"])
    assert [r["table"] for r in reports] == ["bronze.trades"] and "z-ordered by ts" in reports[0]["detail"]


def test_backfill_flow_takes_a_rest_base_like_the_command(harness, tmp_path: Path) -> None:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from crypto_lakehouse.loopback import MarketSpec, SyntheticMarket, running_exchange
    from flows.backfill import backfill_flow

    market = SyntheticMarket(MarketSpec(exchange="BINANCE", symbols=["BTCUSDT"], rate=1, start_ms=1_700_000_000_000))
    for _ in range(60):  # a minute from 2023-11-14T22:13:20Z, one trade a second
        market.step()
    with running_exchange(market=market) as ex:
        added = backfill_flow(
            exchange="BINANCE",
            symbol="BTC-USDT",
            start="2023-11-14T22:13:00Z",
            end="2023-11-14T22:20:00Z",
            rest=ex.rest_url,  # the flow had no `rest` before: it could not reach a loopback exchange
            root=str(tmp_path / "lake"),
        )
    tape = market.tape("BTCUSDT")
    assert added == tape.last_id - tape.first_id + 1
    assert pl.read_delta(str(tmp_path / "lake" / "silver" / "trades"))["id"].sort().to_list() == list(
        range(tape.first_id, tape.last_id + 1)
    )


def test_bounded_ingest_flow_streams_into_bronze(harness, tmp_path: Path) -> None:
    from crypto_lakehouse.loopback import MarketSpec, running_exchange
    from flows.ingest import ingest_flow

    os.environ["LAKEHOUSE_WRITER__SPOOL_DIR"] = str(tmp_path / "spool")
    os.environ["LAKEHOUSE_WRITER__ID"] = "ingest-flow-test"
    try:
        with running_exchange(market=MarketSpec(exchange="BINANCE", symbols=["BTCUSDT"], rate=2_000)) as ex:
            summary = ingest_flow(
                duration_s=3,
                endpoints=[ex.rest_url],
                symbols=["BTC-USDT"],
                channels=["trades"],
                root=str(tmp_path / "lake"),
            )
    finally:
        os.environ.pop("LAKEHOUSE_WRITER__SPOOL_DIR")
        os.environ.pop("LAKEHOUSE_WRITER__ID")
    rows = pl.read_delta(str(tmp_path / "lake" / "bronze" / "trades")).height
    assert rows == summary["bronze.trades"]["rows_committed"] > 100


def test_silver_and_gold_flows_fan_out_as_prefect_tasks_on_a_dask_local_cluster(harness, tmp_path: Path) -> None:
    """scale.runner=local: the groups run as Prefect tasks on prefect-dask's DaskTaskRunner
    (2 worker processes reporting to the same Prefect API), silver and gold equal the flows'
    in-process runs and each table gets one commit."""
    import shutil

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterName
    from prefect.settings import PREFECT_API_URL

    from flows.gold import build_gold_flow
    from flows.silver import promote_silver_flow

    alone, fanned = tmp_path / "alone", tmp_path / "fanned"
    _bronze(alone)
    write_more = {"LAKEHOUSE_SILVER__BACKFILL": "false"}
    shutil.copytree(alone, fanned)
    env = {**write_more, "PREFECT_API_URL": str(PREFECT_API_URL.value())}  # the workers' API: the test server's
    os.environ.update(env)
    try:
        expected = promote_silver_flow(root=str(alone))
        expected_gold = build_gold_flow(root=str(alone))
        os.environ.update({"LAKEHOUSE_SCALE__RUNNER": "local", "LAKEHOUSE_SCALE__WORKERS": "2"})
        got = promote_silver_flow(root=str(fanned))
        got_gold = build_gold_flow(root=str(fanned))
    finally:
        for k in [*env, "LAKEHOUSE_SCALE__RUNNER", "LAKEHOUSE_SCALE__WORKERS"]:
            os.environ.pop(k, None)
    assert got == expected and got["silver.trades"]["rows_out"] == 4
    for table in ("trades", "quarantine"):
        a = pl.read_delta(str(alone / "silver" / table)).drop("detected_at", strict=False)
        b = pl.read_delta(str(fanned / "silver" / table)).drop("detected_at", strict=False)
        assert b.sort(b.columns).equals(a.sort(a.columns)), table
    log = sorted((fanned / "silver" / "trades" / "_delta_log").glob("*.json"))
    assert len(log) == 2  # created, then the one commit of the job
    assert got_gold == expected_gold and got_gold["bars_written"]
    a, b = pl.read_delta(str(alone / "gold" / "ohlcv")), pl.read_delta(str(fanned / "gold" / "ohlcv"))
    assert b.sort(b.columns).equals(a.sort(a.columns))
    assert len(list((fanned / "gold" / "ohlcv" / "_delta_log").glob("*.json"))) == 2

    async def task_runs() -> list:
        async with get_client() as client:
            return await client.read_task_runs(task_run_filter=TaskRunFilter(name=TaskRunFilterName(like_="_task")))

    runs = asyncio.run(task_runs())
    assert {r.name.rsplit("-", 1)[0] for r in runs} == {"stage_task", "bars_task"}  # (named <task>-<suffix>)
    assert all(r.state is not None and r.state.is_completed() for r in runs)
