"""The real venues this project streams from: what differs between the four Binance-family
protocols (REST prefix, symbol style, streams). The loopback exchange speaks the same ones."""

from __future__ import annotations

from dataclasses import dataclass

from crypto_lakehouse.errors import LakehouseError

__all__ = ["VENUES", "Venue", "venue"]


@dataclass(frozen=True, slots=True)
class Venue:
    """One Binance-family protocol: REST prefix, symbol style and which streams exist."""

    exchange: str  # cryptofeed id: BINANCE, BINANCE_US, BINANCE_FUTURES, BINANCE_DELIVERY
    rest_prefix: str  # /api/v3, /fapi/v1, /dapi/v1
    kind: str  # spot | linear | inverse
    ccxt_id: str  # ccxt class name
    kline_limit: int  # max klines per REST call
    rest_host: str  # the live venue's hosts (used when writing recordings)
    ws_host: str
    # trade ids are consecutive integers per symbol (Binance aggTrade ids): a hole is a lost trade,
    # and the venue's latest id says whether a stream stopped short of the market's end
    contiguous_trade_ids: bool = True

    @property
    def is_futures(self) -> bool:
        return self.kind != "spot"

    def exchange_symbol(self, base: str, quote: str) -> str:
        """The exchange's own symbol: ``BTCUSDT`` (spot, USD-M) or ``BTCUSD_PERP`` (coin-M)."""
        return f"{base}{quote}_PERP" if self.kind == "inverse" else f"{base}{quote}"

    def std_symbol(self, symbol: str) -> str:
        """cryptofeed's normalised name: ``BTC-USDT`` (spot), ``BTC-USDT-PERP``, ``BTC-USD-PERP``."""
        base, quote = self.split_symbol(symbol)
        return f"{base}-{quote}" + ("-PERP" if self.is_futures else "")

    @property
    def channels(self) -> list[str]:
        """cryptofeed channels this venue streams."""
        spot = ["trades", "l2_book", "ticker", "candles"]
        return spot + ["funding", "liquidations"] if self.is_futures else spot

    def split_symbol(self, symbol: str) -> tuple[str, str]:
        """``BTCUSDT`` -> (``BTC``, ``USDT``); ``BTCUSD_PERP`` -> (``BTC``, ``USD``)."""
        s = symbol.upper().removesuffix("_PERP")
        for quote in ("USDT", "USDC", "FDUSD", "BUSD", "USD", "BTC", "ETH", "EUR", "BNB"):
            if s.endswith(quote) and len(s) > len(quote):
                return s[: -len(quote)], quote
        raise LakehouseError(f"cannot split symbol {symbol!r} into base and quote asset")


VENUES: dict[str, Venue] = {
    v.exchange: v
    for v in (
        Venue("BINANCE", "/api/v3", "spot", "binance", 1000, "api.binance.com", "stream.binance.com:9443"),
        Venue("BINANCE_US", "/api/v3", "spot", "binanceus", 1000, "api.binance.us", "stream.binance.us:9443"),
        Venue("BINANCE_FUTURES", "/fapi/v1", "linear", "binanceusdm", 1500, "fapi.binance.com", "fstream.binance.com"),
        Venue(
            "BINANCE_DELIVERY", "/dapi/v1", "inverse", "binancecoinm", 1500, "dapi.binance.com", "dstream.binance.com"
        ),
    )
}


def venue(exchange: str) -> Venue:
    """The :class:`Venue` for a cryptofeed exchange id; a clear error for anything else."""
    try:
        return VENUES[exchange.upper()]
    except KeyError:
        raise LakehouseError(
            f"unknown exchange {exchange!r}: the loopback exchange speaks {', '.join(VENUES)}"
        ) from None
