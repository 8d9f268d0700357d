"""The exception tree: each error is raised in its case, all are LakehouseErrors (exit code 2)."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest

import crypto_lakehouse
from crypto_lakehouse import errors
from crypto_lakehouse.config import load_settings
from crypto_lakehouse.errors import (
    CommitError,
    ConfigError,
    LakehouseError,
    TableNotFound,
    TagNotFound,
    UnknownTable,
    VersionNotFound,
)
from crypto_lakehouse.schemas import table_spec
from crypto_lakehouse.storage import Catalog


def _trades(ids: list[int]) -> pa.Table:
    now = datetime(2026, 11, 1, tzinfo=UTC)
    row = {"exchange": "BINANCE", "symbol": "BTC-USDT", "date": now.date(), "ts": now, "receipt_ts": now}
    rows = [{**row, "id": i, "side": "buy", "price": 1.0, "amount": 1.0, "source": "stream"} for i in ids]
    return pa.Table.from_pylist(rows, schema=table_spec("silver.trades").schema)


@pytest.fixture
def lh(tmp_path: Path) -> crypto_lakehouse.Lakehouse:
    from crypto_lakehouse import Lakehouse

    lake = Lakehouse(tmp_path, config=load_settings(None))
    lake.catalog.append("silver.trades", _trades([1]))
    lake.catalog.append("silver.trades", _trades([2]))
    return lake


def test_the_tree_is_exported() -> None:
    for name in errors.__all__:
        cls = getattr(errors, name)
        assert issubclass(cls, LakehouseError) and cls.exit_code == 2
        assert getattr(crypto_lakehouse, name) is cls
    assert {"ConfigError", "CommitError", "UnknownTable", "TableNotFound", "VersionNotFound", "TagNotFound"} <= set(
        errors.__all__
    )
    from crypto_lakehouse.storage import CommitError as StorageCommitError

    assert StorageCommitError is CommitError


def test_unknown_table_lists_the_known_ones() -> None:
    with pytest.raises(UnknownTable, match=r"unknown table 'silver\.nope'; known tables: .*silver\.trades"):
        table_spec("silver.nope")


def test_table_not_found(tmp_path: Path) -> None:
    from crypto_lakehouse import Lakehouse

    with pytest.raises(TableNotFound, match="silver.trades does not exist yet"):
        Catalog(tmp_path).open("silver.trades")
    with pytest.raises(TableNotFound):
        Lakehouse(tmp_path, config=load_settings(None)).scan("silver.trades")


def test_version_not_found(lh: crypto_lakehouse.Lakehouse) -> None:
    with pytest.raises(VersionNotFound, match="versions 0..1; version 5 does not exist"):
        lh.read("silver.trades", as_of=5)
    with pytest.raises(VersionNotFound, match="did not exist at"):
        lh.read("silver.trades", as_of=datetime.now(UTC) - timedelta(days=365))


def test_tag_not_found(lh: crypto_lakehouse.Lakehouse) -> None:
    with pytest.raises(TagNotFound, match="neither a time nor a tag"):
        lh.read("silver.trades", as_of="no-such-tag")
    with pytest.raises(TagNotFound, match="no tag named"):
        lh.untag("no-such-tag")
    lh.catalog.append("gold.ohlcv", table_spec("gold.ohlcv").schema.empty_table())
    lh.tag("bt-1", tables=["gold.ohlcv"])
    with pytest.raises(TagNotFound, match="does not pin silver.trades"):
        lh.read("silver.trades", as_of="bt-1")


def test_commit_error_after_retries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    c = Catalog(tmp_path)

    def fail(*args: object, **kwargs: object) -> None:
        raise OSError("disk on fire")

    monkeypatch.setattr(c, "_write", fail)
    with pytest.raises(CommitError, match="failed after 2 attempts: disk on fire"):
        c.append("silver.trades", _trades([1]), retries=1, backoff_s=0)


def test_config_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("writer:\n  batch_rows: -1\n")
    with pytest.raises(ConfigError):
        load_settings(bad)


def test_the_cli_prints_one_line_and_exits_2(tmp_path: Path) -> None:
    res = subprocess.run(
        [sys.executable, "-m", "crypto_lakehouse.cli", "history", "silver.nope", "--root", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 2 and "unknown table 'silver.nope'" in res.stderr and "Traceback" not in res.stderr
