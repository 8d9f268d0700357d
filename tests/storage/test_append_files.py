"""Appends whose Parquet files pyarrow writes and delta-rs commits (``storage._parquet``): rows
round-trip through every reader, statistics are correct bounds (a pruned read equals an unpruned
one at the data's exact boundaries), the fallback to ``write_deltalake`` keeps creating, evolving
and escaping, commits stay exactly-once and concurrent appends lose nothing."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable, write_deltalake

from crypto_lakehouse.errors import CommitError
from crypto_lakehouse.schemas import BRONZE, SILVER, UTC_US
from crypto_lakehouse.storage import TABLE_PROPERTIES, Catalog, _parquet

TRADES = BRONZE["bronze.trades"]
T0 = datetime(2023, 11, 14, 22, 13, 20, 123456, tzinfo=UTC)
LONG = "L" * 33  # one character over the statistics limit
ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def _trades(batch: int, n: int = 60, *, symbols: tuple[str, ...] = ("BTC-USDT", "ETH-USDT")) -> pa.Table:
    """``n`` trades of batch ``batch``, symbols interleaved, over two days; sub-millisecond
    timestamps, some null; ids short and (for one row a batch) over 32 characters."""
    rows = []
    for i in range(n):
        ts = T0 + timedelta(days=i // 2 % 2, seconds=batch, microseconds=i * 1_001 + 7)
        rows.append(
            {
                "exchange": "BINANCE",
                "symbol": symbols[i % len(symbols)],
                "date": ts.date(),
                "ts": None if i % 17 == 5 else ts,
                "receipt_ts": ts + timedelta(microseconds=999),
                "id": f"{LONG}{batch}" if i == 3 else f"{batch:03d}-{i:04d}",
                "side": "buy" if i % 3 else "sell",
                "price": f"{100 + batch}.99" + "0" * 30 if i == 7 else f"{100 + batch}.{i:02d}",  # a long max
                "amount": "0.000" + "1" * 30 if i == 9 else f"0.{i + 1:03d}",  # a long min
                "type": None if i % 2 else "LIMIT",
                "writer_id": "w",
                "batch_id": batch,
            }
        )
    return pa.Table.from_pylist(rows, schema=TRADES.schema)


@pytest.fixture
def written(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the files the pyarrow path writes (one entry a call: its number of files)."""
    calls: list[int] = []
    real = _parquet.write_partitions

    def spy(parts: Any, **kwargs: Any) -> Any:
        actions = real(parts, **kwargs)
        calls.append(len(actions))
        return actions

    monkeypatch.setattr(_parquet, "write_partitions", spy)
    return calls


def _frame(data: pa.Table | pl.DataFrame) -> pl.DataFrame:
    df = data if isinstance(data, pl.DataFrame) else pl.from_arrow(data)
    assert isinstance(df, pl.DataFrame)
    utc = pl.col(pl.Datetime).dt.convert_time_zone("UTC")  # (DuckDB names it Etc/UTC)
    return df.select(TRADES.schema.names).with_columns(utc).sort("batch_id", "id")


def _log_adds(root: Path) -> Iterator[dict[str, Any]]:
    for f in sorted((root / "_delta_log").glob("*.json")):
        for line in f.read_text().splitlines():
            action = json.loads(line)
            if "add" in action:
                yield action["add"]


def _commit_infos(root: Path) -> list[dict[str, Any]]:
    out = []
    for f in sorted((root / "_delta_log").glob("*.json")):
        for line in f.read_text().splitlines():
            action = json.loads(line)
            if "commitInfo" in action:
                out.append(action["commitInfo"])
    return out


