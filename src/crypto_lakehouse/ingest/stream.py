"""cryptofeed -> bronze: normalise callbacks into bronze rows and run feeds with the writer.

The feed classes are cryptofeed's own, subclassed once more so that a frame the exchange
handler cannot parse goes to ``bronze.dead_letter`` instead of killing the connection (cryptofeed
3.0.1 reconnects on any handler error, which would lose the messages in between). Dead letters
keep the exact frame text received and the stream it names (Binance: the combined stream's
``stream`` field, e.g. ``btcusdt@aggTrade``), also for frames cryptofeed only logs and drops.
"""

from __future__ import annotations

import asyncio
import dataclasses
import difflib
import functools
import itertools
import logging
import re
import sys
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING, Any, TypedDict, cast

from cryptofeed import FeedHandler
from cryptofeed.connection import AsyncConnection
from cryptofeed.defines import (
    ASK,
    BID,
    CALL,
    CANDLES,
    FUNDING,
    INDEX,
    L1_BOOK,
    L2_BOOK,
    L3_BOOK,
    LIQUIDATIONS,
    OPEN_INTEREST,
    PUT,
    TICKER,
    TRADES,
)
from cryptofeed.exceptions import UnsupportedSymbol
from cryptofeed.feed import Feed

import crypto_lakehouse.ingest.compiled as _compiled
from crypto_lakehouse.errors import InvalidArgument, LakehouseError
from crypto_lakehouse.ingest.rows import decimal_text
from crypto_lakehouse.ingest.sessions import SessionLedger, Subscription
from crypto_lakehouse.ingest.shards import Shard
from crypto_lakehouse.ingest.writer import BronzeWriter
from crypto_lakehouse.storage import CommitError
from crypto_lakehouse.storage.state import state_dir
from crypto_lakehouse.venues.clients import feed_class, run_feeds
from crypto_lakehouse.venues.registry import PUBLIC_CHANNELS, venue

if TYPE_CHECKING:
    from cryptofeed.types import Candle, Funding, Index, L1Book, Liquidation, OpenInterest, OrderBook, Ticker, Trade

    from crypto_lakehouse.config import Settings, StreamEntry

__all__ = [
    "CHANNELS",
    "FeedTarget",
    "bronze_callbacks",
    "decimal_text",
    "resolve_endpoint",
    "shard_targets",
    "stream_targets",
    "stream_to_bronze",
    "writer_feed",
]

LOG = logging.getLogger(__name__)
CHANNELS = PUBLIC_CHANNELS
"""Every public cryptofeed channel, each with a bronze home (l1_book and ticker share bronze.ticker)."""


Callback = Callable[..., Awaitable[None]]
"""A cryptofeed data callback: ``(message, receipt time) -> None``, the message's type per channel."""


def _binance_raw(exchange: str, raw: object) -> dict[str, Any]:
    """The raw message of a Binance-family venue (whose fields ``u``, ``B``, ``A``, ``i`` the
    callbacks read); empty for every other venue, whose raw fields mean something else."""
    return raw if isinstance(raw, dict) and exchange.startswith("BINANCE") else {}


