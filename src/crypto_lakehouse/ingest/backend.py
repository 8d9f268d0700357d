"""The lakehouse as a cryptofeed backend: ``callbacks={TRADES: TradeLakehouse(writer), ...}``.

A user who already runs a cryptofeed ``FeedHandler`` adds the lakehouse the way cryptofeed's own
backends are added (``TradePostgres``, ``BookRedis``, ...): one callback object per channel,

    writer = BronzeWriter(Catalog("/data/lake"), writer_id="my-feedhandler")
    fh.add_feed(BinanceFutures(symbols=[...], channels=[TRADES, L2_BOOK],
                               callbacks={TRADES: TradeLakehouse(writer), L2_BOOK: BookLakehouse(writer)}))
    fh.run()

Each object turns cryptofeed's objects into bronze rows with the same callbacks
``lakehouse stream`` uses (:func:`~.stream.bronze_callbacks`), and hands them to the
:class:`~.writer.BronzeWriter`, which does all the batching, retries, spooling and exactly-once
(see its module doc). Nothing is queued in between: cryptofeed's ``BackendQueue`` (a bounded
queue that drops data when full or when its writer fails) is deliberately not used.

**Lifecycle**, through the hooks a cryptofeed ``Feed`` calls on its callbacks: ``start_writer``
when the feed starts (before it connects) and ``stop`` when it shuts down (after its connections
ended). The objects of one writer share one run of it, across channels and feeds: the first
start starts the writer (its id lock, batch ids, a spool left by a previous run committed first)
and its flusher; the last stop flushes every buffer and waits for the commits before the feed's
``run`` returns. So ``fh.run()`` returning (Ctrl-C, SIGTERM, ``request_stop()``) means every row
received is committed, or spooled on local disk when storage failed (committed at the next
start), exactly once. The flush is not cut short by the feed's ``shutdown_timeout``: the
writer's own retries bound it. A writer that cannot start (its id is in use by another process,
a spool for another root) fails the feed with that error. Each feed also records its session
in ``bronze.sessions`` (start, heartbeat, end), as ``lakehouse stream`` does, so silver knows
which time it covered.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Coroutine, Iterable
from datetime import UTC, datetime
from typing import Any, ClassVar, Protocol

from cryptofeed.defines import (
    CANDLES,
    FUNDING,
    INDEX,
    L1_BOOK,
    L2_BOOK,
    L3_BOOK,
    LIQUIDATIONS,
    OPEN_INTEREST,
    TICKER,
    TRADES,
)

from crypto_lakehouse.errors import LakehouseError
from crypto_lakehouse.ingest.sessions import SessionLedger, Subscription
from crypto_lakehouse.ingest.stream import CHANNELS, _raise_if_nothing_committed, bronze_callbacks
from crypto_lakehouse.ingest.writer import BronzeWriter

__all__ = [
    "BACKENDS",
    "BookLakehouse",
    "CandlesLakehouse",
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
]

LOG = logging.getLogger(__name__)


class _TaskFactory(Protocol):
    """What a cryptofeed ``Feed`` passes to ``start_writer``: its task group (supervised: a task
    that raises stops that feed, which then raises the error)."""

    def create_task(self, coro: Coroutine[Any, Any, None], name: str | None = None) -> asyncio.Task[None]: ...


class LakehouseCallback:
    """A cryptofeed callback object writing one channel into its bronze table through ``writer``.

    Use the subclass of the channel (:class:`TradeLakehouse`, :class:`BookLakehouse`, ...) under
    that channel's key. Several objects, channels and feeds may share one writer (one writer per
    process and writer id); give each feed and channel its own object. ``sessions=False`` leaves
    this channel out of the feed's ``bronze.sessions`` record (for replays of recorded data,
    whose wall-clock time says nothing about the market's)."""

    channel: ClassVar[str]
    table: ClassVar[str]

    def __init__(self, writer: BronzeWriter, *, sessions: bool = True) -> None:
        self.writer = writer
        self.sessions = sessions
        self._write = bronze_callbacks(writer, [self.channel])[self.channel]
        self._holds: list[_FeedHold] = []

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.writer.catalog.root!r}, writer_id={self.writer.writer_id!r})"

    async def __call__(self, obj: Any, receipt_timestamp: float) -> None:
        """cryptofeed's callback: one object (a ``Trade``, an ``OrderBook``, ...) and its receipt
        time (epoch seconds) -> bronze rows buffered in the writer (no I/O here)."""
        await self._write(obj, receipt_timestamp)

    def start_writer(self, tg: _TaskFactory, name: str, owner: Any = None) -> asyncio.Task[None] | None:
        """Called by the feed ``owner`` as it starts: attach to the writer's run (starting it if
        this is the first object of the writer to start). Returns the task that watches the writer
        for this feed (one per feed and writer; None for the feed's other objects)."""
        if owner is not None:
            _check_registered(self, owner)
        run = _run_of(self.writer)
        hold, first = run.attach(self, owner)
        self._holds.append(hold)
        if not first:
            return None
        task = tg.create_task(run.attend(hold), name=name)
        task.add_done_callback(lambda _task: run.release(hold))  # if cancelled before it ran (else a no-op)
        return task

    async def stop(self) -> bool:
        """Called by the feed as it shuts down (its connections have ended): detach. When the
        last object of the writer detaches, the writer flushes; that feed's task waits for it.

        Returns False: the feed need not apply its ``shutdown_timeout`` to this backend (a flush
        cut short would lose the buffered rows); the feed still waits for the flush."""
        while self._holds:
            hold = self._holds.pop(0)
            if not hold.released:  # (a hold of a feed that was cancelled was released without a stop)
                hold.detach()
                break
        return False


