"""The real venues: the capability registry of every cryptofeed exchange (:mod:`.registry`,
pure data) and the real cryptofeed feed classes and ccxt clients pointed at an endpoint, live or
loopback (:mod:`.clients`, loaded on first use: reading the registry does not import them).
Production code; it never imports the loopback exchange."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from crypto_lakehouse.venues.registry import VENUES, Venue, venue

if TYPE_CHECKING:
    from crypto_lakehouse.venues.clients import ccxt_client, client_ssl_context, feed_class, run_feeds

__all__ = ["VENUES", "Venue", "ccxt_client", "client_ssl_context", "feed_class", "run_feeds", "venue"]

_CLIENTS = {"ccxt_client", "client_ssl_context", "feed_class", "run_feeds"}


def __getattr__(name: str) -> Any:
    if name in _CLIENTS:
        from crypto_lakehouse.venues import clients

        return getattr(clients, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