def bronze_callbacks(
    writer: BronzeWriter, channels: Iterable[str], *, compiled: bool | None = None
) -> dict[str, Callback]:
    """Async cryptofeed callbacks that put bronze rows into ``writer``'s buffers. Each row goes
    in through its table's :meth:`~.writer.BronzeWriter.putter`, every column by name, so a
    value cannot land in the wrong column (``schemas.ROW_LAYOUT``). The busy channels' prices and
    sizes (trades, book levels, ticker bid/ask) go in as ``str`` of the ``Decimal`` cryptofeed
    parsed, the others as the Decimal; the conversion of the batch writes any exponent notation
    out (:func:`~.rows.decimal_texts`, ``schemas.DECIMAL_TEXT``). Venue-neutral: what only Binance
    sends (the ticker's sizes and update id, funding's index price) is None for the others.

    ``compiled``: whether the trades, ticker and L2 book callbacks are the compiled ones of
    :mod:`.compiled` (the same rows, into the same buffers; docs/bronze.md). None (default):
    when the package was built with them and ``writer`` is a :class:`~.writer.BronzeWriter`
    itself, not a subclass wrapping its putters (the capture replay's view). True: always
    (:class:`~crypto_lakehouse.errors.InvalidArgument` when they are not built). False: never."""
    trade_row, ticker_row = writer.putter("bronze.trades"), writer.putter("bronze.ticker")
    funding_row, liquidation_row = writer.putter("bronze.funding"), writer.putter("bronze.liquidations")
    candle_row, oi_row, index_row = (
        writer.putter("bronze.candles"),
        writer.putter("bronze.open_interest"),
        writer.putter("bronze.index"),
    )
    book_rows, l3_rows = writer.levels_putter("bronze.book"), writer.levels_putter("bronze.l3_book")
    updates = itertools.count(1)  # update_id: every book update (L2 and L3) this writer's callbacks receive

    async def trade(t: Trade, receipt: float) -> None:
        trade_row(
            exchange=t.exchange,
            symbol=t.symbol,
            ts=t.timestamp,
            receipt_ts=receipt,
            id=t.id,
            side=t.side,
            price=str(t.price),  # (C-level str; exponents written out at conversion)
            amount=str(t.amount),
            type=t.type,
        )

    def put_book(b: OrderBook, receipt: float, *, l3: bool) -> None:
        """A book update as rows: the values every row of it shares (symbol, times, update id,
        levels, sequence, snapshot) once, and its levels' columns (L2: side, price, size; L3:
        side, order id, price, size) with a row per level or order of the snapshot or delta; an
        update carrying none is one row with those null. No tuple per level."""
        # (cryptofeed's stub types delta as dict: it is None on a snapshot)
        delta = cast("dict[str, list[tuple[Any, ...]]] | None", b.delta)
        if delta is None:  # a snapshot: every level (L3: price -> {order id: size})
            bids, asks = (_snapshot_levels(getattr(b.book, side + "s").to_dict(), l3=l3) for side in (BID, ASK))
        else:
            bids, asks = delta[BID], delta[ASK]
        both = [*bids, *asks]
        levels = len(both)
        sides: list[Any] = [BID] * len(bids) + [ASK] * len(asks) if levels else [None]
        if l3:
            ids, prices, sizes = (list(c) for c in zip(*both, strict=True)) if levels else ([None], [None], [None])
            l3_rows(
                levels or 1, exchange=b.exchange, symbol=b.symbol, ts=b.timestamp, receipt_ts=receipt,
                update_id=next(updates), levels=levels, sequence=b.sequence_number, snapshot=delta is None,
                side=sides, order_id=[None if o is None else str(o) for o in ids], price=prices, size=sizes,
            )  # fmt: skip
        else:  # (each level unpacked as a pair: another shape raises; str: C-level, exponents written out later)
            prices = [str(p) for p, _ in both] if levels else [None]
            sizes = [str(q) for _, q in both] if levels else [None]
            book_rows(
                levels or 1, exchange=b.exchange, symbol=b.symbol, ts=b.timestamp, receipt_ts=receipt,
                update_id=next(updates), levels=levels, sequence=b.sequence_number, snapshot=delta is None,
                side=sides, price=prices, size=sizes,
            )  # fmt: skip

    async def book(b: OrderBook, receipt: float) -> None:
        put_book(b, receipt, l3=False)

    async def l3_book(b: OrderBook, receipt: float) -> None:
        put_book(b, receipt, l3=True)

    async def ticker(t: Ticker, receipt: float) -> None:
        raw = _binance_raw(t.exchange, t.raw)
        ticker_row(
            exchange=t.exchange,
            symbol=t.symbol,
            ts=t.timestamp,
            receipt_ts=receipt,
            sequence=raw.get("u"),
            bid=str(t.bid),
            bid_size=raw.get("B"),
            ask=str(t.ask),
            ask_size=raw.get("A"),
            channel=TICKER,
        )

    async def l1_book(q: L1Book, receipt: float) -> None:
        ticker_row(
            exchange=q.exchange,
            symbol=q.symbol,
            ts=q.timestamp,
            receipt_ts=receipt,
            sequence=None,
            bid=q.bid_price,
            bid_size=q.bid_size,
            ask=q.ask_price,
            ask_size=q.ask_size,
            channel=L1_BOOK,
        )

    async def funding(f: Funding, receipt: float) -> None:
        raw = _binance_raw(f.exchange, f.raw)
        funding_row(
            exchange=f.exchange,
            symbol=f.symbol,
            ts=f.timestamp,
            receipt_ts=receipt,
            mark_price=f.mark_price,
            index_price=raw.get("i"),
            rate=f.rate,
            predicted_rate=f.predicted_rate,
            next_funding_time=f.next_funding_time,
        )

    async def liquidation(x: Liquidation, receipt: float) -> None:
        liquidation_row(
            exchange=x.exchange,
            symbol=x.symbol,
            ts=x.timestamp,
            receipt_ts=receipt,
            id=x.id,
            side=x.side,
            quantity=x.quantity,
            price=x.price,
            status=x.status,
        )

    async def candle(c: Candle, receipt: float) -> None:
        candle_row(
            exchange=c.exchange,
            symbol=c.symbol,
            ts=c.timestamp,
            receipt_ts=receipt,
            interval=c.interval,
            start=c.start,
            stop=c.stop,
            trades=c.trades,
            open=c.open,
            high=c.high,
            low=c.low,
            close=c.close,
            volume=c.volume,
            closed=bool(c.closed),
        )

    async def open_interest(o: OpenInterest, receipt: float) -> None:
        oi_row(exchange=o.exchange, symbol=o.symbol, ts=o.timestamp, receipt_ts=receipt, open_interest=o.open_interest)

    async def index(i: Index, receipt: float) -> None:
        index_row(exchange=i.exchange, symbol=i.symbol, ts=i.timestamp, receipt_ts=receipt, price=i.price)

    table: dict[str, Callback] = {
        TRADES: trade,
        L2_BOOK: book,
        L3_BOOK: l3_book,
        L1_BOOK: l1_book,
        TICKER: ticker,
        FUNDING: funding,
        LIQUIDATIONS: liquidation,
        CANDLES: candle,
        OPEN_INTEREST: open_interest,
        INDEX: index,
    }
    if compiled is None:
        compiled = _compiled.BUILT and type(writer) is BronzeWriter  # (a subclass may wrap the putters: capture's view)
    if compiled:
        whole_book = functools.partial(put_book, l3=False)
        table |= _compiled.callbacks(writer, whole_book=whole_book, updates=updates)
    return {c: table[c] for c in channels}