def test_rows_round_trip_through_every_reader(tmp_path: Path, written: list[int]) -> None:
    import duckdb

    c = Catalog(tmp_path)
    c.append("bronze.trades", _trades(0))  # creates the table: write_deltalake
    assert written == []
    batches = [_trades(b) for b in range(1, 5)]
    grouped = _trades(5).sort_by([("symbol", "ascending"), ("date", "ascending")])  # runs of rows: slices
    for b, data in enumerate([*batches, grouped], start=1):
        assert c.append("bronze.trades", data, app_id="w", version=b)
    assert written == [4] * 5  # 2 symbols x 2 days each time, all through pyarrow
    assert c.transaction_version("bronze.trades", "w") == 5

    expected = _frame(pa.concat_tables([_trades(0), *batches, grouped]))
    assert _frame(c.read("bronze.trades")).equals(expected)
    assert _frame(c.scan("bronze.trades").collect()).equals(expected)
    assert _frame(pl.scan_delta(c.uri("bronze.trades")).collect()).equals(expected)
    assert _frame(DeltaTable(c.uri("bronze.trades")).to_pyarrow_table()).equals(expected)
    con = duckdb.connect()
    con.register("trades", c.dataset("bronze.trades"))
    assert _frame(con.sql("select * from trades").pl()).equals(expected)

    table = tmp_path / "bronze" / "trades"
    paths = [a["path"] for a in _log_adds(table)][-20:]  # the pyarrow files
    for p in paths:
        assert re.fullmatch(
            r"exchange=BINANCE/symbol=(BTC|ETH)-USDT/date=2023-11-1[45]/part-00000-[0-9a-f-]{36}-c000\.zstd\.parquet", p
        ), p
        meta = pq.ParquetFile(table / p).metadata
        assert meta.row_group(0).column(0).compression == "ZSTD"
        assert {"exchange", "symbol", "date"}.isdisjoint(pq.read_schema(table / p).names)  # not in the file
    infos = _commit_infos(table)
    assert [i["operation"] for i in infos] == ["WRITE"] * 6
    assert all(i["operationParameters"]["mode"] == "Append" for i in infos)  # Catalog.changes counts them
    assert c.changes("bronze.trades", after=0, upto=5).num_rows == 5 * 60


def _boundary_filters(table: Path) -> dict[str, tuple[pl.Expr, pc.Expression]]:
    """Filters at the exact boundaries of each file's rows (its min and max of ts with
    sub-millisecond microseconds, receipt_ts, id, price, amount, type, batch_id): equal to the
    bound, up to / from it, and one microsecond (a character, 1) past it towards the inside."""
    out: dict[str, tuple[pl.Expr, pc.Expression]] = {}
    for add in _log_adds(table):
        rows = pq.read_table(table / add["path"])
        for name in ("ts", "receipt_ts", "id", "price", "amount", "type", "batch_id"):
            out[f"{name} is null"] = pl.col(name).is_null(), pc.field(name).is_null()
            out[f"{name} is not null"] = pl.col(name).is_not_null(), pc.field(name).is_valid()
            mm = pc.min_max(rows.column(name))
            lo, hi = mm["min"].as_py(), mm["max"].as_py()
            if lo is None:
                continue
            if isinstance(lo, datetime):
                step: Any = timedelta(microseconds=1)
                inside_lo, inside_hi = lo + step, hi - step
            elif isinstance(lo, str):
                inside_lo, inside_hi = lo + "\x00", hi[:-1]
            else:
                inside_lo, inside_hi = lo + 1, hi - 1
            typ = UTC_US if isinstance(lo, datetime) else None
            col, field = pl.col(name), pc.field(name)
            for op, v in (("==", lo), ("<=", lo), ("<", inside_lo), ("==", hi), (">=", hi), (">", inside_hi)):
                lit = pa.scalar(v, type=typ)
                expr = {"==": col == v, "<=": col <= v, "<": col < v, ">=": col >= v, ">": col > v}[op]
                arrow = {
                    "==": field == lit,
                    "<=": field <= lit,
                    "<": field < lit,
                    ">=": field >= lit,
                    ">": field > lit,
                }[op]
                out[f"{name} {op} {v!r}"] = expr, arrow
    return out


