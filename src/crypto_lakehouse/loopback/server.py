"""The loopback exchange: Binance-protocol ``wss://`` combined streams + REST on 127.0.0.1, or
OKX v5 (subscriptions over the websocket; ``loopback.okx``) for a synthetic OKX market.

Two modes:

* **replay** a cryptofeed recording: the recorded REST answers and exactly the recorded frames
  of the streams a client subscribes to, each frame delivered once across (re)connections;
  ``finished`` is set when the recording has been played out;
* **synthetic**: a :class:`~crypto_lakehouse.loopback.synthetic.SyntheticMarket`, paced at its
  message rate, starting when the first client subscribes; REST serves its ground truth.

Faults (:class:`FaultPlan`) withhold trades from the stream, duplicate them, inject malformed
frames or drop a connection, for reliability tests of everything downstream.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import Coroutine, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, Self, TypedDict, Unpack

from aiohttp import web
from aiohttp.typedefs import Handler

import crypto_lakehouse.loopback.okx as okx
from crypto_lakehouse.errors import LakehouseError
from crypto_lakehouse.loopback.listen import Listening, listen
from crypto_lakehouse.loopback.recording import Recording, load_recording
from crypto_lakehouse.loopback.synthetic import MarketSpec, RestError, SyntheticMarket, malformed_variant
from crypto_lakehouse.loopback.tls import make_certificate
from crypto_lakehouse.loopback.wsserver import WebSocket, encode_text_frame
from crypto_lakehouse.venues.registry import Venue, venue

__all__ = ["MALFORMED_KINDS", "ExchangeStatus", "FaultPlan", "LoopbackExchange", "running_exchange"]

LOG = logging.getLogger(__name__)

MALFORMED_KINDS = ("truncated", "wrong_type", "not_json", "unknown_event", "missing_field")
_PREFIX_KIND = {"/api/v3": "spot", "/fapi/v1": "linear", "/dapi/v1": "inverse"}
_MAX_ROUNDS_PER_BATCH = 2_000


@dataclass(slots=True)
class FaultPlan:
    """Faults the synthetic stream injects (REST always serves the full ground truth)."""

    skip_trades: list[tuple[int, int]] = field(default_factory=list)  # inclusive aggTrade id ranges
    duplicate_every: int = 0  # every Nth trade is sent twice
    malformed_every: int = 0  # after every Nth message, one malformed frame (kinds cycle)
    drop_at: int | None = None  # abort the first connection once it has sent this many messages

    def skips(self, trade_id: int) -> bool:
        return any(lo <= trade_id <= hi for lo, hi in self.skip_trades)


@dataclass(slots=True)
class _Stats:
    messages_sent: int = 0
    trades_skipped: int = 0
    trades_duplicated: int = 0
    malformed_sent: dict[str, int] = field(default_factory=dict)
    sent_by_channel: dict[str, int] = field(default_factory=dict)  # synthetic frames queued per stream kind
    connections_opened: int = 0
    connections_dropped: int = 0


def _canonical(stream: str) -> str:
    """``btcusdt@depth@100ms`` -> ``btcusdt@depth``; ``x@markPrice@1s`` -> ``x@markPrice``."""
    sym, _, rest = stream.partition("@")
    chan = rest.split("@", 1)[0]
    return f"{sym.lower()}@{chan}"


class ExchangeStatus(TypedDict):
    """:meth:`LoopbackExchange.status`, also served as JSON at ``GET /_loopback/status``."""

    exchange: str
    mode: str
    finished: bool
    connections: int
    messages_sent: int
    trades_skipped: int
    trades_duplicated: int
    malformed_sent: dict[str, int]
    sent_by_channel: dict[str, int]
    """Synthetic mode: market frames sent per stream kind (``aggTrade``, ``depth``, ...), over
    every connection and counting duplicates; malformed frames are not included."""
    connections_opened: int
    connections_dropped: int
    ws_url: str
    rest_url: str


class _WaitFinished(Protocol):
    def __call__(self, timeout: float | None = None) -> bool: ...


class _Conn:
    __slots__ = ("names", "okx", "pending", "ws")

    def __init__(self, ws: WebSocket, streams: list[str], *, okx: bool = False):
        self.ws = ws
        # stream key -> its name on the wire (Binance); OKX: the key itself (frames are sent whole)
        self.names: dict[str, bytes] = {_canonical(s): s.encode() for s in streams}
        self.okx = okx
        self.pending: list[bytes] = []


class LoopbackExchange:
    """A local Binance-family exchange for the real cryptofeed and ccxt clients.

    Use ``async with LoopbackExchange(...) as ex`` inside a loop, or :func:`running_exchange`
    from synchronous code (it runs the server in a background thread).
    """

    wait_finished: _WaitFinished
    """Only on an exchange :func:`running_exchange` runs: from the caller's thread, block until
    the recording or market has been played out (``timeout`` seconds at most; False then)."""

    def __init__(
        self,
        *,
        recording: str | Path | Recording | None = None,
        market: MarketSpec | SyntheticMarket | None = None,
        host: str = "127.0.0.1",
        ws_port: int = 0,
        rest_port: int = 0,
        faults: FaultPlan | None = None,
        speed: float = 0.0,
        paced: bool = True,
    ):
        if (recording is None) == (market is None):
            raise LakehouseError("give the loopback exchange either a recording or a synthetic market")
        self.recording: Recording | None = (
            recording if isinstance(recording, Recording) or recording is None else load_recording(recording)
        )
        self.market: SyntheticMarket | None = (
            market if isinstance(market, SyntheticMarket) or market is None else SyntheticMarket(market)
        )
        if self.recording is not None:
            exchange = self.recording.exchange
        else:
            assert self.market is not None  # one of the two, checked above
            exchange = self.market.spec.exchange
        self.venue: Venue = venue(exchange)
        self.host, self._ws_port, self._rest_port = host, ws_port, rest_port
        self.faults = faults or FaultPlan()
        self.speed = speed
        self.paced = paced
        self.stats = _Stats()
        self.certificate = make_certificate(host)
        self._conns: set[_Conn] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._listening: Listening | None = None
        # made again by each start(): an asyncio.Event binds to the loop that first waits on it
        self._first_client = asyncio.Event()
        self.finished = asyncio.Event()
        self.error: BaseException | None = None  # a task of the exchange crashed (see _task_done)
        self._delivered: set[int] = set()
        self._dropped_once = False
        self._malformed_seq = 0
        self._replay_idle: asyncio.TimerHandle | None = None
        self.ws_url = self.rest_url = ""

    # ------------------------------------------------------------------ lifecycle
    @property
    def mode(self) -> str:
        return "replay" if self.recording else "synthetic"

    @property
    def cert_pem(self) -> bytes:
        return self.certificate.cert_pem

    async def start(self) -> Self:
        self._first_client = asyncio.Event()
        self.finished = asyncio.Event()
        try:
            self._listening = await listen(
                self._on_ws,
                self._on_rest,
                host=self.host,
                certificate=self.certificate,
                ws_port=self._ws_port,
                rest_port=self._rest_port,
                middlewares=[self._errors],
            )
        except OSError as exc:
            await self.stop()
            raise LakehouseError(
                f"cannot listen on {self.host} (wss port {self._ws_port}, REST port "
                f"{self._rest_port}): {exc.strerror or exc}; choose other ports or 0 for free ones"
            ) from None
        self.ws_url, self.rest_url = self._listening.ws_url, self._listening.rest_url
        if self.market is not None:
            self._spawn(self._pump())
        LOG.info("loopback %s (%s) on %s and %s", self.venue.exchange, self.mode, self.ws_url, self.rest_url)
        return self

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for conn in list(self._conns):
            await conn.ws.close(1001, "exchange stopping")
        if self._listening is not None:
            await self._listening.close()
            self._listening = None
        if self._replay_idle is not None:
            self._replay_idle.cancel()

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        """A pump or replay that crashed ends the exchange's run: ``error`` says why and
        ``finished`` wakes whoever waits for it (instead of them waiting for their timeout)."""
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            LOG.error("loopback exchange task failed: %r", exc)
            self.error = exc
            self.finished.set()

    def status(self) -> ExchangeStatus:
        return {
            "exchange": self.venue.exchange,
            "mode": self.mode,
            "finished": self.finished.is_set(),
            "connections": len(self._conns),
            "messages_sent": self.stats.messages_sent,
            "trades_skipped": self.stats.trades_skipped,
            "trades_duplicated": self.stats.trades_duplicated,
            "malformed_sent": dict(self.stats.malformed_sent),
            "sent_by_channel": dict(self.stats.sent_by_channel),
            "connections_opened": self.stats.connections_opened,
            "connections_dropped": self.stats.connections_dropped,
            "ws_url": self.ws_url,
            "rest_url": self.rest_url,
        }

    # ------------------------------------------------------------------ websocket side
    async def _on_ws(self, ws: WebSocket) -> None:
        if self.market is not None and self.market.okx:
            await self._on_okx_ws(ws)
            return
        streams = [s for s in ws.query.get("streams", [""])[0].split("/") if s]
        if not ws.path.endswith("/stream") or not streams:
            await ws.close(1008, "subscribe in the URL: /stream?streams=<symbol>@<channel>/...")
            return
        conn = _Conn(ws, streams)
        self.stats.connections_opened += 1
        if self.market is not None:
            try:
                for key in conn.names:
                    chan = key.split("@", 1)[1]
                    if chan.startswith("kline_"):
                        self.market.add_kline_interval(chan.removeprefix("kline_"))
            except RestError as exc:
                await ws.close(1008, str(exc))
                return
        self._conns.add(conn)
        self._first_client.set()
        try:
            if self.recording is not None:
                await self._replay(conn)
            await ws.closed.wait()
        finally:
            self._conns.discard(conn)

    async def _on_okx_ws(self, ws: WebSocket) -> None:
        """An OKX connection: it subscribes by message (``loopback.okx``), any time."""
        path = ws.path.rstrip("/")
        if path not in ("", okx.PUBLIC_PATH, okx.BUSINESS_PATH):
            await ws.close(1008, f"connect to {okx.PUBLIC_PATH} or {okx.BUSINESS_PATH}")
            return
        assert self.market is not None  # OKX is served in synthetic mode only
        market = self.market
        conn = _Conn(ws, [], okx=True)
        self.stats.connections_opened += 1

        def on_text(text: bytes) -> None:
            frames, keys = okx.answer_message(market, path, text)
            conn.names.update((k, k.encode()) for k in keys)
            # at once, behind what the pump queued: a book snapshot precedes the book's updates
            out, conn.pending = [*conn.pending, *(encode_text_frame(f) for f in frames)], []
            ws.send_frames(out)
            self.stats.messages_sent += len(out)
            if keys:
                self._first_client.set()

        self._conns.add(conn)
        closed = asyncio.ensure_future(ws.closed.wait())
        try:
            while not closed.done():
                got = asyncio.ensure_future(ws.received.get())
                await asyncio.wait({got, closed}, return_when=asyncio.FIRST_COMPLETED)
                if not got.done():
                    got.cancel()
                    break
                on_text(got.result())
        finally:
            closed.cancel()
            self._conns.discard(conn)

    def _maybe_malformed(self, conn: _Conn, name: bytes) -> None:
        """After every ``malformed_every``-th message, queue one malformed frame on its stream."""
        if (self.stats.messages_sent + len(conn.pending)) % self.faults.malformed_every == 0:
            conn.pending.append(encode_text_frame(self._malformed(name, okx_framing=conn.okx)))

    def _malformed(self, name: bytes, *, okx_framing: bool = False) -> bytes:
        kind = MALFORMED_KINDS[self._malformed_seq % len(MALFORMED_KINDS)]
        self._malformed_seq += 1
        self.stats.malformed_sent[kind] = self.stats.malformed_sent.get(kind, 0) + 1
        if okx_framing:
            return okx.malformed_frame(kind, name.decode())
        sym = name.split(b"@", 1)[0].upper()
        good = (
            b'{"stream":"'
            + name
            + b'","data":{"e":"aggTrade","E":1,"s":"'
            + sym
            + b'","a":1,"p":"1.0","q":"1.0","f":1,"l":1,"T":1,"m":true}}'
        )
        unknown = b'{"stream":"' + name + b'","data":{"e":"mysteryEvent","E":1,"s":"' + sym + b'"}}'
        wrong = [(b'"p":"1.0","q":"1.0"', b'"p":{"oops":1},"q":null'), (b'"T":1', b'"T":"noon"')]
        return malformed_variant(kind, good, wrong=wrong, drop=b'"p":"1.0",', unknown=unknown)

    async def _flush(self) -> None:
        for conn in list(self._conns):
            if not conn.pending:
                continue
            frames, conn.pending = conn.pending, []
            drop = self.faults.drop_at
            if drop is not None and not self._dropped_once and conn.ws.messages_sent + len(frames) >= drop:
                self._dropped_once = True
                frames = frames[: max(0, drop - conn.ws.messages_sent)]
                conn.ws.send_frames(frames)
                self.stats.messages_sent += len(frames)
                conn.ws.abort()
                self.stats.connections_dropped += 1
                continue
            conn.ws.send_frames(frames)
            self.stats.messages_sent += len(frames)
        for conn in list(self._conns):
            await conn.ws.drain()

    async def _pump(self) -> None:
        """Generate the synthetic market at its rate and fan events out to subscribers."""
        market = self.market
        assert market is not None  # started in synthetic mode only
        await self._first_client.wait()
        await asyncio.sleep(0.05)  # let sibling connections (futures: /public + /market) subscribe
        loop = asyncio.get_running_loop()
        t0, rounds0 = loop.time(), market.rounds
        step_s = market.step_us / 1e6
        faults = self.faults
        sent = self.stats.sent_by_channel
        while not market.finished:
            if self.paced:
                due = int((loop.time() - t0) / step_s) - (market.rounds - rounds0)
                if due <= 0:
                    await asyncio.sleep(min(0.01, step_s))
                    continue
                rounds = min(due, _MAX_ROUNDS_PER_BATCH)
            else:
                rounds = _MAX_ROUNDS_PER_BATCH // 4
            conns = list(self._conns)
            for _ in range(rounds):
                for key, payload, trade_id in market.step():
                    copies = 1
                    if trade_id is not None:
                        if faults.skip_trades and faults.skips(trade_id):
                            self.stats.trades_skipped += 1
                            continue
                        if faults.duplicate_every and trade_id % faults.duplicate_every == 0:
                            copies = 2
                            self.stats.trades_duplicated += 1
                    for conn in conns:
                        name = conn.names.get(key)
                        if name is None:
                            continue
                        kind = key.partition("@")[2]
                        sent[kind] = sent.get(kind, 0) + copies
                        if conn.okx:
                            frame = encode_text_frame(payload)
                        else:
                            frame = encode_text_frame(b'{"stream":"' + name + b'","data":' + payload + b"}")
                        for _ in range(copies):
                            conn.pending.append(frame)
                            if faults.malformed_every:
                                self._maybe_malformed(conn, name)
                if market.finished:
                    break  # type: ignore[unreachable]  # mypy keeps `while not market.finished` narrowed across step()
            await self._flush()
        self.finished.set()
        LOG.info("synthetic market finished: %s", self.status())

    async def _replay(self, conn: _Conn) -> None:
        """Send this connection's recorded frames not yet delivered to an earlier connection."""
        rec = self.recording
        assert rec is not None  # called in replay mode only
        if self._replay_idle is not None:
            self._replay_idle.cancel()
        prev_ts = None
        for i, frame in enumerate(rec.frames):
            if i in self._delivered or _canonical(frame.stream) not in conn.names:
                continue
            if self.speed > 0 and prev_ts is not None:
                await self._flush()
                await asyncio.sleep(max(0.0, (frame.received - prev_ts) / self.speed))
            prev_ts = frame.received
            if not conn.ws.open:
                return
            self._delivered.add(i)
            conn.pending.append(encode_text_frame(frame.payload))
            if len(conn.pending) >= 256:
                await self._flush()
        await self._flush()
        if len(self._delivered) == len(rec.frames):
            self.finished.set()
        else:  # the client subscribed to a subset: done once nobody else shows up for a second
            self._replay_idle = asyncio.get_running_loop().call_later(1.0, self.finished.set)

    # ------------------------------------------------------------------ REST side
    @web.middleware
    async def _errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except RestError as exc:
            return web.json_response({"code": exc.code, "msg": exc.msg}, status=400)
        except (ValueError, TypeError) as exc:
            return web.json_response(
                {"code": -1100, "msg": f"Illegal characters found in a parameter: {exc}"}, status=400
            )

    async def _on_rest(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if path == "/_loopback/status":
            return web.json_response(self.status())
        if path == "/_loopback/cert.pem":
            return web.Response(body=self.cert_pem, content_type="application/x-pem-file")
        if self.market is not None and self.market.okx:
            status, answer = okx.rest(self.market, path, request.query)
            return web.json_response(answer, status=status)
        prefix, _, endpoint = path.rpartition("/")
        kind = _PREFIX_KIND.get(prefix)
        if kind is None:
            return web.json_response({"code": -5000, "msg": f"Path {path} not found."}, status=404)
        q = request.query
        if endpoint in ("ping", "time"):
            return web.json_response({} if endpoint == "ping" else {"serverTime": int(time.time() * 1000)})
        if self.recording is not None:
            body = self.recording.rest_answer(path, q.get("symbol"))
            if body is None and endpoint == "exchangeInfo":
                body = json.dumps({"timezone": "UTC", "serverTime": 0, "rateLimits": [], "symbols": []}).encode()
            if body is None:
                return web.json_response(
                    {"code": -5000, "msg": f"the recording {self.recording.name} holds no answer for {path}"},
                    status=404,
                )
            return web.Response(body=body, content_type="application/json")
        return web.json_response(self._synthetic_rest(kind, endpoint, q))

    def _synthetic_rest(self, kind: str, endpoint: str, q: Mapping[str, str]) -> object:
        m = self.market
        assert m is not None  # no recording: a synthetic market
        if endpoint == "exchangeInfo":
            return m.exchange_info(kind)
        if kind != m.venue.kind:
            raise RestError(-1121, "Invalid symbol.")
        if endpoint == "depth":
            return m.depth_snapshot(q.get("symbol"), _limit(q, 100, 5000))
        if endpoint == "aggTrades":
            return m.agg_trades(
                q.get("symbol"),
                from_id=_int(q, "fromId"),
                start_ms=_int(q, "startTime"),
                end_ms=_int(q, "endTime"),
                limit=_limit(q, 500, 1000),
            )
        if endpoint == "klines":
            interval = q.get("interval")
            if not interval:
                raise RestError(-1102, "Mandatory parameter 'interval' was not sent, was empty/null, or malformed.")
            return m.klines(
                q.get("symbol"),
                interval,
                start_ms=_int(q, "startTime"),
                end_ms=_int(q, "endTime"),
                limit=_limit(q, 500, m.venue.kline_limit),
            )
        if endpoint == "fundingRate" and kind != "spot":
            return m.funding_history(
                q.get("symbol"),
                start_ms=_int(q, "startTime"),
                end_ms=_int(q, "endTime"),
                limit=_limit(q, 100, 1000),
            )
        raise RestError(-5000, f"endpoint {endpoint} is not served by the loopback exchange")


def _int(q: Mapping[str, str], key: str) -> int | None:
    v = q.get(key)
    return None if v in (None, "") else int(v)


def _limit(q: Mapping[str, str], default: int, maximum: int) -> int:
    v = _int(q, "limit")
    if v is None:
        return default
    if v <= 0:
        raise RestError(-1100, f"Illegal characters found in parameter 'limit'; legal range is '1-{maximum}'.")
    return min(v, maximum)


class ExchangeOptions(TypedDict, total=False):
    """:class:`LoopbackExchange`'s arguments, for :func:`running_exchange`."""

    recording: str | Path | Recording | None
    market: MarketSpec | SyntheticMarket | None
    host: str
    ws_port: int
    rest_port: int
    faults: FaultPlan | None
    speed: float
    paced: bool


@contextlib.contextmanager
def running_exchange(**kwargs: Unpack[ExchangeOptions]) -> Iterator[LoopbackExchange]:
    """Run a :class:`LoopbackExchange` in a background thread (for synchronous code and tests).

    ``ex.wait_finished(timeout)`` blocks until the recording/market has been played out.
    """
    loop = asyncio.new_event_loop()
    started = threading.Event()
    exchanges: list[LoopbackExchange] = []
    errors: list[BaseException] = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            exchanges.append(loop.run_until_complete(LoopbackExchange(**kwargs).start()))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            errors.append(exc)
            started.set()
            return
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=run, name="loopback-exchange", daemon=True)
    thread.start()
    started.wait()
    if errors:
        thread.join()
        loop.close()
        raise errors[0]
    ex = exchanges[0]

    def wait_finished(timeout: float | None = None) -> bool:
        return asyncio.run_coroutine_threadsafe(_wait(ex.finished, timeout), loop).result()

    ex.wait_finished = wait_finished
    try:
        yield ex
    finally:
        asyncio.run_coroutine_threadsafe(ex.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


async def _wait(event: asyncio.Event, timeout: float | None) -> bool:
    try:
        await asyncio.wait_for(event.wait(), timeout)
        return True
    except TimeoutError:
        return False
