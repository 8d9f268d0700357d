"""The HTTP query service (``lakehouse api``): FastAPI routes over :class:`~crypto_lakehouse.query.Lakehouse`.

Every route but ``/health``, the OpenAPI pages and the explorer page's static files
(``/explorer/``) needs an API key (``Authorization: Bearer <key>`` or ``X-API-Key: <key>``):
401 for a missing, unknown or revoked key, 403 for a role without the right (:mod:`.keys`).
Reads go through one ``Lakehouse``; SQL runs in the sandbox
(:mod:`.sandbox`) with the limits of ``api.limits``. Each request is audited (:mod:`.audit`) and
counted (``/metrics``). Logs carry key ids and SQL hashes, never a key or SQL text.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, MutableMapping
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import anyio
from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request, Response, Security, status
from fastapi.responses import JSONResponse, RedirectResponse, StreamingResponse
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field

import crypto_lakehouse.jobs as jobs
import crypto_lakehouse.service._encode as _encode
import crypto_lakehouse.service._query as _query
import crypto_lakehouse.service._status as _status
import crypto_lakehouse.service._stream as _stream
from crypto_lakehouse.config import Settings
from crypto_lakehouse.durations import parse_time
from crypto_lakehouse.errors import (
    InvalidArgument,
    LakehouseError,
    TableNotFound,
    TagNotFound,
    UnknownTable,
    VersionNotFound,
)
from crypto_lakehouse.query import Lakehouse
from crypto_lakehouse.schemas import TableName, table_name, table_spec
from crypto_lakehouse.service._metrics import Metrics
from crypto_lakehouse.service.audit import AuditLog, AuditRow
from crypto_lakehouse.service.keys import ApiKey, KeyStore, Role, role_allows
from crypto_lakehouse.service.sandbox import HIDDEN, MAX_SQL_CHARS, sql_hash

__all__ = ["create_app"]

LOG = logging.getLogger(__name__)
_GRACE_S = 1.0  # past api.limits.timeout_s, what a response may take to reach the client
_STATIC = Path(__file__).with_name("static")  # the explorer page (shipped in the wheel)


# ---------------------------------------------------------------------------------- models
class Problem(BaseModel):
    """An error: what went wrong and what to do."""

    detail: str


class QueryRequest(BaseModel):
    sql: str = Field(
        min_length=1,
        max_length=MAX_SQL_CHARS,
        description="One DuckDB SELECT over layer.kind tables (silver.trades, gold.ohlcv, gold.bars, ...)",
        examples=["SELECT symbol, count(*) AS n FROM silver.trades GROUP BY symbol"],
    )
    as_of: int | str | None = Field(
        None, description="Delta version (int), RFC 3339 time or tag name; null = the latest"
    )
    format: _encode.Format = Field("json", description="json, csv, arrow (IPC stream) or parquet")


class TableInfo(BaseModel):
    table: str
    version: int
    rows: int
    files: int
    bytes: int


class Column(BaseModel):
    name: str
    type: str
    nullable: bool
    doc: str


class TableDetail(BaseModel):
    table: str
    description: str
    partition_by: list[str]
    key: list[str]
    columns: list[Column]
    exists: bool
    version: int | None = None
    rows: int | None = None
    files: int | None = None
    bytes: int | None = None


class Commit(BaseModel):
    version: int
    timestamp: datetime | None
    operation: str | None
    parameters: str | None


class Tag(BaseModel):
    name: str
    table: str
    version: int
    created_at: datetime
    note: str | None = None


class TagCreate(BaseModel):
    name: str = Field(min_length=1, max_length=200, examples=["bt-2026-11"])
    tables: list[str] | None = Field(None, description="tables to pin; null = every silver and gold table")
    note: str | None = Field(None, max_length=2000)


class VenueHealth(BaseModel):
    exchange: str
    last_seen: datetime
    age_s: float
    event: str = Field(description="start, alive or end (bronze.sessions), or commit (latest bronze.trades row)")
    fresh: bool = Field(description="heard of within api.freshness and not ended")


class Health(BaseModel):
    status: Literal["ok", "degraded", "unavailable"]
    live: bool
    ready: bool = Field(description="the storage root answers")
    storage: str = Field(description="ok, or why the storage root does not answer")
    venues: list[VenueHealth]


class CompletenessDay(BaseModel):
    """One row of the completeness ledger (gold.completeness, docs/quality.md)."""

    exchange: str
    symbol: str
    channel: str
    date: date
    rows: int
    quarantined: int
    day_seconds: float
    covered_seconds: float | None
    ids_expected: int | None
    ids_present: int | None
    sequence_breaks: int
    gaps_open: int
    gaps_filled: int
    gaps_unfillable: int
    score: float
    complete: bool
    updated_at: datetime


class QualitySummary(BaseModel):
    """The completeness ledger's rows asked for, and what they add up to."""

    days: int = Field(description="ledger rows (stream x UTC day)")
    complete: int = Field(description="of them, complete days (score 1, over, covered)")
    mean_score: float | None = Field(description="mean DQ score; null: no row")
    min_score: float | None
    gaps_open: int = Field(description="gaps not filled yet, summed over the rows")
    rows: list[CompletenessDay]


