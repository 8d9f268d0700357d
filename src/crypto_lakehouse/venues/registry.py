"""The venue capability registry: every exchange cryptofeed 3.0.1 streams, and what the
lakehouse may assume of each (data, one place; documented in docs/venues.md).

Per venue: the kind of trade id (which decides whether silver can find lost trades from id
holes), the kind of book sequence (whether it can find lost book updates), the ccxt class and how
its ``fetch_trades`` pages history (whether, and how, a gap can be backfilled). The facts come
from the recorded sessions in ``shared/data/cryptofeed-captures`` and from ccxt 4.5.90's source;
``evidence`` says which, and venues nobody has measured get the conservative answer (ids
``opaque``, sequence ``none``: nothing is inferred from them).

The Binance-family venues also carry their protocol details (REST prefix, kline page size, live
hosts): the loopback exchange's synthetic market and the archive importer speak that protocol.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, cast

from crypto_lakehouse.errors import InvalidArgument, LakehouseError

if TYPE_CHECKING:
    from cryptofeed.feed import Feed

__all__ = [
    "PUBLIC_CHANNELS",
    "RENAMED",
    "VENUES",
    "BookSequence",
    "Paging",
    "TradeIds",
    "Venue",
    "canonical_exchange",
    "venue",
]

TradeIds = Literal["contiguous", "monotonic", "opaque", "none"]
"""``contiguous``: integers +1 per trade per symbol (a hole is a lost trade); ``monotonic``:
increasing integers shared across symbols (order, not completeness); ``opaque``: UUIDs or
encoded strings (identity only); ``none``: trades carry no id."""

BookSequence = Literal["per_update", "per_range", "none"]
"""``per_update``: each book update's sequence is the previous one's + 1; ``per_range``: an
update covers ``first..last`` and the next one's first is this one's last + 1 (cryptofeed keeps
the last); ``none``: no sequence, or cryptofeed delivers None."""

Paging = Literal["since_paginate", "since_by_hand", "id_cursor", "latest_only", "none"]
"""How ccxt's ``fetch_trades`` reaches back: ``since_paginate`` (``since`` with ccxt's built-in
``paginate``), ``since_by_hand`` (``since``/``limit`` pages walked by the caller), ``id_cursor``
(walks back from the newest trade by trade id), ``latest_only`` (the newest trades only: an older
gap cannot be filled), ``none`` (no public trade history)."""

PUBLIC_CHANNELS = (
    "trades",
    "l2_book",
    "l3_book",
    "l1_book",
    "ticker",
    "candles",
    "funding",
    "open_interest",
    "index",
    "liquidations",
)
"""cryptofeed's public market-data channels, each with a bronze home (docs/tables.md)."""

RENAMED = {"GATEIO": "GATE", "HUOBI": "HTX", "HUOBI_SWAP": "HTX_SWAP", "CRYPTO_COM": "CRYPTO.COM"}
"""Exchange ids of older cryptofeed releases (and of recordings made with them) -> 3.0.1's."""


