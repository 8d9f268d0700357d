"""The real venues: what differs between the Binance-family protocols (:mod:`.registry`) and the
real cryptofeed feed classes and ccxt clients pointed at an endpoint, live or loopback
(:mod:`.clients`). Production code; it never imports the loopback exchange."""

from crypto_lakehouse.venues.clients import ccxt_client, client_ssl_context, feed_class, run_feeds
from crypto_lakehouse.venues.registry import VENUES, Venue, venue

__all__ = ["VENUES", "Venue", "ccxt_client", "client_ssl_context", "feed_class", "run_feeds", "venue"]
