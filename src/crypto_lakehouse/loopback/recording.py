"""cryptofeed raw-data recordings (``NAME.0``, ``NAME.http.*``, ``NAME.ws.*``) read for replay.

Format (cryptofeed's raw-data recorder, as in ``shared/data/cryptofeed-samples``):

* ``NAME.0``: ``configuration: {json}`` and REST answers as ``url -> receive_ts: body``;
* ``NAME.http.N.M``: more REST answers (depth snapshots) in the same form;
* ``NAME.ws.N.M``: first line ``wss://.../stream?streams=a/b/c <-> ts``, then ``ts: frame``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from crypto_lakehouse.errors import LakehouseError
from crypto_lakehouse.loopback.synthetic import MarketSpec, SyntheticMarket
from crypto_lakehouse.venues.registry import VENUES, venue

# stream key suffix -> (cryptofeed channel, subscribed stream suffix)
_STREAMS = {
    "aggTrade": ("trades", "aggTrade"),
    "depth": ("l2_book", "depth@100ms"),
    "bookTicker": ("ticker", "bookTicker"),
    "kline_1m": ("candles", "kline_1m"),
    "markPrice": ("funding", "markPrice"),
    "forceOrder": ("liquidations", "forceOrder"),
}

__all__ = ["Frame", "Recording", "load_recording", "write_synthetic_recording"]


@dataclass(frozen=True, slots=True)
class Frame:
    received: float  # receipt time at recording (epoch seconds)
    stream: str  # combined-stream name, e.g. "sushiusdt@depth@100ms"
    payload: bytes


@dataclass(slots=True)
class Recording:
    name: str
    exchange: str
    configuration: dict[str, list[str]] | None  # cryptofeed channel -> symbols subscribed
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
    configuration: dict[str, list[str]] | None = None
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
                data = raw.rstrip(b"\r\n")
                if b" <-> " in data and data.startswith(b"wss://"):
                    subscribed = data.split(b" <-> ", 1)[0].decode()
                    continue
                ts, sep, payload = data.partition(b": ")
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


def write_synthetic_recording(spec: MarketSpec, path: str | Path, *, rounds: int) -> Path:
    """Record ``rounds`` of a synthetic market as cryptofeed would have recorded the live venue
    (same file names and line formats as ``shared/data/cryptofeed-samples``), for any of the four
    Binance-family exchanges. Returns the ``PATH/NAME`` prefix.

    A recording is of the past: without ``spec.start_ms`` the session ends now (its exchange
    time starts ``rounds`` rounds ago), so replaying it never stamps trades in the future."""
    market = SyntheticMarket(spec)
    if spec.start_ms is None:
        ended_ago_ms = int(rounds * market.step_us / 1000) + 1
        market = SyntheticMarket(replace(spec, start_ms=int(time.time() * 1000) - ended_ago_ms))
    v = market.venue
    prefix = Path(path)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    frames: list[str] = []
    snapshots: dict[str, tuple[float, dict[str, object]]] = {}
    streams: dict[str, None] = {}
    for _ in range(rounds):
        for key, payload, _tid in market.step():
            sym, chan = key.split("@", 1)
            name = f"{sym}@{_STREAMS[chan][1]}"
            streams.setdefault(name)
            ts = market.now_ms / 1000
            frames.append(f'{ts:.6f}: {{"stream":"{name}","data":{payload.decode()}}}')
            if chan == "depth" and sym.upper() not in snapshots:
                snapshots[sym.upper()] = (ts + 0.0005, market.depth_snapshot(sym.upper(), 1000))
    config: dict[str, list[str]] = {}
    for name in streams:
        sym, suffix = name.split("@", 1)
        channel = next(c for k, (c, sfx) in _STREAMS.items() if sfx == suffix)
        config.setdefault(channel, []).append(v.std_symbol(sym.upper()))
    start = market.start_ms / 1000
    rest = f"https://{v.rest_host}{v.rest_prefix}"
    info = json.dumps(market.exchange_info(v.kind), separators=(",", ":"))
    prefix.with_name(prefix.name + ".0").write_text(
        f"{rest}/exchangeInfo -> {start:.6f}: {info}\nconfiguration: {json.dumps(config)}\n"
    )
    prefix.with_name(prefix.name + ".http.0.0").write_text(
        "".join(
            f"{rest}/depth?symbol={sym}&limit=1000 -> {ts:.6f}: {json.dumps(body, separators=(',', ':'))}\n"
            for sym, (ts, body) in snapshots.items()
        )
    )
    header = f"wss://{v.ws_host}/stream?streams={'/'.join(streams)} <-> {start:.6f}"
    prefix.with_name(prefix.name + ".ws.1.0").write_text("\n".join([header, *frames]) + "\n")
    return prefix
