"""How every gold builder writes: the rows of some windows replaced in one commit with its progress."""

from __future__ import annotations

import polars as pl

from crypto_lakehouse.schemas import GOLD
from crypto_lakehouse.storage import Catalog

__all__ = ["replace_windows"]


def replace_windows(
    catalog: Catalog, table: str, data: pl.DataFrame, predicates: list[str], app: tuple[str, int]
) -> None:
    """Replace the rows of gold ``table`` matching any of ``predicates`` (SQL, one per window
    run; none: nothing replaced) with ``data``, in one commit recording ``app`` (app id, the
    silver version consumed)."""
    spec = GOLD[table]
    catalog.replace(
        table,
        data.select(spec.schema.names).to_arrow().cast(spec.schema),
        predicate=" OR ".join(predicates) if predicates else "false",
        app_id=app[0],
        version=app[1],
    )
