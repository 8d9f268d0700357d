"""OKX v5 on the loopback exchange: subscriptions over the websocket and the REST endpoints that
the unmodified cryptofeed ``OKX`` handler and ccxt's ``okx`` client call, answered from the
synthetic market's ground truth (the frames themselves are rendered by ``loopback.synthetic``).

Websocket: ``/ws/v5/public`` (trades, books, tickers, funding-rate, open-interest) and
``/ws/v5/business`` (candles), as on OKX; the bare address (``wss://HOST:PORT``) serves every
channel, which is what a cryptofeed class pointed at one ``ws_url`` connects to. A client sends
``{"op": "subscribe", "args": [{"channel": ..., "instId": ...}]}`` and ``ping`` (answered
``pong``); each argument is acknowledged, and a ``books`` subscription starts with a snapshot.

REST: ``/api/v5/public/instruments``, ``/public/underlying``, ``/public/time``,
``/public/liquidation-orders`` (none), ``/market/books``, ``/market/trades`` (the latest, ``limit``
<= 500) and ``/market/history-trades`` (``type=1`` pages by tradeId, ``type=2`` by time; ``after``
= older than, ``before`` = newer than; ``limit`` <= 100; newest first, as OKX answers).
"""

from __future__ import annotations

import json
import time
from bisect import bisect_left, bisect_right
from collections.abc import Mapping
from typing import Any

from crypto_lakehouse.loopback.synthetic import RestError, SyntheticMarket, TradeTape, malformed_variant

__all__ = ["BUSINESS_PATH", "PUBLIC_PATH", "answer_message", "malformed_frame", "rest"]

PUBLIC_PATH = "/ws/v5/public"
BUSINESS_PATH = "/ws/v5/business"
_PUBLIC_CHANNELS = ("trades", "books", "tickers", "funding-rate", "open-interest")
_API = "/api/v5/"
_CONN_ID = "0100loop"


