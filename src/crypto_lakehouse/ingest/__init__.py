"""Ingest: the bronze streaming writer, recorded-session ingestion (and later backfill, archives)."""

from crypto_lakehouse.ingest.replay import ingest_recording
from crypto_lakehouse.ingest.stream import FeedTarget, stream_to_bronze
from crypto_lakehouse.ingest.writer import BronzeWriter

__all__ = ["BronzeWriter", "FeedTarget", "ingest_recording", "stream_to_bronze"]
