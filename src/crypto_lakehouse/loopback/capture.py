"""Replay a recorded session of any cryptofeed venue (``NAME.jsonl.zst``) on the loopback.

A capture (cryptofeed's JSON-lines recorder, ``shared/data/cryptofeed-captures``) is one record
per line, in time order: ``header`` (exchange, subscription), ``http`` (a REST answer by URL),
``connect`` / ``send`` / ``recv`` (one websocket connection: opened, a client frame, a venue
frame; binary frames base64 in ``b64``). :class:`CaptureExchange` serves it to the unmodified
cryptofeed handler, whose endpoints :func:`~crypto_lakehouse.venues.clients.feed_class` moved to
it (``host_in_path``: ``wss://127.0.0.1:PORT/<live host><live path>``):

* **REST** by URL, in tiers: the same path and query; the same path with the most query pairs
  in common (Binance asks ``limit=5000`` where 1000 was recorded); a close path (Bitfinex
  ``pub:list:pair:futures`` recorded as ``:future``); else 404 (OKX's ``underlying``: it falls
  back). Hosts are ignored (renamed since: ``api.huobi.pro`` -> ``api.htx.com``).
* **websocket** connections are matched to recorded ones by path, then by the first
  subscription (the URL's query, or the client's first frame). Each recorded connection is
  played once, step by step: a recorded ``send`` waits up to ``send_wait`` seconds for the
  client's frame (clients do not send identical frames), a ``recv`` is sent as recorded (text,
  or binary: HTX's gzip), so acknowledgements come after the subscriptions they answer. A
  client connection beyond the recorded ones (Binance futures splits one recorded connection
  in two, Bitfinex too) gets nothing: the first one receives every frame, which the handlers
  route by the frame's own channel.
* ``finished`` is set once every recorded connection has been played (or, when the client opened
  fewer, a second after the last one ended with nobody new); ``stats.messages_sent`` counts
  frames sent, as :class:`~crypto_lakehouse.loopback.server.LoopbackExchange` does.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import difflib
import io
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Self
from urllib.parse import parse_qsl, urlsplit

from aiohttp import web

from crypto_lakehouse.errors import LakehouseError
from crypto_lakehouse.loopback.listen import Listening, listen
from crypto_lakehouse.loopback.tls import make_certificate
from crypto_lakehouse.loopback.wsserver import WebSocket, encode_binary_frame, encode_text_frame
from crypto_lakehouse.venues.registry import Venue, canonical_exchange, venue

__all__ = [
    "CAPTURE_SUFFIX",
    "Capture",
    "CaptureExchange",
    "CapturedConnection",
    "CapturedFrame",
    "CapturedHttp",
    "is_capture",
    "load_capture",
]

LOG = logging.getLogger(__name__)
CAPTURE_SUFFIX = ".jsonl.zst"
_FLUSH_EVERY = 256
_CLOSE_PATH = 0.9  # difflib ratio of a "close" REST path


@dataclass(frozen=True, slots=True)
class CapturedFrame:
    """A frame the venue sent: its bytes as received, and whether it was a binary frame."""

    ts: float  # receipt time at recording (epoch seconds)
    payload: bytes
    binary: bool

    def text(self) -> str:
        """The frame as text (a gzip binary frame decompressed; for tests and classifiers)."""
        if self.binary and self.payload[:2] == b"\x1f\x8b":
            import gzip

            return gzip.decompress(self.payload).decode()
        return self.payload.decode()


@dataclass(frozen=True, slots=True)
class CapturedHttp:
    url: str
    path: str  # without the host
    query: tuple[tuple[str, str], ...]
    body: bytes


type Step = tuple[Literal["send"], bytes] | tuple[Literal["recv"], CapturedFrame]


@dataclass(slots=True)
class CapturedConnection:
    """One recorded websocket connection: its address and its sends and receives in order."""

    conn: str
    addr: str
    steps: list[Step] = field(default_factory=list)

    @property
    def path(self) -> str:
        return urlsplit(self.addr).path

    @property
    def query(self) -> str:
        return urlsplit(self.addr).query

    @property
    def frames(self) -> list[CapturedFrame]:
        return [s[1] for s in self.steps if s[0] == "recv"]

    @property
    def first_send(self) -> bytes | None:
        return next((s[1] for s in self.steps if s[0] == "send"), None)


@dataclass(slots=True)
class Capture:
    """A loaded ``NAME.jsonl.zst``."""

    name: str
    recorded_exchange: str  # the id at recording (GATEIO)
    exchange: str  # cryptofeed 3.0.1's (GATE)
    configuration: dict[str, list[str]]  # cryptofeed channel -> symbols subscribed
    candle_interval: str | None
    http: list[CapturedHttp]
    connections: list[CapturedConnection]

    @property
    def frames(self) -> list[CapturedFrame]:
        return [f for c in self.connections for f in c.frames]

    def rest_answer(self, path: str, query: list[tuple[str, str]]) -> bytes | None:
        """The recorded body for ``path``?``query`` (host-less): exact, else the same path with
        the most query pairs in common, else a close path, else None."""
        same = [h for h in self.http if h.path.rstrip("/") == path.rstrip("/")]
        if not same:
            close = difflib.get_close_matches(path, sorted({h.path for h in self.http}), n=1, cutoff=_CLOSE_PATH)
            same = [h for h in self.http if close and h.path == close[0]]
        if not same:
            return None
        wanted = set(query)
        best = max(same, key=lambda h: (set(h.query) == wanted, len(wanted & set(h.query))))
        return best.body


def is_capture(path: str | Path) -> bool:
    """Whether ``path`` names a capture (``NAME.jsonl.zst``) rather than a legacy recording prefix."""
    return str(path).endswith(CAPTURE_SUFFIX)


def _records(path: Path) -> list[dict[str, Any]]:
    import zstandard

    try:
        with path.open("rb") as fh, zstandard.ZstdDecompressor().stream_reader(fh) as raw:
            return [json.loads(line) for line in io.TextIOWrapper(raw, encoding="utf-8") if line.strip()]
    except OSError as exc:
        raise LakehouseError(f"cannot read capture {path}: {exc.strerror or exc}") from None
    except (zstandard.ZstdError, ValueError) as exc:
        raise LakehouseError(f"{path} is not a zstd JSON-lines capture: {exc}") from None


def _host_less(url: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    parts = urlsplit(url)
    return parts.path, tuple(parse_qsl(parts.query, keep_blank_values=True))


def load_capture(path: str | Path) -> Capture:
    """Load a ``NAME.jsonl.zst`` capture; a :class:`LakehouseError` naming what is wrong."""
    file = Path(path)
    if not file.is_file():
        found = sorted(p.name for p in file.parent.glob(f"*{CAPTURE_SUFFIX}")) if file.parent.is_dir() else []
        raise LakehouseError(
            f"capture {file} not found; {file.parent} holds {', '.join(found) or 'no *.jsonl.zst captures'}"
        )
    records = _records(file)
    if not records or records[0].get("t") != "header":
        raise LakehouseError(f"{file} does not start with a header record: not a cryptofeed capture")
    header = records[0]
    conns: dict[str, CapturedConnection] = {}
    http: list[CapturedHttp] = []
    for r in records[1:]:
        t = r.get("t")
        if t == "http":
            p, q = _host_less(r["url"])
            http.append(CapturedHttp(r["url"], p, q, str(r["data"]).encode()))
        elif t == "connect":
            conns[r["conn"]] = CapturedConnection(r["conn"], r["addr"])
        elif t == "send":
            conns.setdefault(r["conn"], CapturedConnection(r["conn"], r.get("addr", ""))).steps.append(
                ("send", str(r["data"]).encode())
            )
        elif t == "recv":
            binary = "b64" in r
            payload = base64.b64decode(r["b64"]) if binary else str(r["data"]).encode()
            conns.setdefault(r["conn"], CapturedConnection(r["conn"], "")).steps.append(
                ("recv", CapturedFrame(float(r["ts"]), payload, binary))
            )
    recorded = str(header["exchange"])
    return Capture(
        name=file.name.removesuffix(CAPTURE_SUFFIX),
        recorded_exchange=recorded,
        exchange=venue(canonical_exchange(recorded)).exchange,  # GATEIO -> GATE; an unknown id: InvalidArgument
        configuration={str(c): list(s) for c, s in (header.get("config") or {}).items()},
        candle_interval=header.get("candle_interval"),
        http=http,
        connections=list(conns.values()),
    )


@dataclass(slots=True)
class _Stats:
    messages_sent: int = 0
    connections_opened: int = 0
    connections_unmatched: int = 0


def _strip_host(path: str) -> str:
    """``/stream.bybit.com/v5/public/linear`` -> ``/v5/public/linear`` (feed_class's host_in_path)."""
    first, _, rest = path.lstrip("/").partition("/")
    return "/" + rest if "." in first else path


def _tokens(text: str) -> set[str]:
    """Words of a subscription (URL query or frame), to compare a client's with a recorded one."""
    for sep in '",/{}[]:=&?':
        text = text.replace(sep, " ")
    return set(text.split())


class CaptureExchange:
    """The loopback exchange replaying a :class:`Capture` (see the module doc).

    ``async with CaptureExchange(path) as ex``: point the feed at ``ex.ws_url`` / ``ex.rest_url``
    with ``feed_class(..., cert_pem=ex.cert_pem, host_in_path=True)``; ``ex.finished`` is set once
    the recording has been played out.
    """

    host_in_path = True  # how feed_class must move the feed's endpoints here

    def __init__(self, capture: str | Path | Capture, *, host: str = "127.0.0.1", send_wait: float = 1.0):
        self.capture = capture if isinstance(capture, Capture) else load_capture(capture)
        self.venue: Venue = venue(self.capture.exchange)
        self.host = host
        self.send_wait = send_wait
        self.stats = _Stats()
        self.certificate = make_certificate(host)
        self.finished = asyncio.Event()
        self.ws_url = self.rest_url = ""
        self._assigned: set[str] = set()  # recorded connections given to a client
        self._playing = 0
        self._done: set[str] = set()
        self._idle: asyncio.TimerHandle | None = None
        self._open: set[WebSocket] = set()
        self._listening: Listening | None = None

    @property
    def cert_pem(self) -> bytes:
        return self.certificate.cert_pem

    @property
    def mode(self) -> str:
        return "capture"

    async def start(self) -> Self:
        self.finished = asyncio.Event()
        self._listening = await listen(self._on_ws, self._on_rest, host=self.host, certificate=self.certificate)
        self.ws_url, self.rest_url = self._listening.ws_url, self._listening.rest_url
        LOG.info("capture %s (%s) on %s and %s", self.capture.name, self.venue.exchange, self.ws_url, self.rest_url)
        return self

    async def stop(self) -> None:
        if self._idle is not None:
            self._idle.cancel()
        for ws in list(self._open):
            await ws.close(1001, "exchange stopping")
        if self._listening is not None:
            await self._listening.close()
            self._listening = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def status(self) -> dict[str, object]:
        """Also served as JSON at ``GET /_loopback/status`` (``resolve_endpoint`` reads it)."""
        return {
            "exchange": self.venue.exchange,
            "mode": self.mode,
            "capture": self.capture.name,
            "finished": self.finished.is_set(),
            "messages_sent": self.stats.messages_sent,
            "connections_opened": self.stats.connections_opened,
            "connections_unmatched": self.stats.connections_unmatched,
            "ws_url": self.ws_url,
            "rest_url": self.rest_url,
        }

    # ------------------------------------------------------------------ REST
    async def _on_rest(self, request: web.Request) -> web.StreamResponse:
        if request.path == "/_loopback/status":
            return web.json_response(self.status())
        if request.path == "/_loopback/cert.pem":
            return web.Response(body=self.cert_pem, content_type="application/x-pem-file")
        path = _strip_host(request.path)
        body = self.capture.rest_answer(path, list(request.query.items()))
        if body is None:
            missing = f"the capture {self.capture.name} holds no answer for {path}"
            return web.json_response({"error": missing}, status=404)
        return web.Response(body=body, content_type="application/json")

    # ------------------------------------------------------------------ websocket
    async def _match(self, ws: WebSocket) -> tuple[CapturedConnection | None, bytes | None]:
        """The recorded connection for this client connection (path, then first subscription),
        and the client's first frame if it had to be read to decide."""
        path = _strip_host(ws.path).rstrip("/")
        free = [c for c in self.capture.connections if c.conn not in self._assigned]
        if not free:
            return None, None
        same = [c for c in free if c.path.rstrip("/") == path]
        if not same:
            tail = path.rsplit("/", 1)[-1]
            same = [c for c in free if c.path.rstrip("/").rsplit("/", 1)[-1] == tail] or free
        if len(same) == 1:
            return same[0], None
        first: bytes | None = None
        if ws.query:  # subscribed in the URL (Binance)
            probe = _tokens(" ".join(v for values in ws.query.values() for v in values))
            return max(same, key=lambda c: len(probe & _tokens(c.query))), None
        with contextlib.suppress(TimeoutError):
            first = await asyncio.wait_for(ws.received.get(), self.send_wait)
        probe = _tokens(first.decode("utf-8", "replace")) if first else set()
        return max(same, key=lambda c: len(probe & _tokens((c.first_send or b"").decode()))), first

    async def _on_ws(self, ws: WebSocket) -> None:
        self.stats.connections_opened += 1
        if self._idle is not None:
            self._idle.cancel()
        self._open.add(ws)
        try:
            rec, first = await self._match(ws)
            if rec is None:
                self.stats.connections_unmatched += 1
                LOG.info("capture %s: no recorded connection left for %s", self.capture.name, ws.path)
                await ws.closed.wait()
                return
            self._assigned.add(rec.conn)
            self._playing += 1
            try:
                await self._play(ws, rec, already_sent=1 if first is not None else 0)
            finally:
                self._playing -= 1
                self._done.add(rec.conn)
                self._maybe_finished()
            await ws.closed.wait()
        finally:
            self._open.discard(ws)

    async def _play(self, ws: WebSocket, rec: CapturedConnection, *, already_sent: int) -> None:
        pending: list[bytes] = []
        credit = already_sent  # client frames read ahead (while matching)
        for kind, item in rec.steps:
            if not ws.open:
                return
            if kind == "send":
                if credit:
                    credit -= 1
                    continue
                await self._flush(ws, pending)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(ws.received.get(), self.send_wait)
                continue
            assert isinstance(item, CapturedFrame)
            pending.append(encode_binary_frame(item.payload) if item.binary else encode_text_frame(item.payload))
            if len(pending) >= _FLUSH_EVERY:
                await self._flush(ws, pending)
        await self._flush(ws, pending)

    async def _flush(self, ws: WebSocket, pending: list[bytes]) -> None:
        if not pending:
            return
        if ws.open:
            ws.send_frames(pending)
            self.stats.messages_sent += len(pending)
        pending.clear()
        await ws.drain()

    def _maybe_finished(self) -> None:
        if len(self._done) == len(self.capture.connections):
            self.finished.set()
        elif not self._playing:  # the client opened fewer connections: done once nobody else comes
            self._idle = asyncio.get_running_loop().call_later(1.0, self.finished.set)
