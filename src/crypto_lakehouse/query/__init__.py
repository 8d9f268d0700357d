"""Reads: the Lakehouse API (Polars, DuckDB SQL, time travel, tags, replay)."""

from crypto_lakehouse.query.lakehouse import AsOf, Lakehouse

__all__ = ["AsOf", "Lakehouse"]
