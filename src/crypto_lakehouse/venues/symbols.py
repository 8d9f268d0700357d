"""cryptofeed's symbol names -> a venue's own, without a network round trip: what the REST
backfill asks ccxt for (by market id) and what the loopback exchange's OKX market lists.

cryptofeed writes ``BASE-QUOTE`` (spot) and ``BASE-QUOTE-PERP`` (perpetuals) for every venue;
the venues write ``BTCUSDT`` / ``BTCUSD_PERP`` (Binance family) or ``BTC-USDT`` /
``BTC-USDT-SWAP`` (OKX).
"""

from __future__ import annotations

from crypto_lakehouse.errors import InvalidArgument
from crypto_lakehouse.venues.registry import venue

__all__ = ["native_symbol", "okx_inst_id", "okx_std_symbol"]


def okx_inst_id(symbol: str) -> str:
    """cryptofeed's ``BTC-USDT-PERP`` (or OKX's own ``BTC-USDT-SWAP``) -> OKX's instId
    ``BTC-USDT-SWAP``; spot ``BTC-USDT`` is the same on both. Other forms (dated futures,
    options) raise :class:`InvalidArgument`."""
    parts = symbol.strip().upper().split("-")
    if len(parts) == 3 and parts[2] in ("PERP", "SWAP") and parts[0] and parts[1]:
        return f"{parts[0]}-{parts[1]}-SWAP"
    if len(parts) == 2 and parts[0] and parts[1]:
        return f"{parts[0]}-{parts[1]}"
    raise InvalidArgument(
        f"{symbol!r} is not an OKX spot pair or perpetual swap: BTC-USDT, or BTC-USDT-PERP (OKX's BTC-USDT-SWAP)"
    )


def okx_std_symbol(inst_id: str) -> str:
    """OKX's ``BTC-USDT-SWAP`` -> cryptofeed's ``BTC-USDT-PERP``; spot ``BTC-USDT`` stays."""
    inst = okx_inst_id(inst_id)
    return inst.removesuffix("-SWAP") + "-PERP" if inst.endswith("-SWAP") else inst


def native_symbol(exchange: str, symbol: str) -> str:
    """The venue's own name of cryptofeed's ``symbol``: ``BTC-USDT-PERP`` -> ``BTCUSDT`` on
    BINANCE_FUTURES, ``BTCUSD_PERP`` on BINANCE_DELIVERY, ``BTC-USDT-SWAP`` on OKX."""
    v = venue(exchange)
    if v.exchange == "OKX":
        return okx_inst_id(symbol)
    if not v.binance_family:
        raise InvalidArgument(
            f"the lakehouse knows no mapping of cryptofeed symbols to {v.exchange}'s own; it knows "
            "OKX and the Binance family"
        )
    parts = symbol.strip().upper().split("-")
    if len(parts) < 2 or not parts[0] or not parts[1]:
        raise InvalidArgument(f"cannot map symbol {symbol!r} to {v.exchange}: cryptofeed writes BTC-USDT(-PERP)")
    return v.exchange_symbol(parts[0], parts[1])
