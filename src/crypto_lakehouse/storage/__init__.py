"""Where tables live: a root that is a local path or ``s3://bucket/prefix``."""

from crypto_lakehouse.storage.catalog import Catalog, CommitError

__all__ = ["Catalog", "CommitError"]
