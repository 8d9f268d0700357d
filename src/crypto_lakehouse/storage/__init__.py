"""Where tables live: a root that is a local path or ``s3://bucket/prefix``."""

from crypto_lakehouse.storage.catalog import TABLE_PROPERTIES, Catalog, CommitError

__all__ = ["TABLE_PROPERTIES", "Catalog", "CommitError"]
