"""The service's routes through FastAPI's TestClient: keys and roles, SQL in every format and
at a version or tag, tables, history, tags, health, metrics, limits, OpenAPI."""

from __future__ import annotations

import io
import threading
from pathlib import Path

import polars as pl
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
from fastapi.testclient import TestClient

from crypto_lakehouse.query import Lakehouse
from crypto_lakehouse.service import create_app
from crypto_lakehouse.service.keys import create_key, revoke_key
from crypto_lakehouse.storage import Catalog
from tests.service.conftest import SYMBOLS, TRADES_PER_SYMBOL, auth, settings_for

COUNT = "SELECT symbol, count(*) AS n FROM silver.trades GROUP BY symbol ORDER BY symbol"


def test_every_route_but_health_needs_a_valid_key(client: TestClient, keys: dict[str, str]) -> None:
    routes = [("get", "/tables"), ("get", "/tables/silver.trades"), ("get", "/tags"), ("get", "/metrics")]
    for method, path in routes:
        assert getattr(client, method)(path).status_code == 401, path
        assert getattr(client, method)(path, headers=auth("lhk_000000000000_nope")).status_code == 401, path
        assert getattr(client, method)(path, headers=auth(keys["reader"])).status_code == 200, path
    r = client.post("/query/sql", json={"sql": "SELECT 1"})
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert client.post("/query/sql", json={"sql": "SELECT 1"}, headers={"X-API-Key": keys["reader"]}).status_code == 200
    # a right key id with a wrong secret is unknown too (the hash is checked, not the id)
    key_id = keys["reader"].split("_")[1]
    assert client.get("/tables", headers=auth(f"lhk_{key_id}_{'x' * 43}")).status_code == 401
    assert client.get("/health").status_code == 200


def test_a_revoked_key_is_refused_from_its_next_request(lake_root: Path) -> None:
    catalog = Catalog(lake_root)
    key_id, key = create_key(catalog, role="reader", note="to revoke")
    with TestClient(create_app(settings_for(lake_root), audit=False)) as client:
        assert client.get("/tables", headers=auth(key)).status_code == 200
        revoke_key(catalog, key_id)
        assert client.get("/tables", headers=auth(key)).status_code == 401


def test_roles_readers_read_operators_tag(client: TestClient, keys: dict[str, str]) -> None:
    tag = {"name": "bt-api", "note": "from the API"}
    r = client.post("/tags", json=tag, headers=auth(keys["reader"]))
    assert r.status_code == 403 and "needs the operator role" in r.json()["detail"]
    r = client.post("/tags", json=tag, headers=auth(keys["operator"]))
    assert r.status_code == 201, r.text
    pinned = {t["table"]: t["version"] for t in r.json()}
    assert (
        pinned["silver.trades"]
        == Lakehouse(client.app.state.service.catalog.root).history("silver.trades")["version"][0]
    )
    listed = client.get("/tags", headers=auth(keys["reader"])).json()
    assert {t["name"] for t in listed} == {"bt-api"}
    got = client.post("/query/sql", json={"sql": COUNT, "as_of": "bt-api"}, headers=auth(keys["reader"]))
    assert got.status_code == 200 and [r["n"] for r in got.json()] == [TRADES_PER_SYMBOL] * 2
    assert client.delete("/tags/bt-api", headers=auth(keys["reader"])).status_code == 403
    assert client.delete("/tags/bt-api", headers=auth(keys["admin"])).status_code == 204
    assert client.delete("/tags/bt-api", headers=auth(keys["admin"])).status_code == 404
    assert (
        client.post("/tags", json={"name": "x", "tables": ["meta.api_keys"]}, headers=auth(keys["admin"])).status_code
        == 404
    )


