"""Validation in silver: the quarantine row hash is stable (column order, process), non-finite
numbers are quarantined with a rule of their own, and the future bound on exchange time is judged
against when the row was received, not when the run started."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from crypto_lakehouse.schemas import SILVER
from crypto_lakehouse.storage import Catalog
from crypto_lakehouse.transform import silver
from crypto_lakehouse.transform.silver import SilverOptions, promote_silver

from .helpers import valid_bronze_fields, write_bronze

T0 = datetime(2026, 11, 20, 12, tzinfo=UTC)
NO_BACKFILL = SilverOptions(backfill=False)


def _read(root: Path, table: str) -> pl.DataFrame:
    return pl.read_delta(str(root / "silver" / table))


def _bad_trade() -> dict:
    return {
        "exchange": "BINANCE",
        "symbol": "BTC-USDT",
        "ts": T0,
        "receipt_ts": T0 + timedelta(milliseconds=3),
        "id": "7",
        "side": "hold",  # unknown_side
        "price": "100.5",
        "amount": "0.25",
        "type": None,
    }


# ------------------------------------------------------------------------------ 12.9 row hash

_HASH_SCRIPT = """
import json, sys
from datetime import datetime
import polars as pl
from crypto_lakehouse.transform import silver
row = json.loads(sys.argv[1])
for c in ("ts", "receipt_ts"):
    row[c] = datetime.fromisoformat(row[c])
