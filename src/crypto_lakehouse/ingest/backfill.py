"""REST backfill with the real ccxt clients (``ccxt.binance``/``binanceusdm``/``binancecoinm``,
``ccxt.okx``, ...).

Rows come back in silver's shape with ``source='backfill'``; ccxt paces the requests with its
rate limiter. Trades are paged the way the venue's ccxt client reaches back (the registry's
``ccxt_paging``): the Binance family by ``fromId`` (exact) and 1 h time windows; OKX by trade id
cursor, newest to oldest, 100 a page (``id_cursor``); others by ``since``/``limit`` pages
(``since_by_hand``). A venue that serves only its latest trades (``latest_only``) or none
(``none``) raises :class:`~crypto_lakehouse.errors.GapUnfillable`: a partial page is never
passed off as the range. Candles and funding page by time.

A :class:`Backfiller` is the ``VenueHistory`` that silver's gap filler and ``backfill`` ask
(``crypto_lakehouse.transform.history``): the callers build it and pass it in.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl

from crypto_lakehouse.config import Settings
from crypto_lakehouse.durations import candle_interval
from crypto_lakehouse.errors import GapUnfillable, LakehouseError
from crypto_lakehouse.venues.clients import CcxtClient, CcxtFundingRate, CcxtTrade, ccxt_client
from crypto_lakehouse.venues.registry import Venue, venue
from crypto_lakehouse.venues.symbols import native_symbol

__all__ = [
    "Backfiller",
    "Progress",
    "backfiller_from_settings",
    "exchange_symbol",
    "rest_urls",
    "since_pages",
    "unfillable_reason",
    "walk_back",
]

LOG = logging.getLogger(__name__)
_PAGE = 1000
_CURSOR_PAGE = 100  # OKX's history-trades answers at most 100 trades a call
_HISTORY = {"method": "publicGetMarketHistoryTrades"}  # ccxt.okx: the history endpoint, not the latest trades


def exchange_symbol(exchange: str, symbol: str) -> str:
    """cryptofeed ``BTC-USDT-PERP`` -> the exchange's ``BTCUSDT`` (``BTCUSD_PERP`` on coin-M,
    ``BTC-USDT-SWAP`` on OKX): the ccxt market's ``id``."""
    return native_symbol(exchange, symbol)


def unfillable_reason(v: Venue) -> str | None:
    """Why ``v``'s REST history cannot fill a past gap of trades (None: it can)."""
    if v.ccxt_id is None:
        return f"{v.exchange} has no ccxt client (paging {v.ccxt_paging}): its trade history cannot be fetched"
    if v.ccxt_paging == "latest_only":
        return (
            f"{v.exchange}'s REST (ccxt {v.ccxt_id}, paging latest_only) serves only its latest trades: "
            "an older gap cannot be backfilled"
        )
    if v.ccxt_paging == "none":
        return f"{v.exchange} (ccxt {v.ccxt_id}, paging none) has no public trade history to backfill from"
    return None


def _fillable(exchange: str) -> Venue:
    v = venue(exchange)
    reason = unfillable_reason(v)
    if reason is not None:
        raise GapUnfillable(reason)
    return v


_Page = Callable[[dict[str, Any]], list[CcxtTrade]]
"""One call of a venue's trade history: extra request parameters -> the trades (ccxt's order)."""


def walk_back(page: _Page, first: dict[str, Any], *, reached: Callable[[CcxtTrade], bool]) -> list[CcxtTrade]:
    """Trades from ``page`` calls, newest to oldest (an id cursor, as OKX pages): the first with
    ``first``, each next one ``after`` the oldest trade id so far, until the oldest trade of a
    page is ``reached``, a page is empty, or the cursor stops moving back. Unfiltered, in no order."""
    rows: list[CcxtTrade] = []
    params, cursor = first, None
    while True:
        got = page(params)
        if not got:
            return rows
        rows += got
        oldest = min(got, key=lambda t: int(t["id"]))
        if reached(oldest) or (cursor is not None and int(oldest["id"]) >= cursor):
            return rows
        cursor = int(oldest["id"])
        params = {"type": 1, "after": cursor}


def since_pages(page: Callable[[int], list[CcxtTrade]], start_ms: int, end_ms: int) -> list[CcxtTrade]:
    """Trades with ``start_ms <= timestamp < end_ms`` from ``page(since)`` calls (``since``/``limit``
    pages walked by hand): each next page since the newest timestamp so far (trades of that
    millisecond come again and are dropped by id), until a page reaches ``end_ms``, is empty or
    brings nothing new. Sorted by time then id."""
    seen: dict[str, CcxtTrade] = {}
    since = start_ms
    while since < end_ms:
        got = page(since)
        new = [t for t in got if t["id"] not in seen]
        seen.update((t["id"], t) for t in new)
        if not new:
            break
        newest = max(t["timestamp"] for t in got)
        if newest >= end_ms:
            break
        since = newest if newest > since else since + 1
    return _in_time(seen.values(), start_ms, end_ms)


