"""A seeded, deterministic synthetic market speaking Binance's or OKX's stream formats.

Everything follows from ``(exchange, symbols, seed, rate, start_ms)``: the same inputs give the
same trades, book updates, klines and funding, so tests can compare what landed with the
**ground truth** this module keeps (every trade, including those a fault skipped on the stream,
is served by REST ``aggTrades`` by id or time range, exactly as Binance would). The same market
speaks OKX v5 (``MarketSpec(exchange="OKX")``, symbols ``BTC-USDT-SWAP``/``BTC-USDT``): one
generator, each event rendered in the venue's framing; OKX's REST is ``loopback.okx``.

Prices and quantities are integers of ticks (0.01) and lots (0.001) internally and are rendered
as exact decimal strings, so nothing is lost to floating point anywhere downstream.
"""

from __future__ import annotations

import math
import random
import time
import zlib
from array import array
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field

from crypto_lakehouse.durations import parse_duration
from crypto_lakehouse.errors import LakehouseError
from crypto_lakehouse.venues.registry import VENUES, Venue, venue
from crypto_lakehouse.venues.symbols import okx_inst_id, okx_std_symbol

__all__ = ["Event", "MarketSpec", "SyntheticMarket", "TradeTape", "malformed_variant"]

PRICE_DECIMALS = 2
QTY_DECIMALS = 3
FUNDING_PERIOD_MS = 8 * 3_600_000
_HOUR_MS = 3_600_000


def _fmt(value: int, decimals: int) -> str:
    """Integer of 10**-decimals units -> exact decimal string (``12345, 2`` -> ``"123.45"``)."""
    sign = "-" if value < 0 else ""
    q, r = divmod(abs(value), 10**decimals)
    return f"{sign}{q}.{r:0{decimals}d}"


_PRICE_CACHE: dict[int, str] = {}
_QTY_TABLE = [_fmt(i, QTY_DECIMALS) for i in range(5_001)]


def _price_at(base: int, at_ms: int) -> int:
    """A symbol's opening mid for a market started at ``at_ms``: ``base`` swinging +-5% over a
    day, so a restarted market opens near where one started earlier the same hour did (a fixed
    opening price jumped back at every restart)."""
    day = 86_400_000
    return max(1, round(base * (1 + 0.05 * math.sin(2 * math.pi * (at_ms % day) / day))))


def _price(ticks: int) -> str:
    s = _PRICE_CACHE.get(ticks)
    if s is None:
        s = _PRICE_CACHE[ticks] = _fmt(ticks, PRICE_DECIMALS)
    return s


def _qty(lots: int) -> str:
    return _QTY_TABLE[lots] if 0 <= lots <= 5_000 else _fmt(lots, QTY_DECIMALS)


def _rand(rng: random.Random, n: int) -> int:
    """Uniform integer in 1..n (cheaper than ``randint`` on the hot path)."""
    return int(rng.random() * n) + 1


def _seed_for(seed: int, *parts: object) -> int:
    return zlib.crc32(repr((seed, *parts)).encode())


@dataclass(slots=True)
class MarketSpec:
    """Parameters of a synthetic market. Symbols are exchange symbols (``BTCUSDT``; on OKX its
    instIds ``BTC-USDT-SWAP``/``BTC-USDT``, or cryptofeed's ``BTC-USDT-PERP``)."""

    exchange: str = "BINANCE_FUTURES"
    symbols: list[str] = field(default_factory=lambda: ["BTCUSDT", "ETHUSDT", "SOLUSDT"])
    seed: int = 7
    rate: float = 2_000.0  # messages per second, all symbols, when paced
    start_ms: int | None = None  # exchange-time origin (UTC ms); None = now
    # the first aggTrade id of the first symbol (the n-th symbol's is 1,000,000 * n above it);
    # None: derived from the clock (start_ms * 1000), so a market started later continues the ids
    # of one that ran before (below 1M trades/s a symbol), as a real venue's ids do
    first_id: int | None = None
    max_trades: int | None = None  # per symbol; the market ends after this many trades
    depth_levels: int = 20
    depth_every: int = 4  # rounds between book changes (each sends a depth update + book ticker)
    liquidation_every: int = 250  # trades per symbol between forceOrder events (futures)
    funding_history_days: int = 30


