"""infra/compose: the compose file validates against the compose spec (check-jsonschema's
vendored schema; no Docker engine here), has every piece of the laptop deployment, reads only
variables .env.example defines (and .env.example defines nothing unused), takes secrets only from
the environment, and gives each lakehouse process settings the lakehouse itself accepts.
"""

from __future__ import annotations

import re
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from crypto_lakehouse.config import load_settings
from crypto_lakehouse.ingest.shards import assign

from .helpers import INFRA, PROJECT

COMPOSE = INFRA / "compose" / "compose.yaml"
ENV_EXAMPLE = INFRA / "compose" / ".env.example"
CHECK_JSONSCHEMA = Path(sys.executable).with_name("check-jsonschema")
# ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?message}, ${VAR?message}; $$ is a literal $
_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}")
_SECRET_NAME = re.compile(r"PASSWORD|SECRET|ACCESS_KEY|TOKEN|API_KEY", re.I)
LAKEHOUSE_SERVICES = {"create-bucket", "prefect-deploy", "prefect-worker", "dask-worker", "ingest-0", "ingest-1"}


@cache
def compose() -> dict[str, Any]:
    return dict(yaml.safe_load(COMPOSE.read_text()))


def services() -> dict[str, dict[str, Any]]:
    return dict(compose()["services"])


@cache
def env_example() -> dict[str, str]:
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f".env.example: not KEY=VALUE: {line!r}"
            assert key not in values, f".env.example: {key} twice"
            values[key] = value
    return values


def referenced() -> set[str]:
    """Variables compose.yaml interpolates, and those its secrets are made from."""
    names = {m.group(1) for m in _REF.finditer(COMPOSE.read_text().replace("$$", ""))}
    return names | {s["environment"] for s in compose().get("secrets", {}).values()}


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's interpolation of one value, for the variables compose.yaml uses."""

    def one(m: re.Match[str]) -> str:
        name, op, arg = m.group(1), m.group(2), m.group(3)
        got = env.get(name)
        if op in (":-", "-") and (got is None or (op == ":-" and got == "")):
            return arg
        if op in (":?", "?") and (got is None or (op == ":?" and got == "")):
            raise AssertionError(f"{name} unset: {arg}")
        return got or ""

    return _REF.sub(one, value.replace("$$", "\0")).replace("\0", "$")


def environment(service: str) -> dict[str, str]:
    env = services()[service].get("environment", {})
    assert isinstance(env, dict), f"{service}: environment as a mapping, please"
    return {k: interpolate(str(v), env_example()) for k, v in env.items()}


