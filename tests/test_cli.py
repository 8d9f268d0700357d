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
    for cmd in (["config", "show"], ["demo"]):
        help_text = _run(*cmd, "--help").stdout
        assert "--config" in help_text and "--root" in help_text, cmd
    assert "--root" not in _run("exchange", "serve", "--help").stdout  # it reads no storage root


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


def _main(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``lakehouse *args`` in this process: (exit code, stdout, stderr)."""
    from crypto_lakehouse.cli import main

    monkeypatch.setattr(sys, "argv", ["lakehouse", *args])
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        ((), ["Missing command", "commands: stream, ingest-recording, backfill"]),
        (("promote",), ["Missing command", "'lakehouse promote' commands: silver, gold"]),
        (("bogus",), ["No such command 'bogus'", "commands: stream"]),
        (("maintain", "bogus"), ["No such command 'bogus'", "compact, checkpoint, vacuum, retention"]),
        (("--bogus",), ["No such option: --bogus", "options: --config, --help, --root, --version"]),
        (("tables", "--format", "csv"), ["No such option: --format", "'lakehouse tables' options: --config"]),
        (("tag", "create"), ["Missing argument 'NAME'", "lakehouse tag create -h"]),
        (("query",), ["Missing argument 'SQL'"]),
        (("stream", "--duration", "abc"), ["Invalid value for '--duration'"]),
        (("promote", "silver", "--tables", "Trade"), ["no silver table 'Trade' to promote; tables: trades, book"]),
        (("promote", "silver", "--start", "yesterday"), ["start 'yesterday' is not a time: use ISO 8601"]),
        (("promote", "silver", "--start", "2024-01-02", "--end", "2024-01-01"), ["is not after start"]),
        (
            (
                "backfill",
                "--exchange",
                "binance",
                "--symbol",
                "BTC-USDT",
                "--start",
                "2024-01-02",
                "--end",
                "2024-01-01",
            ),
            ["is not after start"],
        ),
    ],
)
def test_every_usage_mistake_is_one_line_and_exit_2(
    args: tuple[str, ...],
    needles: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("LAKEHOUSE_ROOT", str(tmp_path / "lake"))
    code, out, err = _main(monkeypatch, capsys, *args)
    assert code == 2, (out, err)
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: "), err
    assert "Traceback" not in err and out == ""
    for needle in needles:
        assert needle in err, err
    assert not (tmp_path / "lake").exists()  # refused before anything was written


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"LAKEHOUSE_SILVER__BACKFILL_REST": "http://x"}, "LAKEHOUSE_SILVER__BACKFILL_REST='http://x' is not valid"),
        ({"LAKEHOUSE_GOLD__INTERVALS": '["1m"'}, "gold.intervals: not a JSON list"),
        ({"LAKEHOUSE_GOLD__INTERVALS": "1m,nope"}, "gold.intervals"),
    ],
)
def test_a_bad_environment_variable_is_one_line_naming_it(
    env: dict[str, str], needle: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    code, _, err = _main(monkeypatch, capsys, "config", "show")
    assert code == 2 and len(err.strip().splitlines()) == 1 and needle in err, err


def test_lists_in_environment_variables_are_json_or_comma_separated(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LAKEHOUSE_GOLD__INTERVALS", "1m, 5m")
    monkeypatch.setenv("LAKEHOUSE_STREAM__SYMBOLS", '["BTC-USDT-PERP"]')
    code, out, err = _main(monkeypatch, capsys, "config", "show")
    assert code == 0, err
    shown = json.loads(out)
    assert shown["gold"]["intervals"] == ["1m", "5m"] and shown["stream"]["symbols"] == ["BTC-USDT-PERP"]


def test_help_version_and_options_before_the_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _main(monkeypatch, capsys, "-h")
    assert code == 0 and "Usage: lakehouse" in out
    code, out, _ = _main(monkeypatch, capsys, "promote", "silver", "-h")
    assert code == 0 and "--tables" in out
    code, out, _ = _main(monkeypatch, capsys, "--version")
    assert code == 0 and out.startswith("crypto-lakehouse ")
    config = tmp_path / "c.yaml"
    config.write_text("gold:\n  intervals: [2m]\n")
    code, out, err = _main(
        monkeypatch, capsys, "--root", str(tmp_path / "a"), "--config", str(config), "config", "show"
    )
    assert code == 0, err
    assert json.loads(out)["root"] == str(tmp_path / "a") and json.loads(out)["gold"]["intervals"] == ["2m"]
    # the command's own option wins over the one given before it
    code, out, _ = _main(
        monkeypatch, capsys, "--root", str(tmp_path / "a"), "config", "show", "--root", str(tmp_path / "b")
    )
    assert json.loads(out)["root"] == str(tmp_path / "b")


def test_a_file_as_root_is_an_error_for_reads_and_jobs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    a_file = tmp_path / "notes.txt"
    a_file.write_text("not a lakehouse")
    for args in (
        ["tables"],
        ["query", "select 1"],
        ["promote", "silver"],
        ["promote", "gold"],
        ["history", "silver.trades"],
    ):
        code, out, err = _main(monkeypatch, capsys, *args, "--root", str(a_file))
        assert code == 2, (args, out, err)
        assert (
            err.strip()
            == f"error: storage root {a_file} is a file: give a directory (created on the first write) or s3://bucket/prefix"
        )


def test_stream_upper_cases_symbols_and_names_the_right_spelling_of_an_unknown_one(tmp_path: Path) -> None:
    from crypto_lakehouse.loopback import MarketSpec, running_exchange

    with running_exchange(
        market=MarketSpec(exchange="BINANCE_FUTURES", symbols=["BTCUSDT", "ETHUSDT"], rate=200)
    ) as ex:
        common = (
            "--endpoint",
            ex.rest_url,
            "--duration",
            "1",
            "--root",
            str(tmp_path / "lake"),
            "--channels",
            "trades",
        )
        wrong = _run("stream", "--symbols", "BTCUSDT", *common)
        typo = _run("stream", "--symbols", "BTC-USDT-PERP,ETH-USDT-PRP", *common)
        lower = _run("stream", "--symbols", "btc-usdt-perp", *common)
    assert wrong.returncode == 2 and wrong.stderr.strip().splitlines() == [
        "error: BTCUSDT is not a BINANCE_FUTURES symbol (4 listed; cryptofeed writes it BTC-USDT-PERP)"
    ], wrong.stderr
    assert typo.returncode == 2 and len(typo.stderr.strip().splitlines()) == 1, typo.stderr
    assert "ETH-USDT-PRP is not a BINANCE_FUTURES symbol" in typo.stderr and "closest: ETH-USDT-PERP" in typo.stderr
    assert lower.returncode == 0, lower.stderr
    assert "bronze.trades" in json.loads(lower.stdout)["tables"]  # subscribed and streamed (rows: timing)


def test_an_s3_root_without_credentials_is_one_line_saying_how_to_give_them(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k != "RUST_LOG"}
    env.update(AWS_EC2_METADATA_DISABLED="true", HOME=str(tmp_path))  # no instance role, no ~/.aws
    res = subprocess.run(
        [*LAKEHOUSE, "tables", "--root", "s3://no-such-bucket/lake"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: storage: "), res.stderr  # no WARN lines from delta-rs
    assert "AWS_ACCESS_KEY_ID" in lines[0] and "storage_options" in lines[0]
