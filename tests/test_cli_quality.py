"""`lakehouse quality`: the completeness ledger as a table or JSON, and one-line errors naming
what the ledger holds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from crypto_lakehouse.storage import Catalog
from crypto_lakehouse.transform.plans import SilverOptions
from crypto_lakehouse.transform.silver import promote_silver
from tests.transform.helpers import write_bronze

LAKEHOUSE = [sys.executable, "-m", "crypto_lakehouse.cli"]
T0 = datetime(2026, 11, 20, tzinfo=UTC)


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*LAKEHOUSE, *args], capture_output=True, text=True, timeout=60, env={**os.environ})


def _lake(root: Path) -> None:
    """Two days of BINANCE BTC-USDT trades; the second misses ids 5-6 (backfill off: open)."""
    trades = [
        {"exchange": "BINANCE", "symbol": "BTC-USDT", "ts": T0 + timedelta(days=d, hours=i), "id": str(i + 4 * d),
         "side": "buy", "price": "100", "amount": "1"}
        for d, ids in ((0, (1, 2, 3, 4)), (1, (3, 4))) for i in ids
    ]  # fmt: skip
    write_bronze(Catalog(root), "bronze.trades", [{**t, "receipt_ts": t["ts"]} for t in trades])
    promote_silver(Catalog(root), options=SilverOptions(backfill=False), now=T0 + timedelta(days=3))


def test_quality_prints_the_ledger_and_names_what_exists(tmp_path: Path) -> None:
    root = tmp_path / "lake"
    missing = _run("quality", "--root", str(root))
    assert missing.returncode == 2 and "run `lakehouse promote silver` first" in missing.stderr
    _lake(root)

    table = _run("quality", "--root", str(root))
    assert table.returncode == 0, table.stderr
    lines = [line for line in table.stdout.splitlines() if "BTC-USDT" in line]
    assert len(lines) == 2 and "2026-11-20" in lines[0] and "1.0000" in lines[0]  # (no session: not proven complete)
    assert "2026-11-21" in lines[1] and "2/4" in lines[1] and "complete" not in lines[1]  # ids present/expected

    js = _run("quality", "--root", str(root), "--json", "--day", "2026-11-21", "--exchange", "binance")
    assert js.returncode == 0, js.stderr
    (row,) = json.loads(js.stdout)
    assert (row["ids_present"], row["ids_expected"], row["gaps_open"], row["complete"]) == (2, 4, 1, False)
    assert row["score"] == (2 / 4) / (1 + 1)

    for args, needle in (
        (("--day", "2026-11-25"), "no day 2026-11-25 in the completeness ledger; it has: 2026-11-20, 2026-11-21"),
        (("--exchange", "KRAKEN"), "no exchange KRAKEN in the completeness ledger; it has: BINANCE"),
    ):
        res = _run("quality", "--root", str(root), *args)
        assert res.returncode == 2 and needle in res.stderr, res.stderr
        assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr
