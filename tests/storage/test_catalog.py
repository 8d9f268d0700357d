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
    assert c.transaction_version("silver.trades", "w") == 1
    assert c.transaction_version("silver.trades", "other") is None


def test_changes_count_every_append_when_commits_land_while_reading(tmp_path: Path, monkeypatch) -> None:
    """Commits landing between opening the table and reading its log must not shift which
    versions count as appends (deltalake 1.6.6 numbers history() from the loaded version)."""
    c = Catalog(tmp_path)
    for ids in ([1], [2] * 1 + [3], [4, 5]):  # v0, v1, v2
        c.append("silver.trades", _rows(ids))
    c.open("silver.trades").optimize.compact()  # v3: OPTIMIZE, adds no rows
    c.append("silver.trades", _rows([6, 7, 8]))  # v4
    assert c.open("silver.trades").version() == 4

    real_open = Catalog.open
    injected = []

    def open_then_two_commits_land(self: Catalog, table: str, *, version: int | None = None):
        dt = real_open(self, table, version=version)
        if not injected:
            injected.append(True)
            c.append("silver.trades", _rows([100]))  # v5
            c.append("silver.trades", _rows([101]))  # v6
        return dt

    monkeypatch.setattr(Catalog, "open", open_then_two_commits_land)
    got = sorted(c.changes("silver.trades", after=0, upto=4).column("id").to_pylist())
    assert injected
    assert got == [2, 3, 4, 5, 6, 7, 8]


def test_changes_skip_compaction_and_deletes_read_from_the_log(tmp_path: Path) -> None:
    c = Catalog(tmp_path)
    c.append("silver.trades", _rows([1, 2]))  # v0
    c.append("silver.trades", _rows([3]))  # v1
    c.open("silver.trades").optimize.compact()  # v2
    c.open("silver.trades").delete("id = 1")  # v3
    c.append("silver.trades", _rows([4]))  # v4
    assert sorted(c.changes("silver.trades", after=0, upto=4).column("id").to_pylist()) == [3, 4]
    assert sorted(c.changes("silver.trades", after=1, upto=3).column("id").to_pylist()) == []


def test_every_local_root_form_is_the_same_table(tmp_path: Path, monkeypatch) -> None:
    """`./dir`, `/abs` and `file:///abs` name one place: no stray `./file:` directory, and
    maintenance sees the same files through each."""
    from datetime import timedelta

    from crypto_lakehouse.maintenance import tasks

    monkeypatch.chdir(tmp_path)
    lake = tmp_path / "lake"
    Catalog("./lake").append("silver.trades", _rows([1]))
    Catalog(f"file://{lake}").append("silver.trades", _rows([2]))
    Catalog(str(lake)).open("silver.trades").optimize.compact()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lake"]  # nothing like ./file:
    for root in ("./lake", str(lake), f"file://{lake}", f"file://{lake}/"):
        c = Catalog(root)
        assert c.is_local and c.root == str(lake)
        assert c.uri("silver.trades") == f"{lake}/silver/trades"
        assert sorted(c.open("silver.trades").to_pyarrow_table().column("id").to_pylist()) == [1, 2]
    report = tasks.vacuum(Catalog(f"file://{lake}"), "silver.trades", horizon=timedelta(0))
    assert (report.files_before, report.files_after) == (3, 1)
    assert "2 files deleted" in report.detail


def test_processes_that_read_whole_tables_exit_cleanly(tmp_path: Path) -> None:
    """deltalake's default pyarrow filesystem made ~1 in 2 such scripts abort at exit here
    (rc 134, "terminate called without an active exception"); Catalog.read must never."""
    import subprocess
    import sys
    from concurrent.futures import ThreadPoolExecutor

    c = Catalog(tmp_path)
    for k in range(3):
        c.append("silver.trades", _rows(list(range(k * 1000, k * 1000 + 1000))))
    script = (
        "import sys\nfrom crypto_lakehouse.storage import Catalog\n"
        "t = Catalog(sys.argv[1]).read('silver.trades')\nassert t.num_rows == 3000\n"
    )

    def run(_: int) -> int:
        return subprocess.run(
            [sys.executable, "-c", script, str(tmp_path)], capture_output=True, timeout=120
        ).returncode

    with ThreadPoolExecutor(4) as pool:
        codes = list(pool.map(run, range(30)))
    assert codes == [0] * 30


def test_scan_and_frame_read_a_version_with_polars(tmp_path: Path) -> None:
    import polars as pl

    c = Catalog(tmp_path)
    c.append("silver.trades", _rows([1, 2]))
    c.append("silver.trades", _rows([3]))
    lf = c.scan("silver.trades", version=0)
    assert isinstance(lf, pl.LazyFrame)
    assert sorted(lf.collect()["id"]) == [1, 2]
    assert sorted(c.frame("silver.trades")["id"]) == [1, 2, 3]
    snapshot = c.open("silver.trades")
    c.append("silver.trades", _rows([4]))
    assert sorted(c.scan_snapshot(snapshot).collect()["id"]) == [1, 2, 3]  # the snapshot's version


def test_unchanged_since_sees_a_newer_commit_on_local_disk(tmp_path: Path) -> None:
    c = Catalog(tmp_path)
    c.append("silver.trades", _rows([1]))
    assert c.unchanged_since("silver.trades", 0)
    c.append("silver.trades", _rows([2]))
    assert not c.unchanged_since("silver.trades", 0)
    assert not Catalog("s3://bucket/lake").unchanged_since("silver.trades", 0)  # unknown: update


