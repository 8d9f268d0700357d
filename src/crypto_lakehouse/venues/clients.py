"""Point the real cryptofeed and ccxt clients at a Binance-family endpoint (loopback or live).

Only addresses change: the cryptofeed handler classes and ccxt exchange classes are used as
they are, which is what makes the loopback exchange a faithful stand-in for the real venue.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import replace
from typing import Any, Literal, Protocol, TypedDict, overload
from urllib.parse import urlsplit

from cryptofeed import FeedHandler
from cryptofeed.connection import WebsocketEndpoint
from cryptofeed.feed import Feed
from cryptofeed.symbols import Symbols

from crypto_lakehouse.errors import LakehouseError
from crypto_lakehouse.venues.registry import venue

__all__ = [
    "CcxtClient",
    "CcxtFundingRate",
    "CcxtMarket",
    "CcxtTrade",
    "ccxt_client",
    "client_ssl_context",
    "feed_class",
    "run_feeds",
]


def feed_class(
    exchange: str,
    *,
    ws_url: str | None = None,
    rest_url: str | None = None,
    cert_pem: bytes | str | None = None,
    host_in_path: bool = False,
) -> type[Feed]:
    """The cryptofeed class for ``exchange``, subclassed only to use ``ws_url``/``rest_url``.

    Every websocket and REST endpoint of the class is moved to the new base keeping its path,
    options, filters and routes: ``wss://stream.bybit.com/v5/public/linear`` becomes
    ``WS_URL/v5/public/linear`` (Binance, whose endpoints have no path: ``WS_URL`` itself). With
    ``host_in_path`` the live host is kept as the first path segment
    (``WS_URL/stream.bybit.com/v5/public/linear``), so a server standing in for several hosts
    (the capture replay, ``loopback.capture``) can tell them apart.

    ``cert_pem`` is the certificate to trust for ``wss://`` (the loopback exchange's own,
    ``LoopbackExchange.cert_pem`` or ``GET /_loopback/cert.pem``). The subclass keeps the
    exchange id, so symbols cached for a previous endpoint are dropped.
    """
    base = venue(exchange).feed
    if ws_url is None and rest_url is None:
        return base
    attrs: dict[str, object] = {}
    if ws_url is not None:
        ssl_ctx: ssl.SSLContext | None = None
        if cert_pem is not None:
            ssl_ctx = client_ssl_context(cert_pem)
        elif urlsplit(ws_url).hostname in ("127.0.0.1", "localhost"):
            ssl_ctx = ssl.create_default_context()
        attrs["websocket_endpoints"] = [
            _moved_ws(ep, ws_url, ssl_ctx=ssl_ctx, host_in_path=host_in_path) for ep in base.websocket_endpoints
        ]
    if rest_url is not None:
        attrs["rest_endpoints"] = [
            replace(ep, address=_moved(ep.address, rest_url, host_in_path=host_in_path)) for ep in base.rest_endpoints
        ]
    Symbols.data.pop(base.id, None)
    return type(f"Loopback{base.__name__}", (base,), attrs)


def _moved(address: str, new_base: str, *, host_in_path: bool) -> str:
    """``address`` (a live endpoint) on ``new_base``, keeping its path (and host, if asked)."""
    parts = urlsplit(address)
    path = (f"/{parts.netloc}" if host_in_path else "") + parts.path
    return new_base.rstrip("/") + path + (f"?{parts.query}" if parts.query else "")


def _moved_ws(
    ep: WebsocketEndpoint, new_base: str, *, ssl_ctx: ssl.SSLContext | None, host_in_path: bool
) -> WebsocketEndpoint:
    options = dict(ep.options or {})
    if ssl_ctx is not None:
        options["ssl"] = ssl_ctx
    # (WebsocketEndpoint.__post_init__ merged its defaults into options: replace keeps them)
    return replace(ep, address=_moved(ep.address, new_base, host_in_path=host_in_path), options=options)


def client_ssl_context(cert_pem: bytes | str) -> ssl.SSLContext:
    """A client context that trusts exactly the certificate ``cert_pem`` (the loopback exchange's)."""
    ctx = ssl.create_default_context()
    ctx.load_verify_locations(cadata=cert_pem.decode() if isinstance(cert_pem, bytes) else cert_pem)
    return ctx


# ccxt ships no type information: what this project uses of its synchronous clients, typed here.
# Its unified structures are dicts; the TypedDicts name the keys read (each holds more).
class CcxtMarket(TypedDict):
    id: str  # the exchange's symbol, e.g. BTCUSDT
    symbol: str  # ccxt's unified symbol, e.g. BTC/USDT:USDT


class CcxtTrade(TypedDict):
    id: str
    timestamp: int  # ms
    side: str
    price: float
    amount: float
    info: dict[str, Any]  # the exchange's own JSON


class CcxtFundingRate(TypedDict):
    timestamp: int  # ms
    info: dict[str, Any]  # the exchange's own JSON


class CcxtClient(Protocol):
    """A synchronous ccxt exchange client (``ccxt.binance`` and its kin), as this project uses it."""

    markets: dict[str, CcxtMarket]
    urls: dict[str, Any]

    def load_markets(self) -> dict[str, CcxtMarket]: ...

    def fetch_trades(
        self, symbol: str, since: int | None = None, limit: int | None = None, params: dict[str, Any] = ...
    ) -> list[CcxtTrade]: ...

    def fetch_ohlcv(
        self, symbol: str, timeframe: str = ..., since: int | None = None, limit: int | None = None
    ) -> list[list[Any]]: ...  # [open time ms, open, high, low, close, volume]

    def fetch_funding_rate_history(
        self, symbol: str, since: int | None = None, limit: int | None = None, params: dict[str, Any] = ...
    ) -> list[CcxtFundingRate]: ...


@overload
def ccxt_client(
    exchange: str, *, rest_url: str | None = None, asynchronous: Literal[False] = False, **config: object
) -> CcxtClient: ...
@overload
def ccxt_client(
    exchange: str, *, rest_url: str | None = None, asynchronous: Literal[True], **config: object
) -> Any: ...
def ccxt_client(exchange: str, *, rest_url: str | None = None, asynchronous: bool = False, **config: object) -> Any:
    """The venue's ccxt client (``ccxt.binance``, ``ccxt.okx``, ... or their async twins, untyped:
    the same methods as coroutines) with every ``urls['api']`` entry rewritten to ``rest_url``
    keeping the path."""
    v = venue(exchange)
    if v.ccxt_id is None:
        raise LakehouseError(f"ccxt has no client for {v.exchange}: its REST history cannot be read")
    # imported here: importing ccxt takes ~3 s, which commands that never call REST should not pay
    if asynchronous:
        import ccxt.async_support as module
    else:
        import ccxt as module
    client = getattr(module, v.ccxt_id)({"enableRateLimit": True, **config})
    if rest_url is not None:
        base = rest_url.rstrip("/")
        client.urls["api"] = {k: _rebase(u, base) for k, u in client.urls["api"].items()}
    return client


def _rebase(url: object, base: str) -> object:
    if not isinstance(url, str):
        return url
    parts = urlsplit(url)
    return base + parts.path + (f"?{parts.query}" if parts.query else "")


async def run_feeds(feeds: list[Feed], *, stop: asyncio.Event, handler: FeedHandler | None = None) -> None:
    """Run ``feeds`` on one cryptofeed ``FeedHandler`` in this loop until ``stop`` is set.

    cryptofeed's own signal handlers stay off: the caller owns SIGINT/SIGTERM and decides
    what to flush before it sets ``stop``.
    """
    fh = handler or FeedHandler()
    for feed in feeds:
        fh.add_feed(feed)
    task = asyncio.create_task(fh.run_async(install_signal_handlers=False))
    stopper = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    if stopper in done:
        fh.request_stop()
        await task
    else:
        stopper.cancel()
        task.result()  # a feed failed: raise its error
