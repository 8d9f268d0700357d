"""The typed public API: table names are a Literal kept equal to the schemas, read is scan's twin."""

from __future__ import annotations

import inspect
import typing

from crypto_lakehouse.query import Lakehouse
from crypto_lakehouse.schemas import TABLE_NAMES, TABLES, TableName


def test_table_name_literal_is_every_table_in_order() -> None:
    assert typing.get_args(TableName) == TABLE_NAMES
    assert list(TABLE_NAMES) == list(TABLES)


def test_read_has_scans_keyword_only_signature() -> None:
    scan, read = inspect.signature(Lakehouse.scan), inspect.signature(Lakehouse.read)
    assert list(read.parameters.values()) == list(scan.parameters.values())
    table, *options = list(read.parameters.values())[1:]
    assert table.name == "table" and table.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
    assert options and all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in options)
    assert not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in read.parameters.values())


def test_public_signatures_take_table_names() -> None:
    for method in (Lakehouse.scan, Lakehouse.read, Lakehouse.history, Lakehouse.version_at):
        assert inspect.signature(method).parameters["table"].annotation == "TableName", method.__name__
