"""The catalog: txn-tagged appends, and change reads that only ever return appended rows."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from crypto_lakehouse.storage import Catalog


def _rows(ids: list[int]) -> pa.Table:
    from datetime import UTC, datetime

    from crypto_lakehouse.schemas import SILVER

    spec = SILVER["silver.trades"]
    now = datetime(2026, 11, 1, tzinfo=UTC)
    return pa.Table.from_pylist(
        [
            {
                "exchange": "BINANCE",
                "symbol": "BTC-USDT",
                "date": now.date(),
                "ts": now,
                "receipt_ts": now,
                "id": i,
                "side": "buy",
                "price": 1.0,
                "amount": 1.0,
                "source": "stream",
            }
            for i in ids
        ],
        schema=spec.schema,
    )


def test_changes_return_appended_rows_only(tmp_path: Path) -> None:
    c = Catalog(tmp_path)
    c.append("silver.trades", _rows([1, 2, 3]))
    c.append("silver.trades", _rows([4, 5]))
    c.open("silver.trades").delete("id = 1")  # a delete rewrites the file holding 2 and 3
    c.append("silver.trades", _rows([6]))
    got = sorted(c.changes("silver.trades", after=0, upto=c.open("silver.trades").version()).column("id").to_pylist())
    assert got == [4, 5, 6]


def test_append_with_a_committed_transaction_is_skipped_on_retry(tmp_path: Path) -> None:
    c = Catalog(tmp_path)
    assert c.append("silver.trades", _rows([1]), app_id="w", version=1)
    assert c.committed_version("silver.trades", "w") == 1
    assert c.committed_version("silver.trades", "other") is None