class TradeLakehouse(LakehouseCallback):
    """``TRADES`` -> ``bronze.trades``."""

    channel = TRADES
    table = "bronze.trades"


class BookLakehouse(LakehouseCallback):
    """``L2_BOOK`` -> ``bronze.book``: a snapshot as every level, an update as its changed levels."""

    channel = L2_BOOK
    table = "bronze.book"


class TickerLakehouse(LakehouseCallback):
    """``TICKER`` -> ``bronze.ticker``."""

    channel = TICKER
    table = "bronze.ticker"


class FundingLakehouse(LakehouseCallback):
    """``FUNDING`` -> ``bronze.funding``."""

    channel = FUNDING
    table = "bronze.funding"


class LiquidationsLakehouse(LakehouseCallback):
    """``LIQUIDATIONS`` -> ``bronze.liquidations``."""

    channel = LIQUIDATIONS
    table = "bronze.liquidations"


class CandlesLakehouse(LakehouseCallback):
    """``CANDLES`` -> ``bronze.candles`` (pass ``candle_closed_only=False`` to the feed to keep
    every update of the open candle too, as ``lakehouse stream`` does)."""

    channel = CANDLES
    table = "bronze.candles"


class L3BookLakehouse(LakehouseCallback):
    """``L3_BOOK`` -> ``bronze.l3_book``: a snapshot as every order, an update as its changed orders."""

    channel = L3_BOOK
    table = "bronze.l3_book"


class L1BookLakehouse(LakehouseCallback):
    """``L1_BOOK`` -> ``bronze.ticker`` (best bid/ask with sizes; ``channel`` = l1_book)."""

    channel = L1_BOOK
    table = "bronze.ticker"


class OpenInterestLakehouse(LakehouseCallback):
    """``OPEN_INTEREST`` -> ``bronze.open_interest``."""

    channel = OPEN_INTEREST
    table = "bronze.open_interest"


class IndexLakehouse(LakehouseCallback):
    """``INDEX`` -> ``bronze.index``."""

    channel = INDEX
    table = "bronze.index"


BACKENDS: dict[str, type[LakehouseCallback]] = {
    cls.channel: cls
    for cls in (
        TradeLakehouse,
        BookLakehouse,
        L3BookLakehouse,
        L1BookLakehouse,
        TickerLakehouse,
        FundingLakehouse,
        LiquidationsLakehouse,
        CandlesLakehouse,
        OpenInterestLakehouse,
        IndexLakehouse,
    )
}
"""cryptofeed channel -> the backend class writing it (every channel bronze stores)."""


