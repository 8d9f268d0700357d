"""crypto-lakehouse: a Delta Lake medallion lakehouse for crypto market data."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from crypto_lakehouse.config import Settings, load_settings
from crypto_lakehouse.errors import (
    CommitError,
    ConfigError,
    FilesRewritten,
    GapUnfillable,
    InvalidArgument,
    LakehouseError,
    TableBusy,
    TableNotFound,
    TagNotFound,
    UnknownTable,
    VersionNotFound,
)

if TYPE_CHECKING:
    from crypto_lakehouse.query import Lakehouse

__all__ = [
    "CommitError",
    "ConfigError",
    "FilesRewritten",
    "GapUnfillable",
    "InvalidArgument",
    "Lakehouse",
    "LakehouseError",
    "Settings",
    "TableBusy",
    "TableNotFound",
    "TagNotFound",
    "UnknownTable",
    "VersionNotFound",
    "load_settings",
]


def __getattr__(name: str) -> Any:
    # the read API pulls in Polars, delta-rs and DuckDB: loaded on first use, so that CLI commands
    # that never read (config, exchange serve) start quickly
    if name == "Lakehouse":
        from crypto_lakehouse.query import Lakehouse

        return Lakehouse
    raise AttributeError(name)
