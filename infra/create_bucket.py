"""Create the bucket of the lakehouse root unless it exists: the ``create-bucket`` one-shot of
infra/compose/compose.yaml and of the k8s laptop overlay, run in the lakehouse image
(/app/infra/create_bucket.py). It reads the settings the lakehouse reads, the same way
(``LAKEHOUSE_ROOT``, ``LAKEHOUSE_STORAGE_OPTIONS__AWS_*``, ``$LAKEHOUSE_SECRETS_DIR`` files, or the
standard AWS variables when no key is in the storage options). Idempotent; exit code 0 when the
bucket exists afterwards. tests/infra/test_create_bucket.py runs it against moto's S3 server.
"""

from __future__ import annotations

import sys

import s3fs

from crypto_lakehouse.config import load_settings
from crypto_lakehouse.errors import ConfigError
from crypto_lakehouse.storage import Catalog


def main() -> int:
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"create-bucket: {exc}", file=sys.stderr)
        return 2
    if not settings.root.startswith("s3://"):
        print(f"create-bucket: the root must be s3://bucket/prefix, got {settings.root!r}", file=sys.stderr)
        return 2
    bucket = settings.root.removeprefix("s3://").split("/")[0]
    # the options in clear, as the catalog hands them to delta-rs (never print them)
    options = {k.lower(): v for k, v in (Catalog.from_settings(settings).storage_options or {}).items()}
    region = options.get("aws_region")
    fs = s3fs.S3FileSystem(
        key=options.get("aws_access_key_id"),
        secret=options.get("aws_secret_access_key"),
        token=options.get("aws_session_token"),
        endpoint_url=options.get("aws_endpoint_url"),
        client_kwargs={"region_name": region} if region else {},
    )
    if fs.exists(bucket):
        print(f"create-bucket: {bucket} exists")
        return 0
    params: dict[str, object] = {"Bucket": bucket}
    if region and region != "us-east-1":  # us-east-1 takes no location constraint
        params["CreateBucketConfiguration"] = {"LocationConstraint": region}
    fs.call_s3("create_bucket", **params)
    print(f"create-bucket: {bucket} created")
    return 0


if __name__ == "__main__":
    sys.exit(main())