def _frame(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _error(code: str, msg: str) -> bytes:
    return _frame({"event": "error", "code": code, "msg": msg, "connId": _CONN_ID})


def answer_message(market: SyntheticMarket, path: str, text: bytes) -> tuple[list[bytes], list[str]]:
    """One client message on a connection to ``path``: the frames to send back at once
    (``pong``, acknowledgements or errors, book snapshots) and the stream keys
    (``channel:instId``) the connection now takes."""
    if text == b"ping":
        return [b"pong"], []
    try:
        msg = json.loads(text)
    except ValueError:
        return [_error("60012", f"Invalid request: {text[:100]!r}")], []
    args = msg.get("args") if isinstance(msg, dict) else None
    if not isinstance(msg, dict) or msg.get("op") != "subscribe" or not isinstance(args, list):
        return [_error("60012", f"Invalid request: the loopback exchange takes op=subscribe only: {text[:100]!r}")], []
    frames: list[bytes] = []
    keys: list[str] = []
    for arg in args:
        channel = str(arg.get("channel", "")) if isinstance(arg, dict) else ""
        inst = str(arg.get("instId", "")) if isinstance(arg, dict) else ""
        problem = _check(market, path, channel, inst)
        if problem is not None:
            frames.append(_error("60018", problem))
            continue
        frames.append(_frame({"event": "subscribe", "arg": {"channel": channel, "instId": inst}, "connId": _CONN_ID}))
        keys.append(f"{channel}:{inst}")
        if channel == "books":
            frames.append(market.okx_book_snapshot(inst))
    return frames, keys


def _check(market: SyntheticMarket, path: str, channel: str, inst: str) -> str | None:
    """Why ``channel`` of ``inst`` cannot be taken on ``path`` (None: it can)."""
    candle = channel.startswith("candle")
    wrong_url = (path == PUBLIC_PATH and candle) or (path == BUSINESS_PATH and not candle)
    known = candle or channel in _PUBLIC_CHANNELS
    if wrong_url or not known or inst not in market.symbols:
        return (
            f"Wrong URL or channel:{channel},instId:{inst} doesn't exist. "
            "Please use the correct URL, channel and parameters referring to API document."
        )
    if candle:
        try:  # starts building that interval's candles
            market.add_kline_interval(channel.removeprefix("candle"))
        except RestError as exc:  # an interval OKX does not have
            return str(exc)
    return None


def malformed_frame(kind: str, key: str) -> bytes:
    """A malformed frame of ``kind`` on the stream ``key`` (``trades:BTC-USDT-SWAP``), in OKX's framing."""
    channel, _, inst = key.partition(":")
    good = (
        f'{{"arg":{{"channel":"{channel}","instId":"{inst}"}},"data":[{{"instId":"{inst}","tradeId":"1",'
        f'"px":"1.0","sz":"1.0","side":"buy","ts":"1"}}]}}'
    ).encode()
    unknown = f'{{"arg":{{"channel":"mystery","instId":"{inst}"}},"data":[{{}}]}}'.encode()
    wrong = [(b'"px":"1.0","sz":"1.0"', b'"px":{"oops":1},"sz":null'), (b'"ts":"1"', b'"ts":"noon"')]
    return malformed_variant(kind, good, wrong=wrong, drop=b'"px":"1.0",', unknown=unknown)


# ---------------------------------------------------------------------------------------- REST


def rest(market: SyntheticMarket, path: str, q: Mapping[str, str]) -> tuple[int, dict[str, Any]]:
    """(HTTP status, JSON body) of ``GET path?q``, OKX's envelope ``{"code", "msg", "data"}``."""
    endpoint = path.removeprefix(_API) if path.startswith(_API) else None
    if endpoint == "public/time":
        return _ok([{"ts": str(int(time.time() * 1000))}])
    if endpoint == "public/instruments":
        kind = q.get("instType", "").upper()
        return _ok([_instrument(name) for name in market.symbols if _inst_type(name) == kind])
    if endpoint == "public/underlying":
        return _ok([[]])  # no options listed
    if endpoint == "public/liquidation-orders":
        return _ok([])  # the synthetic market liquidates nobody
    if endpoint in ("market/books", "market/trades", "market/history-trades"):
        inst = q.get("instId", "")
        if inst not in market.symbols:
            return 200, {"code": "51001", "msg": f"Instrument ID {inst} does not exist", "data": []}
        try:
            if endpoint == "market/books":
                return _ok(_books(market, inst, _limit(q, "sz", 1, 400)))
            tape = market.tape(inst)
            if endpoint == "market/trades":
                return _ok(_records(inst, tape, range(max(0, len(tape) - _limit(q, "limit", 100, 500)), len(tape))))
            return _ok(_records(inst, tape, _history(tape, q, _limit(q, "limit", 100, 100))))
        except ValueError as exc:
            return 200, {"code": "51000", "msg": f"Parameter error: {exc}", "data": []}
    return 404, {"code": "404", "msg": f"{path} is not served by the loopback exchange", "data": []}


def _ok(data: list[Any]) -> tuple[int, dict[str, Any]]:
    return 200, {"code": "0", "msg": "", "data": data}


def _limit(q: Mapping[str, str], key: str, default: int, maximum: int) -> int:
    v = q.get(key)
    if v in (None, ""):
        return default
    n = int(v)
    if n <= 0:
        raise ValueError(f"{key} must be 1..{maximum}")
    return min(n, maximum)


def _int(q: Mapping[str, str], key: str) -> int | None:
    v = q.get(key)
    return None if v in (None, "") else int(v)


def _inst_type(name: str) -> str:
    return "SWAP" if name.endswith("-SWAP") else "SPOT"


def _instrument(name: str) -> dict[str, str]:
    """An instrument as ``/public/instruments`` lists it. A swap contract is worth one unit of
    the base currency (``ctVal`` 1), so its sizes, in contracts, are base amounts too."""
    base, quote = name.split("-")[:2]
    common = {
        "instType": _inst_type(name),
        "instId": name,
        "tickSz": "0.01",
        "lotSz": "0.001",
        "minSz": "0.001",
        "maxLmtSz": "100000",
        "maxMktSz": "100000",
        "listTime": "1569398400000",
        "expTime": "",
        "lever": "10",
        "state": "live",
        "alias": "",
        "optType": "",
        "stk": "",
        "category": "1",
    }
    if _inst_type(name) == "SPOT":
        return common | {
            "baseCcy": base,
            "quoteCcy": quote,
            "settleCcy": "",
            "uly": "",
            "instFamily": "",
            "ctVal": "",
            "ctMult": "",
            "ctValCcy": "",
            "ctType": "",
        }
    return common | {
        "baseCcy": "",
        "quoteCcy": "",
        "settleCcy": quote,
        "uly": f"{base}-{quote}",
        "instFamily": f"{base}-{quote}",
        "ctVal": "1",
        "ctMult": "1",
        "ctValCcy": base,
        "ctType": "linear",
    }


def _books(market: SyntheticMarket, inst: str, depth: int) -> list[dict[str, Any]]:
    snap = json.loads(market.okx_book_snapshot(inst))["data"][0]
    return [{"asks": snap["asks"][:depth], "bids": snap["bids"][:depth], "ts": snap["ts"]}]


def _history(tape: TradeTape, q: Mapping[str, str], limit: int) -> range:
    """Tape positions ``/market/history-trades`` answers: ``after`` = older than that tradeId
    (``type=1``, the default) or ts (``type=2``), ``before`` = newer than; the newest ``limit``
    of them, or with ``before`` alone the ``limit`` just after it."""
    n, after, before = len(tape), _int(q, "after"), _int(q, "before")
    kind = q.get("type", "1")
    if kind not in ("1", "2"):
        raise ValueError(f"type must be 1 (tradeId) or 2 (ts), got {kind!r}")
    if kind == "2":
        hi = bisect_left(tape.time_ms, after) if after is not None else n
        lo = bisect_right(tape.time_ms, before) if before is not None else 0
    else:
        hi = min(n, max(0, after - tape.first_id)) if after is not None else n
        lo = min(n, max(0, before - tape.first_id + 1)) if before is not None else 0
    if before is not None and after is None:
        return range(lo, min(hi, lo + limit))
    return range(max(lo, hi - limit), hi)


def _records(inst: str, tape: TradeTape, positions: range) -> list[dict[str, str]]:
    """Trades at ``positions`` in OKX's REST form, newest first."""
    out = []
    for i in reversed(positions):
        t = tape.record(i)  # Binance's aggTrade form: the same trade, its fields renamed
        out.append(
            {
                "instId": inst,
                "tradeId": str(t["a"]),
                "px": str(t["p"]),
                "sz": str(t["q"]),
                "side": "sell" if t["m"] else "buy",
                "ts": str(t["T"]),
                "source": "0",
            }
        )
    return out
