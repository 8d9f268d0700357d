"""checkov over infra/ (the terraform, the Dockerfile and the rendered kustomize overlays), run in
its own environment exactly as ``make checkov`` does: ``uv tool run`` with checkov and all its
dependencies pinned by infra/checkov-constraints.txt (installed on first use; checkov's pins
conflict with uv.lock, so it never enters the project's venv).

Asserted on its JSON report: no failed check, no parsing error, and every skipped check skipped
in the code (``#checkov:skip=ID:reason`` in .tf and the Dockerfile, ``checkov.io/skipN:
ID=reason`` annotations in k8s) with a reason, and only the skips listed here: a new skip is a
decision to review, not a way to make this test pass.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from functools import cache
from typing import Any

import pytest

from .helpers import INFRA, PROJECT

CONSTRAINTS = INFRA / "checkov-constraints.txt"
FRAMEWORKS = ["terraform", "dockerfile", "kustomize"]

# (check, resource) skipped in infra/terraform, each with its reason beside it in the .tf
TERRAFORM_SKIPS = {
    ("CKV_AWS_109", "aws_iam_policy_document.kms"),  # key policy: "*" is the key itself
    ("CKV_AWS_111", "aws_iam_policy_document.kms"),
    ("CKV_AWS_356", "aws_iam_policy_document.kms"),
    ("CKV_AWS_144", "aws_s3_bucket.lake"),  # cross-region replication: a per-deployment DR decision
    ("CKV_AWS_144", "aws_s3_bucket.access_logs"),
    ("CKV2_AWS_62", "aws_s3_bucket.lake"),  # event notifications: nothing consumes them
    ("CKV2_AWS_62", "aws_s3_bucket.access_logs"),
    ("CKV_AWS_18", "aws_s3_bucket.access_logs"),  # the log bucket does not log itself
    ("CKV_AWS_145", "aws_s3_bucket.access_logs"),  # S3 access logs land only in SSE-S3 buckets
}
DOCKERFILE_SKIPS = {"CKV_DOCKER_2"}  # one image, many roles: health checks per role (compose, k8s)
# image digests (set at release) and the laptop overlay's locally loaded image (IfNotPresent)
KUSTOMIZE_SKIPS = {"CKV_K8S_43", "CKV_K8S_15"}


def uv() -> str:
    found = shutil.which("uv") or str(PROJECT / ".tools" / "bin" / "uv")
    if not os.access(found, os.X_OK):
        pytest.fail("uv not found on PATH nor in .tools/bin (`make setup` bootstraps it there)")
    return found


@cache
def report() -> dict[str, dict[str, Any]]:
    """checkov's JSON report, by framework."""
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}
    env.setdefault("UV_SYSTEM_CERTS", "1")  # as the Makefile: a registry behind a TLS proxy
    if os.path.exists("/etc/ssl/certs/ca-certificates.crt"):
        env.setdefault("SSL_CERT_FILE", "/etc/ssl/certs/ca-certificates.crt")
    argv = [
        uv(), "tool", "run", "--python", sys._base_executable,
        "--from", "checkov", "--constraints", str(CONSTRAINTS), "--no-build",
        "checkov", "-d", "infra", "--framework", *FRAMEWORKS, "--skip-download", "--compact", "-o", "json",
    ]  # fmt: skip
    proc = subprocess.run(argv, cwd=PROJECT, env=env, capture_output=True, text=True, timeout=600)
    try:
        parsed = json.loads(proc.stdout)
    except json.JSONDecodeError:
        pytest.fail(
            f"checkov gave no JSON report (exit {proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
        )
    reports = parsed if isinstance(parsed, list) else [parsed]
    return {r["check_type"]: r for r in reports if "check_type" in r}


def test_checkov_is_pinned() -> None:
    pins = [line for line in CONSTRAINTS.read_text().splitlines() if line.startswith("checkov==")]
    assert len(pins) == 1, pins
    versions = {r["summary"]["checkov_version"] for r in report().values()}
    assert versions == {pins[0].removeprefix("checkov==")}


def test_checkov_scanned_every_framework() -> None:
    wanted = {"terraform", "dockerfile"}
    if shutil.which("kubectl") or shutil.which("kustomize"):  # checkov renders overlays with them
        wanted.add("kustomize")
    assert wanted <= set(report()), f"checkov reported {sorted(report())}, wanted {sorted(wanted)}"
    assert report()["terraform"]["summary"]["resource_count"] >= 25


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_checkov_no_failed_check_and_every_skip_justified(framework: str) -> None:
    if framework not in report():
        pytest.skip(f"checkov did not scan {framework} here (test_checkov_scanned_every_framework says why)")
    result = report()[framework]
    summary, results = result["summary"], result["results"]
    failed = [
        f"{c['check_id']} {c['resource']} ({c['file_path']}): {c['check_name']}" for c in results["failed_checks"]
    ]
    assert not failed, "checkov failures, fix or justify in the code:\n" + "\n".join(failed)
    assert summary["parsing_errors"] == 0, results.get("parsing_errors")
    assert summary["passed"] > 0
    skipped = results.get("skipped_checks", [])
    unjustified = [s for s in skipped if len(s["check_result"].get("suppress_comment", "").strip()) < 20]
    assert not unjustified, [(s["check_id"], s["resource"]) for s in unjustified]
    ids = {s["check_id"] for s in skipped}
    if framework == "terraform":
        assert {(s["check_id"], s["resource"]) for s in skipped} == TERRAFORM_SKIPS
    elif framework == "dockerfile":
        assert ids == DOCKERFILE_SKIPS
    else:
        assert ids <= KUSTOMIZE_SKIPS, ids - KUSTOMIZE_SKIPS
    print(f"checkov {framework}: {summary['passed']} passed, {summary['failed']} failed, {summary['skipped']} skipped")