def _snapshot_levels(side: dict[Any, Any], *, l3: bool) -> list[tuple[Any, ...]]:
    """A snapshot side as delta-shaped tuples: L2 (price, size), L3 (order id, price, size)."""
    if l3:
        return [(o, p, q) for p, orders in side.items() for o, q in orders.items()]
    return list(side.items())


# "stream" (Binance combined streams), "channel"/"topic" (other venues): searched in the text, so
# a truncated frame keeps its stream too
_STREAM_FIELD = re.compile(r'"(?:stream|channel|topic)"\s*:\s*"([^"\\]*)"')


def _frame_channel(frame: str | bytes) -> str | None:
    """The stream a raw frame names (``btcusdt@aggTrade``), None when it names none (not JSON).
    Failure path only."""
    if isinstance(frame, bytes):
        frame = frame.decode("utf-8", "replace")
    m = _STREAM_FIELD.search(frame)
    return m.group(1) if m else None


def _dead_letter_frame(writer: BronzeWriter, feed: Feed, msg: str | bytes, conn: AsyncConnection, error: str) -> None:
    """Keep ``msg`` exactly as received, with the stream it names; a frame naming none (not
    JSON) keeps its connection's address in the error instead."""
    channel = _frame_channel(msg)
    address = getattr(conn, "address", None) if channel is None else None  # (websocket and HTTP connections)
    if address:
        error = f"{error} (connection {address})"
    writer.dead_letter(exchange=feed.id, channel=channel, error=error, payload=msg)


