"""REST backfill with the real ccxt clients (``ccxt.binance``/``binanceusdm``/``binancecoinm``).

Rows come back in silver's shape with ``source='backfill'``; ccxt paces the requests with its
rate limiter (Binance's request weights) and we page through ``fromId`` (trades, exact) or time
(candles, funding). A :class:`Backfiller` is the ``VenueHistory`` that silver's gap filler and
``backfill`` ask (``crypto_lakehouse.transform.history``): the callers build it and pass it in.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl

from crypto_lakehouse.config import Settings
from crypto_lakehouse.durations import candle_interval
from crypto_lakehouse.errors import LakehouseError
from crypto_lakehouse.venues.clients import CcxtClient, CcxtFundingRate, CcxtTrade, ccxt_client
from crypto_lakehouse.venues.registry import venue

__all__ = ["Backfiller", "Progress", "backfiller_from_settings", "exchange_symbol", "rest_urls"]

LOG = logging.getLogger(__name__)
_PAGE = 1000


def exchange_symbol(exchange: str, symbol: str) -> str:
    """cryptofeed ``BTC-USDT-PERP`` -> the exchange's ``BTCUSDT`` (``BTCUSD_PERP`` on coin-M)."""
    v = venue(exchange)
    parts = symbol.split("-")
    if len(parts) < 2:
        raise LakehouseError(f"cannot map symbol {symbol!r} to {exchange}")
    return v.exchange_symbol(parts[0], parts[1])


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
        client = self._client(exchange)
        sid = exchange_symbol(exchange, symbol)
        for m in client.markets.values():
            if m["id"] == sid:
                return m["symbol"]
        raise LakehouseError(f"{exchange} lists no market {sid} ({symbol})")

    def trades_by_id(self, exchange: str, symbol: str, first_id: int, last_id: int) -> pl.DataFrame:
        """Trades with ``first_id <= id <= last_id``, paging by ``fromId``."""
        client, market = self._client(exchange), self._market(exchange, symbol)
        rows: list[CcxtTrade] = []
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
        """The venue's most recent trade id for ``symbol`` (None: it lists no trade)."""
        client, market = self._client(exchange), self._market(exchange, symbol)
        page = client.fetch_trades(market, limit=1)
        self.requests += 1
        return max((int(t["id"]) for t in page), default=None)

    def trades_by_time(self, exchange: str, symbol: str, start: datetime, end: datetime) -> pl.DataFrame:
        """Trades with ``start <= ts < end``: the first page by time, then by ``fromId``."""
        client, market = self._client(exchange), self._market(exchange, symbol)
        s_ms, e_ms = _ms(start), _ms(end)
        rows: list[CcxtTrade] = []
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
                "price": [str(t["info"].get("p", t["price"])) for t in rows],
                "amount": [str(t["info"].get("q", t["amount"])) for t in rows],
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
