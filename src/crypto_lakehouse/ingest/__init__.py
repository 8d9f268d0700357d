"""Ingest: the bronze streaming writer, REST backfill and archive import (replaying a recorded
session through the loopback exchange is ``crypto_lakehouse.loopback.replay``)."""

from crypto_lakehouse.ingest.stream import FeedTarget, stream_to_bronze
from crypto_lakehouse.ingest.writer import BronzeWriter

__all__ = ["BronzeWriter", "FeedTarget", "stream_to_bronze"]