class _UnexpectedMessages(logging.Handler):
    """cryptofeed's Binance handler logs frames with an unknown event type and drops them:
    catch that log record and dead-letter the frame instead.

    The log record holds only what cryptofeed parsed (the inner ``data`` object); the frame as
    received is the ``msg`` of the :func:`writer_feed` message handler that is running below
    this call (logging calls handlers synchronously, so that handler's frame is on the stack,
    after any ``await`` too). Looking it up here costs nothing per message on the hot path.
    Only frames of feeds writing to one of ``writers`` are kept (each :func:`stream_to_bronze`
    adds its own handler)."""

    def __init__(self, writers: list[BronzeWriter]):
        super().__init__(logging.WARNING)
        self.writers = writers

    def emit(self, record: logging.LogRecord) -> None:
        if "Unexpected message received" not in str(record.msg):
            return
        f: FrameType | None = sys._getframe(1)
        while f is not None and f.f_code is not _MESSAGE_HANDLER_CODE:
            f = f.f_back
        if f is None:  # not logged while a writer feed handled a frame
            return
        loc = f.f_locals
        writer = loc["writer"]
        if any(writer is w for w in self.writers):
            _dead_letter_frame(writer, loc["self"], loc["msg"], loc["conn"], "unexpected message type")


_MessageHandler = Callable[[Feed, str, AsyncConnection, float], Coroutine[Any, Any, None]]


def _message_handler(base: type[Feed], writer: BronzeWriter | None) -> _MessageHandler:
    async def message_handler(self: Feed, msg: str, conn: AsyncConnection, timestamp: float) -> None:
        # its locals self, msg, conn and writer are read by _UnexpectedMessages: keep their names
        try:
            await base.message_handler(self, msg, conn, timestamp)
        except Exception as exc:  # a malformed or unexpected frame: keep it, keep the connection
            if writer is None:  # the template below, which lends its code object only and never runs
                raise
            _dead_letter_frame(writer, self, msg, conn, f"{type(exc).__name__}: {exc}")

    return message_handler


_MESSAGE_HANDLER_CODE = _message_handler(Feed, None).__code__  # one code object for every writer feed


def writer_feed(base: type[Feed], writer: BronzeWriter) -> type[Feed]:
    """``base`` with a message handler that dead-letters frames it cannot handle."""
    return type(f"Bronze{base.__name__}", (base,), {"message_handler": _message_handler(base, writer)})


@dataclass(slots=True)
class FeedTarget:
    """One exchange to stream: endpoint addresses (None = the exchange's own) and what to take."""

    exchange: str
    symbols: list[str]
    channels: list[str]
    ws_url: str | None = None
    rest_url: str | None = None
    cert_pem: bytes | None = None
    subscription: dict[str, list[str]] | None = None  # per-channel symbols, instead of symbols x channels
    host_in_path: bool = False  # the endpoint stands in for several hosts (a capture replay: feed_class)
    candle_interval: str | None = None  # None: cryptofeed's default (1m)
    observers: dict[str, list[Callback]] | None = None  # more callbacks per channel, beside the lakehouse's


def _make_feed(target: FeedTarget, writer: BronzeWriter) -> Feed:
    v = venue(target.exchange)
    named = set(target.channels) | set(target.subscription or {})
    unknown = named - set(CHANNELS)
    if unknown:
        raise InvalidArgument(f"unknown channel(s) {', '.join(sorted(unknown))}; choose from {', '.join(CHANNELS)}")
    not_offered = set(target.subscription or {}) - set(v.offered_channels)
    if not_offered:  # asked for by name, per channel: an error, not a silent skip
        raise InvalidArgument(
            f"{v.exchange} does not offer {', '.join(sorted(not_offered))}; it offers {', '.join(v.offered_channels)}"
        )
    channels = [c for c in target.channels if c in v.offered_channels]
    skipped = set(target.channels) - set(channels)
    if skipped:  # a channel list shared by several exchanges (the settings'): each takes what it offers
        LOG.info("%s does not offer %s: skipped (it offers %s)", v.exchange, sorted(skipped), v.offered_channels)
    if target.channels and not channels and not target.subscription:
        raise InvalidArgument(
            f"{v.exchange} offers none of {', '.join(target.channels)}; it offers {', '.join(v.offered_channels)}"
        )
    base = feed_class(
        v.exchange,
        ws_url=target.ws_url,
        rest_url=target.rest_url,
        cert_pem=target.cert_pem,
        host_in_path=target.host_in_path,
    )
    cls = writer_feed(base, writer)
    options: dict[str, Any] = {"candle_closed_only": False}
    if target.candle_interval:
        options["candle_interval"] = target.candle_interval
    try:
        if target.subscription:
            sub = {c: [_std_symbol(x) for x in s] for c, s in target.subscription.items()}
            return cls(subscription=sub, callbacks=_callbacks(writer, sub, target.observers), **options)
        return cls(
            symbols=[_std_symbol(x) for x in target.symbols],
            channels=channels,
            callbacks=_callbacks(writer, channels, target.observers),
            **options,
        )
    except UnsupportedSymbol as exc:
        raise InvalidArgument(_unsupported_symbol(str(exc).split(" ")[0], v.exchange, base.symbol_mapping())) from None
    except OSError as exc:  # (aiohttp's connection errors are OSErrors too)
        raise _unreachable(v.exchange, base, exc) from None


