"""The audit trail: every request becomes a meta.audit row (batched in the background, so a
request never waits for a commit), `lakehouse audit` reads it, old days are deleted."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from fastapi.testclient import TestClient
from typer.testing import CliRunner

from crypto_lakehouse.cli import app
from crypto_lakehouse.service import create_app
from crypto_lakehouse.service.audit import AuditLog, read_audit
from crypto_lakehouse.service.sandbox import sql_hash
from crypto_lakehouse.storage import Catalog
from tests.service.conftest import auth, settings_for


def test_each_request_is_audited_after_the_fact_and_the_cli_reads_it(lake_root: Path, keys: dict[str, str]) -> None:
    sql = "SELECT symbol FROM silver.trades LIMIT 3"
    catalog = Catalog(lake_root)
    before = catalog.open("meta.audit").version() if catalog.exists("meta.audit") else -1
    settings = settings_for(lake_root)
    settings = settings.model_copy(update={"api": settings.api.model_copy(update={"audit_flush": timedelta(hours=1)})})
    with TestClient(create_app(settings)) as client:
        r = client.post("/query/sql", json={"sql": sql, "format": "csv"}, headers=auth(keys["reader"]))
        assert r.status_code == 200
        client.get("/tables")  # no key: audited too, with no key id
        # the requests only queued their rows: no commit happened on their way
        assert (catalog.open("meta.audit").version() if catalog.exists("meta.audit") else -1) == before
    # leaving the client stops the service, which flushes what is queued
    rows = read_audit(catalog, since=datetime.now(UTC) - timedelta(minutes=5))
    query = rows.filter(route="/query/sql", sql_hash=sql_hash(sql))
    assert query.height == 1
    row = query.row(0, named=True)
    assert row["key_id"] == keys["reader"].split("_")[1] and row["role"] == "reader" and row["status"] == 200
    assert row["rows"] == 3 and row["bytes"] == len(r.content) and row["client"] == "testclient"
    assert row["duration_ms"] > 0
    refused = rows.filter(route="/tables", status=401)
    assert refused.height >= 1 and refused["key_id"].is_null().all()
    assert sql not in rows.write_csv()  # the text is never kept
    out = CliRunner().invoke(app, ["audit", "--since", "1h", "--format", "csv", "--root", str(lake_root)])
    assert out.exit_code == 0 and sql_hash(sql) in out.stdout


def test_rows_past_retention_are_deleted_by_whole_days(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path)
    log = AuditLog(catalog, retention=timedelta(days=2))
    now = datetime.now(UTC)
    for age in (0, 1, 5):
        log.record(
            {
                "at": now - timedelta(days=age),
                "key_id": "k",
                "role": "reader",
                "method": "GET",
                "route": "/tables",
                "sql_hash": None,
                "rows": None,
                "bytes": 10,
                "duration_ms": 1.0,
                "status": 200,
                "client": "127.0.0.1",
            }
        )
    assert log.flush() == 3
    log._prune()
    kept = read_audit(catalog)
    assert kept.height == 2 and kept["at"].min() >= now - timedelta(days=2)