def test_a_pruned_read_equals_an_unpruned_one(tmp_path: Path, written: list[int]) -> None:
    c = Catalog(tmp_path)
    c.append("bronze.trades", _trades(0))
    for b in range(1, 4):
        c.append("bronze.trades", _trades(b))
    assert written == [4, 4, 4]
    table = tmp_path / "bronze" / "trades"
    full = _frame(c.frame("bronze.trades"))
    scan, dataset = c.scan("bronze.trades"), c.dataset("bronze.trades")
    filters = _boundary_filters(table)
    for label, (expr, arrow_filter) in filters.items():
        want = full.filter(expr)
        assert _frame(scan.filter(expr).collect()).equals(want), f"polars: {label}"
        assert _frame(dataset.to_table(filter=arrow_filter)).equals(want), f"pyarrow: {label}"
    assert len(filters) > 300


def test_statistics_are_bounds_of_each_files_rows(tmp_path: Path) -> None:
    c = Catalog(tmp_path)
    c.append("bronze.trades", _trades(0))
    c.append("bronze.trades", _trades(1))
    c.append("silver.trades", _silver_rows(nan=False))
    c.append("silver.trades", _silver_rows(nan=False))
    checked = {"exact": 0, "ms": 0, "prefix": 0}
    for table, spec, last in (
        (tmp_path / "bronze" / "trades", TRADES, 4),
        (tmp_path / "silver" / "trades", SILVER["silver.trades"], 1),
    ):
        for add in list(_log_adds(table))[-last:]:  # the pyarrow path's files
            rows = pq.read_table(table / add["path"])
            stats = json.loads(add["stats"])
            assert add["size"] == (table / add["path"]).stat().st_size
            assert add["dataChange"] is True
            assert set(add["partitionValues"]) == set(spec.partition_by)
            data_columns = [n for n in spec.schema.names if n not in spec.partition_by]
            assert rows.column_names == data_columns
            assert stats["numRecords"] == rows.num_rows
            assert stats["nullCount"] == {n: rows.column(n).null_count for n in data_columns}
            for name in data_columns:
                mm = pc.min_max(rows.column(name))
                lo, hi = mm["min"].as_py(), mm["max"].as_py()
                if lo is None:  # all null: no bounds (as delta-rs)
                    assert name not in stats["minValues"] and name not in stats["maxValues"]
                    continue
                s_lo, s_hi = stats["minValues"][name], stats["maxValues"][name]
                if isinstance(lo, datetime):
                    assert ISO_MS.match(s_lo) and ISO_MS.match(s_hi), (s_lo, s_hi)
                    p_lo = datetime.fromisoformat(s_lo.replace("Z", "+00:00"))
                    p_hi = datetime.fromisoformat(s_hi.replace("Z", "+00:00"))
                    assert p_lo <= lo < p_lo + timedelta(milliseconds=1), name  # floored
                    assert p_hi - timedelta(milliseconds=1) < hi <= p_hi, name  # ceiled
                    checked["ms"] += 1
                elif isinstance(lo, date):
                    assert (s_lo, s_hi) == (lo.isoformat(), hi.isoformat())
                    checked["exact"] += 1
                elif isinstance(lo, str) and max(len(lo), len(hi)) > 32:
                    assert s_lo <= lo and hi <= s_hi, name
                    assert len(s_lo) <= 32 and len(s_hi) <= 32 and lo.startswith(s_lo), name
                    checked["prefix"] += 1
                else:
                    assert (s_lo, s_hi) == (lo, hi), name  # exact: ints, floats, strings <= 32 chars
                    assert type(s_lo) is type(lo), name
                    checked["exact"] += 1
    assert checked["exact"] > 20 and checked["ms"] >= 10 and checked["prefix"] >= 3, checked