def _in_time(rows: Iterable[CcxtTrade], start_ms: int, end_ms: int) -> list[CcxtTrade]:
    return sorted(
        (t for t in rows if start_ms <= t["timestamp"] < end_ms), key=lambda t: (t["timestamp"], int(t["id"]))
    )


def _by_id(rows: Iterable[CcxtTrade], first_id: int, last_id: int) -> list[CcxtTrade]:
    """The trades with ``first_id <= id <= last_id``, each once, by id."""
    unique = {int(t["id"]): t for t in rows if first_id <= int(t["id"]) <= last_id}
    return [unique[i] for i in sorted(unique)]


def _ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)


Progress = Callable[[int, float], None]
"""Called after each page of a long fetch: (rows fetched so far, share of the time range done)."""


class Backfiller:
    """ccxt clients per exchange, REST bases from config (None: the exchange's own).
    ``progress``: told after each page of :meth:`trades_by_time` how far it is."""

    def __init__(
        self,
        rest_urls: Mapping[str, str] | None = None,
        *,
        rate_limit_ms: float | None = None,
        progress: Progress | None = None,
    ):
        self.rest_urls = {k.upper(): v for k, v in (rest_urls or {}).items()}
        self.rate_limit_ms = rate_limit_ms
        self.progress = progress
        self._clients: dict[str, CcxtClient] = {}
        self.requests = 0

    def _client(self, exchange: str) -> CcxtClient:
        ex = exchange.upper()
        if ex not in self._clients:
            rest_url = self.rest_urls.get(ex)
            if self.rate_limit_ms is None:
                client = ccxt_client(ex, rest_url=rest_url)
            else:
                client = ccxt_client(ex, rest_url=rest_url, rateLimit=self.rate_limit_ms)
            client.load_markets()
            self._clients[ex] = client
        return self._clients[ex]

    def _market(self, exchange: str, symbol: str) -> str:
        """ccxt's unified symbol of cryptofeed's ``symbol``: the market whose ``id`` is the venue's name."""
        client = self._client(exchange)
        sid = exchange_symbol(exchange, symbol)
        for m in client.markets.values():
            if m["id"] == sid:
                return m["symbol"]
        raise LakehouseError(f"{exchange} lists no market {sid} ({symbol}); it lists {len(client.markets)} markets")

    def _history_page(self, exchange: str, symbol: str) -> _Page:
        """One call of the venue's trade history (``id_cursor``: OKX's history-trades, 100 a page)."""
        client, market = self._client(exchange), self._market(exchange, symbol)

        def page(params: dict[str, Any]) -> list[CcxtTrade]:
            self.requests += 1
            return client.fetch_trades(market, limit=_CURSOR_PAGE, params={**_HISTORY, **params})

        return page

    def trades_by_id(self, exchange: str, symbol: str, first_id: int, last_id: int) -> pl.DataFrame:
        """Trades with ``first_id <= id <= last_id``: by ``fromId`` (Binance family) or walking
        back by trade id from ``last_id`` (``id_cursor``). A venue that pages by time only cannot
        be asked by id: :class:`GapUnfillable`, as for one without history."""
        v = _fillable(exchange)
        if v.ccxt_paging == "id_cursor":
            history = self._history_page(exchange, symbol)
            rows = walk_back(history, {"type": 1, "after": last_id + 1}, reached=lambda t: int(t["id"]) <= first_id)
            return self._trade_frame(exchange, symbol, _by_id(rows, first_id, last_id))
        if not v.binance_family:
            raise GapUnfillable(
                f"{v.exchange} (ccxt {v.ccxt_id}, paging {v.ccxt_paging}) pages its trade history by time, "
                "not by trade id: a gap of ids cannot be asked for"
            )
        client, market = self._client(exchange), self._market(exchange, symbol)
        rows = []
        next_id = first_id
        while next_id <= last_id:
            page = client.fetch_trades(market, limit=_PAGE, params={"fromId": next_id})
            self.requests += 1
            if not page:
                break
            for t in page:
                tid = int(t["id"])
                if tid > last_id:
                    break
                rows.append(t)
            nxt = int(page[-1]["id"]) + 1
            if nxt <= next_id:
                break
            next_id = nxt
        return self._trade_frame(exchange, symbol, rows)

    def contiguous_trade_ids(self, exchange: str) -> bool:
        """Whether ``exchange``'s trade ids are consecutive per symbol (Binance aggTrade ids)."""
        return venue(exchange).contiguous_trade_ids

    def latest_trade_id(self, exchange: str, symbol: str) -> int | None:
        """The venue's most recent trade id for ``symbol`` (None: it lists no trade). A venue
        serving only its latest trades can tell (the gap it reveals is then unfillable); one
        without public trades raises :class:`GapUnfillable`."""
        v = venue(exchange)
        if v.ccxt_paging != "latest_only":
            _fillable(exchange)
        client, market = self._client(exchange), self._market(exchange, symbol)
        page = client.fetch_trades(market, limit=1)
        self.requests += 1
        return max((int(t["id"]) for t in page), default=None)

    def trades_by_time(self, exchange: str, symbol: str, start: datetime, end: datetime) -> pl.DataFrame:
        """Trades with ``start <= ts < end``: Binance family, the first page of each hour by
        time, then by ``fromId``; ``id_cursor`` (OKX), back from ``end`` by time, then by trade
        id, until before ``start``; otherwise ``since``/``limit`` pages."""
        v = _fillable(exchange)
        s_ms, e_ms = _ms(start), _ms(end)
        if v.ccxt_paging == "id_cursor":
            history = self._history_page(exchange, symbol)

            def tracked(params: dict[str, Any]) -> list[CcxtTrade]:
                got = history(params)
                if self.progress is not None and got:
                    oldest = min(t["timestamp"] for t in got)
                    self.progress(len(got), min(1.0, max(0.0, (e_ms - oldest) / max(1, e_ms - s_ms))))
                return got

            rows = walk_back(tracked, {"type": 2, "after": e_ms}, reached=lambda t: t["timestamp"] < s_ms)
            return self._trade_frame(exchange, symbol, _in_time(rows, s_ms, e_ms))
        if not v.binance_family:
            return self._trade_frame(exchange, symbol, self._since_pages(exchange, symbol, s_ms, e_ms))
        client, market = self._client(exchange), self._market(exchange, symbol)
        rows = []
        cursor = s_ms
        while cursor < e_ms:  # Binance serves time windows of at most 1 h
            window_end = min(cursor + 3_600_000 - 1, e_ms - 1)
            page = client.fetch_trades(market, since=cursor, limit=_PAGE, params={"endTime": window_end})
            self.requests += 1
            while page:
                rows += [t for t in page if cursor <= t["timestamp"] <= window_end]
                if self.progress is not None:
                    self.progress(len(rows), min(1.0, (page[-1]["timestamp"] - s_ms) / max(1, e_ms - s_ms)))
                if len(page) < _PAGE or page[-1]["timestamp"] > window_end:
                    break  # the window is exhausted
                page = client.fetch_trades(market, limit=_PAGE, params={"fromId": int(page[-1]["id"]) + 1})
                self.requests += 1
            cursor = window_end + 1
        if self.progress is not None:
            self.progress(len(rows), 1.0)
        return self._trade_frame(exchange, symbol, [t for t in rows if t["timestamp"] >= s_ms])

    def _since_pages(self, exchange: str, symbol: str, s_ms: int, e_ms: int) -> list[CcxtTrade]:
        client, market = self._client(exchange), self._market(exchange, symbol)
        until = {"until": e_ms} if venue(exchange).ccxt_id == "coinbase" else {}  # coinbase needs an end

        def page(since: int) -> list[CcxtTrade]:
            self.requests += 1
            return client.fetch_trades(market, since=since, limit=_PAGE, params=until)

        return since_pages(page, s_ms, e_ms)

    def _trade_frame(self, exchange: str, symbol: str, rows: list[CcxtTrade]) -> pl.DataFrame:
        now = datetime.now(UTC)
        return pl.DataFrame(
            {
                "exchange": [exchange] * len(rows),
                "symbol": [symbol] * len(rows),
                "ts": [datetime.fromtimestamp(t["timestamp"] / 1000, UTC) for t in rows],
                "receipt_ts": [now] * len(rows),
                "id": [str(t["id"]) for t in rows],
                "side": [t["side"] for t in rows],
                "price": [_raw(t, ("p", "px"), t["price"]) for t in rows],
                "amount": [_raw(t, ("q", "sz"), t["amount"]) for t in rows],
            },
            schema={
                "exchange": pl.String,
                "symbol": pl.String,
                "ts": pl.Datetime("us", "UTC"),
                "receipt_ts": pl.Datetime("us", "UTC"),
                "id": pl.String,
                "side": pl.String,
                "price": pl.String,
                "amount": pl.String,
            },
        )

    def candles(self, exchange: str, symbol: str, interval: str, start: datetime, end: datetime) -> pl.DataFrame:
        """Closed klines with ``start <= open time < end``."""
        client, market = self._client(exchange), self._market(exchange, symbol)
        s_ms, e_ms = _ms(start), _ms(end)
        iv = candle_interval(interval)
        if iv is None:
            raise ValueError(f"not a candle interval: {interval!r}")
        rows: list[list[Any]] = []
        cursor = s_ms
        while cursor < e_ms:
            page = client.fetch_ohlcv(market, interval, since=cursor, limit=_PAGE)
            self.requests += 1
            page = [r for r in page if s_ms <= r[0] < e_ms]
            if not page:
                break
            rows += page
            cursor = page[-1][0] + 1  # the next candle opens after the last one's open
        now = datetime.now(UTC)
        opens = [datetime.fromtimestamp(r[0] / 1000, UTC) for r in rows]
        # a candle closes 1 ms before the next opens (a month's length varies: not parse_timeframe's 30 days)
        stops = [iv.add(t) - timedelta(milliseconds=1) for t in opens]
        return pl.DataFrame(
            {
                "exchange": [exchange] * len(rows),
                "symbol": [symbol] * len(rows),
                "ts": stops,
                "receipt_ts": [now] * len(rows),
                "interval": [interval] * len(rows),
                "start": opens,
                "stop": stops,
                "trades": [None] * len(rows),
                "open": [str(r[1]) for r in rows],
                "high": [str(r[2]) for r in rows],
                "low": [str(r[3]) for r in rows],
                "close": [str(r[4]) for r in rows],
                "volume": [str(r[5]) for r in rows],
                "closed": [True] * len(rows),
            },
            schema_overrides={
                "trades": pl.Int64,
                "ts": pl.Datetime("us", "UTC"),
                "receipt_ts": pl.Datetime("us", "UTC"),
                "start": pl.Datetime("us", "UTC"),
                "stop": pl.Datetime("us", "UTC"),
            },
        )

    def funding(self, exchange: str, symbol: str, start: datetime, end: datetime) -> pl.DataFrame:
        """Funding settlements with ``start <= fundingTime < end``."""
        client, market = self._client(exchange), self._market(exchange, symbol)
        s_ms, e_ms = _ms(start), _ms(end)
        rows: list[CcxtFundingRate] = []
        cursor = s_ms
        while cursor < e_ms:
            page = client.fetch_funding_rate_history(market, since=cursor, limit=_PAGE, params={"endTime": e_ms - 1})
            self.requests += 1
            page = [r for r in page if s_ms <= r["timestamp"] < e_ms]
            if not page:
                break
            rows += page
            cursor = page[-1]["timestamp"] + 1
        now = datetime.now(UTC)
        return pl.DataFrame(
            {
                "exchange": [exchange] * len(rows),
                "symbol": [symbol] * len(rows),
                "ts": [datetime.fromtimestamp(r["timestamp"] / 1000, UTC) for r in rows],
                "receipt_ts": [now] * len(rows),
                "mark_price": [r["info"].get("markPrice") for r in rows],
                "index_price": [None] * len(rows),
                "rate": [r["info"].get("fundingRate") for r in rows],
                "predicted_rate": [None] * len(rows),
                "next_funding_time": [None] * len(rows),
            },
            schema={
                "exchange": pl.String,
                "symbol": pl.String,
                "ts": pl.Datetime("us", "UTC"),
                "receipt_ts": pl.Datetime("us", "UTC"),
                "mark_price": pl.String,
                "index_price": pl.String,
                "rate": pl.String,
                "predicted_rate": pl.String,
                "next_funding_time": pl.Datetime("us", "UTC"),
            },
        )


