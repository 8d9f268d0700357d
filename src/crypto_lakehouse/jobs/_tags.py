"""Tag jobs: name the current versions of tables, so a backtest reads exactly them again."""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from crypto_lakehouse.config import Settings
from crypto_lakehouse.query import Lakehouse
from crypto_lakehouse.schemas import table_name

__all__ = ["create_tag", "delete_tag", "list_tags"]


def _lakehouse(settings: Settings) -> Lakehouse:
    return Lakehouse(settings.root, config=settings)


def create_tag(
    settings: Settings, *, name: str, tables: Sequence[str] | None = None, note: str | None = None
) -> pl.DataFrame:
    """Pin the current version of every silver and gold table (or of ``tables``) under
    ``name``; returns the versions pinned."""
    lakehouse = _lakehouse(settings)
    return lakehouse.tag(name, tables=None if tables is None else [table_name(t) for t in tables], note=note)


def delete_tag(settings: Settings, *, name: str) -> None:
    """Delete the tag ``name`` (the data stays; vacuum may then free its files)."""
    _lakehouse(settings).untag(name)


def list_tags(settings: Settings) -> pl.DataFrame:
    """Every tag with the versions it pins."""
    return _lakehouse(settings).tags()
