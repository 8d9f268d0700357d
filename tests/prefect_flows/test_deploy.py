"""prefect.yaml deploys on a real local Prefect server, and a triggered promote-silver
deployment run, executed by a real process worker, changes the tables."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import time
from pathlib import Path

import polars as pl

from crypto_lakehouse.devtools.serve import _BIN, deploy_all, start_prefect_server, start_worker, stop
from crypto_lakehouse.ingest import BronzeWriter
from crypto_lakehouse.storage import Catalog

PROJECT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_deploy_all_and_run_promote_silver_through_a_worker(tmp_path: Path) -> None:
    lake = tmp_path / "lake"

    async def bronze() -> None:
        w = BronzeWriter(Catalog(lake), writer_id="deploy-test", spool_dir=tmp_path / "spool")
        await w.start()
        now = time.time()
        w.add_many(
            "bronze.trades",
            [("BINANCE", "BTC-USDT", now - 5, now, str(i), "buy", "100", "1", None) for i in range(1, 8)],
        )
        await w.flush()

    asyncio.run(bronze())
    state = tmp_path / "serve"
    env = start_prefect_server(state, _free_port())
    try:
        deploy_all(env, PROJECT)
        listed = subprocess.run(
            [str(_BIN / "prefect"), "deployment", "ls"], env=env, capture_output=True, text=True, check=True
        ).stdout
        for name in ("promote-silver", "build-gold", "backfill", "archive-import", "compact", "vacuum", "retention"):
            assert name in listed, name
        start_worker({**env, "LAKEHOUSE_SILVER__BACKFILL": "false"}, state, PROJECT)
        run = subprocess.run(
            [
                str(_BIN / "prefect"),
                "deployment",
                "run",
                "promote-silver/promote-silver",
                "--param",
                f"root={lake}",
                "--watch",
                "--watch-timeout",
                "180",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
        )
        assert run.returncode == 0 and "Completed" in run.stdout, run.stdout + run.stderr
    finally:
        stop(state)
    assert pl.read_delta(str(lake / "silver" / "trades"))["id"].sort().to_list() == list(range(1, 8))
    assert not any(os.path.exists(p) for p in (state / "pids").glob("*.pid"))