@dataclass(frozen=True, slots=True)
class Venue:
    """One cryptofeed exchange and what the lakehouse may assume of it."""

    exchange: str  # cryptofeed 3.0.1 id: BINANCE, COINBASE, OKX, ...
    kind: str  # spot | linear | inverse | derivatives (several kinds on one feed) | mixed
    trade_ids: TradeIds
    book_sequence: BookSequence
    ccxt_id: str | None  # the ccxt class, None where ccxt has none
    ccxt_paging: Paging
    evidence: str  # where trade_ids/book_sequence/ccxt_paging come from
    polled: tuple[str, ...] = ()  # channels cryptofeed polls over REST: streamed only when asked for
    # Binance-family protocol: REST prefix, klines per REST call, live hosts (for recordings)
    rest_prefix: str | None = None
    kline_limit: int = 1000
    rest_host: str | None = None
    ws_host: str | None = None

    @property
    def feed(self) -> type[Feed]:
        """cryptofeed's handler class for this venue."""
        from cryptofeed.exchanges import EXCHANGE_MAP

        return cast("type[Feed]", EXCHANGE_MAP[self.exchange])  # (its map is typed dict[str, object])

    @property
    def offered_channels(self) -> tuple[str, ...]:
        """Every public channel cryptofeed offers for this venue."""
        offered = set(self.feed.websocket_channels)
        return tuple(c for c in PUBLIC_CHANNELS if c in offered)

    @property
    def channels(self) -> list[str]:
        """The channels streamed when none are named: every offered one but those polled over REST."""
        return [c for c in self.offered_channels if c not in self.polled]

    @property
    def contiguous_trade_ids(self) -> bool:
        """Trade ids are consecutive integers per symbol: a hole is a lost trade, and the venue's
        latest id says whether a stream stopped short of the market's end."""
        return self.trade_ids == "contiguous"

    @property
    def binance_family(self) -> bool:
        """Speaks the Binance protocol (the loopback synthetic market, the archive importer)."""
        return self.rest_prefix is not None

    @property
    def can_backfill(self) -> bool:
        """ccxt can fetch trades of a past time range (not only the latest ones)."""
        return self.ccxt_id is not None and self.ccxt_paging in ("since_paginate", "since_by_hand", "id_cursor")

    @property
    def is_futures(self) -> bool:
        return self.kind not in ("spot", "mixed")

    def exchange_symbol(self, base: str, quote: str) -> str:
        """The Binance-family symbol: ``BTCUSDT`` (spot, USD-M) or ``BTCUSD_PERP`` (coin-M)."""
        self._binance_only("exchange_symbol")
        return f"{base}{quote}_PERP" if self.kind == "inverse" else f"{base}{quote}"

    def std_symbol(self, symbol: str) -> str:
        """cryptofeed's name of a Binance-family symbol: ``BTC-USDT``, ``BTC-USDT-PERP``, ``BTC-USD-PERP``."""
        base, quote = self.split_symbol(symbol)
        return f"{base}-{quote}" + ("-PERP" if self.is_futures else "")

    def split_symbol(self, symbol: str) -> tuple[str, str]:
        """``BTCUSDT`` -> (``BTC``, ``USDT``); ``BTCUSD_PERP`` -> (``BTC``, ``USD``)."""
        self._binance_only("split_symbol")
        s = symbol.upper().removesuffix("_PERP")
        for quote in ("USDT", "USDC", "FDUSD", "BUSD", "USD", "BTC", "ETH", "EUR", "BNB"):
            if s.endswith(quote) and len(s) > len(quote):
                return s[: -len(quote)], quote
        raise LakehouseError(f"cannot split symbol {symbol!r} into base and quote asset")

    def _binance_only(self, what: str) -> None:
        if not self.binance_family:
            raise LakehouseError(f"{what} is defined for the Binance-family venues only, not {self.exchange}")


_CAPTURES = "shared/data/cryptofeed-captures"
_CCXT = "ccxt 4.5.90 fetch_trades source"
_UNMEASURED = f"not measured (no recording): conservative defaults; paging from {_CCXT}"


def _binance(exchange: str, prefix: str, kind: str, ccxt_id: str, limit: int, rest: str, ws: str) -> Venue:
    return Venue(
        exchange,
        kind,
        "contiguous",
        "per_range",
        ccxt_id,
        "since_paginate",
        f"{_CAPTURES} (aggTrade ids, depth U/u), {_CCXT} (1 h windows, fromId)",
        polled=("open_interest",),
        rest_prefix=prefix,
        kline_limit=limit,
        rest_host=rest,
        ws_host=ws,
    )


