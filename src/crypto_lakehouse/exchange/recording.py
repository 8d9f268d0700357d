"""cryptofeed raw-data recordings (``NAME.0``, ``NAME.http.*``, ``NAME.ws.*``) read for replay.

Format (cryptofeed's raw-data recorder, as in ``shared/data/cryptofeed-samples``):

* ``NAME.0``: ``configuration: {json}`` and REST answers as ``url -> receive_ts: body``;
* ``NAME.http.N.M``: more REST answers (depth snapshots) in the same form;
* ``NAME.ws.N.M``: first line ``wss://.../stream?streams=a/b/c <-> ts``, then ``ts: frame``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from crypto_lakehouse.errors import LakehouseError
from crypto_lakehouse.exchange.venues import VENUES, venue

__all__ = ["Frame", "Recording", "load_recording"]


@dataclass(frozen=True, slots=True)
class Frame:
    received: float  # receipt time at recording (epoch seconds)
    stream: str  # combined-stream name, e.g. "sushiusdt@depth@100ms"
    payload: bytes


@dataclass(slots=True)
class Recording:
    name: str
    exchange: str
    configuration: dict | None
    subscribed_url: str | None
    frames: list[Frame]
    rest: dict[tuple[str, str | None], bytes] = field(default_factory=dict)

    def rest_answer(self, path: str, symbol: str | None) -> bytes | None:
        """The recorded body for ``path`` (and ``symbol``), whatever other parameters were sent."""
        return self.rest.get((path, symbol.upper() if symbol else None)) or self.rest.get((path, None))

    @property
    def streams(self) -> list[str]:
        seen: dict[str, None] = {}
        for f in self.frames:
            seen.setdefault(f.stream)
        return list(seen)

    def frame_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for f in self.frames:
            counts[f.stream] = counts.get(f.stream, 0) + 1
        return counts


def _rest_line(line: str) -> tuple[str, str, bytes] | None:
    if " -> " not in line:
        return None
    url, rest = line.split(" -> ", 1)
    _, body = rest.split(": ", 1)
    return url.strip(), rest, body.encode()


def _exchange_of(urls: list[str], name: str) -> str:
    for url in urls:
        parts = urlsplit(url)
        if parts.hostname and parts.hostname.endswith("binance.us"):
            return "BINANCE_US"
        for prefix, exch in (("/fapi/", "BINANCE_FUTURES"), ("/dapi/", "BINANCE_DELIVERY"), ("/api/", "BINANCE")):
            if parts.path.startswith(prefix):
                return exch
    stem = name.upper()
    for exch in sorted(VENUES, key=len, reverse=True):
        if stem.startswith(exch):
            return exch
    raise LakehouseError(f"cannot tell which exchange recording {name!r} is from")


def load_recording(path: str | Path) -> Recording:
    """Load ``PATH/NAME`` (the common prefix of the recording's files)."""
    prefix = Path(path)
    head = prefix.with_name(prefix.name + ".0")
    ws_files = sorted(prefix.parent.glob(prefix.name + ".ws.*")) if prefix.parent.is_dir() else []
    if not head.is_file() or not ws_files:
        raise LakehouseError(
            f"recording {prefix} not found: expected {head.name} and {prefix.name}.ws.* in "
            f"{prefix.parent.resolve()} (give PATH/NAME, e.g. data/cryptofeed-samples/BINANCE_FUTURES)"
        )
    configuration = None
    rest: dict[tuple[str, str | None], bytes] = {}
    urls: list[str] = []
    for file in [head, *sorted(prefix.parent.glob(prefix.name + ".http.*"))]:
        for line in file.read_text().splitlines():
            if line.startswith("configuration: "):
                configuration = json.loads(line.removeprefix("configuration: "))
                continue
            parsed = _rest_line(line)
            if parsed is None:
                continue
            url, _, body = parsed
            urls.append(url)
            parts = urlsplit(url)
            symbol = parse_qs(parts.query).get("symbol", [None])[0]
            rest[(parts.path, symbol.upper() if symbol else None)] = body
    frames: list[Frame] = []
    subscribed = None
    for file in ws_files:
        with file.open("rb") as fh:
            for raw in fh:
                line = raw.rstrip(b"\r\n")
                if b" <-> " in line and line.startswith(b"wss://"):
                    subscribed = line.split(b" <-> ", 1)[0].decode()
                    continue
                ts, sep, payload = line.partition(b": ")
                if not sep:
                    continue
                try:
                    stream = json.loads(payload).get("stream", "")
                except (ValueError, AttributeError):
                    stream = ""
                frames.append(Frame(float(ts), stream, payload))
    if subscribed:
        urls.append(subscribed)
    exchange = _exchange_of(urls, prefix.name)
    venue(exchange)
    return Recording(prefix.name, exchange, configuration, subscribed, frames, rest)