def _unreachable(exchange: str, feed: type[Feed], exc: OSError) -> LakehouseError:
    """One line for a venue whose REST cannot be reached when cryptofeed loads its symbols (the
    CLI would otherwise take an ``OSError`` for the storage's)."""
    endpoints: Any = feed.rest_endpoints  # (typed NotImplemented on Feed; a list on every venue's class)
    rest = endpoints[0].address if endpoints else "its REST endpoint"
    return LakehouseError(f"{exchange}: cannot load its symbols from {rest}: {exc}")


def _std_symbol(symbol: str) -> str:
    """cryptofeed's spelling: upper case, but an option's type lower case (cryptofeed's ``CALL``
    and ``PUT`` are ``call``/``put``: Deribit's ``BTC-15000-22M24-call``)."""
    s = symbol.strip().upper()
    for kind in (CALL, PUT):
        if s.endswith("-" + kind.upper()):
            return s[: -len(kind)] + kind
    return s


def _callbacks(
    writer: BronzeWriter, channels: Iterable[str], observers: dict[str, list[Callback]] | None
) -> dict[str, Callback | list[Callback]]:
    """The lakehouse's callback per channel, followed by the target's observers of that channel."""
    ours = bronze_callbacks(writer, channels)
    if not observers:
        return dict(ours)
    return {c: [cb, *observers.get(c, [])] for c, cb in ours.items()}


async def _check_symbols(target: FeedTarget, feed: Feed) -> None:
    """Every symbol of ``target`` is one the exchange lists (cryptofeed would only find out once
    the feed runs, as a traceback inside its task group): an :class:`InvalidArgument` naming it."""
    wanted = {s for syms in (target.subscription or {}).values() for s in syms} | set(target.symbols)
    wanted = {_std_symbol(s) for s in wanted}
    try:
        mapping = await type(feed).load_symbols()
    except OSError as exc:
        raise _unreachable(target.exchange.upper(), type(feed), exc) from None
    for symbol in sorted(wanted):
        if symbol not in mapping:
            raise InvalidArgument(_unsupported_symbol(symbol, target.exchange.upper(), mapping))


def _unsupported_symbol(symbol: str, exchange: str, mapping: dict[str, str]) -> str:
    """One line for a symbol ``exchange`` does not list: cryptofeed's spelling when the user gave
    the exchange's own (``BTCUSDT`` -> ``BTC-USDT-PERP``), else the closest ones."""
    native = [std for std, raw in mapping.items() if raw.replace("_", "").upper() == symbol.replace("-", "").upper()]
    if native:
        hint = f"cryptofeed writes it {' or '.join(sorted(native))}"
    else:
        close = difflib.get_close_matches(symbol, list(mapping), n=5, cutoff=0.6)
        hint = f"closest: {', '.join(close)}" if close else f"e.g. {', '.join(sorted(mapping)[:5])}"
    return f"{symbol} is not a {exchange} symbol ({len(mapping)} listed; {hint})"


def _subscription(target: FeedTarget) -> Subscription:
    if target.subscription:
        symbols = sorted({s for syms in target.subscription.values() for s in syms})
        return Subscription(target.exchange.upper(), symbols, sorted(target.subscription), target.rest_url)
    return Subscription(target.exchange.upper(), list(target.symbols), list(target.channels), target.rest_url)


