"""Secrets never leak (issue 15, item 5): S3 credentials given only through the environment and a
secrets directory run real jobs against a real S3 API server (moto's), and neither the secret key
nor the session token, nor their base64 or URL-encoded forms, appears in anything those jobs
print at DEBUG (Python logging and delta-rs' Rust log), write (log files, the local state, every
object in the bucket: Delta logs and data), raise (error messages of failing jobs, in the CLI and
in Python), in ``lakehouse config show``, or in what Prefect stores of a flow run (its logs,
artifacts, parameters, task runs)."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import logging
import os
import subprocess
import sys
import time
import traceback
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest
from pydantic import SecretStr

from crypto_lakehouse import jobs
from crypto_lakehouse.config import REDACTED, Settings, load_settings
from crypto_lakehouse.ingest import BronzeWriter
from crypto_lakehouse.storage import Catalog
from tests.prefect_flows.test_flows import harness  # noqa: F401  (Prefect's test server, a fixture)
from tests.storage.test_s3 import s3_options  # noqa: F401  (the moto S3 server, a fixture)

REPO = Path(__file__).resolve().parents[1]
# as AWS secret keys do, both hold "/" and "+", so their URL-encoded forms differ from them
SECRET_KEY = f"S3CR3T-{uuid.uuid4().hex}/k+y"
SESSION_TOKEN = f"T0K3N-{uuid.uuid4().hex}/t+k"
BUCKET = "vault"
# `lakehouse ARGS...` with Python's root logger at DEBUG, on stderr
DEBUG_CLI = (
    "import logging, sys; logging.basicConfig(level=logging.DEBUG); "
    "from crypto_lakehouse.cli import main; sys.argv[0] = 'lakehouse'; main()"
)


def _forms(name: str, secret: str) -> dict[str, str]:
    """What a secret can look like once printed: itself, its random core (which survives JSON
    and URL escaping), base64 (both alphabets) and URL-encoded; by a name that does not show it."""
    raw = secret.encode()
    return {
        f"the {name}": secret,
        f"the {name}'s random part": secret.split("-")[1].split("/")[0],
        f"the {name} in base64": base64.b64encode(raw).decode(),
        f"the {name} in URL-safe base64": base64.urlsafe_b64encode(raw).decode(),
        f"the {name} URL-encoded": quote(secret, safe=""),
        f"the {name} form-encoded": quote_plus(secret),
    }


FORMS = _forms("secret key", SECRET_KEY) | _forms("session token", SESSION_TOKEN)


def assert_clean(text: str | bytes, where: str) -> None:
    data = text.encode() if isinstance(text, str) else text
    leaked = [name for name, form in FORMS.items() if form.encode() in data]
    assert not leaked, f"{', '.join(leaked)} leaked into {where}"


@pytest.fixture(scope="module")
def lake(s3_options: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:  # noqa: F811
    """The environment of a process that uses ``s3://vault/...``: the endpoint, region and key id
    as LAKEHOUSE_STORAGE_OPTIONS__* variables (the secret key too, the way that always worked),
    the session token as a file of LAKEHOUSE_SECRETS_DIR; and nothing of the AWS_* chain."""
    import s3fs

    endpoint = s3_options["AWS_ENDPOINT_URL"]
    fs = s3fs.S3FileSystem(key="AKIDVAULT", secret=SECRET_KEY, token=SESSION_TOKEN, endpoint_url=endpoint)
    fs.call_s3("create_bucket", Bucket=BUCKET)
    secrets = tmp_path_factory.mktemp("secrets")  # outside every directory the test searches
    (secrets / "storage_options__aws_session_token").write_text(SESSION_TOKEN + "\n")
    options = {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "AKIDVAULT",
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_REGION": "us-east-1",
        "AWS_ALLOW_HTTP": "true",
        "AWS_CONDITIONAL_PUT": "etag",
    }
    env = {f"LAKEHOUSE_STORAGE_OPTIONS__{k}": v for k, v in options.items()}
    env.update(LAKEHOUSE_SECRETS_DIR=str(secrets), LAKEHOUSE_SILVER__BACKFILL="false")
    yield env


def _bucket_objects(env: dict[str, str]) -> dict[str, bytes]:
    import s3fs

    fs = s3fs.S3FileSystem(
        key="AKIDVAULT", secret=SECRET_KEY, endpoint_url=env["LAKEHOUSE_STORAGE_OPTIONS__AWS_ENDPOINT_URL"]
    )
    return {path: fs.cat_file(path) for path in fs.find(BUCKET)}


def _files(*dirs: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for d in dirs for p in d.rglob("*") if p.is_file()}


@dataclasses.dataclass(frozen=True)
class Shipped:
    """As a fanned-out job ships a catalog to a Dask worker: its root and options."""

    root: str
    storage_options: dict[str, str] | None


def test_the_catalog_unwraps_secrets_into_options_that_print_them_as_stars() -> None:
    import pickle

    given = {"AWS_REGION": "eu", "AWS_SECRET_ACCESS_KEY": SecretStr(SECRET_KEY), "AWS_SESSION_TOKEN": SESSION_TOKEN}
    catalog = Catalog("s3://b/p", storage_options=given)
    clear = {"AWS_REGION": "eu", "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_SESSION_TOKEN": SESSION_TOKEN}
    assert catalog.storage_options == clear  # what delta-rs, Polars and pyarrow are handed

    shipped = Shipped(catalog.root, catalog.storage_options)
    for text in (repr(catalog), str(vars(catalog)), f"{catalog.storage_options}", repr(shipped)):
        assert_clean(text, "a catalog's repr or attributes")
        assert REDACTED in text or text == repr(catalog)
    assert "'AWS_REGION': 'eu'" in repr(shipped)
    unpickled = pickle.loads(pickle.dumps(shipped))
    assert unpickled.storage_options == clear and SECRET_KEY not in repr(unpickled)
    assert Catalog("/tmp/x").storage_options is None


def test_cli_jobs_on_s3_at_debug_leak_no_secret(lake: dict[str, str], samples: Path, tmp_path: Path) -> None:
    work, state = tmp_path / "work", tmp_path / "state"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "LAKEHOUSE_"))}
    env.update(lake, LAKEHOUSE_ROOT=f"s3://{BUCKET}/lake", LAKEHOUSE_STATE_DIR=str(state), RUST_LOG="debug")
    env.update(AWS_EC2_METADATA_DISABLED="true")

    def lakehouse(*args: str, code: int = 0, **extra: str) -> str:
        res = subprocess.run(
            [sys.executable, "-c", DEBUG_CLI, *args],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=work,
            env={**env, **extra},
        )
        assert_clean(res.stdout + res.stderr, f"the output of lakehouse {' '.join(args)}")
        assert res.returncode == code, f"lakehouse {' '.join(args)}: {res.returncode}\n{res.stderr[-3000:]}"
        return res.stderr if code else res.stdout

    ingested = json.loads(lakehouse("ingest-recording", str(samples / "BINANCE_FUTURES")).splitlines()[-1])
    assert ingested["rows"]["bronze.trades"] > 0
    promoted = json.loads(lakehouse("promote", "silver").splitlines()[-1])
    assert promoted["tables"]["silver.trades"]["rows_out"] == ingested["rows"]["bronze.trades"]
    assert json.loads(lakehouse("promote", "gold").splitlines()[-1])["bars_written"]["1m"] > 0

    shown = json.loads(lakehouse("config", "show"))["storage_options"]
    assert shown["aws_secret_access_key"] == shown["aws_session_token"] == REDACTED
    assert shown["aws_access_key_id"] == "AKIDVAULT" and shown["aws_region"] == "us-east-1"

    # a failing job: its error message (an endpoint nobody listens on fails the same way, after
    # delta-rs' retries: seconds more)
    missing = lakehouse("promote", "gold", "--root", "s3://no-such-bucket/lake", code=2)
    assert missing.strip().splitlines()[-1].startswith("error: storage:") and "NoSuchBucket" in missing

    written = _files(work, state)
    assert any(name.endswith("feedhandler.log") for name in written), sorted(written)
    for name, data in written.items():
        assert_clean(data, name)
    stored = _bucket_objects(lake)
    assert any("/_delta_log/" in name for name in stored) and any("/gold/ohlcv/" in name for name in stored)
    for name, data in stored.items():
        assert_clean(data, f"s3://{name}")


def test_job_errors_in_python_quote_no_secret(lake: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in lake.items():
        monkeypatch.setenv(name, value)
    settings = load_settings(root="s3://no-such-bucket/lake")
    assert isinstance(settings, Settings)
    assert_clean(repr(settings) + str(settings.model_dump()) + settings.model_dump_json(), "the settings")
    for job in (jobs.promote_silver, jobs.promote_gold, jobs.compact):
        with pytest.raises(Exception) as info:  # noqa: PT011 - whatever storage raises, it names no secret
            job(settings)
        assert_clean("".join(traceback.format_exception(info.value)), f"the error of {job.__name__}")


def test_prefect_flows_on_s3_store_no_secret(
    harness: None,  # noqa: F811
    lake: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    sys.path.insert(0, str(REPO))
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogWorker

    from flows.maintenance import compact_flow
    from flows.silver import promote_silver_flow

    for name, value in lake.items():
        monkeypatch.setenv(name, value)
    root = f"s3://{BUCKET}/flows"
    now = time.time()

    async def bronze() -> None:
        writer = BronzeWriter(Catalog.from_settings(load_settings(root=root)), writer_id="w", spool_dir=tmp_path)
        await writer.start()
        rows = [("BINANCE", "BTC-USDT", now - 5, now, str(i), "buy", "100", "1", None) for i in (1, 2, 2, 3)]
        writer.add_many("bronze.trades", rows)  # one duplicate: the DQ report has something to say
        await writer.flush()

    caplog.set_level(logging.DEBUG)
    asyncio.run(bronze())
    silver = promote_silver_flow(root=root, return_state=True)
    assert silver.result()["silver.trades"]["duplicates"] == 1
    compacted = compact_flow(root=root, tables=["silver.trades"], return_state=True)  # a task gets the Catalog
    assert compacted.is_completed()
    APILogWorker.drain_all(timeout=10)
    runs = [silver.state_details.flow_run_id, compacted.state_details.flow_run_id]

    async def stored() -> dict[str, str]:
        async with get_client() as client:
            found: dict[str, str] = {}
            for run_id in runs:
                assert run_id is not None
                run = await client.read_flow_run(run_id)
                assert run.parameters["root"] == root
                found[f"flow run {run.name}"] = run.model_dump_json()
                logs = await client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])))
                assert logs, f"no logs stored for {run.name}"
                found[f"logs of {run.name}"] = "\n".join(log.model_dump_json() for log in logs)
                tasks = await client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])))
                found[f"task runs of {run.name}"] = "\n".join(t.model_dump_json() for t in tasks)
            artifacts = await client.read_artifacts()
            assert {"silver-dq-report", "maintenance-compact"} <= {a.key for a in artifacts}
            found["artifacts"] = "\n".join(a.model_dump_json() for a in artifacts)
            return found

    found = asyncio.run(stored())
    assert "promote-silver" in found[next(k for k in found if k.startswith("logs of"))]  # read what was logged
    assert "duplicates" in found["artifacts"]
    for where, text in found.items():
        assert_clean(text, where)
    assert_clean("\n".join(f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in caplog.records), "Python logs")
    printed = capfd.readouterr()
    assert_clean(printed.out + printed.err, "what the flows printed")
