"""Ingest: the bronze streaming writer, its cryptofeed backends, REST backfill and archive import
(replaying a recorded session through the loopback exchange is ``crypto_lakehouse.loopback.replay``)."""

from crypto_lakehouse.ingest.backend import (
    BACKENDS,
    BookLakehouse,
    CandlesLakehouse,
    FundingLakehouse,
    IndexLakehouse,
    L1BookLakehouse,
    L3BookLakehouse,
    LakehouseCallback,
    LiquidationsLakehouse,
    OpenInterestLakehouse,
    TickerLakehouse,
    TradeLakehouse,
    lakehouse_callbacks,
)
from crypto_lakehouse.ingest.stream import FeedTarget, stream_to_bronze
from crypto_lakehouse.ingest.writer import BronzeWriter

__all__ = [
    "BACKENDS",
    "BookLakehouse",
    "BronzeWriter",
    "CandlesLakehouse",
    "FeedTarget",
    "FundingLakehouse",
    "IndexLakehouse",
    "L1BookLakehouse",
    "L3BookLakehouse",
    "LakehouseCallback",
    "LiquidationsLakehouse",
    "OpenInterestLakehouse",
    "TickerLakehouse",
    "TradeLakehouse",
    "lakehouse_callbacks",
    "stream_to_bronze",
]