_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "missing, unknown or revoked API key"},
    403: {"model": Problem, "description": "the key's role may not do this"},
}
_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": Problem, "description": "no such table, tag or version"}}
_QUERY_ERRORS: dict[int | str, dict[str, Any]] = {
    **_ERRORS,
    **_NOT_FOUND,
    200: {
        "description": "the result, streamed in the format asked",
        "content": {media: {} for media in _encode.MEDIA_TYPES.values() if media != "application/json"},
    },
    400: {"model": Problem, "description": "SQL refused by the sandbox or failing in DuckDB"},
    408: {"model": Problem, "description": "the query ran past api.limits.timeout_s and was interrupted"},
    413: {"model": Problem, "description": "the result is past api.limits.max_rows or max_bytes, or the memory limit"},
    429: {"model": Problem, "description": "api.limits.max_concurrent queries are running; retry later"},
}

_STREAM_RESPONSES: dict[int | str, dict[str, Any]] = {
    **_ERRORS,
    200: {
        "description": "server-sent events: `id:` <receipt_us>.<digest>, `data:` one row as JSON with its table; "
        "`: heartbeat` comments while nothing arrives",
        "content": {"text/event-stream": {}},
    },
    400: {"model": Problem, "description": "a table that cannot be streamed, a bad since or Last-Event-ID"},
    413: {"model": Problem, "description": "the catch-up is past api.limits.max_rows: give a later since"},
    429: {"model": Problem, "description": "too many streams are open; retry later"},
}
_STREAMABLE = ", ".join(_stream.STREAMABLE)
_POLL_S = 0.05  # how often a stream asks the writers and Delta for new rows

_STATUS: list[tuple[type[LakehouseError], int, str]] = [
    (UnknownTable, 404, "not_found"),
    (TableNotFound, 404, "not_found"),
    (VersionNotFound, 404, "not_found"),
    (TagNotFound, 404, "not_found"),
    (InvalidArgument, 400, "invalid"),
    (LakehouseError, 400, "invalid"),
]


# ---------------------------------------------------------------------------------- service
class _Service:
    """What the routes share: settings, the one Lakehouse, keys, query slots, audit, metrics."""

    def __init__(self, settings: Settings, *, audit: bool) -> None:
        self.settings = settings
        self.lakehouse = Lakehouse(settings.root, config=settings)
        self.catalog = self.lakehouse.catalog
        self.keys = KeyStore(self.catalog)
        self.slots = _query.Slots(settings.api.limits.max_concurrent)
        self.streams = _query.Slots(_stream.MAX_STREAMS)
        self.attach_lock = threading.Lock()
        self.metrics = Metrics()
        api = settings.api
        flush = api.audit_flush.total_seconds()
        self.audit = AuditLog(self.catalog, flush_s=flush, retention=api.audit_retention) if audit else None


def _credentials(
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(HTTPBearer(auto_error=False))],
    header: Annotated[str | None, Security(APIKeyHeader(name="X-API-Key", auto_error=False))],
) -> str | None:
    return header or (bearer.credentials if bearer is not None else None)