def test_local_paths_stay_in_the_catalog(tmp_path: Path) -> None:
    c, remote = Catalog(tmp_path), Catalog("s3://bucket/lake")
    assert c.duckdb_source("silver.trades") == f"delta_scan('{tmp_path}/silver/trades')"
    assert remote.duckdb_source("silver.trades") is None
    assert c.lock_file("silver.trades", purpose="compact") == tmp_path / "_locks" / "silver.trades.compact.lock"
    assert remote.lock_file("silver.trades", purpose="compact").name.endswith(".compact.lock")
    c.append("silver.trades", _rows([1]))
    files, size = c.stored_files("silver.trades")
    assert files == 1 and size > 0


def test_an_append_adds_the_columns_a_table_of_an_earlier_release_lacks(tmp_path: Path) -> None:
    """bronze.sessions gained `rest_url`: a root streamed by the earlier release keeps working,
    its old rows reading null there; a column outside the schema is never written."""
    from datetime import UTC, datetime

    import pytest
    from deltalake import write_deltalake

    from crypto_lakehouse.errors import LakehouseError
    from crypto_lakehouse.schemas import SESSIONS

    now = datetime.now(UTC)
    row = {"exchange": "BINANCE", "writer_id": "w", "session_id": "s", "event": "start", "at": now}
    row |= {"symbols": ["BTC-USDT"], "channels": ["trades"], "reason": None}
    old = pa.schema([f for f in SESSIONS.schema if f.name != "rest_url"])
    catalog = Catalog(tmp_path)
    write_deltalake(catalog.uri(SESSIONS.name), pa.Table.from_pylist([row], schema=old))
    catalog.append(
        SESSIONS.name, pa.Table.from_pylist([row | {"session_id": "t", "rest_url": "http://x"}], schema=SESSIONS.schema)
    )
    got = catalog.frame(SESSIONS.name).sort("session_id")
    assert got["session_id"].to_list() == ["s", "t"] and got["rest_url"].to_list() == [None, "http://x"]
    with pytest.raises(LakehouseError, match=r"has no column\(s\) \['nope'\]"):
        catalog.append(SESSIONS.name, pa.Table.from_pylist([row | {"nope": 1}]))


def test_a_table_made_when_its_column_docs_read_otherwise_stays_writable(tmp_path: Path) -> None:
    """A lake made by an earlier release holds the column docs of then: delta-rs refused every
    write through it once a doc had changed ("Cannot merge metadata with different values for
    key doc"), so the writer spooled every batch of such a table and never drained them."""
    from deltalake import DeltaTable, write_deltalake

    old_rows = _rows([1, 2])
    then = pa.schema([f.with_metadata({"doc": "how this column was described a release ago"}) for f in old_rows.schema])
    catalog = Catalog(tmp_path)
    write_deltalake(catalog.uri("silver.trades"), old_rows.cast(then), partition_by=["exchange", "symbol", "date"])
    catalog.append_against("silver.trades", _rows([3]), snapshot=catalog.open("silver.trades"))
    catalog.replace("silver.trades", _rows([1]), predicate="id = 1")
    ids = sorted(catalog.read("silver.trades").column("id").to_pylist())
    assert ids == [1, 2, 3]
    docs = {f.name: f.metadata.get("doc") for f in DeltaTable(catalog.uri("silver.trades")).schema().fields}
    assert docs["price"] == "how this column was described a release ago"  # the table's own, kept


def test_a_table_of_many_chunks_is_written_in_its_rows_order(tmp_path: Path) -> None:
    """Appends reach Delta as concatenated pieces (the stream writer's runs of rows): the rows
    read back in the order they were given, whether the append creates the table (deltalake's
    own writer, which wrote the chunks out of order) or appends to it."""
    c = Catalog(tmp_path)
    pieces = [_rows(list(range(a, b))) for a, b in ((0, 4096), (4096, 8190), (8190, 8290))]
    c.append("silver.trades", pa.concat_tables(pieces))  # creates the table
    assert c.read("silver.trades").column("id").to_pylist() == list(range(8290))
    created = c.open("silver.trades").version()
    c.append("silver.trades", pa.concat_tables([_rows([9000, 9001]), _rows([9002])]))
    added = c.changes("silver.trades", after=created, upto=created + 1)
    assert added.column("id").to_pylist() == [9000, 9001, 9002]


def test_a_reentrant_lock_lets_its_own_thread_in_and_no_other(tmp_path: Path) -> None:
    import threading

    import pytest

    from crypto_lakehouse.errors import TableBusy

    c = Catalog(tmp_path)
    outcome: list[str] = []

    def other_thread() -> None:
        try:
            with c.lock("gold.ohlcv", purpose="rebuild", wait=False, reentrant=True):
                outcome.append("entered")
        except TableBusy:
            outcome.append("busy")

    with c.lock("gold.ohlcv", purpose="rebuild", reentrant=True):
        with c.lock("gold.ohlcv", purpose="rebuild", wait=False, reentrant=True):  # its own thread: in
            t = threading.Thread(target=other_thread)
            t.start()
            t.join(10)
        with pytest.raises(TableBusy):  # not reentrant: it waits for itself (here: busy at once)
            with c.lock("gold.ohlcv", purpose="rebuild", wait=False):
                pass
    assert outcome == ["busy"]
    with c.lock("gold.ohlcv", purpose="rebuild", wait=False):  # released by the outer block
        pass