def test_sql_in_each_format_holds_the_same_rows(client: TestClient, keys: dict[str, str]) -> None:
    expected = Lakehouse(client.app.state.service.catalog.root).sql(COUNT)
    frames = {}
    for fmt in ("json", "csv", "arrow", "parquet"):
        r = client.post("/query/sql", json={"sql": COUNT, "format": fmt}, headers=auth(keys["reader"]))
        assert r.status_code == 200, r.text
        if fmt == "json":
            frames[fmt] = pl.DataFrame(r.json())
        elif fmt == "csv":
            frames[fmt] = pl.read_csv(io.BytesIO(r.content))
        elif fmt == "arrow":
            assert r.headers["content-type"] == "application/vnd.apache.arrow.stream"
            frames[fmt] = pl.DataFrame(pl.from_arrow(ipc.open_stream(r.content).read_all()))
        else:
            frames[fmt] = pl.DataFrame(pl.from_arrow(pq.read_table(io.BytesIO(r.content))))
    for fmt, frame in frames.items():
        assert frame["symbol"].to_list() == list(SYMBOLS), fmt
        assert frame["n"].to_list() == expected["n"].to_list() == [TRADES_PER_SYMBOL] * 2, fmt
    bars = client.post(
        "/query/sql",
        json={"sql": "SELECT count(*) AS n FROM gold.bars WHERE interval = '1m'"},
        headers=auth(keys["reader"]),
    )
    assert bars.json() == [{"n": 20}]  # the view over gold.ohlcv: 10 minutes x 2 symbols
    empty = client.post(
        "/query/sql", json={"sql": "SELECT * FROM silver.trades WHERE false"}, headers=auth(keys["reader"])
    )
    assert empty.status_code == 200 and empty.json() == []


def test_as_of_a_version_reads_that_version_and_a_bad_one_is_404(client: TestClient, keys: dict[str, str]) -> None:
    r = client.post(
        "/query/sql", json={"sql": "SELECT count(*) AS n FROM silver.trades", "as_of": 0}, headers=auth(keys["reader"])
    )
    assert r.status_code == 200 and r.json() == [{"n": 0}]  # version 0: the table created empty
    r = client.post(
        "/query/sql", json={"sql": "SELECT 1 FROM silver.trades", "as_of": 99}, headers=auth(keys["reader"])
    )
    assert r.status_code == 404 and "version 99 does not exist" in r.json()["detail"]
    r = client.post(
        "/query/sql", json={"sql": "SELECT 1 FROM silver.trades", "as_of": "no-such-tag"}, headers=auth(keys["reader"])
    )
    assert r.status_code == 404
    r = client.post("/query/sql", json={"sql": "SELECT nope FROM silver.trades"}, headers=auth(keys["reader"]))
    assert r.status_code == 400 and "nope" in r.json()["detail"]


def test_tables_detail_and_history(client: TestClient, keys: dict[str, str]) -> None:
    tables = {t["table"]: t for t in client.get("/tables", headers=auth(keys["reader"])).json()}
    assert tables["silver.trades"]["rows"] == 2 * TRADES_PER_SYMBOL and "gold.ohlcv" in tables
    assert "meta.api_keys" not in tables and "meta.audit" not in tables
    detail = client.get("/tables/silver.trades", headers=auth(keys["reader"])).json()
    assert (
        detail["exists"]
        and detail["rows"] == 2 * TRADES_PER_SYMBOL
        and "price" in {c["name"] for c in detail["columns"]}
    )
    assert detail["partition_by"] == ["exchange", "symbol", "date"]
    assert client.get("/tables/silver.nothing", headers=auth(keys["reader"])).status_code == 404
    assert client.get("/tables/meta.api_keys", headers=auth(keys["reader"])).status_code == 404
    history = client.get("/tables/silver.trades/history", headers=auth(keys["reader"])).json()
    assert [c["version"] for c in history] == [1, 0] and history[0]["operation"]