def _requires(role: Role) -> Callable[..., ApiKey]:
    """A dependency: the caller's verified key, if its role includes ``role``."""

    def check(request: Request, key: Annotated[str | None, Depends(_credentials)]) -> ApiKey:
        service: _Service = request.app.state.service
        found = service.keys.verify(key)
        if found is None:
            service.metrics.rejected.labels("auth").inc()
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "a valid API key is needed: Authorization: Bearer <key> or X-API-Key: <key> (lakehouse keys create)",
                headers={"WWW-Authenticate": "Bearer"},
            )
        request.state.key = found
        if not role_allows(found.role, role):
            service.metrics.rejected.labels("forbidden").inc()
            raise HTTPException(
                status.HTTP_403_FORBIDDEN, f"this needs the {role} role; key {found.id} is {found.role}"
            )
        return found

    return check


Reader = Annotated[ApiKey, Depends(_requires("reader"))]
Operator = Annotated[ApiKey, Depends(_requires("operator"))]


def _visible_table(name: str) -> TableName:
    if name in HIDDEN:
        raise UnknownTable(f"unknown table {name!r}; GET /tables lists the tables")
    return table_name(name)


def create_app(settings: Settings, *, audit: bool = True) -> FastAPI:
    """The service's ASGI app over ``settings``' root (``audit=False``: no ``meta.audit`` rows)."""
    service = _Service(settings, audit=audit)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if service.audit is not None:
            service.audit.start()
        try:
            yield
        finally:
            if service.audit is not None:
                service.audit.stop()

    app = FastAPI(
        title="crypto-lakehouse query service",
        version="1",
        description=__doc__ or "",
        lifespan=lifespan,
    )
    app.state.service = service

    @app.exception_handler(LakehouseError)
    async def _lakehouse_error(request: Request, exc: LakehouseError) -> JSONResponse:
        code, reason = 400, "invalid"
        if isinstance(exc, _query.QueryFailed):
            code, reason = exc.status, exc.reason
        else:
            code, reason = next((c, r) for kind, c, r in _STATUS if isinstance(exc, kind))
        if code != 404:
            service.metrics.rejected.labels(reason).inc()
        headers = {"Retry-After": "1"} if code == 429 else None
        return JSONResponse({"detail": str(exc)}, status_code=code, headers=headers)

    # ------------------------------------------------------------------ query
    @app.post("/query/sql", tags=["query"], responses=_QUERY_ERRORS, response_model=None)
    def query_sql(body: QueryRequest, request: Request, key: Reader) -> Response:
        """Run one read-only SELECT over the lakehouse's tables (at ``as_of``); the result is
        streamed from DuckDB's record batches in ``format``."""
        request.state.sql_hash = sql_hash(body.sql)
        request.state.format = body.format
        result = _query.run_query(
            service.lakehouse,
            service.attach_lock,
            service.slots,
            sql=body.sql,
            as_of=body.as_of,
            fmt=body.format,
            limits=settings.api.limits,
        )
        request.state.result = result
        LOG.info("key %s query %s: %s", key.id, request.state.sql_hash, body.format)
        if result.rest is None:
            return Response(b"".join(result.head), media_type=result.media_type)
        rest = result.rest

        def body_chunks() -> Iterator[bytes]:
            try:
                yield from result.head
                yield from rest
            finally:  # closed before the end (the client went away): close the rest, free the slot
                rest.close()
                result.close()

        chunks = request.state.stream = body_chunks()  # closed by _Observed when the response ends
        return StreamingResponse(chunks, media_type=result.media_type)

    @app.get("/query/stream", tags=["query"], responses=_STREAM_RESPONSES, response_class=StreamingResponse)
    async def query_stream(
        request: Request,
        key: Reader,
        tables: Annotated[
            list[str] | None, Query(description=f"tables to stream (default bronze.trades): {_STREAMABLE}")
        ] = None,
        exchange: Annotated[str | None, Query(max_length=100)] = None,
        symbols: Annotated[list[str] | None, Query(description="symbols (all when none)")] = None,
        since: Annotated[
            str | None,
            Query(max_length=100, description="catch up from this exchange time (RFC 3339 or -5m); default now"),
        ] = None,
        heartbeat_s: Annotated[float, Query(ge=0.5, le=60, description="a comment after this long without rows")] = 5.0,
        last_event_id: Annotated[
            str | None, Header(max_length=200, description="resume after this event (sent by EventSource)")
        ] = None,
    ) -> StreamingResponse:
        """Live ticks of bronze tables as server-sent events: first every row since ``since``
        (Delta and the writers' live buffers), then each row as a writer receives it; no gap and
        no duplicate across the seam and across commits (rows are deduplicated by the table's
        key). Resume with ``Last-Event-ID``."""
        ticks = _stream.Ticks(
            settings,
            tables=_stream.stream_tables(tables or ["bronze.trades"]),
            exchange=exchange,
            symbols=symbols,
            since=datetime.now(UTC) if since is None else parse_time(since, name="since"),
            after=None if last_event_id is None else _stream.parse_cursor(last_event_id),
            max_rows=settings.api.limits.max_rows,
        )
        if not service.streams.take():
            raise _query.QueryFailed(429, f"{service.streams.size} streams are open; retry later", reason="busy")
        try:
            first = await anyio.to_thread.run_sync(ticks.catch_up)
        except BaseException:
            service.streams.give()
            raise
        LOG.info("key %s stream of %s", key.id, ",".join(ticks.tables))

        async def events() -> AsyncIterator[str]:
            try:
                yield _stream.sse(first) or ": caught up\n\n"
                quiet_since = time.monotonic()
                while True:
                    await anyio.sleep(_POLL_S)
                    try:
                        batch = await anyio.to_thread.run_sync(ticks.poll)
                    except (LakehouseError, OSError) as exc:  # storage hiccup: the next poll reads it again
                        LOG.warning("stream poll failed (%s); retrying", type(exc).__name__)
                        batch = []
                    if batch:
                        yield _stream.sse(batch)
                        quiet_since = time.monotonic()
                    elif time.monotonic() - quiet_since >= heartbeat_s:
                        yield ": heartbeat\n\n"
                        quiet_since = time.monotonic()
            finally:
                service.streams.give()

        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        return StreamingResponse(events(), media_type="text/event-stream", headers=headers)

    # ------------------------------------------------------------------ tables
    @app.get("/tables", tags=["tables"], responses=_ERRORS)
    def tables(key: Reader) -> list[TableInfo]:
        """Every table that exists under the root, with its version, rows, files and bytes."""
        df = service.lakehouse.tables().drop("uri")
        return [TableInfo(**row) for row in df.iter_rows(named=True) if row["table"] not in HIDDEN]

    @app.get("/tables/{name}", tags=["tables"], responses={**_ERRORS, **_NOT_FOUND})
    def table(name: str, key: Reader) -> TableDetail:
        """A table's schema, partitioning and key, and its size when it exists."""
        spec = table_spec(_visible_table(name))
        columns = [
            Column(
                name=f.name,
                type=str(f.type),
                nullable=f.nullable,
                doc=(f.metadata or {}).get(b"doc", b"").decode(),
            )
            for f in spec.schema
        ]
        summary = service.catalog.summary(spec.name)
        return TableDetail(
            table=spec.name,
            description=spec.description,
            partition_by=list(spec.partition_by),
            key=list(spec.key),
            columns=columns,
            exists=summary["exists"],
            version=summary.get("version"),
            rows=summary.get("rows"),
            files=summary.get("files"),
            bytes=summary.get("bytes"),
        )

    @app.get("/tables/{name}/history", tags=["tables"], responses={**_ERRORS, **_NOT_FOUND})
    def history(name: str, key: Reader) -> list[Commit]:
        """The table's commits, newest first."""
        with service.attach_lock:
            df = service.lakehouse.history(_visible_table(name))
        return [Commit(**row) for row in df.iter_rows(named=True)]

    # ------------------------------------------------------------------ tags
    @app.get("/tags", tags=["tags"], responses=_ERRORS)
    def tags(key: Reader) -> list[Tag]:
        """Every tag with the version of each table it pins."""
        return [Tag(**row) for row in jobs.list_tags(settings).iter_rows(named=True)]

    @app.post("/tags", tags=["tags"], status_code=201, responses={**_ERRORS, 400: {"model": Problem}})
    def create_tag(body: TagCreate, key: Operator) -> list[Tag]:
        """Pin the current version of every silver and gold table (or ``tables``) under ``name`` (operator)."""
        for t in body.tables or ():
            _visible_table(t)
        pinned = jobs.create_tag(settings, name=body.name, tables=body.tables, note=body.note)
        LOG.info("key %s created tag %s", key.id, body.name)
        return [Tag(**row) for row in pinned.iter_rows(named=True)]

    @app.delete("/tags/{name}", tags=["tags"], status_code=204, responses={**_ERRORS, **_NOT_FOUND})
    def delete_tag(name: str, key: Operator) -> Response:
        """Delete a tag (the data stays) (operator)."""
        jobs.delete_tag(settings, name=name)
        LOG.info("key %s deleted tag %s", key.id, name)
        return Response(status_code=204)

    # ------------------------------------------------------------------ quality
    @app.get("/quality", tags=["quality"], responses={**_ERRORS, **_NOT_FOUND, 400: {"model": Problem}})
    def quality(
        key: Reader,
        day: Annotated[str | None, Query(max_length=40, description="a UTC day, YYYY-MM-DD")] = None,
        exchange: Annotated[str | None, Query(max_length=100)] = None,
        symbol: Annotated[str | None, Query(max_length=100)] = None,
    ) -> QualitySummary:
        """The completeness ledger (docs/quality.md): one row per stream (exchange, symbol,
        channel) and UTC day, only ``day``, ``exchange`` and ``symbol`` when given, with their
        totals. 404 before promote-silver first ran; 400 for a day, exchange or symbol the
        ledger has no row of (the message lists those it has)."""
        ledger = jobs.quality(settings, day=day, exchange=exchange, symbol=symbol)
        scores = ledger.get_column("score")
        return QualitySummary(
            days=ledger.height,
            complete=int(ledger.get_column("complete").sum()),
            mean_score=scores.mean() if ledger.height else None,  # type: ignore[arg-type]  # a float column's mean
            min_score=scores.min() if ledger.height else None,  # type: ignore[arg-type]  # a float column's min
            gaps_open=int(ledger.get_column("gaps_open").sum()),
            rows=[CompletenessDay(**row) for row in ledger.iter_rows(named=True)],
        )

    # ------------------------------------------------------------------ operations
    @app.get("/health", tags=["operations"], responses={503: {"model": Health}})
    def health(response: Response) -> Health:
        """Liveness (the process answers) and readiness (the storage root answers), with each
        venue's writer freshness. 503 when not ready. No key needed (for probes)."""
        now = datetime.now(UTC)
        try:
            service.catalog.exists("meta.tags")  # one listing of the root: raises if unreachable
            seen, storage = _status.last_seen(service.catalog), "ok"
        except Exception as exc:  # noqa: BLE001 - any storage failure means not ready
            seen, storage = [], f"unreachable: {type(exc).__name__}"
        fresh_for = settings.api.freshness.total_seconds()
        venues = [
            VenueHealth(
                exchange=v["exchange"],
                last_seen=v["at"],
                age_s=(age := (now - v["at"]).total_seconds()),
                event=v["event"],
                fresh=age <= fresh_for and v["event"] != "end",
            )
            for v in seen
        ]
        ready = storage == "ok"
        state: Literal["ok", "degraded", "unavailable"] = (
            "unavailable" if not ready else "ok" if all(v.fresh for v in venues) else "degraded"
        )
        if not ready:
            response.status_code = 503
        return Health(status=state, live=True, ready=ready, storage=storage, venues=venues)

    @app.get(
        "/metrics",
        tags=["operations"],
        responses={**_ERRORS, 200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text"}},
        response_class=Response,
    )
    def metrics(key: Reader) -> Response:
        """Prometheus text: query latency, rejected requests by reason, requests by route, and
        per venue the ingest lag, rows/s and open gaps."""
        m = service.metrics
        try:
            now = datetime.now(UTC)
            for v in _status.last_seen(service.catalog):
                m.lag.labels(v["exchange"]).set((now - v["at"]).total_seconds())
            for exchange, rate in _status.ingest_rates(service.catalog, now=now).items():
                m.ingest_rows.labels(exchange).set(rate)
            for exchange, n in _status.open_gaps(service.catalog).items():
                m.open_gaps.labels(exchange).set(n)
        except Exception as exc:  # noqa: BLE001 - the request metrics are still worth serving
            LOG.warning("metrics: pipeline gauges not updated (%s)", type(exc).__name__)
        return Response(generate_latest(m.registry), media_type=CONTENT_TYPE_LATEST)

    # ------------------------------------------------------------------ explorer page
    # static files, no key: every data call the page makes sends the key its user signs in with
    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/explorer/")

    app.mount("/explorer", StaticFiles(directory=_STATIC, html=True), name="explorer")

    app.add_middleware(_Observed, service=service)
    return app


class _Observed:
    """ASGI middleware: after each HTTP request (its body streamed to the end, or failed), count
    it, time it and queue its audit row."""

    def __init__(self, app: Callable[..., Awaitable[None]], *, service: _Service) -> None:
        self.app = app
        self.service = service

    async def __call__(
        self,
        scope: MutableMapping[str, Any],
        receive: Callable[[], Awaitable[MutableMapping[str, Any]]],
        send: Callable[[MutableMapping[str, Any]], Awaitable[None]],
    ) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, at = time.perf_counter(), datetime.now(UTC)
        sent = {"status": 500, "bytes": 0}

        async def observed(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                sent["status"] = message["status"]
            elif message["type"] == "http.response.body":
                sent["bytes"] += len(message.get("body", b""))
            await send(message)

        # a query's response, streaming included, is bounded in time like the query itself: a
        # client that stops reading (or went away unnoticed) cannot hold a slot for ever
        limit = self.service.settings.api.limits.timeout_s + _GRACE_S if scope["path"] == "/query/sql" else None
        try:
            with anyio.fail_after(limit):
                await self.app(scope, receive, observed)
        except _query.QueryFailed as exc:  # a limit met while streaming: the response is cut
            sent["status"] = exc.status
            self.service.metrics.rejected.labels(exc.reason).inc()
            raise
        except TimeoutError:
            sent["status"] = 408
            self.service.metrics.rejected.labels("timeout").inc()
            raise
        finally:
            _close_stream(scope)
            self._observe(scope, sent, started, at)

    def _observe(self, scope: MutableMapping[str, Any], sent: dict[str, int], started: float, at: datetime) -> None:
        duration = time.perf_counter() - started
        state = scope.get("state") or {}
        explorer = isinstance(scope.get("endpoint"), StaticFiles)  # the page's files: no route object
        route = getattr(scope.get("route"), "path", None) or ("/explorer" if explorer else "unmatched")
        code = sent["status"]
        m = self.service.metrics
        m.requests.labels(scope["method"], route, str(code)).inc()
        result = state.get("result")
        if route == "/query/sql":
            m.latency.labels(state.get("format", "json"), str(code)).observe(duration)
            if result is not None:
                m.rows.inc(result.rows)
        if self.service.audit is None:
            return
        key: ApiKey | None = state.get("key")
        client = scope.get("client")
        row: AuditRow = {
            "at": at,
            "key_id": key.id if key else None,
            "role": key.role if key else None,
            "method": scope["method"],
            "route": route,
            "sql_hash": state.get("sql_hash"),
            "rows": result.rows if result is not None else None,
            "bytes": sent["bytes"],
            "duration_ms": duration * 1000,
            "status": code,
            "client": client[0] if client else None,
        }
        self.service.audit.record(row)


def _close_stream(scope: MutableMapping[str, Any]) -> None:
    """Close a streamed query's body once its response is over, whether it was sent to the end,
    failed, or the client went away (then Starlette stops pulling it and, without this, the
    query's connection and concurrency slot would wait for the garbage collector). No thread
    is inside the generator by then: Starlette's threadpool calls are not abandoned on cancel."""
    stream = (scope.get("state") or {}).get("stream")
    if stream is None:
        return
    try:
        stream.close()
    except ValueError:  # "generator already executing": it finishes, and closes, by itself
        LOG.warning("a query stream was still running when its response ended")