async def stream_to_bronze(
    targets: list[FeedTarget],
    writer: BronzeWriter,
    *,
    stop: asyncio.Event,
    live_port: int | None = None,
    sessions: bool = True,
) -> None:
    """Stream every target through one FeedHandler into ``writer`` until ``stop``; then flush.

    With ``sessions`` (live streaming) the session is recorded in ``bronze.sessions`` (start
    before connecting, a heartbeat, its end): time no session covered becomes a gap in silver.
    Replays of a recording pass False: their wall-clock time says nothing about the market's.

    The writer's spool is drained before the feeds start, so old batches commit first. With
    ``live_port`` (0: any free port) the live buffer is served for ``Lakehouse(live=True)`` reads.
    """
    from crypto_lakehouse.ingest.live import LiveServer

    feeds = [_make_feed(t, writer) for t in targets]
    for target, feed in zip(targets, feeds, strict=True):
        await _check_symbols(target, feed)
    await writer.start()
    ledger = None
    if sessions:
        ledger = SessionLedger(
            writer.catalog, writer_id=writer.writer_id, subscriptions=[_subscription(t) for t in targets]
        )
        await asyncio.to_thread(ledger.record, "start")  # before connecting: even a kill leaves a trace
    heartbeat = asyncio.create_task(ledger.heartbeat(stop)) if ledger else None
    live = None
    if live_port is not None:
        live = await LiveServer(writer, spool_dir=writer.spool_dir.parent, port=live_port).start()
    handler = _UnexpectedMessages([writer])
    cf_logger = logging.getLogger("cryptofeed.exchanges")
    cf_logger.addHandler(handler)
    writer_stop = asyncio.Event()
    flusher = asyncio.create_task(writer.run(writer_stop))
    ended = "stopped"
    # cryptofeed's log goes to the root's state directory, not the working directory
    log_file = state_dir(writer.catalog.root) / "feedhandler.log"
    fh = FeedHandler(config={"log": {"filename": str(log_file), "level": "WARNING"}})
    try:
        await run_feeds(feeds, stop=stop, handler=fh)
    except BaseException as exc:
        ended = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        writer_stop.set()
        await flusher
        if heartbeat is not None:
            heartbeat.cancel()
        if ledger is not None:
            await asyncio.to_thread(ledger.record, "end", reason=ended)
        cf_logger.removeHandler(handler)
        if live is not None:
            await live.stop()
    _raise_if_nothing_committed(writer)


def _raise_if_nothing_committed(writer: BronzeWriter) -> None:
    """A stream whose every commit failed (storage down, a wrong root) is a failure, even though
    its rows are safe in the spool: say so, and where they wait."""
    totals = writer.summary().values()
    spooled = sum(t["rows_spooled"] for t in totals)
    if spooled and not any(t["rows_committed"] for t in totals):
        raise CommitError(
            f"nothing was committed to {writer.catalog.root}: storage failed for every batch; {spooled:,} rows wait "
            f"in the spool {writer.spool_dir} and are committed when this writer next starts with this root"
        )


class _LoopbackStatus(TypedDict):
    """What this module reads of a loopback exchange's ``/_loopback/status`` (it holds more)."""

    exchange: str
    ws_url: str


def _loopback_status(base: str) -> tuple[_LoopbackStatus, bytes]:
    import json
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(base + "/_loopback/status", timeout=10) as r:
            status: _LoopbackStatus = json.load(r)
        with urllib.request.urlopen(base + "/_loopback/cert.pem", timeout=10) as r:
            cert = r.read()
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise LakehouseError(
            f"no loopback exchange answers at {base} ({exc}); start one with `lakehouse exchange serve` "
            "or pass a wss:// endpoint"
        ) from None
    return status, cert


def loopback_exchange(endpoint: str) -> str:
    """The exchange protocol a loopback exchange at ``endpoint`` (its REST base) speaks."""
    return _loopback_status(endpoint.rstrip("/"))[0]["exchange"]