VENUES: dict[str, Venue] = {
    v.exchange: v
    for v in (
        _binance("BINANCE", "/api/v3", "spot", "binance", 1000, "api.binance.com", "stream.binance.com:9443"),
        _binance("BINANCE_US", "/api/v3", "spot", "binanceus", 1000, "api.binance.us", "stream.binance.us:9443"),
        _binance(
            "BINANCE_FUTURES", "/fapi/v1", "linear", "binanceusdm", 1500, "fapi.binance.com", "fstream.binance.com"
        ),
        _binance(
            "BINANCE_DELIVERY", "/dapi/v1", "inverse", "binancecoinm", 1500, "dapi.binance.com", "dstream.binance.com"
        ),
        Venue("BITFINEX", "mixed", "monotonic", "none", "bitfinex", "since_paginate", f"{_CAPTURES}; {_CCXT}"),
        Venue("BITFLYER", "mixed", "none", "none", "bitflyer", "latest_only", f"DESIGN.md field notes; {_CCXT}"),
        Venue("BITGET", "mixed", "opaque", "none", "bitget", "since_paginate", f"sequence None in updates; {_CCXT}"),
        Venue("BITHUMB", "spot", "opaque", "none", "bithumb", "latest_only", _UNMEASURED),
        Venue("BITSTAMP", "spot", "monotonic", "none", "bitstamp", "latest_only", f"DESIGN.md field notes; {_CCXT}"),
        Venue("BYBIT", "derivatives", "opaque", "per_update", "bybit", "latest_only", f"{_CAPTURES} (UUIDs); {_CCXT}"),
        Venue(
            "COINBASE",
            "spot",
            "contiguous",
            "none",
            "coinbase",
            "since_by_hand",
            f"{_CAPTURES} (trade_id; the subscription snapshot arrives newest first); {_CCXT} (needs until)",
        ),
        Venue("CRYPTO.COM", "mixed", "opaque", "none", "cryptocom", "since_paginate", _UNMEASURED),
        Venue("DERIBIT", "derivatives", "opaque", "per_range", "deribit", "since_by_hand", f"{_CAPTURES}; {_CCXT}"),
        Venue("DYDX", "linear", "opaque", "none", None, "none", "not measured; no ccxt class for the v4 indexer"),
        Venue("GATE", "spot", "monotonic", "none", "gate", "latest_only", f"{_CAPTURES}; {_CCXT} (spot ignores since)"),
        Venue("GATE_FUTURES", "linear", "monotonic", "none", "gate", "since_paginate", _UNMEASURED),
        Venue("GEMINI", "spot", "monotonic", "none", "gemini", "since_by_hand", f"{_CAPTURES}; {_CCXT} (500/page)"),
        Venue(
            "HTX",
            "spot",
            "contiguous",
            "none",
            "htx",
            "latest_only",
            f"{_CAPTURES} (tradeId contiguous as a set, delivered out of order); {_CCXT}",
        ),
        Venue("HTX_SWAP", "derivatives", "monotonic", "none", "htx", "latest_only", f"DESIGN.md field notes; {_CCXT}"),
        Venue("HYPERLIQUID", "linear", "opaque", "none", "hyperliquid", "none", f"{_UNMEASURED} (user fills only)"),
        Venue("INDEPENDENT_RESERVE", "spot", "opaque", "none", "independentreserve", "latest_only", _UNMEASURED),
        Venue("KRAKEN", "spot", "opaque", "none", "kraken", "since_by_hand", _UNMEASURED),
        Venue(
            "KRAKEN_FUTURES",
            "derivatives",
            "opaque",
            "per_update",
            "krakenfutures",
            "since_paginate",
            f"{_CAPTURES} (UUID ids, book seq +1); {_CCXT}",
        ),
        Venue("KUCOIN", "spot", "opaque", "none", "kucoin", "latest_only", f"sequence None in updates; {_CCXT}"),
        Venue("KUCOIN_FUTURES", "linear", "opaque", "none", "kucoinfutures", "latest_only", _UNMEASURED),
        Venue("MEXC", "spot", "opaque", "none", "mexc", "since_by_hand", _UNMEASURED),
        Venue(
            "OKX",
            "derivatives",
            "contiguous",
            "none",
            "okx",
            "id_cursor",
            f"{_CAPTURES} (tradeId; book sequence None); {_CCXT} (walks back by tradeId, 100 a page)",
        ),
        Venue("PHEMEX", "mixed", "none", "none", "phemex", "latest_only", f"DESIGN.md field notes; {_CCXT}"),
        Venue("POLONIEX", "spot", "contiguous", "none", "poloniex", "latest_only", f"3 of 3 in a sample; {_CCXT}"),
        Venue("UPBIT", "spot", "monotonic", "none", "upbit", "latest_only", f"DESIGN.md field notes; {_CCXT}"),
    )
}


def canonical_exchange(exchange: str) -> str:
    """``exchange`` upper-cased, with ids renamed since older cryptofeed releases mapped
    (``GATEIO`` -> ``GATE``, ``HUOBI`` -> ``HTX``)."""
    name = exchange.strip().upper()
    return RENAMED.get(name, name)


def venue(exchange: str) -> Venue:
    """The :class:`Venue` for a cryptofeed exchange id (old ids mapped); an
    :class:`~crypto_lakehouse.errors.InvalidArgument` naming every venue for anything else."""
    try:
        return VENUES[canonical_exchange(exchange)]
    except KeyError:
        raise InvalidArgument(f"unknown exchange {exchange!r}: choose from {', '.join(VENUES)}") from None
