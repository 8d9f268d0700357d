"""A small RFC 6455 websocket server on asyncio streams, built for throughput.

The loopback exchange writes many pre-encoded frames per ``transport.write`` (one syscall for a
whole batch), which a general-purpose server library cannot do; that is what lets one core emit
well over 100k messages/s. It answers pings and closes, declines extensions (no compression)
and rejects anything that is not a websocket upgrade with a plain HTTP error.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import ssl
import struct
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qs, urlsplit

__all__ = ["WebSocket", "encode_binary_frame", "encode_text_frame", "start_ws_server"]

LOG = logging.getLogger(__name__)
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_MAX_HEAD = 65536


def encode_text_frame(payload: bytes) -> bytes:
    """One unmasked, final text frame (server -> client frames are never masked)."""
    return _data_frame(0x81, payload)


def encode_binary_frame(payload: bytes) -> bytes:
    """One unmasked, final binary frame (HTX's gzip frames, Upbit's JSON bytes)."""
    return _data_frame(0x82, payload)


def _data_frame(head: int, payload: bytes) -> bytes:
    n = len(payload)
    if n < 126:
        return bytes((head, n)) + payload
    if n < 65536:
        return struct.pack("!BBH", head, 126, n) + payload
    return struct.pack("!BBQ", head, 127, n) + payload


def _control_frame(opcode: int, payload: bytes = b"") -> bytes:
    return bytes((0x80 | opcode, len(payload))) + payload[:125]


class WebSocket:
    """The server side of one websocket connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, target: str):
        self._reader = reader
        self._writer = writer
        parts = urlsplit(target)
        self.path: str = parts.path
        self.query: dict[str, list[str]] = parse_qs(parts.query)
        self.closed = asyncio.Event()
        self.messages_sent = 0
        self.received: asyncio.Queue[bytes] = asyncio.Queue()  # data frames the client sent (unfragmented)
        self._close_sent = False

    @property
    def open(self) -> bool:
        return not self.closed.is_set() and not self._writer.is_closing()

    def send_frames(self, frames: list[bytes]) -> None:
        """Queue already-encoded frames with a single write."""
        if not self.open or not frames:
            return
        self._writer.write(b"".join(frames))
        self.messages_sent += len(frames)

    async def drain(self) -> None:
        """Wait while the client is slow (back-pressure); returns at once if it keeps up."""
        if not self.open:
            return
        try:
            await self._writer.drain()
        except (ConnectionError, RuntimeError):
            self._mark_closed()

    def abort(self) -> None:
        """Drop the TCP connection without a close handshake (a network failure, as seen by clients)."""
        self._writer.transport.abort()
        self._mark_closed()

    async def close(self, code: int = 1000, reason: str = "") -> None:
        if self.open and not self._close_sent:
            self._close_sent = True
            self._writer.write(_control_frame(0x8, struct.pack("!H", code) + reason.encode()[:120]))
            try:
                await asyncio.wait_for(self._writer.drain(), 2)
            except (TimeoutError, ConnectionError):
                pass
        self._writer.close()
        self._mark_closed()

    def _mark_closed(self) -> None:
        self.closed.set()

    async def _read_loop(self) -> None:
        """Answer pings and closes; queue the client's data frames in ``received``."""
        r = self._reader
        try:
            while True:
                b1, b2 = await r.readexactly(2)
                opcode, masked, n = b1 & 0x0F, b2 & 0x80, b2 & 0x7F
                if n == 126:
                    (n,) = struct.unpack("!H", await r.readexactly(2))
                elif n == 127:
                    (n,) = struct.unpack("!Q", await r.readexactly(8))
                mask = await r.readexactly(4) if masked else b""
                data = await r.readexactly(n)
                if mask:
                    data = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
                if opcode == 0x9:  # ping
                    if self.open:
                        self._writer.write(_control_frame(0xA, data))
                elif opcode == 0x8:  # close
                    if self.open and not self._close_sent:
                        self._close_sent = True
                        self._writer.write(_control_frame(0x8, data[:2]))
                    break
                elif opcode in (0x1, 0x2):  # text, binary
                    self.received.put_nowait(data)
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            self._writer.close()
            self._mark_closed()


Handler = Callable[[WebSocket], Awaitable[None]]


async def _handshake(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> str | None:
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError):
        return None
    lines = head.decode("latin-1").split("\r\n")
    try:
        method, target, _ = lines[0].split(" ", 2)
    except ValueError:
        method, target = "", ""
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    key = headers.get("sec-websocket-key")
    if method != "GET" or headers.get("upgrade", "").lower() != "websocket" or not key:
        body = b"this is the loopback exchange's websocket port: connect with a websocket client\n"
        writer.write(
            b"HTTP/1.1 426 Upgrade Required\r\nUpgrade: websocket\r\nConnection: close\r\n"
            b"Content-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        return None
    accept = base64.b64encode(hashlib.sha1(key.encode() + _GUID).digest())
    writer.write(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n"
    )
    return target


async def start_ws_server(
    handler: Handler, *, host: str, port: int, ssl_context: ssl.SSLContext | None
) -> asyncio.Server:
    """Listen on ``host:port``; each upgraded connection is handed to ``handler``."""

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        target = await _handshake(reader, writer)
        if target is None:
            writer.close()
            return
        ws = WebSocket(reader, writer, target)
        reader_task = asyncio.create_task(ws._read_loop())
        try:
            await handler(ws)
        except Exception:
            LOG.exception("websocket handler failed for %s", target)
        finally:
            if ws.open:
                await ws.close()
            reader_task.cancel()

    return await asyncio.start_server(on_connect, host, port, ssl=ssl_context, limit=_MAX_HEAD, reuse_address=True)