def test_health_reports_storage_and_each_venues_freshness(client: TestClient) -> None:
    health = client.get("/health").json()
    assert health["live"] and health["ready"] and health["storage"] == "ok"
    (venue,) = health["venues"]
    # the fixture's trades were received in 2026-11-20's first minutes: long ago, so stale
    assert venue["exchange"] == "BINANCE_FUTURES" and venue["event"] == "commit" and not venue["fresh"]
    assert health["status"] == "degraded"


def test_metrics_count_queries_and_rejections(client: TestClient, keys: dict[str, str]) -> None:
    client.post("/query/sql", json={"sql": COUNT}, headers=auth(keys["reader"]))
    client.post("/query/sql", json={"sql": "INSTALL httpfs"}, headers=auth(keys["reader"]))
    client.get("/tables")
    text = client.get("/metrics", headers=auth(keys["reader"])).text
    assert 'lakehouse_api_query_seconds_count{format="json",status="200"} 1.0' in text
    assert 'lakehouse_api_rejected_requests_total{reason="invalid"} 1.0' in text
    assert 'lakehouse_api_rejected_requests_total{reason="auth"} 1.0' in text
    assert 'lakehouse_ingest_lag_seconds{exchange="BINANCE_FUTURES"}' in text
    assert 'lakehouse_api_requests_total{method="GET",route="/tables",status="401"} 1.0' in text


def test_row_and_byte_limits_are_413_and_concurrency_past_the_limit_is_429(
    lake_root: Path, keys: dict[str, str]
) -> None:
    with TestClient(create_app(settings_for(lake_root, max_rows=100, max_bytes=50_000), audit=False)) as client:
        r = client.post("/query/sql", json={"sql": "SELECT * FROM range(101)"}, headers=auth(keys["reader"]))
        assert r.status_code == 413 and "more than 100 rows" in r.json()["detail"]
        ok = client.post("/query/sql", json={"sql": "SELECT * FROM range(100)"}, headers=auth(keys["reader"]))
        assert ok.status_code == 200 and len(ok.json()) == 100
        r = client.post(
            "/query/sql", json={"sql": "SELECT repeat('x', 1000) FROM range(60)"}, headers=auth(keys["reader"])
        )
        assert r.status_code == 413 and "larger than 50000 bytes" in r.json()["detail"]
    with TestClient(create_app(settings_for(lake_root, max_concurrent=1, timeout_s=1.5), audit=False)) as client:
        slow = "WITH RECURSIVE t(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM t) SELECT count(*) FROM t"  # endless
        first: dict[str, int] = {}
        thread = threading.Thread(
            target=lambda: first.update(
                code=client.post("/query/sql", json={"sql": slow}, headers=auth(keys["reader"])).status_code
            )
        )
        thread.start()
        service = client.app.state.service
        while service.slots.used == 0 and thread.is_alive():
            pass
        r = client.post("/query/sql", json={"sql": "SELECT 1"}, headers=auth(keys["reader"]))
        assert r.status_code == 429 and r.headers["retry-after"] == "1" and "retry later" in r.json()["detail"]
        thread.join()
        assert first["code"] == 408
        assert client.post("/query/sql", json={"sql": "SELECT 1"}, headers=auth(keys["reader"])).status_code == 200


def test_openapi_documents_every_route_with_its_models(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    assert {
        "/query/sql",
        "/tables",
        "/tables/{name}",
        "/tables/{name}/history",
        "/tags",
        "/tags/{name}",
        "/health",
        "/metrics",
    } <= set(paths)
    query = paths["/query/sql"]["post"]
    assert {"200", "400", "401", "403", "404", "408", "413", "429"} <= set(query["responses"])
    assert "application/vnd.apache.arrow.stream" in query["responses"]["200"]["content"]
    assert paths["/tables"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]["items"][
        "$ref"
    ].endswith("TableInfo")
    assert {"HTTPBearer", "APIKeyHeader"} <= set(spec["components"]["securitySchemes"])
    assert client.get("/docs").status_code == 200