def resolve_endpoint(
    exchange: str, endpoint: str | None, *, rest_endpoint: str | None = None, ca_file: str | None = None
) -> FeedTarget:
    """Addresses for ``exchange``: ``endpoint`` is a loopback exchange's REST base
    (``http://127.0.0.1:PORT``: its wss address and certificate are discovered from
    ``/_loopback/status``), or a ``wss://`` base (then ``rest_endpoint``/``ca_file`` as needed),
    or None for the exchange's own public addresses."""
    v = venue(exchange)
    target = FeedTarget(v.exchange, symbols=[], channels=[])
    if endpoint is None:
        return target
    if endpoint.startswith(("http://", "https://")):
        base = endpoint.rstrip("/")
        status, cert = _loopback_status(base)
        if status["exchange"] != v.exchange:
            raise LakehouseError(f"the loopback exchange at {base} speaks {status['exchange']}, not {v.exchange}")
        target.ws_url, target.rest_url, target.cert_pem = status["ws_url"], base, cert
        return target
    if not endpoint.startswith("wss://"):
        raise LakehouseError(f"endpoint {endpoint!r} must start with wss:// or http(s)://")
    target.ws_url = endpoint
    target.rest_url = rest_endpoint
    if ca_file is not None:
        from pathlib import Path

        target.cert_pem = Path(ca_file).read_bytes()
    return target


def stream_targets(
    settings: Settings,
    *,
    exchanges: list[str] | None = None,
    symbols: list[str] | None = None,
    channels: list[str] | None = None,
    endpoints: list[str] | None = None,
    rest_endpoint: str | None = None,
    ca_file: str | None = None,
) -> list[FeedTarget]:
    """What to stream, from arguments falling back to ``settings.stream``. ``endpoints`` are
    URLs (one exchange) or ``EXCHANGE=URL``; a single loopback URL also names the exchange.

    With neither ``exchanges`` nor ``endpoints`` given and a ``stream.streams`` list configured,
    one target per entry of that list (``symbols``/``channels``, when given, replace each
    entry's; an entry without channels takes its venue's defaults)."""
    if not exchanges and not endpoints and settings.stream.streams:
        return [_entry_target(e, symbols=symbols, channels=channels) for e in settings.stream.streams]
    if not exchanges and endpoints and len(endpoints) == 1 and endpoints[0].startswith("http"):
        exchanges = [loopback_exchange(endpoints[0])]  # a loopback exchange says which protocol it speaks
    names = [e.upper() for e in (exchanges or settings.stream.exchanges)]
    per_exchange: dict[str, str] = {}
    for e in endpoints or []:
        name, sep, url = e.partition("=")
        if sep and not name.startswith(("http", "wss")):
            per_exchange[name.upper()] = url
        elif len(names) == 1:
            per_exchange[names[0]] = e
        else:
            raise LakehouseError("with several exchanges, give each endpoint as EXCHANGE=URL")
    targets = []
    for ex_name in names:
        t = resolve_endpoint(
            ex_name,
            per_exchange.get(ex_name) or settings.stream.ws_endpoint,
            rest_endpoint=rest_endpoint or settings.stream.rest_endpoint,
            ca_file=ca_file,
        )
        t.symbols = symbols or settings.stream.symbols
        t.channels = channels or settings.stream.channels
        targets.append(t)
    return targets


def _entry_target(entry: StreamEntry, *, symbols: list[str] | None, channels: list[str] | None) -> FeedTarget:
    target = resolve_endpoint(
        entry.exchange, entry.ws_endpoint, rest_endpoint=entry.rest_endpoint, ca_file=entry.ca_file
    )
    target.symbols = symbols or entry.symbols
    target.channels = channels or entry.channels or venue(entry.exchange).channels
    return target


def shard_targets(targets: list[FeedTarget], shard: Shard) -> list[FeedTarget]:
    """The part of ``targets`` that ``shard`` streams: the (exchange, symbol) pairs that hash to
    it (:mod:`.shards`; symbols compared in cryptofeed's spelling), each with every channel the
    target asks for it; a target left with no symbol is dropped. Every pair of ``targets`` is in
    the answer of exactly one of the ``shard.count`` shards."""
    out = []
    for t in targets:

        def mine(symbols: list[str], exchange: str = t.exchange) -> list[str]:
            return [s for s in symbols if shard.owns(exchange, _std_symbol(s))]

        subscription = {c: kept for c, syms in (t.subscription or {}).items() if (kept := mine(syms))}
        symbols = mine(t.symbols)
        if symbols or subscription:
            out.append(dataclasses.replace(t, symbols=symbols, subscription=subscription or None))
    return out