@dataclass(slots=True)
class TradeTape:
    """Ground truth of one symbol's aggregate trades (ids are contiguous from ``first_id``)."""

    first_id: int
    time_ms: array[int] = field(default_factory=lambda: array("q"))
    price: array[int] = field(default_factory=lambda: array("q"))  # ticks of 10**-PRICE_DECIMALS
    qty: array[int] = field(default_factory=lambda: array("q"))  # lots of 10**-QTY_DECIMALS
    buyer_maker: array[int] = field(default_factory=lambda: array("b"))

    def __len__(self) -> int:
        return len(self.time_ms)

    @property
    def last_id(self) -> int:
        return self.first_id + len(self) - 1

    def record(self, i: int) -> dict[str, object]:
        """Trade ``i`` (position, not id) in Binance's REST aggTrades form."""
        tid = self.first_id + i
        return {
            "a": tid,
            "p": _price(self.price[i]),
            "q": _qty(self.qty[i]),
            "f": tid,
            "l": tid,
            "T": self.time_ms[i],
            "m": bool(self.buyer_maker[i]),
            "M": True,
        }


Event = tuple[str, bytes, int | None]
"""(stream key, JSON payload, trade id or None). Binance: key ``btcusdt@aggTrade``, payload the
combined stream's ``data``; OKX: key ``trades:BTC-USDT-SWAP`` (channel:instId), payload the
whole frame."""


@dataclass(slots=True)
class _Kline:
    start: int  # window open time, UTC ms
    upto: int = 0  # tape position of the next trade to fold in
    open: int = 0
    high: int = 0
    low: int = 0
    close: int = 0
    volume: int = 0  # lots
    quote: int = 0  # ticks*lots
    taker_buy: int = 0
    taker_buy_quote: int = 0
    trades: int = 0
    first_id: int = -1
    last_id: int = -1

    def extend(self, tape: TradeTape, hi: int) -> None:
        """Fold tape positions ``upto..hi-1`` into the candle."""
        prices, qtys, makers = tape.price, tape.qty, tape.buyer_maker
        for x in range(self.upto, hi):
            price, qty = prices[x], qtys[x]
            if self.trades == 0:
                self.open = self.high = self.low = price
                self.first_id = tape.first_id + x
            elif price > self.high:
                self.high = price
            elif price < self.low:
                self.low = price
            self.close = price
            self.volume += qty
            self.quote += price * qty
            if not makers[x]:
                self.taker_buy += qty
                self.taker_buy_quote += price * qty
            self.trades += 1
        if hi > self.upto:
            self.last_id = tape.first_id + hi - 1
            self.upto = hi


class _Symbol:
    __slots__ = (
        "asks",
        "bids",
        "book_id",
        "candles",
        "futures",
        "index",
        "last_mark_s",
        "lower",
        "mid",
        "name",
        "next_kline_ms",
        "rng",
        "tape",
    )

    def __init__(self, name: str, index: int, seed: int, *, first_id: int, start_ms: int, futures: bool):
        self.name = name
        self.futures = futures  # sends mark prices / funding and liquidations
        self.lower = name.lower()
        self.index = index
        self.rng = random.Random(_seed_for(seed, "symbol", name))
        base_price = {"BTC": 6_000_000, "ETH": 300_000, "SOL": 15_000, "BNB": 60_000}
        start = next((p for k, p in base_price.items() if name.startswith(k)), None)
        start = start if start is not None else self.rng.randint(1_000, 100_000)
        self.mid: int = _price_at(start, start_ms)
        self.bids: dict[int, int] = {}
        self.asks: dict[int, int] = {}
        self.book_id: int = 1_000 * first_id + 10_000 * index  # update ids continue across restarts too
        self.tape = TradeTape(first_id=first_id + 1_000_000 * index)
        self.candles: dict[int, _Kline] = {}  # interval ms -> open candle
        self.last_mark_s: int = -1
        self.next_kline_ms: int = 0  # no kline event is due before this exchange time


