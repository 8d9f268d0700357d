"""The `lakehouse` command: --config/--root everywhere, one-line errors with exit code 2."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

LAKEHOUSE = [sys.executable, "-m", "crypto_lakehouse.cli"]


def _run(*args: str, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*LAKEHOUSE, *args], capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})}
    )


def test_every_command_accepts_config_and_root() -> None:
    for cmd in (["config", "show"], ["exchange", "serve"], ["demo"]):
        help_text = _run(*cmd, "--help").stdout
        assert "--config" in help_text and "--root" in help_text, cmd


def test_config_show_applies_root_flag_over_env(tmp_path: Path) -> None:
    res = _run("config", "show", "--root", str(tmp_path), env={"LAKEHOUSE_ROOT": "/elsewhere"})
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["root"] == str(tmp_path)


@pytest.mark.parametrize(
    ("yaml_text", "env", "needle"),
    [
        ("writer:\n  max_rows: -1\n", {}, "writer.max_rows"),
        ("nonsense: true\n", {}, "nonsense: unknown key"),
        ("", {"LAKEHOUSE_GOLD__INTERVALS": '["1m","soon"]'}, "gold.intervals.1"),
    ],
)
def test_bad_config_exits_2_with_one_line_and_no_traceback(
    tmp_path: Path, yaml_text: str, env: dict, needle: str
) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml_text)
    for cmd in (["config", "show"], ["exchange", "serve"]):
        res = _run(*cmd, "--config", str(cfg), env=env)
        assert res.returncode == 2, (cmd, res.stderr)
        assert needle in res.stderr
        assert "Traceback" not in res.stderr + res.stdout
        assert len(res.stderr.strip().splitlines()) <= 3  # one message (rich may wrap it)


def test_missing_recording_and_busy_port_are_clear_errors(tmp_path: Path) -> None:
    res = _run("exchange", "serve", "--recording", str(tmp_path / "NOPE"))
    assert res.returncode == 2 and "not found" in res.stderr and "Traceback" not in res.stderr
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        res = _run("exchange", "serve", "--ws-port", str(port))
        assert res.returncode == 2 and "cannot listen" in res.stderr and "Traceback" not in res.stderr


def test_exchange_serve_prints_addresses_serves_rest_and_stops_on_sigterm(tmp_path: Path) -> None:
    cert = tmp_path / "cert.pem"
    proc = subprocess.Popen(
        [*LAKEHOUSE, "exchange", "serve", "--symbols", "BTCUSDT", "--cert-out", str(cert)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines = [proc.stdout.readline() for _ in range(4)]
        addrs = {k.rstrip(":"): v for k, v in (line.split() for line in lines[1:4])}
        assert addrs["wss"].startswith("wss://127.0.0.1:") and addrs["rest"].startswith("http://127.0.0.1:")
        with urllib.request.urlopen(addrs["rest"] + "/fapi/v1/exchangeInfo", timeout=5) as r:
            info = json.load(r)
        assert [s["symbol"] for s in info["symbols"]] == ["BTCUSDT"]
        assert cert.read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
        time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    assert '"mode": "synthetic"' in out


def test_ingest_recording_prints_a_json_summary(samples: Path, tmp_path: Path) -> None:
    res = _run(
        "ingest-recording",
        str(samples / "BINANCE_FUTURES"),
        "--root",
        str(tmp_path / "lake"),
        env={"LAKEHOUSE_WRITER__SPOOL_DIR": str(tmp_path / "spool")},
    )
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert summary["exchange"] == "BINANCE_FUTURES" and summary["frames"] == 1535
    assert summary["rows"]["bronze.trades"] == 91 and summary["rows"]["bronze.ticker"] == 613
    assert (tmp_path / "lake" / "bronze" / "trades" / "_delta_log").is_dir()


def test_a_read_command_never_aborts_at_exit(tmp_path: Path) -> None:
    """30 runs of `lakehouse query` over a table: every one exits 0 with the whole result (never
    134, the abort at interpreter exit that deltalake's Python filesystem caused)."""
    from concurrent.futures import ThreadPoolExecutor
    from datetime import UTC, datetime

    import pyarrow as pa

    from crypto_lakehouse.schemas import META
    from crypto_lakehouse.storage import Catalog

    now = datetime.now(UTC)
    rows = [{"name": f"t{i}", "table": "silver.trades", "version": i, "created_at": now} for i in range(100)]
    Catalog(tmp_path).append("meta.tags", pa.Table.from_pylist(rows, schema=META["meta.tags"].schema))

    def run(_: int) -> tuple[int, int]:
        res = _run("query", "select name from meta.tags", "--format", "csv", "--root", str(tmp_path))
        return res.returncode, len(res.stdout.split())

    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(run, range(30)))
    assert results == [(0, 101)] * 30  # exit 0, header + 100 names, every time
