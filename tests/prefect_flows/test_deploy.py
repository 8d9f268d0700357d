"""prefect.yaml deploys on a real local Prefect server, and a triggered promote-silver
deployment run, executed by a real process worker, changes the tables; ``make serve`` says what
it does and how to reach the server from a shell."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import time
from pathlib import Path

import polars as pl
import pytest

from crypto_lakehouse.devtools.serve import (
    _BIN,
    Progress,
    deploy_all,
    lakehouse_root,
    progress_line,
    start_prefect_server,
    start_worker,
    stop,
    summary_lines,
)
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
        deployed = deploy_all(env, PROJECT)
        listed = subprocess.run(
            [str(_BIN / "prefect"), "deployment", "ls"], env=env, capture_output=True, text=True, check=True
        ).stdout
        for name in ("promote-silver", "build-gold", "backfill", "archive-import", "compact", "vacuum", "retention"):
            assert name in listed and name in deployed, name
        assert all(name in listed for name in deployed)  # what `make serve` reports as deployed
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


def test_serve_summary_says_where_the_ui_the_root_and_the_api_are(tmp_path: Path) -> None:
    lines = summary_lines(port=4321, root="/data/lake", logs=tmp_path / "logs")
    assert "Prefect UI:      http://127.0.0.1:4321" in lines
    assert "lakehouse root:  /data/lake" in lines
    # on a line of its own, so `eval "$(make serve | grep ^export)"` works
    assert lines[-1] == "export PREFECT_API_URL=http://127.0.0.1:4321/api"
    assert any(str(tmp_path / "logs") in line and "make stop" in line for line in lines)


def test_serve_progress_lines_name_the_step_and_the_seconds(capsys: pytest.CaptureFixture[str]) -> None:
    assert progress_line(12.34, "server", "healthy") == "[  12.3 s] server      healthy"
    assert progress_line(0, "deployments", "10 deployed") == "[   0.0 s] deployments 10 deployed"
    say = Progress()
    say("worker", "polling (pid 1)")
    assert capsys.readouterr().out == "[   0.0 s] worker      polling (pid 1)\n"


def test_serve_root_is_absolute_against_the_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LAKEHOUSE_ROOT", raising=False)
    assert lakehouse_root(tmp_path) == str(tmp_path.resolve() / "lakehouse_data")  # the embedded default
    monkeypatch.setenv("LAKEHOUSE_ROOT", "s3://bucket/lake")
    assert lakehouse_root(tmp_path) == "s3://bucket/lake"
