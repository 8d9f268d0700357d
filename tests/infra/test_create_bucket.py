"""infra/create_bucket.py (the compose and laptop-overlay one-shot) against moto's S3 server:
creates the bucket of the root from the lakehouse's own settings, with the secret key given as
compose and k8s give it (a file in LAKEHOUSE_SECRETS_DIR) or as a variable, in us-east-1 (no
location constraint) and elsewhere; a second run is a no-op; a bad root or setting exits 2."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from .helpers import INFRA, moto_server

SCRIPT = INFRA / "create_bucket.py"


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with moto_server() as url:
        yield url


def run(
    root: str, endpoint: str, region: str, secrets_dir: Path | None = None, **extra: str
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LAKEHOUSE_", "AWS_"))}
    env.update(
        LAKEHOUSE_ROOT=root,
        LAKEHOUSE_STORAGE_OPTIONS__AWS_ENDPOINT_URL=endpoint,
        LAKEHOUSE_STORAGE_OPTIONS__AWS_REGION=region,
        LAKEHOUSE_STORAGE_OPTIONS__AWS_ACCESS_KEY_ID="moto-test",
        LAKEHOUSE_STORAGE_OPTIONS__AWS_ALLOW_HTTP="true",
        LAKEHOUSE_STATE_DIR=os.environ.get("LAKEHOUSE_STATE_DIR", "/tmp"),
        **extra,
    )
    if secrets_dir is None:
        env["LAKEHOUSE_STORAGE_OPTIONS__AWS_SECRET_ACCESS_KEY"] = "moto-test"
    else:
        (secrets_dir / "storage_options__aws_secret_access_key").write_text("moto-test\n")
        env["LAKEHOUSE_SECRETS_DIR"] = str(secrets_dir)
    return subprocess.run([sys.executable, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(("region", "secret_as_file"), [("us-east-1", True), ("eu-west-1", False)])
def test_creates_the_bucket_once(endpoint: str, region: str, secret_as_file: bool, tmp_path: Path) -> None:
    import boto3

    bucket = f"lake-{region}"
    secrets = tmp_path if secret_as_file else None
    first = run(f"s3://{bucket}/lake", endpoint, region, secrets)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == f"create-bucket: {bucket} created"
    again = run(f"s3://{bucket}/lake", endpoint, region, secrets)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == f"create-bucket: {bucket} exists"
    assert "moto-test" not in first.stdout + first.stderr + again.stdout + again.stderr
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name=region, aws_access_key_id="x", aws_secret_access_key="x")
    location = s3.get_bucket_location(Bucket=bucket)["LocationConstraint"]
    assert location == (None if region == "us-east-1" else region)


def test_refuses_a_root_that_is_not_s3_and_a_bad_setting(endpoint: str) -> None:
    done = run("/data/lake", endpoint, "us-east-1")
    assert done.returncode == 2
    assert "the root must be s3://bucket/prefix" in done.stderr
    bad = run("s3://lake/x", endpoint, "us-east-1", LAKEHOUSE_STREAM__SYMBOL="BTC")
    assert bad.returncode == 2
    assert "invalid configuration" in bad.stderr and "unknown key" in bad.stderr
