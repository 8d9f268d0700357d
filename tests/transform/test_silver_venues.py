"""Silver never assumes Binance, end to end: bronze rows of other venues written directly (as the
writer would), promoted with the venue registry; and a silver.trades table written by the
previous release (integer ids only, no trade_id/trade_key) still promotes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pyarrow as pa

from crypto_lakehouse.schemas import SESSIONS, SILVER
from crypto_lakehouse.storage import Catalog
from crypto_lakehouse.transform.silver import SilverOptions, promote_silver

from .helpers import write_bronze

T0 = datetime(2026, 11, 20, 12, tzinfo=UTC)
OPTS = SilverOptions()
UUIDS = [f"5f1c8d5e-0f6a-5e3b-9b0a-{i:012x}" for i in range(6)]


def _at(s: float) -> datetime:
    return T0 + timedelta(seconds=s)


def _trades(exchange: str, symbol: str, ids: list[str | None]) -> list[dict[str, object]]:
    return [
        {"exchange": exchange, "symbol": symbol, "ts": _at(i), "receipt_ts": _at(i + 0.01), "id": trade_id,
         "side": "buy" if i % 2 else "sell", "price": f"{100 + i}", "amount": "0.5"}
        for i, trade_id in enumerate(ids)
    ]  # fmt: skip


def _book(exchange: str, symbol: str, updates: list[tuple[int, bool]]) -> list[dict[str, object]]:
    return [
        {"exchange": exchange, "symbol": symbol, "ts": _at(i), "receipt_ts": _at(i + 0.01), "sequence": seq,
         "snapshot": snap, "side": side, "price": "100", "size": "1"}
        for i, (seq, snap) in enumerate(updates)
        for side in ("bid", "ask")
    ]  # fmt: skip


def _sessions(catalog: Catalog, exchange: str, symbols: list[str], *, end: float) -> None:
    rows = [
        {"exchange": exchange, "writer_id": "w", "session_id": "s", "event": event, "at": at,
         "symbols": symbols, "channels": ["trades", "l2_book"], "reason": why}
        for event, at, why in (("start", _at(-1), None), ("end", _at(end), "stopped"))
    ]  # fmt: skip
    catalog.append(SESSIONS.name, SESSIONS.schema.empty_table().from_pylist(rows, schema=SESSIONS.schema))


def _read(root: Path, table: str) -> pl.DataFrame:
    return pl.read_delta(str(root / "silver" / table))


def test_bybit_uuid_trades_and_per_update_book_with_a_break(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path)
    perp = "BTC-USDT-PERP"
    trades = _trades("BYBIT", perp, UUIDS)
    # a re-delivered trade (the same UUID, e.g. a reconnect replaying the last trades)
    write_bronze(catalog, "bronze.trades", [*trades, trades[-1]])
    # bitFlyer: no ids; two distinct trades that look alike in one commit, and one bronze row twice
    flyer = _trades("BITFLYER", "BTC-JPY", [None, None, None])
    flyer[1] = {**flyer[0]}
    write_bronze(catalog, "bronze.trades", flyer)
    write_bronze(
        catalog,
        "bronze.book",
        _book("BYBIT", perp, [(500, True), (501, False), (502, False), (506, False), (507, False)]),
    )
    _sessions(catalog, "BYBIT", [perp], end=10)
    now = _at(600)

    result = promote_silver(catalog, options=OPTS, now=now)

    assert not (tmp_path / "silver" / "quarantine").exists() or _read(tmp_path, "quarantine").is_empty()
    silver = _read(tmp_path, "trades")
    bybit = silver.filter(exchange="BYBIT").sort("ts")
    assert bybit["trade_id"].to_list() == UUIDS and bybit["trade_key"].to_list() == UUIDS
    assert bybit["id"].null_count() == len(UUIDS)  # no integer invented
    assert silver.filter(exchange="BITFLYER").height == 3  # look-alikes kept
    totals = result.totals()
    assert totals["silver.trades"]["duplicates"] == 1  # the re-delivered UUID only

    gaps = _read(tmp_path, "gaps")
    assert gaps.filter(check="trade_ids:contiguous").is_empty(), "no id gap from UUIDs"
    (brk,) = gaps.filter(table="silver.book").iter_rows(named=True)
    assert (brk["first_id"], brk["last_id"], brk["check"], brk["status"]) == (
        503,
        505,
        "book_sequence:per_update",
        "unfillable",
    )
    assert "jumped from 502 to 506" in brk["reason"]
    (tail,) = gaps.filter(check="coverage:sessions").iter_rows(named=True)
    assert (tail["start"], tail["end"], tail["status"]) == (_at(10), now, "unfillable")
    assert "BYBIT's REST serves only its latest trades" in tail["reason"]

    report = _read(tmp_path, "dq_report").filter(pl.col("metric").str.starts_with("check:"), exchange="BYBIT")
    checks = {m: (v, d) for m, v, d in report.select("metric", "value", "detail").iter_rows()}
    assert checks["check:trade_ids"] == (0, "skipped: opaque ids")
    assert checks["check:coverage"][0] == 1
    assert checks["check:book_sequence"] == (1, "per_update: each update's sequence is the previous one + 1")

    # a later run: nothing new, nothing retried (no backfiller is even given one), nothing lost
    # the same look-alike in a new commit of the writer (another batch): a new trade, kept
    write_bronze(catalog, "bronze.trades", [{**_trades("BITFLYER", "BTC-JPY", [None])[0], "batch_id": 1}])
    promote_silver(catalog, options=OPTS, now=now + timedelta(minutes=5))
    assert _read(tmp_path, "trades").filter(exchange="BITFLYER").height == 4
    promote_silver(catalog, options=OPTS, now=now, start=_at(-60), end=_at(60))  # reprocess: re-deliveries only
    assert _read(tmp_path, "trades").filter(exchange="BITFLYER").height == 4
    again = _read(tmp_path, "gaps")
    assert set(again["status"]) == {"unfillable"} and again["attempts"].sum() == 0


def test_a_silver_trades_table_of_the_previous_release_still_promotes(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path)
    spec = SILVER["silver.trades"]
    old = pa.schema(
        [
            f.with_nullable(False) if f.name == "id" else f
            for f in spec.schema
            if f.name not in ("trade_id", "trade_key")
        ]
    )
    stored = _trades("BINANCE", "BTC-USDT", ["7"])[0]
    row = {**stored, "id": 7, "price": 100.0, "amount": 0.5, "date": T0.date(), "source": "stream"}
    catalog.append("silver.trades", pa.Table.from_pylist([row], schema=old))

    write_bronze(catalog, "bronze.trades", _trades("BINANCE", "BTC-USDT", ["7", "8"]))  # 7 again, and 8
    write_bronze(catalog, "bronze.trades", _trades("BYBIT", "BTC-USDT-PERP", UUIDS[:1]))
    result = promote_silver(catalog, options=OPTS, now=_at(60))

    silver = _read(tmp_path, "trades").sort("exchange", "id")
    assert silver.select("exchange", "id", "trade_id", "trade_key").rows() == [
        ("BINANCE", 7, None, None),  # the old row, as it was: its key is read as its id
        ("BINANCE", 8, "8", "8"),
        ("BYBIT", None, UUIDS[0], UUIDS[0]),  # id became nullable on the first append
    ]
    assert result.totals()["silver.trades"]["duplicates"] == 1