def lakehouse_callbacks(
    writer: BronzeWriter, channels: Iterable[str] = CHANNELS, *, sessions: bool = True
) -> dict[str, LakehouseCallback]:
    """``{channel: backend}`` for ``channels`` (default: every channel bronze stores), all
    writing to ``writer``: ready for a feed's ``callbacks=``. Make one dict per feed."""
    channels = list(channels)
    unknown = [c for c in channels if c not in BACKENDS]
    if unknown:
        raise LakehouseError(f"the lakehouse does not store channel(s) {unknown}; choose from {', '.join(BACKENDS)}")
    return {c: BACKENDS[c](writer, sessions=sessions) for c in channels}


def _check_registered(backend: LakehouseCallback, feed: Any) -> None:
    """A backend registered under another channel's key would get objects it cannot read:
    say so when the feed starts, not as an error on every message."""
    callbacks = getattr(feed, "callbacks", None)
    if not isinstance(callbacks, dict):
        return

    def holds(cbs: Any) -> bool:
        for cb in cbs if isinstance(cbs, list) else [cbs]:
            node, seen = cb, 0
            while node is not None and seen < 16:  # a wrapper keeps what it wraps in .handler
                if node is backend:
                    return True
                node, seen = getattr(node, "handler", None), seen + 1
        return False

    where = [channel for channel, cbs in callbacks.items() if holds(cbs)]
    if where and backend.channel not in where:
        raise LakehouseError(
            f"{type(backend).__name__} writes {backend.table} from {backend.channel!r} callbacks but is registered "
            f"for {where}; use {', '.join(BACKENDS[c].__name__ for c in where if c in BACKENDS) or 'another callback'}"
        )


# ---------------------------------------------------------------------------------------- lifecycle


class _FeedHold:
    """One feed attached to a writer's run: how many of the feed's objects are attached, and
    the feed's session in ``bronze.sessions``."""

    __slots__ = (
        "attached",
        "channels",
        "feed",
        "key",
        "ledger",
        "released",
        "session",
        "session_stop",
        "started_at",
        "stopped",
    )

    def __init__(self, key: int, feed: Any) -> None:
        self.key = key
        self.feed = feed
        self.attached = 0
        self.channels: set[str] = set()  # the channels recorded in the feed's session
        self.stopped = asyncio.Event()  # every object of the feed has detached
        self.released = False
        self.started_at = time.time()
        self.ledger: SessionLedger | None = None
        self.session: asyncio.Task[None] | None = None
        self.session_stop = asyncio.Event()

    def detach(self) -> None:
        self.attached -= 1
        if self.attached <= 0:
            self.stopped.set()


