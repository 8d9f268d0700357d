"""Shared pieces of the infra/ tests: paths, a moto server, and the terraform run (conftest.py
starts it early, in a thread)."""

from __future__ import annotations

import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

PROJECT = Path(__file__).resolve().parents[2]
INFRA = PROJECT / "infra"
TERRAFORM_DIR = INFRA / "terraform"

# Where a filesystem mirror of the hashicorp/aws provider may be (terraform's own implied
# mirror directories, and where these machines keep one); TF_PROVIDER_MIRROR names another.
MIRROR_CANDIDATES = [
    Path("/opt/tf-plugins"),
    Path.home() / ".terraform.d" / "plugins",
    Path.home() / ".local" / "share" / "terraform" / "plugins",
    Path("/usr/local/share/terraform/plugins"),
    Path("/usr/share/terraform/plugins"),
]
TERRAFORM_MIN_VERSION = (1, 6)  # versions.tf required_version


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def moto_server(track: list[subprocess.Popen[Any]] | None = None) -> Iterator[str]:
    """moto's server (S3, IAM, KMS, STS, ... on one port) in its own process; yields its URL.
    ``track`` gets the process while it runs (so another thread can stop it)."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    if track is not None:
        track.append(server)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto server did not start on port {port}") from None
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
        if track is not None:
            track.remove(server)


# --------------------------------------------------------------------------------------------
# terraform
# --------------------------------------------------------------------------------------------
def _platform() -> str:
    machine = platform.machine().lower()
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(machine, machine)
    return f"{platform.system().lower()}_{arch}"


def find_provider_mirror() -> tuple[Path | None, list[Path]]:
    """The first mirror holding hashicorp/aws for this platform, and the places looked at."""
    candidates = [Path(p) for p in os.environ.get("TF_PROVIDER_MIRROR", "").split(os.pathsep) if p]
    candidates += MIRROR_CANDIDATES
    for mirror in candidates:
        if any(
            (mirror / "registry.terraform.io" / "hashicorp" / "aws").glob(f"*/{_platform()}/terraform-provider-aws*")
        ):
            return mirror, candidates
        # the packed layout: terraform-provider-aws_<version>_<os>_<arch>.zip
        if any(
            (mirror / "registry.terraform.io" / "hashicorp" / "aws").glob(f"terraform-provider-aws_*_{_platform()}.zip")
        ):
            return mirror, candidates
    return None, candidates


@dataclass
class Step:
    name: str
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    def explain(self) -> str:
        tail = (self.stdout[-3000:] + "\n" + self.stderr[-3000:]).strip()
        return f"`{' '.join(self.argv)}` exited {self.returncode} after {self.seconds:.1f} s:\n{tail}"


@dataclass
class TerraformRun:
    """init + validate, then apply against moto, plan -detailed-exitcode, and what moto holds."""

    skip_reason: str | None = None
    binary: str | None = None
    version: str | None = None
    mirror: Path | None = None
    steps: dict[str, Step] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    applied: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    seconds: float = 0.0
    _thread: threading.Thread | None = None
    _running: list[subprocess.Popen[Any]] = field(default_factory=list)
    _stopped: bool = False

    def start(self) -> TerraformRun:
        self.binary = shutil.which("terraform")
        mirror, looked = find_provider_mirror()
        if self.binary is None:
            self.skip_reason = "terraform binary absent on this machine (not on PATH): validate/apply/plan not run"
            return self
        if mirror is None:
            places = ", ".join(str(p) for p in looked)
            self.skip_reason = (
                f"no filesystem mirror of the hashicorp/aws provider for {_platform()} on this machine "
                f"(looked in {places}; set TF_PROVIDER_MIRROR): validate/apply/plan not run"
            )
            return self
        self.mirror = mirror
        self._thread = threading.Thread(target=self._run, name="terraform", daemon=True)
        self._thread.start()
        return self

    def wait(self, timeout: float = 270) -> TerraformRun:  # under pytest-timeout's 300 s
        if self.skip_reason:
            pytest.skip(self.skip_reason)
        assert self._thread is not None
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"terraform still running after {timeout} s: {list(self.steps)}"
        return self

    def stop(self) -> None:
        """End the run early (the session is over): stop terraform and moto, wait for the thread."""
        self._stopped = True
        for proc in list(self._running):
            proc.terminate()
        if self._thread is not None:
            self._thread.join(30)

    def step(self, name: str) -> Step:
        """A step that ran and succeeded (else the test fails with its output)."""
        if name not in self.steps:
            pytest.fail(f"terraform step {name!r} did not run: {self.error or 'an earlier step failed'}")
        return self.steps[name]

    # ---- the run, in its thread ------------------------------------------------------------
    def _run(self) -> None:
        began = time.monotonic()
        try:
            with tempfile.TemporaryDirectory(prefix="tf-infra-") as tmp:
                self._pipeline(Path(tmp))
        except Exception as exc:  # reported by the tests that need the missing step
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            self.seconds = time.monotonic() - began

    def _exec(self, name: str, argv: list[str], cwd: Path, env: dict[str, str], timeout: float = 240) -> Step:
        if self._stopped:
            raise RuntimeError("stopped")
        began = time.monotonic()
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self._running.append(proc)
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, stderr = proc.communicate()
            stderr += f"\n(killed after {timeout} s)"
        finally:
            self._running.remove(proc)
        step = Step(name, argv, proc.returncode, stdout, stderr, time.monotonic() - began)
        self.steps[name] = step
        return step

    def _pipeline(self, tmp: Path) -> None:
        assert self.binary is not None and self.mirror is not None
        work = tmp / "terraform"
        shutil.copytree(TERRAFORM_DIR, work, ignore=shutil.ignore_patterns(".terraform*", "*.tfstate*"))
        cli_config = tmp / "terraformrc"
        cli_config.write_text(
            "provider_installation {\n"
            f'  filesystem_mirror {{\n    path    = "{self.mirror}"\n'
            '    include = ["registry.terraform.io/hashicorp/*"]\n  }\n'
            '  direct {\n    exclude = ["registry.terraform.io/hashicorp/*"]\n  }\n'
            "}\n"
        )
        env = {
            **os.environ,
            "TF_CLI_CONFIG_FILE": str(cli_config),
            "TF_IN_AUTOMATION": "1",
            "TF_INPUT": "0",
            "CHECKPOINT_DISABLE": "1",
            # moto accepts any credentials; these exist only in this process's environment
            "AWS_ACCESS_KEY_ID": "moto-test",
            "AWS_SECRET_ACCESS_KEY": "moto-test",
            "AWS_EC2_METADATA_DISABLED": "true",
        }
        env.pop("AWS_PROFILE", None)
        version = self._exec("version", [self.binary, "version", "-json"], work, env)
        self.version = json.loads(version.stdout)["terraform_version"] if version.returncode == 0 else None
        if self._exec("fmt", [self.binary, "fmt", "-check", "-diff", "-no-color"], work, env).returncode != 0:
            return
        if self._exec("init", [self.binary, "init", "-backend=false", "-no-color"], work, env).returncode != 0:
            return
        if self._exec("validate", [self.binary, "validate", "-json", "-no-color"], work, env).returncode != 0:
            return
        with moto_server(track=self._running) as endpoint:
            variables = ["-var", "bucket_name=lake-under-test", "-var", f"test_endpoint_url={endpoint}"]
            apply = self._exec("apply", [self.binary, "apply", "-auto-approve", "-no-color", *variables], work, env)
            if apply.returncode != 0:
                return
            self.outputs = json.loads(self._exec("output", [self.binary, "output", "-json"], work, env).stdout)
            self.applied = _inspect(endpoint, self.outputs)
            self._exec("plan", [self.binary, "plan", "-detailed-exitcode", "-no-color", *variables], work, env)


def _inspect(endpoint: str, outputs: dict[str, Any]) -> dict[str, Any]:
    """What moto holds after the apply, read back with boto3."""
    import boto3

    def client(service: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=endpoint,
            region_name="eu-west-1",
            aws_access_key_id="moto-test",
            aws_secret_access_key="moto-test",
        )

    s3, iam, kms = client("s3"), client("iam"), client("kms")
    bucket = outputs["bucket_name"]["value"]
    key_arn = outputs["kms_key_arn"]["value"]

    def document(policy_arn: str) -> dict[str, Any]:
        version = iam.get_policy(PolicyArn=policy_arn)["Policy"]["DefaultVersionId"]
        doc = iam.get_policy_version(PolicyArn=policy_arn, VersionId=version)["PolicyVersion"]["Document"]
        if isinstance(doc, str):
            from urllib.parse import unquote

            doc = json.loads(unquote(doc))
        return dict(doc)

    roles = {}
    for name, arn in outputs["role_arns"]["value"].items():
        role = iam.get_role(RoleName=arn.rsplit("/", 1)[1])["Role"]
        attached = iam.list_attached_role_policies(RoleName=role["RoleName"])["AttachedPolicies"]
        roles[name] = {"attached": [p["PolicyArn"] for p in attached], "trust": role["AssumeRolePolicyDocument"]}
    return {
        "bucket": bucket,
        "encryption": s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"],
        "versioning": s3.get_bucket_versioning(Bucket=bucket).get("Status"),
        "public_access_block": s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"],
        "policy": json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"]),
        "lifecycle": s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"],
        "logging": s3.get_bucket_logging(Bucket=bucket).get("LoggingEnabled"),
        "ownership": s3.get_bucket_ownership_controls(Bucket=bucket)["OwnershipControls"]["Rules"],
        "key_rotation": kms.get_key_rotation_status(KeyId=key_arn)["KeyRotationEnabled"],
        "policies": {name: document(arn) for name, arn in outputs["policy_arns"]["value"].items()},
        "roles": roles,
    }
