"""A writer's local state (spool, id lock, live registry, cryptofeed log) belongs to its root,
never to the working directory: a lock holds across directories, a spool is applied only to the
root it was made for, and a stream that committed nothing exits non-zero."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from crypto_lakehouse import LakehouseError
from crypto_lakehouse.ingest import BronzeWriter
from crypto_lakehouse.loopback import MarketSpec, running_exchange
from crypto_lakehouse.storage import Catalog, state

LAKEHOUSE = [sys.executable, "-m", "crypto_lakehouse.cli"]


def _stream(rest_url: str, root: Path, cwd: Path, *extra: str) -> subprocess.Popen:
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [*LAKEHOUSE, "stream", "--endpoint", rest_url, "--root", str(root), "--symbols", "BTC-USDT"]
        + ["--channels", "trades", "--no-progress", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
        env={
            **os.environ,
            "LAKEHOUSE_WRITER__ID": "w",
            "LAKEHOUSE_WRITER__MAX_AGE": "100ms",
            "LAKEHOUSE_WRITER__RETRIES": "0",
            "LAKEHOUSE_WRITER__RETRY_BACKOFF": "10ms",
        },
    )


def test_state_directory_is_one_per_root_whatever_its_spelling(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "lake").mkdir()
    same = {state.state_dir("lake"), state.state_dir(tmp_path / "lake"), state.state_dir(f"file://{tmp_path}/lake")}
    assert len(same) == 1
    assert (same.pop() / "ROOT").read_text().strip() == str(tmp_path / "lake")
    assert state.state_dir(tmp_path / "other" / "lake") != state.state_dir(tmp_path / "lake")
    assert state.state_dir("s3://bucket/lake") != state.state_dir("/lake")


def test_a_writer_id_is_locked_per_root_across_working_directories(tmp_path: Path) -> None:
    """Two `lakehouse stream` of one writer id into one root, started from different directories,
    both ran (34,864 rows reported committed, 33,910 in the table): the lock was in ./."""
    root = tmp_path / "lake"
    with running_exchange(market=MarketSpec(exchange="BINANCE", symbols=["BTCUSDT"], rate=500)) as ex:
        first = _stream(ex.rest_url, root, tmp_path / "a", "--duration", "60")
        try:
            deadline = time.monotonic() + 30
            while not (root / "bronze" / "trades").exists():  # the first holds the lock and commits
                assert time.monotonic() < deadline and first.poll() is None, first.stderr
                time.sleep(0.1)
            second = _stream(ex.rest_url, root, tmp_path / "b", "--duration", "5")
            out, err = second.communicate(timeout=60)
        finally:
            first.terminate()
            first.communicate(timeout=60)
    assert second.returncode != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "writer id 'w' is in use by another process" in lines[0], err
    assert not list((tmp_path / "a").iterdir()) and not list((tmp_path / "b").iterdir())  # nothing in ./


def test_a_spool_made_for_a_wrong_root_is_never_applied_to_another(tmp_path: Path) -> None:
    """Streaming with a wrong root (under a file: every write fails) spooled its rows and exited
    0; the next run with the right root dropped them as 'already committed' (the right root had
    batch 1 of that id). (A root that is itself a file is refused at once: tests/test_cli.py.)"""
    root, wrong = tmp_path / "lake", tmp_path / "a-file" / "lake"
    wrong.parent.write_text("not a lakehouse")
    with running_exchange(market=MarketSpec(exchange="BINANCE", symbols=["BTCUSDT"], rate=500)) as ex:
        ok = _stream(ex.rest_url, root, tmp_path / "run", "--duration", "2")
        assert ok.wait(timeout=60) == 0
        bad = _stream(ex.rest_url, wrong, tmp_path / "run", "--duration", "2")
        out, err = bad.communicate(timeout=60)
        assert bad.returncode != 0, out
        assert "nothing was committed" in err.strip().splitlines()[-1], err
        spooled = sorted((state.spool_dir(wrong) / "w" / "bronze.trades").glob("*.arrow"))
        assert spooled  # the rows wait for their own root
        again = _stream(ex.rest_url, root, tmp_path / "run", "--duration", "2")
        out, err = again.communicate(timeout=60)
    assert again.returncode == 0, err
    assert "dropping" not in err
    assert sorted((state.spool_dir(wrong) / "w" / "bronze.trades").glob("*.arrow")) == spooled
    assert not (tmp_path / "run" / "feedhandler.log").exists()  # cryptofeed's log is in the root's state
    assert (state.state_dir(root) / "feedhandler.log").exists()


def test_a_shared_spool_directory_refuses_batches_of_another_root(tmp_path: Path) -> None:
    """With an explicit spool directory shared by two roots, a writer never applies (or drops)
    batches spooled for the other root: it stops, naming that root."""
    blocker = tmp_path / "blocker"
    blocker.write_text("a file: every write under it fails")
    spool = tmp_path / "spool"

    async def spool_one() -> None:
        w = BronzeWriter(Catalog(blocker / "lake"), writer_id="w", spool_dir=spool, retries=0, backoff_s=0.01)
        await w.start()
        w.add("bronze.trades", ("BINANCE", "BTC-USDT", 1.7e9, time.time(), "1", "buy", "1.5", "0.001", None))
        await w.flush()

    asyncio.run(spool_one())
    batches = sorted((spool / "w" / "bronze.trades").glob("*.arrow"))
    assert len(batches) == 1

    async def start_other() -> None:
        await BronzeWriter(Catalog(tmp_path / "other"), writer_id="w", spool_dir=spool).start()

    with pytest.raises(LakehouseError, match=f"for the root {blocker / 'lake'}, not {tmp_path / 'other'}"):
        asyncio.run(start_other())
    assert sorted((spool / "w" / "bronze.trades").glob("*.arrow")) == batches