df = pl.DataFrame([row], schema_overrides={"ts": pl.Datetime("us", "UTC"), "receipt_ts": pl.Datetime("us", "UTC")})
df = df.select(list(reversed(df.columns)))
_, q = silver._validate(silver.PLANS["silver.trades"], df, datetime.fromisoformat(sys.argv[2]), silver.SilverOptions())
print(q["row_hash"][0], q["raw"][0])
"""


def _frame(row: dict) -> pl.DataFrame:
    return pl.DataFrame(
        [row],
        schema_overrides={"ts": pl.Datetime("us", "UTC"), "receipt_ts": pl.Datetime("us", "UTC"), "type": pl.String},
    )


def test_quarantine_row_hash_ignores_column_order_and_is_equal_across_processes() -> None:
    plan, now = silver.PLANS["silver.trades"], T0 + timedelta(minutes=1)
    df = _frame(_bad_trade())
    _, q1 = silver._validate(plan, df, now, SilverOptions())
    _, q2 = silver._validate(plan, df.select(list(reversed(df.columns))), now, SilverOptions())
    # change-data reads put the partition columns last
    moved = df.select([c for c in df.columns if c not in ("exchange", "symbol")] + ["exchange", "symbol"])
    _, q3 = silver._validate(plan, moved, now, SilverOptions())
    assert q1["rule"].to_list() == ["unknown_side"]
    assert q1["row_hash"][0] == q2["row_hash"][0] == q3["row_hash"][0]
    assert q1["raw"][0] == q2["raw"][0] == q3["raw"][0]  # the stored JSON, too
    assert json.loads(q1["raw"][0])["side"] == "hold"

    row = {**_bad_trade(), "ts": T0.isoformat(), "receipt_ts": (T0 + timedelta(milliseconds=3)).isoformat()}
    out = subprocess.run(
        [sys.executable, "-c", _HASH_SCRIPT, json.dumps(row), now.isoformat()],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    h, raw = out.split(" ", 1)
    assert int(h) == q1["row_hash"][0] and raw == q1["raw"][0]


def test_the_same_bad_row_from_a_later_commit_and_a_reprocess_is_quarantined_once(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path)
    write_bronze(catalog, "bronze.trades", [_bad_trade()])
    promote_silver(catalog, options=NO_BACKFILL)  # first run: the whole snapshot
    write_bronze(catalog, "bronze.trades", [_bad_trade()])  # the same row again (a replayed batch)
    promote_silver(catalog, options=NO_BACKFILL)  # change-data read: partition columns last
    promote_silver(catalog, options=NO_BACKFILL, start=T0 - timedelta(hours=1), end=T0 + timedelta(hours=1))
    q = _read(tmp_path, "quarantine")
    assert q.height == 1, q  # old code: 2 (the hash followed the column order)


# ------------------------------------------------------------------------------ 12.10 non-finite

SPELLINGS = ["NaN", "nan", "-NaN", "inf", "-inf", "Infinity", "-Infinity", "1e999", "-1e999"]
_BASE = valid_bronze_fields(T0)
NUMERIC = {
    "bronze.trades": ["price", "amount"],
    "bronze.book": ["price", "size"],
    "bronze.ticker": ["bid", "bid_size", "ask", "ask_size"],
    "bronze.funding": ["mark_price", "index_price", "rate", "predicted_rate"],
    "bronze.liquidations": ["quantity", "price"],
    "bronze.candles": ["open", "high", "low", "close", "volume"],
}


def _unique(table: str, row: dict, i: int) -> dict:
    """``row`` with its natural key made unique by ``i``."""
    out = {**row, "ts": T0 + timedelta(seconds=i), "receipt_ts": T0 + timedelta(seconds=i, milliseconds=2)}
    if "id" in out:
        out["id"] = str(1000 + i)
    if "sequence" in out:
        out["sequence"] = 1000 + i
    if table == "bronze.candles":
        out["start"] = T0 + timedelta(minutes=i - 1)
        out["stop"] = T0 + timedelta(minutes=i) - timedelta(milliseconds=1)
        out["ts"] = T0 + timedelta(minutes=i)
        out["receipt_ts"] = out["ts"] + timedelta(milliseconds=2)
    return out


@pytest.mark.parametrize("table", list(NUMERIC))
def test_non_finite_numbers_are_quarantined_with_their_own_rule(tmp_path: Path, table: str) -> None:
    catalog = Catalog(tmp_path)
    base = {"exchange": "BINANCE", "symbol": "BTC-USDT", **_BASE[table]}
    rows, expected = [_unique(table, base, 0)], []
    for column in NUMERIC[table]:
        for spelling in SPELLINGS:
            rows.append(_unique(table, {**base, column: spelling}, len(rows)))
            expected.append((f"{column}_not_finite", column, spelling))
    write_bronze(catalog, table, rows)
    result = promote_silver(catalog, options=NO_BACKFILL, now=T0 + timedelta(hours=2))

    kind = table.split(".")[1]
    got = _read(tmp_path, kind)
    assert got.height == 1  # only the good row
    floats = [f.name for f in SILVER[f"silver.{kind}"].schema if str(f.type) == "double"]
    assert all(math.isfinite(v) for c in floats for v in got[c].drop_nulls())
    q = _read(tmp_path, "quarantine")
    found = sorted(
        (rule, column, json.loads(raw)[column])
        for rule, raw in q.select("rule", "raw").iter_rows()
        for column in [rule.removesuffix("_not_finite")]
    )
    assert found == sorted(expected)  # old code: most passed into silver, the rest under other rules
    totals = result.totals()[f"silver.{kind}"]
    assert totals["rows_out"] == 1


# ------------------------------------------------------------------------------ 19.2 future bound


def test_a_row_received_after_the_runs_start_is_not_quarantined(tmp_path: Path) -> None:
    """A run's ``now`` is taken once; a row committed while it runs (received a minute later,
    stamped a second before its receipt) is valid. The future bound is ts <= receipt_ts + skew."""
    catalog = Catalog(tmp_path)
    run_start = T0
    late = T0 + timedelta(minutes=1)
    ok = {**_bad_trade(), "side": "buy", "id": "1", "ts": late - timedelta(seconds=1), "receipt_ts": late}
    skewed = {**ok, "id": "2", "ts": late + timedelta(seconds=5)}  # within the 10 s skew of its receipt
    future = {**ok, "id": "3", "ts": late + timedelta(minutes=10)}  # 10 min after its receipt: bad
    write_bronze(catalog, "bronze.trades", [ok, skewed, future])
    promote_silver(catalog, options=NO_BACKFILL, now=run_start)
    assert sorted(_read(tmp_path, "trades")["id"].to_list()) == [1, 2]  # old code: [] (all ts_out_of_bounds)
    q = _read(tmp_path, "quarantine")
    assert q.select("rule").to_series().to_list() == ["ts_out_of_bounds"]
    assert json.loads(q["raw"][0])["id"] == "3"


# ------------------------------------------------------------------------------ 18.2 key conflicts


def test_a_stored_key_with_other_values_is_a_quarantined_conflict_not_a_silent_duplicate(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A restarted synthetic market reused trade ids: silver dropped 26,536 new trades as
    'duplicates' without a word. A row whose key silver holds with other values is a conflict:
    the stored row stays, the new one goes to the quarantine (rule key_conflict) with a warning;
    a true duplicate (same values) is still dropped quietly."""

    def trade(i: int, price: str) -> dict:
        t = T0 + timedelta(seconds=i)
        return {"exchange": "BINANCE", "symbol": "BTC-USDT", "ts": t, "receipt_ts": t, "id": str(i)} | {
            "side": "buy",
            "price": price,
            "amount": "0.5",
        }

    catalog = Catalog(tmp_path)
    write_bronze(catalog, "bronze.trades", [trade(i, "100.5") for i in range(1, 11)])
    promote_silver(catalog, options=NO_BACKFILL)
    # ids 1-5 again, identical (a replayed batch); ids 6-10 again at another price (another market)
    write_bronze(
        catalog, "bronze.trades", [trade(i, "100.5") for i in range(1, 6)] + [trade(i, "7.0") for i in range(6, 11)]
    )
    with caplog.at_level("WARNING", logger="crypto_lakehouse.transform.silver"):
        result = promote_silver(catalog, options=NO_BACKFILL)
    trades = _read(tmp_path, "trades")
    assert trades.height == 10 and set(trades["price"]) == {100.5}  # the stored rows are kept
    q = _read(tmp_path, "quarantine")
    assert sorted(json.loads(r)["id"] for r in q.filter(pl.col("rule") == "key_conflict")["raw"]) == list(range(6, 11))
    assert any("5 rows carry a key silver already holds with OTHER values" in r.message for r in caplog.records)
    totals = result.totals()["silver.trades"]
    assert totals["quarantined:key_conflict"] == 5 and totals["duplicates"] == 5