def _raw(t: CcxtTrade, keys: tuple[str, ...], parsed: float) -> str:
    """The venue's own text of a number (Binance ``p``/``q``, OKX ``px``/``sz``), else ccxt's float."""
    info = t["info"]
    return str(next((info[k] for k in keys if info.get(k) is not None), parsed))


def backfiller_from_settings(settings: Settings, *, recorded: Mapping[str, str] | None = None) -> Backfiller | None:
    """The :class:`Backfiller` of ``settings``, or None when ``[silver] backfill`` is off. Each
    exchange's REST base is its ``[silver] backfill_rest`` entry, else its ``recorded`` one (the
    endpoint the root's data was streamed from: :func:`.sessions.recorded_rest_urls`), else the
    exchange's own."""
    if not settings.silver.backfill:
        return None
    return Backfiller(rest_urls(settings.silver.backfill_rest, recorded=recorded))


def rest_urls(
    configured: Mapping[str, str], *, recorded: Mapping[str, str] | None = None, given: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Exchange (upper case) -> REST base: ``given`` (a command's ``--rest``) over
    ``configured`` (``silver.backfill_rest``) over ``recorded`` (what the root was streamed from)."""
    urls: dict[str, str] = {}
    for source in (recorded or {}, configured, given or {}):
        urls.update({k.upper(): v for k, v in source.items() if v})
    return urls
