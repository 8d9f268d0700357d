"""transform._replace.rebuild: which failures of a rebuild's commit mean "another writer won,
read again and rebuild" and which are the rebuild's own (raised at once)."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from deltalake.exceptions import DeltaError

from crypto_lakehouse.schemas import table_spec
from crypto_lakehouse.storage import Catalog
from crypto_lakehouse.transform import _replace

PARSER = "Generic error: sql parser error: Expected: an expression, found: ="  # deltalake 1.6.6's text


def _catalog(tmp_path: Path) -> Catalog:
    catalog = Catalog(tmp_path)
    catalog.create("gold.ohlcv")
    return catalog


def _another_hosts_replace(catalog: Catalog) -> None:
    """A replace of gold.ohlcv's 1m bars as another host's build commits it (a new version)."""
    before = catalog.open("gold.ohlcv").version()
    empty = pl.from_arrow(table_spec("gold.ohlcv").schema.empty_table())
    assert isinstance(empty, pl.DataFrame)
    _replace.replace_windows(catalog, "gold.ohlcv", empty, ["\"interval\" = '1m'"], ("other-host", before + 1))
    assert catalog.open("gold.ohlcv").version() == before + 1


def test_a_parser_error_with_no_commit_since_is_the_builds_own_and_raised_at_once(tmp_path: Path) -> None:
    catalog = _catalog(tmp_path)
    calls = []

    def build() -> None:
        calls.append(1)
        raise DeltaError(PARSER)

    with pytest.raises(DeltaError, match="sql parser error"):
        _replace.rebuild(catalog, "gold.ohlcv", build)
    assert len(calls) == 1


def test_a_parser_error_after_another_writers_commit_builds_again(tmp_path: Path) -> None:
    catalog = _catalog(tmp_path)
    calls = []

    def build() -> str:
        calls.append(1)
        if len(calls) == 1:  # another host's replace lands while this one computes; its commit then fails
            _another_hosts_replace(catalog)
            raise DeltaError(PARSER)
        return "built"

    assert _replace.rebuild(catalog, "gold.ohlcv", build) == "built"
    assert len(calls) == 2


def test_other_delta_errors_are_raised_even_after_a_commit_since(tmp_path: Path) -> None:
    catalog = _catalog(tmp_path)

    def build() -> None:
        _another_hosts_replace(catalog)
        raise DeltaError("Generic error: object store: disk full")

    with pytest.raises(DeltaError, match="disk full"):
        _replace.rebuild(catalog, "gold.ohlcv", build)