class _WriterRun:
    """One writer's run under cryptofeed: started by the first feed that starts, flushed when the
    last one stops. The writer's task belongs to no feed's task group, so no feed's exit waits
    for other feeds (a failed feed is not held up by a running one)."""

    def __init__(self, writer: BronzeWriter) -> None:
        self.writer = writer
        self.task: asyncio.Task[None] | None = None
        self.stop_flusher = asyncio.Event()
        self.holds: dict[int, _FeedHold] = {}
        self.started_before = False

    def attach(self, backend: LakehouseCallback, feed: Any) -> tuple[_FeedHold, bool]:
        """``backend`` of ``feed`` joins the run: (the feed's hold, whether it is new)."""
        if self.task is None or self.task.done():
            if not self.started_before and self.writer._next_batch:  # started by someone else
                raise LakehouseError(
                    f"writer {self.writer.writer_id!r} was started outside its cryptofeed backends; the backends start "
                    "and flush it themselves: give them a writer nobody has started (or, to run the writer yourself, "
                    "use crypto_lakehouse.ingest.stream.bronze_callbacks, which only add rows)"
                )
            self.stop_flusher = asyncio.Event()
            self.task = asyncio.get_running_loop().create_task(self._main(), name="lakehouse.writer")
            self.started_before = True
        key = id(feed) if feed is not None else id(backend)
        hold = self.holds.get(key)
        first = hold is None
        if hold is None:
            hold = self.holds[key] = _FeedHold(key, feed)
        hold.attached += 1
        if backend.sessions and feed is not None:
            hold.channels.add(backend.channel)
        return hold, first

    async def _main(self) -> None:
        await self.writer.start()  # the id lock; a previous run's spool is committed first
        await self.writer.run(self.stop_flusher)  # until the last feed stops; then flush everything

    def release(self, hold: _FeedHold) -> bool:
        """The feed leaves the run (once); True when it was the last: the flusher is told to stop
        (it flushes everything, then ends)."""
        if hold.released:
            return False
        hold.released = True
        hold.session_stop.set()
        self.holds.pop(hold.key, None)
        if not self.holds:
            self.stop_flusher.set()
            return True
        return False

    async def attend(self, hold: _FeedHold) -> None:
        """The feed's watch over the writer, in the feed's (supervised) task group: records the
        feed's session; raises into the feed if the writer fails; once the feed's objects have all
        stopped, leaves the run, and if it was the last feed, waits for the writer's flush."""
        assert self.task is not None
        writer_task = self.task
        if hold.channels:
            hold.session = asyncio.get_running_loop().create_task(self._session(hold))
        reason = "stopped"
        stopped = asyncio.ensure_future(hold.stopped.wait())
        try:
            await asyncio.wait((writer_task, stopped), return_when=asyncio.FIRST_COMPLETED)
            if writer_task.done() and not hold.stopped.is_set():
                writer_task.result()  # it failed (e.g. its id is in use): the feed stops with this error
        except asyncio.CancelledError:  # the feed was cancelled (a second Ctrl-C, a failed sibling feed)
            reason = "cancelled"
            raise
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            stopped.cancel()
            last = self.release(hold)
            await self._end_session(hold, reason)
            if last:  # the flush; a second cancellation while it runs cancels it too (a hard stop)
                await writer_task
        if last:  # every commit failed: the rows wait in the spool; say so, as `lakehouse stream` does
            _raise_if_nothing_committed(self.writer)

    def _subscription(self, hold: _FeedHold) -> Subscription | None:
        """What the feed streams into this writer, in cryptofeed's standard names."""
        feed = hold.feed
        symbols: list[str] = []
        try:
            for channel in sorted(hold.channels):
                for sym in feed.subscription.get(feed.std_channel_to_exchange(channel), []):
                    std = feed.exchange_symbol_to_std_symbol(sym)
                    if std not in symbols:
                        symbols.append(std)
        except Exception as exc:  # noqa: BLE001 - a feed of unusual shape: no session rather than no stream
            LOG.warning("%s: cannot tell its subscription (%s): no session recorded", getattr(feed, "id", feed), exc)
            return None
        return Subscription(str(feed.id), symbols, sorted(hold.channels)) if symbols else None

    async def _session(self, hold: _FeedHold) -> None:
        sub = self._subscription(hold)
        if sub is None:
            return
        hold.ledger = SessionLedger(self.writer.catalog, writer_id=self.writer.writer_id, subscriptions=[sub])
        # at: when the feed started, before it connected (the commit itself may land a little later)
        await asyncio.to_thread(hold.ledger.record, "start", at=datetime.fromtimestamp(hold.started_at, UTC))
        await hold.ledger.heartbeat(hold.session_stop)

    async def _end_session(self, hold: _FeedHold, reason: str) -> None:
        if hold.session is None:
            return
        hold.session_stop.set()
        await asyncio.gather(hold.session, return_exceptions=True)
        if hold.ledger is not None:
            await asyncio.to_thread(hold.ledger.record, "end", reason=reason)


_RUNS: weakref.WeakKeyDictionary[BronzeWriter, _WriterRun] = weakref.WeakKeyDictionary()


def _run_of(writer: BronzeWriter) -> _WriterRun:
    run = _RUNS.get(writer)
    if run is None:
        run = _RUNS[writer] = _WriterRun(writer)
    return run
