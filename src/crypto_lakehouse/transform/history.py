"""What silver needs from a venue's REST history, as a :class:`typing.Protocol`: the gap filler
and ``backfill`` ask it for missing trades, candles and funding, and whether a stream stopped
short of the market. ``crypto_lakehouse.ingest.backfill.Backfiller`` (the real ccxt clients) is
the implementation; the caller builds it and passes it in, so transform never imports ingest.
What silver may assume of a venue (its kind of trade id and of book sequence, whether its REST
can reach back) comes the same way: a :data:`VenueLookup` (``crypto_lakehouse.venues.venue``,
whose :class:`~crypto_lakehouse.venues.Venue` is a :class:`VenueTraits`), passed in by the caller.

Every frame comes back bronze-shaped (the columns of the bronze table, numbers as strings),
as the promote validates it like any other bronze row.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Protocol

import polars as pl

__all__ = ["VenueHistory", "VenueLookup", "VenueTraits"]


class VenueHistory(Protocol):
    """A venue's REST history for ``exchange`` (cryptofeed id) and ``symbol`` (cryptofeed's
    normalised name); times are UTC, ranges ``[start, end)``."""

    def trades_by_id(self, exchange: str, symbol: str, first_id: int, last_id: int) -> pl.DataFrame:
        """Trades with ``first_id <= id <= last_id`` (``bronze.trades`` columns)."""
        ...

    def trades_by_time(self, exchange: str, symbol: str, start: datetime, end: datetime) -> pl.DataFrame:
        """Trades with ``start <= ts < end`` (``bronze.trades`` columns)."""
        ...

    def candles(self, exchange: str, symbol: str, interval: str, start: datetime, end: datetime) -> pl.DataFrame:
        """Closed candles of ``interval`` opening in ``[start, end)`` (``bronze.candles`` columns)."""
        ...

    def funding(self, exchange: str, symbol: str, start: datetime, end: datetime) -> pl.DataFrame:
        """Funding settlements in ``[start, end)`` (``bronze.funding`` columns)."""
        ...

    def latest_trade_id(self, exchange: str, symbol: str) -> int | None:
        """The venue's most recent trade id for ``symbol`` (None: it lists no trade)."""
        ...

    def contiguous_trade_ids(self, exchange: str) -> bool:
        """Whether ``exchange``'s trade ids are consecutive per symbol (a hole is a lost trade)."""
        ...


class VenueTraits(Protocol):
    """What silver may assume of a venue's data (docs/venues.md): ``trade_ids`` is
    ``contiguous``, ``monotonic``, ``opaque`` or ``none``; ``book_sequence`` is ``per_update``,
    ``per_range`` or ``none``; ``can_backfill``: its REST serves trades of a past time range."""

    @property
    def trade_ids(self) -> str: ...

    @property
    def book_sequence(self) -> str: ...

    @property
    def can_backfill(self) -> bool: ...


VenueLookup = Callable[[str], VenueTraits]
"""The traits of a cryptofeed exchange id; raises a ``LakehouseError`` for one it does not know."""