class SyntheticMarket:
    """The generator and the ground truth; the server paces it and puts it on the wire."""

    def __init__(self, spec: MarketSpec):
        if not spec.symbols:
            raise LakehouseError("the synthetic market needs at least one symbol")
        if spec.rate <= 0:
            raise LakehouseError(f"rate must be > 0 messages/s, got {spec.rate}")
        self.spec = spec
        self.venue: Venue = venue(spec.exchange)
        self.okx = self.venue.exchange == "OKX"
        if not self.venue.binance_family and not self.okx:
            speaks = ", ".join([*(v.exchange for v in VENUES.values() if v.binance_family), "OKX"])
            raise LakehouseError(f"unknown exchange {spec.exchange!r} for the synthetic market: it speaks {speaks}")
        names = [okx_inst_id(s) if self.okx else s.upper() for s in spec.symbols]
        if not self.okx:
            for s in names:
                self.venue.split_symbol(s)  # validates
        self.start_ms = spec.start_ms if spec.start_ms is not None else int(time.time() * 1000)
        first_id = spec.first_id if spec.first_id is not None else self.start_ms * 1000
        self.symbols = {
            s: _Symbol(
                s,
                i,
                spec.seed,
                first_id=first_id,
                start_ms=self.start_ms,
                futures=s.endswith("-SWAP") if self.okx else self.venue.is_futures,
            )
            for i, s in enumerate(names)
        }
        if spec.depth_every < 1:
            raise LakehouseError(f"depth_every must be >= 1 round, got {spec.depth_every}")
        # per round and symbol: a trade, and every `depth_every` rounds a depth update + book ticker
        msgs_per_round = len(self.symbols) * (1 + 2 / spec.depth_every)
        self.step_us = msgs_per_round * 1_000_000 / spec.rate
        self._clock_us = float(self.start_ms) * 1000
        self.rounds = 0
        self.kline_intervals: dict[str, int] = {}
        self.add_kline_interval("1m")
        for sym in self.symbols.values():
            self._seed_book(sym)

    # ------------------------------------------------------------------ generation
    @property
    def now_ms(self) -> int:
        """The market's exchange time (UTC ms) of the latest generated event."""
        return int(self._clock_us // 1000)

    @property
    def finished(self) -> bool:
        m = self.spec.max_trades
        return m is not None and all(len(s.tape) >= m for s in self.symbols.values())

    def std_symbol(self, name: str) -> str:
        """cryptofeed's name of the exchange symbol ``name`` (``BTCUSDT`` on BINANCE_FUTURES,
        ``BTC-USDT-SWAP`` on OKX -> ``BTC-USDT-PERP``)."""
        return okx_std_symbol(name) if self.okx else self.venue.std_symbol(name)

    def add_kline_interval(self, interval: str) -> None:
        """Start building ``interval`` klines for the stream (REST computes any interval); OKX
        names them its way (``1m``, ``1H``, ``1D``)."""
        if interval not in self.kline_intervals:
            self.kline_intervals[interval] = _okx_interval_ms(interval) if self.okx else _interval_ms(interval)

    def _seed_book(self, sym: _Symbol) -> None:
        rng = sym.rng
        for k in range(1, self.spec.depth_levels + 1):
            sym.bids[sym.mid - k] = _rand(rng, 5_000)
            sym.asks[sym.mid + k] = _rand(rng, 5_000)

    def step(self) -> list[Event]:
        """One round: every symbol gets a trade; every ``depth_every`` rounds its book moves (a
        depth update and a book ticker); plus the klines, mark prices and liquidations that fall
        due. Returns the events in order."""
        self._clock_us += self.step_us
        self.rounds += 1
        now = int(self._clock_us // 1000)
        out: list[Event] = []
        book_moves = self.rounds % self.spec.depth_every == 0
        for sym in self.symbols.values():
            if self.spec.max_trades is not None and len(sym.tape) >= self.spec.max_trades:
                continue
            if book_moves:
                out.append(self._depth_update(sym, now))
            out.append(self._trade(sym, now))
            out.extend(self._klines(sym, now))
            if book_moves:
                out.append(self._book_ticker(sym, now))
            if sym.futures:
                second = now // 1000
                if second != sym.last_mark_s:
                    sym.last_mark_s = second
                    out.append(self._mark_price(sym, now))
                if len(sym.tape) % self.spec.liquidation_every == 0 and not self.okx:
                    out.append(self._liquidation(sym, now))  # OKX: cryptofeed polls them over REST
        return out

    def _depth_update(self, sym: _Symbol, now: int) -> Event:
        rnd, levels = sym.rng.random, self.spec.depth_levels
        bids_book, asks_book = sym.bids, sym.asks
        old = sym.mid
        new = max(levels + 2, old + int(rnd() * 5) - 2)
        sym.mid = new
        bids: list[tuple[int, int]] = []  # (price ticks, lots; 0: the level goes)
        asks: list[tuple[int, int]] = []
        # keep the book uncrossed and bounded: levels stay within `levels` ticks of mid
        if new != old:
            for p in range(new, old) if new < old else range(old - levels, new - levels):
                if bids_book.pop(p, None) is not None:
                    bids.append((p, 0))
            for p in range(old + 1, new + 1) if new > old else range(new + levels + 1, old + levels + 1):
                if asks_book.pop(p, None) is not None:
                    asks.append((p, 0))
        q = bids_book[new - 1] = int(rnd() * 5_000) + 1
        bids.append((new - 1, q))
        q = asks_book[new + 1] = int(rnd() * 5_000) + 1
        asks.append((new + 1, q))
        # one deeper level on one side appears, changes or goes
        book, changes, p = (bids_book, bids, new - 2 - int(rnd() * (levels - 1)))
        if rnd() < 0.5:
            book, changes, p = asks_book, asks, 2 * new - p
        if p in book and rnd() < 0.3:
            del book[p]
            changes.append((p, 0))
        else:
            q = book[p] = int(rnd() * 5_000) + 1
            changes.append((p, q))
        prev = sym.book_id
        sym.book_id += len(bids) + len(asks)
        if self.okx:
            return _okx_book(sym.name, now, "update", bids=bids, asks=asks)
        extra = f',"T":{now},"pu":{prev}' if self.venue.is_futures else ""
        payload = (
            f'{{"e":"depthUpdate","E":{now},"s":"{sym.name}"{extra},"U":{prev + 1},"u":{sym.book_id},'
            f'"b":[{_levels(bids)}],"a":[{_levels(asks)}]}}'
        )
        return (f"{sym.lower}@depth", payload.encode(), None)

    def _trade(self, sym: _Symbol, now: int) -> Event:
        rng = sym.rng
        buy = rng.random() < 0.5
        price = sym.mid + 1 if buy else sym.mid - 1
        qty = _rand(rng, 2_000)
        tape = sym.tape
        tid = tape.first_id + len(tape)
        tape.time_ms.append(now)
        tape.price.append(price)
        tape.qty.append(qty)
        tape.buyer_maker.append(0 if buy else 1)
        if self.okx:
            return _okx_trade(sym.name, now, tid, _price(price), _qty(qty), buy=buy)
        m = "false" if buy else "true"
        if self.venue.is_futures:
            payload = (
                f'{{"e":"aggTrade","E":{now},"a":{tid},"s":"{sym.name}","p":"{_price(price)}",'
                f'"q":"{_qty(qty)}","f":{tid},"l":{tid},"T":{now},"m":{m}}}'
            )
        else:
            payload = (
                f'{{"e":"aggTrade","E":{now},"s":"{sym.name}","a":{tid},"p":"{_price(price)}",'
                f'"q":"{_qty(qty)}","f":{tid},"l":{tid},"T":{now},"m":{m},"M":true}}'
            )
        return (f"{sym.lower}@aggTrade", payload.encode(), tid)

    def _klines(self, sym: _Symbol, now: int) -> list[Event]:
        """Once per exchange second (at its first trade), as Binance does: close the candles
        the clock has passed (x=true), open new ones, and send an update of each open candle
        (x=false). Candles fold in trades from the tape lazily, so a trade costs nothing here."""
        if now < sym.next_kline_ms:
            return []
        sym.next_kline_ms = now - now % 1000 + 1000
        out: list[Event] = []
        tape = sym.tape
        n = len(tape)
        for name, iv_ms in self.kline_intervals.items():
            k = sym.candles.get(iv_ms)
            if k is not None and now >= k.start + iv_ms:
                k.extend(tape, n - 1)  # all but the trade that opened the next window
                out.append(self._kline_event(sym, name, iv_ms, k, now, closed=True))
                k = None
            if k is None:
                start = now - now % iv_ms
                k = sym.candles[iv_ms] = _Kline(start=start, upto=bisect_left(tape.time_ms, start))
            k.extend(tape, n)
            out.append(self._kline_event(sym, name, iv_ms, k, now, closed=False))
        return out

    def _kline_event(self, sym: _Symbol, name: str, iv_ms: int, k: _Kline, now: int, *, closed: bool) -> Event:
        if self.okx:
            return _okx_candle(sym.name, name, k, closed=closed)
        x = "true" if closed else "false"
        payload = (
            f'{{"e":"kline","E":{now},"s":"{sym.name}","k":{{"t":{k.start},"T":{k.start + iv_ms - 1},'
            f'"s":"{sym.name}","i":"{name}","f":{k.first_id},"L":{k.last_id},"o":"{_price(k.open)}",'
            f'"c":"{_price(k.close)}","h":"{_price(k.high)}","l":"{_price(k.low)}",'
            f'"v":"{_qty(k.volume)}","n":{k.trades},"x":{x},"q":"{_fmt(k.quote, 5)}",'
            f'"V":"{_qty(k.taker_buy)}","Q":"{_fmt(k.taker_buy_quote, 5)}","B":"0"}}}}'
        )
        return (f"{sym.lower}@kline_{name}", payload.encode(), None)

    def _book_ticker(self, sym: _Symbol, now: int) -> Event:
        bid, ask = sym.mid - 1, sym.mid + 1
        if self.okx:
            tape = sym.tape
            last = (_price(tape.price[-1]), _qty(tape.qty[-1])) if len(tape) else ("", "")
            top = (_price(bid), _qty(sym.bids[bid]), _price(ask), _qty(sym.asks[ask]))
            return _okx_ticker(sym.name, now, top, last)
        body = (
            f'"u":{sym.book_id},"s":"{sym.name}","b":"{_price(bid)}","B":"{_qty(sym.bids[bid])}",'
            f'"a":"{_price(ask)}","A":"{_qty(sym.asks[ask])}"'
        )
        if self.venue.is_futures:
            payload = f'{{"e":"bookTicker",{body},"T":{now},"E":{now}}}'
        else:
            payload = f"{{{body}}}"
        return (f"{sym.lower}@bookTicker", payload.encode(), None)

    def _mark_price(self, sym: _Symbol, now: int) -> Event:
        nxt = (now // FUNDING_PERIOD_MS + 1) * FUNDING_PERIOD_MS
        rate = self.funding_rate(sym.name, nxt)
        if self.okx:
            return _okx_funding(sym.name, now, _fmt(rate, 8), nxt)
        payload = (
            f'{{"e":"markPriceUpdate","E":{now},"s":"{sym.name}","p":"{_price(sym.mid)}",'
            f'"i":"{_price(sym.mid + 1)}","P":"{_price(sym.mid)}","r":"{_fmt(rate, 8)}","T":{nxt}}}'
        )
        return (f"{sym.lower}@markPrice", payload.encode(), None)

    def _liquidation(self, sym: _Symbol, now: int) -> Event:
        rng = sym.rng
        side = "SELL" if rng.random() < 0.5 else "BUY"
        qty = _qty(_rand(rng, 5_000))
        price = _price(sym.mid - 5 if side == "SELL" else sym.mid + 5)
        payload = (
            f'{{"e":"forceOrder","E":{now},"o":{{"s":"{sym.name}","S":"{side}","o":"LIMIT",'
            f'"f":"IOC","q":"{qty}","p":"{price}","ap":"{price}","X":"FILLED","l":"{qty}",'
            f'"z":"{qty}","T":{now}}}}}'
        )
        return (f"{sym.lower}@forceOrder", payload.encode(), None)

    # ------------------------------------------------------------------ ground truth / REST
    def symbol(self, name: str | None) -> _Symbol:
        if not name:
            raise RestError(-1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.")
        try:
            return self.symbols[name.upper()]
        except KeyError:
            raise RestError(-1121, "Invalid symbol.") from None

    def tape(self, symbol: str | None) -> TradeTape:
        return self.symbol(symbol).tape

    def funding_rate(self, symbol: str, funding_time_ms: int) -> int:
        """Funding rate in units of 1e-8 for the settlement at ``funding_time_ms``."""
        return _seed_for(self.spec.seed, "funding", symbol.upper(), funding_time_ms) % 20_001 - 10_000

    def agg_trades(
        self, symbol: str | None, *, from_id: int | None, start_ms: int | None, end_ms: int | None, limit: int
    ) -> list[dict[str, object]]:
        """Binance ``aggTrades`` semantics: from ``fromId`` up; from ``startTime`` up (to
        ``endTime``, which must be < 1 h later); the latest ``limit`` at or before ``endTime``
        alone; or the most recent ``limit`` trades."""
        tape = self.tape(symbol)
        n = len(tape)
        times = tape.time_ms
        if start_ms is not None and end_ms is not None and end_ms - start_ms > _HOUR_MS:
            raise RestError(-1127, "More than 1 hours between startTime and endTime.")
        hi = bisect_right(times, end_ms) if end_ms is not None else n
        if from_id is not None:
            lo = max(0, from_id - tape.first_id)
            if start_ms is not None:
                lo = max(lo, bisect_left(times, start_ms))
        elif start_ms is not None:
            lo = bisect_left(times, start_ms)
            if end_ms is None:
                hi = bisect_right(times, start_ms + _HOUR_MS)
        else:
            lo = max(0, hi - limit)
        hi = min(hi, lo + limit)
        return [tape.record(i) for i in range(lo, hi)]

    def klines(
        self, symbol: str | None, interval: str, *, start_ms: int | None, end_ms: int | None, limit: int
    ) -> list[list[object]]:
        """Binance ``klines`` from the ground truth; empty windows repeat the last close."""
        tape = self.tape(symbol)
        iv = _interval_ms(interval)
        if not len(tape):
            return []
        first_open = tape.time_ms[0] - tape.time_ms[0] % iv
        last_open = tape.time_ms[-1] - tape.time_ms[-1] % iv
        if end_ms is not None:
            last_open = min(last_open, end_ms - end_ms % iv)
        if start_ms is not None:
            lo_open = max(first_open, start_ms + (-start_ms) % iv)
            hi_open = min(last_open, lo_open + (limit - 1) * iv)
        else:
            hi_open = last_open
            lo_open = max(first_open, hi_open - (limit - 1) * iv)
        rows: list[list[object]] = []
        prev_close = None
        i = bisect_left(tape.time_ms, lo_open)
        if i > 0:
            prev_close = tape.price[i - 1]
        for t in range(lo_open, hi_open + 1, iv):
            j = bisect_left(tape.time_ms, t + iv, lo=i)
            k = _Kline(start=t, upto=i)
            k.extend(tape, j)
            i = j
            if k.trades == 0:
                k.open = k.high = k.low = k.close = prev_close or 0
            prev_close = k.close
            rows.append(
                [
                    t,
                    _price(k.open),
                    _price(k.high),
                    _price(k.low),
                    _price(k.close),
                    _qty(k.volume),
                    t + iv - 1,
                    _fmt(k.quote, 5),
                    k.trades,
                    _qty(k.taker_buy),
                    _fmt(k.taker_buy_quote, 5),
                    "0",
                ]
            )
        return rows

    def funding_history(
        self, symbol: str | None, *, start_ms: int | None, end_ms: int | None, limit: int
    ) -> list[dict[str, object]]:
        """Settlements every 8 h from ``funding_history_days`` before the start up to now."""
        sym = self.symbol(symbol)
        first = self.start_ms - self.spec.funding_history_days * 86_400_000
        first -= first % FUNDING_PERIOD_MS
        last = self.now_ms - self.now_ms % FUNDING_PERIOD_MS
        if end_ms is not None:
            last = min(last, end_ms - end_ms % FUNDING_PERIOD_MS)
        if start_ms is not None:
            lo = max(first, start_ms + (-start_ms) % FUNDING_PERIOD_MS)
            times = range(lo, min(last, lo + (limit - 1) * FUNDING_PERIOD_MS) + 1, FUNDING_PERIOD_MS)
        else:
            lo = max(first, last - (limit - 1) * FUNDING_PERIOD_MS)
            times = range(lo, last + 1, FUNDING_PERIOD_MS)
        base = sym.tape.price[0] if len(sym.tape) else sym.mid
        return [
            {
                "symbol": sym.name,
                "fundingTime": t,
                "fundingRate": _fmt(self.funding_rate(sym.name, t), 8),
                "markPrice": _price(base + _seed_for(self.spec.seed, "mark", sym.name, t) % 200 - 100),
            }
            for t in times
        ]

    def depth_snapshot(self, symbol: str | None, limit: int) -> dict[str, object]:
        sym = self.symbol(symbol)
        bids = sorted(sym.bids.items(), reverse=True)[:limit]
        asks = sorted(sym.asks.items())[:limit]
        out: dict[str, object] = {"lastUpdateId": sym.book_id}
        if self.venue.is_futures:
            out |= {"E": self.now_ms, "T": self.now_ms}
        out["bids"] = [[_price(p), _qty(q)] for p, q in bids]
        out["asks"] = [[_price(p), _qty(q)] for p, q in asks]
        return out

    def okx_book_snapshot(self, name: str) -> bytes:
        """OKX's ``books`` snapshot frame of ``name``'s whole book now (sent on subscription)."""
        sym = self.symbols[name]
        bids = sorted(sym.bids.items(), reverse=True)
        return _okx_book(sym.name, self.now_ms, "snapshot", bids=bids, asks=sorted(sym.asks.items()))[1]

    def exchange_info(self, kind: str) -> dict[str, object]:
        """exchangeInfo for ``kind`` (spot/linear/inverse); other kinds list no symbols."""
        symbols = [self._symbol_info(s) for s in self.symbols] if kind == self.venue.kind else []
        info: dict[str, object] = {
            "timezone": "UTC",
            "serverTime": self.now_ms,
            "rateLimits": [
                {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000},
            ],
            "exchangeFilters": [],
            "symbols": symbols,
        }
        if kind != "spot":
            info["assets"] = []
        return info

    def _symbol_info(self, name: str) -> dict[str, object]:
        base, quote = self.venue.split_symbol(name)
        filters = [
            {"filterType": "PRICE_FILTER", "minPrice": "0.01", "maxPrice": "10000000.00", "tickSize": "0.01"},
            {"filterType": "LOT_SIZE", "minQty": "0.001", "maxQty": "100000.000", "stepSize": "0.001"},
            {"filterType": "MARKET_LOT_SIZE", "minQty": "0.001", "maxQty": "100000.000", "stepSize": "0.001"},
        ]
        common = {
            "symbol": name,
            "status": "TRADING",
            "baseAsset": base,
            "quoteAsset": quote,
            "baseAssetPrecision": 8,
            "quotePrecision": 8,
            "filters": filters,
            "orderTypes": ["LIMIT", "MARKET"],
        }
        if self.venue.kind == "spot":
            return common | {
                "quoteAssetPrecision": 8,
                "icebergAllowed": True,
                "ocoAllowed": True,
                "isSpotTradingAllowed": True,
                "isMarginTradingAllowed": False,
                "permissions": ["SPOT"],
                "permissionSets": [["SPOT"]],
            }
        fut = common | {
            "pair": f"{base}{quote}",
            "contractType": "PERPETUAL",
            "deliveryDate": 4133404800000,
            "onboardDate": 1569398400000,
            "pricePrecision": PRICE_DECIMALS,
            "quantityPrecision": QTY_DECIMALS,
            "underlyingType": "COIN",
            "timeInForce": ["GTC", "IOC"],
            "triggerProtect": "0.0500",
            "liquidationFee": "0.012500",
            "marketTakeBound": "0.05",
        }
        if self.venue.kind == "inverse":
            return fut | {"contractStatus": "TRADING", "contractSize": 100, "marginAsset": base}
        return fut | {"marginAsset": quote}


def _levels(levels: list[tuple[int, int]]) -> str:
    """Binance depth levels: ``["price","qty"]`` each."""
    return ",".join(f'["{_price(p)}","{_QTY_TABLE[q]}"]' for p, q in levels)


# ---------------------------------------------------------------------- OKX v5 framing
# Frames as OKX's public websocket sends them (``{"arg": {...}, "data": [...]}``), in the shape of
# the recorded session in shared/data/cryptofeed-captures/OKX (book updates carry no seqId there).


def _okx_arg(channel: str, inst: str) -> str:
    return f'{{"arg":{{"channel":"{channel}","instId":"{inst}"}}'


def _okx_levels(levels: list[tuple[int, int]]) -> str:
    """OKX depth levels: ``["price","size","0","orders"]`` (size 0 and no orders: the level goes)."""
    return ",".join(f'["{_price(p)}","{_qty(q)}","0","{1 if q else 0}"]' for p, q in levels)


def _okx_book(inst: str, now: int, action: str, *, bids: list[tuple[int, int]], asks: list[tuple[int, int]]) -> Event:
    payload = (
        f'{_okx_arg("books", inst)},"action":"{action}","data":[{{"asks":[{_okx_levels(asks)}],'
        f'"bids":[{_okx_levels(bids)}],"ts":"{now}"}}]}}'
    )
    return (f"books:{inst}", payload.encode(), None)


def _okx_trade(inst: str, now: int, tid: int, price: str, qty: str, *, buy: bool) -> Event:
    side = "buy" if buy else "sell"
    payload = (
        f'{_okx_arg("trades", inst)},"data":[{{"instId":"{inst}","tradeId":"{tid}","px":"{price}",'
        f'"sz":"{qty}","side":"{side}","ts":"{now}","count":"1"}}]}}'
    )
    return (f"trades:{inst}", payload.encode(), tid)


def _okx_candle(inst: str, name: str, k: _Kline, *, closed: bool) -> Event:
    row = (
        f'["{k.start}","{_price(k.open)}","{_price(k.high)}","{_price(k.low)}","{_price(k.close)}",'
        f'"{_qty(k.volume)}","{_fmt(k.quote, 5)}","{_fmt(k.quote, 5)}","{1 if closed else 0}"]'
    )
    return (f"candle{name}:{inst}", f'{_okx_arg(f"candle{name}", inst)},"data":[{row}]}}'.encode(), None)


def _okx_ticker(inst: str, now: int, top: tuple[str, str, str, str], last: tuple[str, str]) -> Event:
    kind = "SWAP" if inst.endswith("-SWAP") else "SPOT"
    payload = (
        f'{_okx_arg("tickers", inst)},"data":[{{"instType":"{kind}","instId":"{inst}","last":"{last[0]}",'
        f'"lastSz":"{last[1]}","bidPx":"{top[0]}","bidSz":"{top[1]}","askPx":"{top[2]}","askSz":"{top[3]}",'
        f'"ts":"{now}"}}]}}'
    )
    return (f"tickers:{inst}", payload.encode(), None)


def _okx_funding(inst: str, now: int, rate: str, funding_time: int) -> Event:
    payload = (
        f'{_okx_arg("funding-rate", inst)},"data":[{{"instType":"SWAP","instId":"{inst}","fundingRate":"{rate}",'
        f'"fundingTime":"{funding_time}","nextFundingRate":"","nextFundingTime":"{funding_time + FUNDING_PERIOD_MS}",'
        f'"method":"current_period","ts":"{now}"}}]}}'
    )
    return (f"funding-rate:{inst}", payload.encode(), None)


def malformed_variant(
    kind: str, good: bytes, *, wrong: list[tuple[bytes, bytes]], drop: bytes, unknown: bytes
) -> bytes:
    """``good`` (a well-formed trade frame) made malformed of ``kind``: ``truncated`` (cut in
    half), ``wrong_type`` (each ``(text, replacement)`` of ``wrong`` applied), ``not_json``,
    ``unknown_event`` (the frame ``unknown``), ``missing_field`` (the text ``drop`` removed)."""
    if kind == "truncated":
        return good[: len(good) // 2]
    if kind == "wrong_type":
        for text, replacement in wrong:
            good = good.replace(text, replacement)
        return good
    if kind == "not_json":
        return b"<html>502 Bad Gateway</html> not json {{"
    if kind == "unknown_event":
        return unknown
    return good.replace(drop, b"")  # missing_field


class RestError(LakehouseError):
    """A Binance-style REST error: ``{"code": -1121, "msg": "Invalid symbol."}``, HTTP 400."""

    def __init__(self, code: int, msg: str):
        super().__init__(msg)
        self.code = code
        self.msg = msg


_BINANCE_INTERVALS = {"1s", "1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d", "3d", "1w"}


def _interval_ms(interval: str) -> int:
    if interval not in _BINANCE_INTERVALS:
        raise RestError(-1120, "Invalid interval.")
    return int(parse_duration(interval).total_seconds() * 1000)


_OKX_INTERVALS = {"1m", "3m", "5m", "15m", "30m", "1H", "2H", "4H", "6H", "12H", "1D", "1W"}


def _okx_interval_ms(interval: str) -> int:
    """OKX's candle interval names (``1m``, ``1H``, ``1D``) in ms; months are not served."""
    if interval not in _OKX_INTERVALS:
        raise RestError(60018, f"Wrong URL or channel: candle{interval} is not an OKX candle channel")
    return int(parse_duration(interval.lower() if interval[-1] in "HDW" else interval).total_seconds() * 1000)
