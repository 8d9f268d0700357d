# cython: language_level=3, boundscheck=False, wraparound=False
"""The busy channels' bronze callbacks, compiled: trades, tickers and L2 book deltas.

The same rows as the Python callbacks of :func:`crypto_lakehouse.ingest.stream.bronze_callbacks`
(which use these when this module is built, and are the reference they are tested against,
``tests/ingest/test_compiled_callbacks.py``), put into the same
:class:`~crypto_lakehouse.ingest.rows.ColumnBuffer` column lists with its hooks, but without the
interpreter's work per value: on this machine that work was the largest share of the stream's
own time on the event loop (docs/bronze.md).

Each class names its table and the layout it was written for (``TABLE``, ``LAYOUT``); the stream
uses a class only while ``LAYOUT`` is the table's ``schemas.ROW_LAYOUT``. Every value of a row is
read before any column is touched, so a message that raises buffers nothing (a book delta's
levels are rolled back). An instance is awaited by cryptofeed like an ``async`` callback: the call
does the work and returns an awaitable that is already done.
"""

from cryptofeed.defines import ASK, BID


class _Done(tuple):
    """An awaitable already done: ``await`` on it returns None without running a coroutine."""

    __slots__ = ()
    __await__ = tuple.__iter__


cdef object DONE = _Done()


cdef class _Putter:
    """What every compiled callback shares: its :class:`ColumnBuffer` and the buffer's hooks,
    called as the generated putters call them (``rows._putter_factory``)."""

    cdef object buf
    cdef list c0  # the layout's first column: its length is the buffer's
    cdef public object _is_coroutine_marker  # inspect.markcoroutinefunction: cryptofeed takes async callbacks only

    cdef inline void _starting(self) except *:
        """Before a row goes in: the batch's clock starts on an empty buffer."""
        if not self.c0:
            self.buf.on_first()

    cdef inline void _put(self) except *:
        """After rows went in: a full buffer is gathered."""
        if len(self.c0) >= self.buf.limit:
            self.buf.on_full()


cdef class TradeCallback(_Putter):
    """bronze.trades: one row per cryptofeed ``Trade``."""

    TABLE = "bronze.trades"
    LAYOUT = ("exchange", "symbol", "ts", "receipt_ts", "id", "side", "price", "amount", "type")

    cdef list c1, c2, c3, c4, c5, c6, c7, c8

    def __init__(self, buf):
        self.buf = buf
        self.c0, self.c1, self.c2, self.c3, self.c4, self.c5, self.c6, self.c7, self.c8 = buf.columns

    def __call__(self, t, receipt):
        exchange, symbol, ts, id_, side = t.exchange, t.symbol, t.timestamp, t.id, t.side
        price, amount, type_ = str(t.price), str(t.amount), t.type  # (exponents written out at conversion)
        self._starting()
        self.c0.append(exchange)
        self.c1.append(symbol)
        self.c2.append(ts)
        self.c3.append(receipt)
        self.c4.append(id_)
        self.c5.append(side)
        self.c6.append(price)
        self.c7.append(amount)
        self.c8.append(type_)
        self._put()
        return DONE


cdef class TickerCallback(_Putter):
    """bronze.ticker: one row per cryptofeed ``Ticker`` (the Binance family's raw ``u``, ``B``
    and ``A`` as sequence and sizes; None for every other venue)."""

    TABLE = "bronze.ticker"
    LAYOUT = ("exchange", "symbol", "ts", "receipt_ts", "sequence", "bid", "bid_size", "ask", "ask_size", "channel")

    cdef object channel
    cdef list c1, c2, c3, c4, c5, c6, c7, c8, c9

    def __init__(self, buf, channel):
        self.buf = buf
        self.channel = channel
        self.c0, self.c1, self.c2, self.c3, self.c4, self.c5, self.c6, self.c7, self.c8, self.c9 = buf.columns

    def __call__(self, t, receipt):
        exchange, symbol, ts = t.exchange, t.symbol, t.timestamp
        bid, ask = str(t.bid), str(t.ask)
        raw = t.raw
        if isinstance(raw, dict) and exchange.startswith("BINANCE"):
            sequence, bid_size, ask_size = (<dict>raw).get("u"), (<dict>raw).get("B"), (<dict>raw).get("A")
        else:
            sequence = bid_size = ask_size = None
        self._starting()
        self.c0.append(exchange)
        self.c1.append(symbol)
        self.c2.append(ts)
        self.c3.append(receipt)
        self.c4.append(sequence)
        self.c5.append(bid)
        self.c6.append(bid_size)
        self.c7.append(ask)
        self.c8.append(ask_size)
        self.c9.append(self.channel)
        self._put()
        return DONE


cdef class BookDeltaCallback(_Putter):
    """bronze.book: an L2 delta's levels, a row each (bids, then asks). A snapshot, or a delta
    with no level, goes to ``whole(book, receipt)`` (the Python callback's own body), which
    shares ``updates``: the update ids count every update either path buffers."""

    TABLE = "bronze.book"
    LAYOUT = (
        "exchange", "symbol", "ts", "receipt_ts", "update_id", "levels", "sequence", "snapshot", "side", "price",
        "size",
    )

    cdef object whole, updates
    cdef list c1, c2, c3, c4, c5, c6, c7, c8, c9, c10

    def __init__(self, buf, whole, updates):
        self.buf = buf
        self.whole = whole
        self.updates = updates
        (self.c0, self.c1, self.c2, self.c3, self.c4, self.c5, self.c6, self.c7, self.c8, self.c9,
         self.c10) = buf.columns

    def __call__(self, b, receipt):
        cdef Py_ssize_t i, nb, n, start
        delta = b.delta
        if delta is None:
            self.whole(b, receipt)
            return DONE
        bids, asks = delta[BID], delta[ASK]
        nb = len(bids)
        n = nb + len(asks)
        if n == 0:
            self.whole(b, receipt)
            return DONE
        exchange, symbol, ts, sequence = b.exchange, b.symbol, b.timestamp, b.sequence_number
        prices, sizes = self.c9, self.c10
        start = len(prices)
        try:  # (each level unpacked as a pair: another shape raises, and what went in comes out)
            for p, q in bids:
                prices.append(str(p))
                sizes.append(str(q))
            for p, q in asks:
                prices.append(str(p))
                sizes.append(str(q))
            update_id = next(self.updates)
        except BaseException:
            del prices[start:]
            del sizes[start:]
            raise
        levels = n
        self._starting()
        for i in range(n):
            self.c0.append(exchange)
            self.c1.append(symbol)
            self.c2.append(ts)
            self.c3.append(receipt)
            self.c4.append(update_id)
            self.c5.append(levels)
            self.c6.append(sequence)
            self.c7.append(False)
            self.c8.append(BID if i < nb else ASK)
        self._put()
        return DONE
