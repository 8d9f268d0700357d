"""The loopback exchange: a local server speaking Binance's wire protocols (wss + REST).

It replays cryptofeed recordings or generates a seeded synthetic market with known ground
truth, so the real cryptofeed handlers and ccxt clients can be tested without the internet.
"""

from crypto_lakehouse.exchange.clients import ccxt_client, feed_class
from crypto_lakehouse.exchange.recording import Recording, load_recording
from crypto_lakehouse.exchange.server import MALFORMED_KINDS, FaultPlan, LoopbackExchange, running_exchange
from crypto_lakehouse.exchange.synthetic import MarketSpec, SyntheticMarket
from crypto_lakehouse.exchange.venues import VENUES, Venue

__all__ = [
    "MALFORMED_KINDS",
    "VENUES",
    "FaultPlan",
    "LoopbackExchange",
    "MarketSpec",
    "Recording",
    "SyntheticMarket",
    "Venue",
    "ccxt_client",
    "feed_class",
    "load_recording",
    "running_exchange",
]