def test_compose_file_validates_against_the_compose_spec(tmp_path: Path) -> None:
    ok = subprocess.run(
        [str(CHECK_JSONSCHEMA), "--builtin-schema", "vendor.compose-spec", str(COMPOSE)], capture_output=True, text=True
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    broken = tmp_path / "compose.yaml"  # the schema does reject what the spec does not allow
    broken.write_text("name: x\nservices:\n  a:\n    image: busybox\n    restart_policy: always\n")
    bad = subprocess.run(
        [str(CHECK_JSONSCHEMA), "--builtin-schema", "vendor.compose-spec", str(broken)], capture_output=True, text=True
    )
    assert bad.returncode != 0, bad.stdout


def test_every_piece_of_the_laptop_deployment_is_there() -> None:
    assert compose()["name"] == "crypto-lakehouse"
    assert {"s3", "create-bucket", "postgres", "prefect-server", "prefect-deploy", "prefect-worker"} <= set(services())
    assert {"dask-scheduler", "dask-worker", "ingest-0", "ingest-1"} <= set(services())
    assert services()["dask-worker"]["deploy"]["replicas"] == 2
    assert services()["dask-worker"]["command"][:3] == ["dask", "worker", "tcp://dask-scheduler:8786"]
    assert services()["dask-scheduler"]["command"][:2] == ["dask", "scheduler"]
    assert services()["s3"]["image"].startswith("motoserver/moto:")
    assert services()["create-bucket"]["command"] == ["python", "infra/create_bucket.py"]
    assert (INFRA / "create_bucket.py").is_file()
    # Prefect on PostgreSQL, and every lakehouse process pointed at that server
    server = environment("prefect-server")
    assert server["PREFECT_SERVER_DATABASE_DRIVER"] == "postgresql+asyncpg"
    assert server["PREFECT_SERVER_DATABASE_HOST"] == "postgres"
    assert services()["prefect-server"]["command"][:3] == ["prefect", "server", "start"]
    for name in LAKEHOUSE_SERVICES:
        assert environment(name)["PREFECT_API_URL"] == "http://prefect-server:4200/api", name
    # the query service is a commented placeholder until `lakehouse api` exists
    assert "query" not in services()
    assert re.search(r'^  # query:\n(  #.*\n)*  #.*"lakehouse", "api"', COMPOSE.read_text(), re.M)


def test_lakehouse_services_run_the_image_built_from_infra_dockerfile() -> None:
    for name in LAKEHOUSE_SERVICES | {"prefect-server", "dask-scheduler"}:
        service = services()[name]
        assert service["image"].startswith("${LAKEHOUSE_IMAGE"), name
        assert (COMPOSE.parent / service["build"]["context"]).resolve() == PROJECT, name
        assert service["build"]["dockerfile"] == "infra/Dockerfile", name
    assert (PROJECT / "infra" / "Dockerfile").is_file()


def test_ingest_shards_are_i_of_n_with_their_own_writer_id() -> None:
    shards = sorted((n for n in services() if re.fullmatch(r"ingest-\d+", n)), key=lambda n: int(n.split("-")[1]))
    count = len(shards)
    assert count >= 2
    volumes = set()
    for i, name in enumerate(shards):
        assert name == f"ingest-{i}"
        service = services()[name]
        assert service["command"] == ["lakehouse", "stream", "--shard", f"{i}/{count}"]
        assert environment(name)["LAKEHOUSE_WRITER__ID"] == f"shard-{i}"
        (volume,) = service["volumes"]
        volumes.add(volume.split(":")[0])
        port = environment(name)["LAKEHOUSE_WRITER__LIVE_PORT"]
        assert f"('127.0.0.1', {port})" in " ".join(service["healthcheck"]["test"])  # probes the live endpoint
    assert len(volumes) == count, "each shard keeps its own spool"
    assert volumes <= set(compose()["volumes"])
    # with the example's exchanges and symbols, no shard is left without a pair (it would exit 0)
    pairs = [
        (exchange, symbol)
        for exchange in env_example()["LAKEHOUSE_STREAM__EXCHANGES"].split(",")
        for symbol in env_example()["LAKEHOUSE_STREAM__SYMBOLS"].split(",")
    ]
    assert all(assign(pairs, count).values()), assign(pairs, count)
    assert services()["ingest-0"]["restart"] == "on-failure"  # such a shard's exit 0 is not a crash loop


def test_every_variable_read_is_in_env_example_and_every_example_is_read() -> None:
    assert referenced() - set(env_example()) == set(), "read by compose.yaml, missing in .env.example"
    assert set(env_example()) - referenced() == set(), "in .env.example, never read by compose.yaml"


def test_secrets_come_from_the_environment_only() -> None:
    """Every secret-named variable of every service is ``${VAR}`` or ``${VAR:?...}``: no literal,
    no default; .env.example holds only the placeholder ``change-me`` for the secrets."""
    for name, service in services().items():
        for key, value in (service.get("environment") or {}).items():
            if _SECRET_NAME.search(key) and not key.endswith("_DIR"):  # LAKEHOUSE_SECRETS_DIR: a path
                m = _REF.fullmatch(str(value))
                assert m and m.group(2) in (None, ":?", "?"), f"{name}: {key}={value!r}"
    for key, value in env_example().items():
        if _SECRET_NAME.search(key) and not key.endswith("KEY_ID"):  # a key id names a key, it is not one
            assert value == "change-me", f".env.example: {key} must be the placeholder change-me"


def test_the_s3_secret_key_is_a_file_never_a_variable() -> None:
    """Services that open the lake get the secret key as a compose secret, a file of the
    directory LAKEHOUSE_SECRETS_DIR names, named like the setting it holds; no service has it in
    its environment; the Dask workers (tasks bring their options) get no secret at all."""
    (name, secret) = next(iter(compose()["secrets"].items()))
    assert name == "storage_options__aws_secret_access_key"
    assert secret == {"environment": "LAKEHOUSE_STORAGE_OPTIONS__AWS_SECRET_ACCESS_KEY"}
    for service, body in services().items():
        env = body.get("environment") or {}
        assert not any("SECRET_ACCESS_KEY" in key for key in env), service
        if "LAKEHOUSE_SECRETS_DIR" in env:
            assert env["LAKEHOUSE_SECRETS_DIR"] == "/run/secrets" and body["secrets"] == [name], service
        else:
            assert "secrets" not in body, service
    assert {s for s, b in services().items() if "secrets" in b} == {
        "create-bucket",
        "prefect-worker",
        "ingest-0",
        "ingest-1",
    }


@pytest.mark.parametrize("service", sorted(LAKEHOUSE_SERVICES))
def test_each_lakehouse_service_gets_settings_the_lakehouse_accepts(
    service: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("LAKEHOUSE_") and key != "LAKEHOUSE_STATE_DIR":
            monkeypatch.delenv(key)
    env = environment(service)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    secrets = services()[service].get("secrets", [])
    if secrets:  # what compose mounts at /run/secrets
        for name in secrets:
            (tmp_path / name).write_text(env_example()[compose()["secrets"][name]["environment"]] + "\n")
        monkeypatch.setenv("LAKEHOUSE_SECRETS_DIR", str(tmp_path))
    settings = load_settings()  # raises ConfigError on any unknown or invalid LAKEHOUSE_* value
    assert settings.root == env_example()["LAKEHOUSE_ROOT"]
    assert settings.root.startswith("s3://")
    options = {k.upper(): v for k, v in settings.storage_options.items()}
    expected = {k.removeprefix("LAKEHOUSE_STORAGE_OPTIONS__"): v for k, v in env.items() if "STORAGE_OPTIONS__" in k}
    secret = options.pop("AWS_SECRET_ACCESS_KEY", None)
    assert options == expected
    assert options["AWS_CONDITIONAL_PUT"] == "etag"  # Delta commits as conditional writes
    assert {"AWS_ACCESS_KEY_ID", "AWS_REGION", "AWS_ENDPOINT_URL"} <= set(options)
    if secrets:
        assert secret is not None and secret.get_secret_value() == "change-me"  # held as a SecretStr
    else:
        assert secret is None
    assert settings.stream.exchanges == env_example()["LAKEHOUSE_STREAM__EXCHANGES"].split(",")
    assert settings.scale.runner == "tcp://dask-scheduler:8786"
    if service.startswith("ingest-"):
        assert settings.writer.id == f"shard-{service.split('-')[1]}"
    unknown = {k for k in env if k.startswith("LAKEHOUSE_")} - {
        "LAKEHOUSE_ROOT",
        "LAKEHOUSE_SECRETS_DIR",
        "LAKEHOUSE_SCALE__RUNNER",
        "LAKEHOUSE_WRITER__ID",
        "LAKEHOUSE_WRITER__LIVE_PORT",
        "LAKEHOUSE_STREAM__EXCHANGES",
        "LAKEHOUSE_STREAM__SYMBOLS",
        *(k for k in env if k.startswith("LAKEHOUSE_STORAGE_OPTIONS__")),
    }
    assert not unknown, f"LAKEHOUSE_* variables this test does not check: {unknown}"


def test_the_fanned_out_jobs_and_the_dask_workers_meet_at_the_scheduler() -> None:
    runner = environment("prefect-worker")["LAKEHOUSE_SCALE__RUNNER"]
    assert services()["dask-worker"]["command"][2] == runner
    port = runner.rsplit(":", 1)[1]
    assert services()["dask-scheduler"]["command"][:4] == ["dask", "scheduler", "--port", port]
    assert environment("dask-worker")["PREFECT_API_URL"] == "http://prefect-server:4200/api"  # tasks report there


def test_dependencies_exist_and_one_shots_complete_first() -> None:
    one_shots = {name for name, s in services().items() if s.get("restart") == "no"}
    assert one_shots == {"create-bucket", "prefect-deploy"}
    for name, service in services().items():
        for dependency, condition in (service.get("depends_on") or {}).items():
            assert dependency in services(), f"{name} depends on unknown {dependency}"
            wanted = "service_completed_successfully" if dependency in one_shots else "service_healthy"
            assert condition["condition"] == wanted, (name, dependency)
            if wanted == "service_healthy":
                assert "healthcheck" in services()[dependency], f"{name} waits for {dependency}'s health check"
    for name in ("ingest-0", "ingest-1", "prefect-worker"):
        assert "create-bucket" in services()[name]["depends_on"], name


def test_the_worker_polls_the_pool_prefect_yaml_deploys_to() -> None:
    deployments = yaml.safe_load((PROJECT / "prefect.yaml").read_text())["deployments"]
    pools = {d["work_pool"]["name"] for d in deployments}
    assert pools == {"lakehouse"}
    worker = services()["prefect-worker"]["command"]
    assert worker[worker.index("--pool") + 1] == "lakehouse"
    deploy = " ".join(services()["prefect-deploy"]["command"])
    assert "prefect work-pool create lakehouse --type process" in deploy and "deploy --all" in deploy
