"""The loopback exchange: a local server speaking Binance's wire protocols (wss + REST).

It replays cryptofeed recordings or generates a seeded synthetic market with known ground
truth, so the real cryptofeed handlers and ccxt clients (``crypto_lakehouse.venues``) can be
tested without the internet. A test double and a user tool: the library itself never imports it
(only the tests, ``crypto_lakehouse.devtools`` and the ``lakehouse exchange`` / ``ingest-recording``
commands do). ``crypto_lakehouse.loopback.replay`` streams a recording through it into bronze.
"""

from crypto_lakehouse.loopback.recording import Recording, load_recording
from crypto_lakehouse.loopback.server import MALFORMED_KINDS, FaultPlan, LoopbackExchange, running_exchange
from crypto_lakehouse.loopback.synthetic import MarketSpec, SyntheticMarket

__all__ = [
    "MALFORMED_KINDS",
    "FaultPlan",
    "LoopbackExchange",
    "MarketSpec",
    "Recording",
    "SyntheticMarket",
    "load_recording",
    "running_exchange",
]