def test_string_upper_bounds_sort_after_every_string_with_the_prefix() -> None:
    from crypto_lakehouse.storage._parquet import _string_upper_bound

    prefix = "x" * 31
    for last in ("a", "\ud7ff", "\uffff", "\U0010ffff"):
        text = prefix + last + "\U0010ffff" * 3
        bound = _string_upper_bound(text)
        assert text < bound and len(bound) <= 32
        assert bound.encode() > text.encode()  # UTF-8 byte order, as readers compare
        bound.encode()  # (no surrogate)
    assert _string_upper_bound("short") == "short"
    assert _string_upper_bound("\U0010ffff" * 40) == "\U0010ffff" * 40  # none shorter: itself


def _silver_rows(*, nan: bool) -> pa.Table:
    spec = SILVER["silver.trades"]
    rows = [
        {
            "exchange": "BINANCE",
            "symbol": "BTC-USDT",
            "date": T0.date(),
            "ts": T0 + timedelta(microseconds=i * 333),
            "receipt_ts": T0,
            "id": i,
            "side": "buy",
            "price": float("nan") if nan and i == 4 else 1.25 * (i + 1),
            "amount": float(i + 1),
            "source": "stream",
        }
        for i in range(10)
    ]
    return pa.Table.from_pylist(rows, schema=spec.schema)


def test_a_file_holding_nan_has_no_bounds_and_reads_whole(tmp_path: Path, written: list[int]) -> None:
    """NaN is outside every float bound: such a file is written without min/max at all (a column
    missing from them would read as a null bound to deltalake, which then skips the file)."""
    c = Catalog(tmp_path)
    c.append("silver.trades", _silver_rows(nan=False))
    c.append("silver.trades", _silver_rows(nan=True))
    assert written == [1]
    stats = json.loads(list(_log_adds(tmp_path / "silver" / "trades"))[-1]["stats"])
    assert "minValues" not in stats and "maxValues" not in stats
    assert stats["numRecords"] == 10 and stats["nullCount"]["trade_id"] == 10 and stats["nullCount"]["price"] == 0
    full = c.frame("silver.trades")
    for expr, arrow_filter in (
        (pl.col("price") >= 12.5, pc.field("price") >= 12.5),
        (pl.col("price") < 1.25, pc.field("price") < 1.25),
        (pl.col("id") == 4, pc.field("id") == 4),
        (pl.col("ts") > T0, pc.field("ts") > pa.scalar(T0, UTC_US)),
    ):
        want = full.filter(expr).sort("id", "price")
        assert c.scan("silver.trades").filter(expr).collect().sort("id", "price").equals(want, null_equal=True)
        got = c.dataset("silver.trades").to_table(filter=arrow_filter)  # (Arrow: NaN compares false)
        in_memory = c.read("silver.trades").filter(arrow_filter)
        assert pl.DataFrame(got).sort("id", "price").equals(pl.DataFrame(in_memory).sort("id", "price"))


def test_the_fallback_creates_evolves_and_escapes(tmp_path: Path, written: list[int]) -> None:
    c = Catalog(tmp_path)
    # creation: write_deltalake, with the layer's table properties
    c.append("bronze.trades", _trades(0))
    assert written == []
    assert DeltaTable(c.uri("bronze.trades")).metadata().configuration == TABLE_PROPERTIES["bronze"]
    c.append("bronze.trades", _trades(1))
    assert written == [4]

    # unsafe partition values: delta-rs escapes them
    odd = _trades(2, symbols=("A/B", "C D", "BTC-USDT"))
    c.append("bronze.trades", odd)
    assert written == [4]
    got = _frame(c.read("bronze.trades"))
    assert got.equals(_frame(pa.concat_tables([_trades(0), _trades(1), odd])))
    assert sorted(set(got["symbol"])) == ["A/B", "BTC-USDT", "C D", "ETH-USDT"]
    assert c.scan("bronze.trades").filter(pl.col("symbol") == "A/B").collect().height == 20

    # a table of an earlier release, without a newer nullable column: evolved by write_deltalake,
    # then appended to by pyarrow
    old = pa.schema([f for f in TRADES.schema if f.name != "type"])
    evolve = Catalog(tmp_path / "evolve")
    write_deltalake(
        evolve.uri("bronze.trades"),
        _trades(0).drop_columns(["type"]).cast(old),
        partition_by=["exchange", "symbol", "date"],
    )
    evolve.append("bronze.trades", _trades(1))
    assert written == [4]
    assert "type" in [f.name for f in DeltaTable(evolve.uri("bronze.trades")).schema().fields]
    evolve.append("bronze.trades", _trades(2))
    assert written == [4, 4]
    frame = evolve.frame("bronze.trades").sort("batch_id", "id")
    assert frame.filter(pl.col("batch_id") == 0)["type"].null_count() == 60
    assert frame.filter(pl.col("batch_id") == 2)["type"].to_list() == _frame(_trades(2))["type"].to_list()


