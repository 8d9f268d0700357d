"""Arrow tables as Polars frames, typed: the one place the library's imprecise annotation is cast."""

from __future__ import annotations

from typing import cast

import polars as pl
import pyarrow as pa

__all__ = ["to_frame"]


def to_frame(table: pa.Table) -> pl.DataFrame:
    """``pl.from_arrow(table)``: a table always converts to a DataFrame, but polars annotates
    ``from_arrow`` as returning ``DataFrame | Series`` for every input (arrays give a Series)."""
    return cast(pl.DataFrame, pl.from_arrow(table))