def test_a_committed_transaction_is_not_applied_twice_on_retry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The commit lands but the caller sees an error (a lost response): the retry finds the
    transaction committed and writes nothing."""
    c = Catalog(tmp_path)
    c.append("bronze.trades", _trades(0), app_id="w", version=0)
    real, calls = _parquet.commit, []

    def commit_then_fail(*args: Any, **kwargs: Any) -> None:
        real(*args, **kwargs)
        calls.append(1)
        raise OSError("connection reset after the commit landed")

    monkeypatch.setattr(_parquet, "commit", commit_then_fail)
    assert c.append("bronze.trades", _trades(1), app_id="w", version=1, retries=1, backoff_s=0.01) is False
    assert calls == [1]
    assert c.transaction_version("bronze.trades", "w") == 1
    assert c.frame("bronze.trades").height == 120  # batch 1 once

    monkeypatch.setattr(_parquet, "commit", lambda *a, **k: (_ for _ in ()).throw(OSError("refused")))
    with pytest.raises(CommitError, match="refused"):
        c.append("bronze.trades", _trades(2), app_id="w", version=2, retries=1, backoff_s=0.01)
    assert c.frame("bronze.trades").height == 120  # its files are written, never referenced
    assert c.transaction_version("bronze.trades", "w") == 1


def test_concurrent_appends_to_one_table_lose_nothing(tmp_path: Path, written: list[int]) -> None:
    c = Catalog(tmp_path)
    c.create("bronze.trades")
    errors: list[BaseException] = []

    def writer(name: str, first: int) -> None:
        try:
            for k in range(8):
                c.append("bronze.trades", _trades(first + k, n=30), app_id=name, version=k + 1)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(f"w{j}", 100 * j)) for j in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(written) == 16
    got = sorted(c.frame("bronze.trades")["batch_id"].to_list())
    assert got == sorted(b for j in range(2) for b in range(100 * j, 100 * j + 8) for _ in range(30))
    assert c.transaction_version("bronze.trades", "w0") == 8 and c.transaction_version("bronze.trades", "w1") == 8
    assert c.open("bronze.trades").version() == 16


def test_commits_write_checkpoints_at_the_tables_interval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, written: list[int]
) -> None:
    monkeypatch.setitem(TABLE_PROPERTIES["bronze"], "delta.checkpointInterval", "3")
    c = Catalog(tmp_path)
    c.append("bronze.trades", _trades(0))  # v0, made by write_deltalake with the interval
    for b in range(1, 7):  # v1..v6 by pyarrow + create_write_transaction
        c.append("bronze.trades", _trades(b), app_id="w", version=b)
    assert len(written) == 6
    log = tmp_path / "bronze" / "trades" / "_delta_log"
    checkpoints = sorted(int(p.name.split(".")[0]) for p in log.glob("*.checkpoint.parquet"))
    assert checkpoints and all(v >= 1 for v in checkpoints)
    assert json.loads((log / "_last_checkpoint").read_text())["version"] == checkpoints[-1]
    for v in range(0, checkpoints[-1] + 1):  # the log before the checkpoint is not needed to read
        (log / f"{v:020d}.json").unlink()
    assert c.frame("bronze.trades").height == 7 * 60
    assert c.transaction_version("bronze.trades", "w") == 6
