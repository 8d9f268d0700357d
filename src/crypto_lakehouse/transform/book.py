"""silver.book -> gold: validated top-N book snapshots at a fixed interval (``gold.book_snapshots``),
best bid/ask quotes at every change and at each interval (``gold.quotes``, from silver.ticker
where there is no book) and microstructure statistics per interval (``gold.microstructure``).

The book of each (exchange, symbol) is rebuilt **per UTC day** from silver.book's snapshot and
delta rows of that day and the day before (:data:`LOOKBACK`: the book carries over midnight),
taken in sequence order (by receipt time where the venue sends no sequence): a snapshot replaces
the book, a delta sets the size of each of its levels, size 0 removes one. Intervals before any
snapshot of the two days are ``valid = false`` with reason ``no_snapshot``. Validity
(``valid``, ``reason``), set on the book as it stands after every update and kept until the next
snapshot resyncs it:

* ``sequence_break``: the venue's sequence rule (``venues`` registry, ``book_sequence``) shows
  updates lost: ``per_update`` (Bybit, Kraken Futures) a delta whose sequence is not the previous
  one + 1; ``per_range`` (Binance, Deribit) a snapshot at a sequence above the previous update's
  (updates folded into the resync, i.e. lost before it). The book just before a break is invalid
  too (the lost updates happened after it, inside its interval or the next ones).
* ``unsequenced``: an update without a sequence (OKX, Coinbase, ...): silver keys book rows by
  sequence, so such updates can neither be ordered nor told apart when they repeat a level.
* ``crossed``: the best bid at or above the best ask at an interval's end.
* ``no_snapshot``: no snapshot yet that day or the day before.

Snapshots are the book at the **end** of each interval (after the last update whose time, the
running maximum of exchange time falling back to receipt time, is inside it), emitted only where
its top ``depth`` levels (prices, sizes) or its validity changed, or every interval from the
day's first update to its last with ``forward_fill``. The rebuild is columnar: rows are ordered
and reduced to the last size of each level per interval in Polars, then one pass over the
**intervals** (not the updates) applies each interval's levels to a dense price-indexed array
and reads the top levels from the best price down.

Incremental like gold.ohlcv: each commit carries ``(app_id, silver version)``; a run reads the
silver rows appended since, recomputes every (exchange, symbol, day) they touch (and, for the
book, each next day) from all of silver's rows of that day and the day before, and replaces those
days in one commit per table and source; nothing new, nothing written. Formulas and choices: docs/gold.md.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import polars as pl
import pyarrow as pa

import crypto_lakehouse.transform._replace as _replace
from crypto_lakehouse.config import BookSettings
from crypto_lakehouse.durations import format_duration
from crypto_lakehouse.errors import LakehouseError
from crypto_lakehouse.schemas import GOLD
from crypto_lakehouse.storage import Catalog
from crypto_lakehouse.storage.frames import to_frame
from crypto_lakehouse.venues.registry import venue

__all__ = [
    "BANDS",
    "TICK",
    "BookBuild",
    "book_microstructure",
    "book_quotes",
    "book_snapshots",
    "build_book",
    "quote_columns",
    "ticker_quotes",
]

LOG = logging.getLogger(__name__)
TICK = "tick"
"""gold.quotes' ``interval`` of the rows at every change of the best levels."""

_UTC = pl.Datetime("us", "UTC")
_DAY = ["exchange", "symbol", "date"]
_LEVELS = ("bid_prices", "bid_sizes", "ask_prices", "ask_sizes")


@dataclass(frozen=True, slots=True)
class BookBuild:
    """What one :func:`build_book` run wrote: rows (re)written per table and the silver versions
    consumed ``(after, upto)`` per source table."""

    snapshots: int = 0
    quotes: int = 0
    microstructure: int = 0
    silver_versions: dict[str, tuple[int | None, int]] | None = None


def _sequence_kind(exchange: str) -> str:
    try:
        return venue(exchange).book_sequence
    except LakehouseError:  # not a venue of the registry: no rule to check
        return "none"


# ---- the rebuild of one (exchange, symbol, day) ------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Windows:
    """The book at the end of each window that had updates (one row per window, in time order)."""

    frame: pl.DataFrame  # window, ts, sequence, updates, reason (before crossing), epoch
    prices: np.ndarray  # the day's distinct prices, ascending
    bid_idx: np.ndarray  # (windows, depth) price indices best first, -1 past the last level
    bid_size: np.ndarray
    ask_idx: np.ndarray
    ask_size: np.ndarray
    band_depth: np.ndarray  # (windows, 2 x bands): bid then ask size within each band of the mid


def _ordered(part: pl.DataFrame) -> pl.DataFrame:
    """One day of one book's rows in update order with ``u`` (the update's ordinal): by sequence,
    a snapshot first among updates of one sequence, then receipt time; without sequences, by
    receipt time."""
    sequenced = part.get_column("sequence").null_count() == 0
    # a snapshot before the deltas of its sequence (Binance: the delta that made cryptofeed fetch
    # it, received before it, can end at its lastUpdateId and is applied after it)
    order = ["sequence", "_delta", "receipt_ts"] if sequenced else ["receipt_ts", "_delta", "sequence"]
    rows = part.with_columns((~pl.col("snapshot")).alias("_delta"))
    if not sequenced or not _in_order(rows, order):  # (silver files hold days in order: mostly no sort)
        rows = rows.sort(order, nulls_last=True)
    new = (
        pl.col("sequence").ne_missing(pl.col("sequence").shift(1))
        | (pl.col("receipt_ts") != pl.col("receipt_ts").shift(1))
        | (pl.col("snapshot") != pl.col("snapshot").shift(1))
    ).fill_null(True)
    return rows.with_columns((new.cum_sum() - 1).cast(pl.Int64).alias("u"), new.alias("_first"))


def _in_order(rows: pl.DataFrame, order: list[str]) -> bool:
    """``rows`` (no nulls in ``order``) are sorted by the columns ``order``."""
    ordered = pl.lit(True)
    for c in reversed(order):
        now, before = pl.col(c), pl.col(c).shift(1)
        ordered = (now > before) | ((now == before) & ordered)
    return bool(rows.select(ordered.fill_null(True).all()).item())


def _validity(updates: pl.DataFrame, kind: str) -> pl.DataFrame:
    """``reason`` per update (null: valid so far), crossing aside (known only from the book)."""
    seq, prev, snap = pl.col("sequence"), pl.col("sequence").shift(1), pl.col("snapshot")
    if kind == "per_update":
        lost = seq > prev + 1
        broken = lost & ~snap
    elif kind == "per_range":
        lost = snap & (seq > prev)
        broken = pl.lit(False)
    else:
        lost = broken = pl.lit(False)
    trigger = (
        pl.when(seq.is_null()).then(pl.lit("unsequenced")).when(broken.fill_null(False)).then(pl.lit("sequence_break"))
    )
    return (
        updates.with_columns(snap.cast(pl.Int64).cum_sum().alias("epoch"), trigger.alias("_trigger"))
        .with_columns(pl.col("_trigger").forward_fill().over("epoch").alias("_sticky"))
        .with_columns(
            pl.when(pl.col("epoch") == 0)
            .then(pl.lit("no_snapshot"))
            .when(pl.col("_sticky").is_not_null())
            .then(pl.col("_sticky"))
            .when(lost.shift(-1).fill_null(False))
            .then(pl.lit("sequence_break"))
            .alias("reason")
        )
        .drop("_trigger", "_sticky")
    )


def _rebuild(
    part: pl.DataFrame, *, every: timedelta | None, depth: int, kind: str, bands: tuple[float, ...] = ()
) -> _Windows:
    """The book at the end of every window of ``every`` (None: after every update) that had
    updates, from one day of one book's silver rows; with ``bands`` (bps), the size within each
    of the mid per side."""
    rows = _ordered(part)
    updates = _validity(
        rows.filter(pl.col("_first")).select(
            "u", "sequence", "snapshot", pl.coalesce("ts", "receipt_ts").cum_max().alias("ts")
        ),
        kind,
    )
    window = pl.col("u") if every is None else pl.col("ts").dt.truncate(format_duration(every))
    updates = updates.with_columns(window.alias("window"))
    windows = updates.group_by("window", maintain_order=True).agg(
        pl.col("ts").last(),
        pl.col("sequence").last(),
        pl.len().cast(pl.Int64).alias("updates"),
        pl.col("reason").last(),
        pl.col("epoch").last(),
        pl.col("u").filter(pl.col("snapshot")).max().fill_null(-1).alias("_reset"),
    )
    win_of_update = updates.select(pl.col("window").rle_id()).to_series().to_numpy()
    u = rows.get_column("u").to_numpy()
    reset_of_window = windows.get_column("_reset").to_numpy()
    rw = win_of_update[u]
    keep = u >= reset_of_window[rw]  # the levels after the window's last snapshot (which replaces the book)
    # (rows are in update order, so in window order) the last size of each level per window
    distinct = rows.select(pl.col("price").unique().sort()).with_row_index("_i")
    prices = distinct.get_column("price").to_numpy()
    n_prices = len(prices)
    idx_all = rows.select("price").join(distinct, on="price", how="left", maintain_order="left")["_i"].to_numpy()
    pos_all = idx_all + (rows.get_column("side") == "ask").to_numpy() * n_prices
    last = pl.Series(rw * (2 * n_prices) + pos_all).is_last_distinct().to_numpy()
    chosen = np.flatnonzero(keep & last)
    pos, idx, w = pos_all[chosen], idx_all[chosen], rw[chosen]
    size = rows.get_column("size").to_numpy()[chosen].astype(np.float64)
    ask = pos >= n_prices
    n_win = windows.height
    offsets = np.searchsorted(w, np.arange(n_win + 1))
    live = size > 0
    bid_top = np.full(n_win, 0, dtype=np.int64)  # per window: 1 + highest bid index it sets alive
    np.maximum.at(bid_top, w[live & ~ask], idx[live & ~ask] + 1)
    ask_bottom = np.full(n_win, n_prices, dtype=np.int64)  # lowest ask index it sets alive
    np.minimum.at(ask_bottom, w[live & ask], idx[live & ask])
    levels = _Levels(pos, size, offsets, reset_of_window >= 0, bid_top, ask_bottom, prices)
    out = _sweep_best(levels) if depth == 1 and not bands else _sweep(levels, depth=depth, bands=bands)
    return _Windows(windows.drop("_reset"), prices, *out)


@dataclass(frozen=True, slots=True)
class _Levels:
    """What the sweep applies: per level (in window order) its ``pos`` (price index, +
    ``n_prices`` for asks) and ``size``; per window its rows ``offsets[k]:offsets[k + 1]``,
    whether it ``reset``s the book (a snapshot), and the highest bid index + 1 / lowest ask
    index it sets alive (``bid_top``, ``ask_bottom``)."""

    pos: np.ndarray
    size: np.ndarray
    offsets: np.ndarray
    reset: np.ndarray
    bid_top: np.ndarray
    ask_bottom: np.ndarray
    prices: np.ndarray  # the day's distinct prices, ascending

    @property
    def n_prices(self) -> int:
        return len(self.prices)


def _sweep(
    lv: _Levels, *, depth: int, bands: tuple[float, ...] = ()
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One pass over the windows: apply each window's levels to a dense book and read its top
    ``depth`` levels per side from the best on; with ``bands`` (bps), the size of each side
    priced within each band of the mid (boundaries included)."""
    pos, size, offsets, reset, bid_top, ask_bottom = lv.pos, lv.size, lv.offsets, lv.reset, lv.bid_top, lv.ask_bottom
    n_prices = lv.n_prices
    n_win = len(offsets) - 1
    book = np.zeros(2 * n_prices, dtype=np.float64)
    bid_idx = np.full((n_win, depth), -1, dtype=np.int64)
    ask_idx = np.full((n_win, depth), -1, dtype=np.int64)
    bid_size = np.zeros((n_win, depth), dtype=np.float64)
    ask_size = np.zeros((n_win, depth), dtype=np.float64)
    band_depth = np.full((n_win, 2 * len(bands)), np.nan)
    prices = lv.prices
    bids, asks = book[:n_prices], book[n_prices:]
    hi, lo = 0, n_prices  # every live bid index is < hi; every live ask index is >= lo
    first = 4 * depth
    for k in range(n_win):
        if reset[k]:
            book[:] = 0.0
            hi, lo = 0, n_prices
        s, e = offsets[k], offsets[k + 1]
        if e > s:
            book[pos[s:e]] = size[s:e]
            hi = max(hi, int(bid_top[k]))
            lo = min(lo, int(ask_bottom[k]))
        row, n, top, chunk = bid_idx[k], 0, hi, first
        while n < depth and top > 0:
            start = max(0, top - chunk)
            found = np.flatnonzero(bids[start:top])[::-1][: depth - n] + start
            row[n : n + len(found)] = found
            n, top, chunk = n + len(found), start, chunk * 2
        bid_size[k, :n] = bids[row[:n]]
        hi = int(row[0]) + 1 if n else 0
        row, n, bottom, chunk = ask_idx[k], 0, lo, first
        while n < depth and bottom < n_prices:
            stop = min(n_prices, bottom + chunk)
            found = np.flatnonzero(asks[bottom:stop])[: depth - n] + bottom
            row[n : n + len(found)] = found
            n, bottom, chunk = n + len(found), stop, chunk * 2
        ask_size[k, :n] = asks[row[:n]]
        lo = int(row[0]) if n else n_prices
        if bands and hi and lo < n_prices:
            mid = (prices[hi - 1] + prices[lo]) / 2
            for j, bps in enumerate(bands):
                below = int(np.searchsorted(prices, mid * (1 - bps / 10_000), "left"))
                above = int(np.searchsorted(prices, mid * (1 + bps / 10_000), "right"))
                band_depth[k, 2 * j] = bids[below:hi].sum()
                band_depth[k, 2 * j + 1] = asks[lo:above].sum()
    return bid_idx, bid_size, ask_idx, ask_size, band_depth


def _sweep_best(lv: _Levels) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`_sweep` for the best level alone, in plain Python over lists: with a window per
    update (tick quotes) the windows hold a few levels each, where NumPy's per-call cost would
    dominate. Same results as ``_sweep(lv, depth=1)``."""
    n_win, n = len(lv.offsets) - 1, lv.n_prices
    pos_l, size_l, off = lv.pos.tolist(), lv.size.tolist(), lv.offsets.tolist()
    reset_l, top_l, bottom_l = lv.reset.tolist(), lv.bid_top.tolist(), lv.ask_bottom.tolist()
    bid_i, ask_i = [-1] * n_win, [-1] * n_win
    bid_q, ask_q = [0.0] * n_win, [0.0] * n_win
    book = [0.0] * (2 * n)
    hi, lo = 0, n  # as in _sweep
    for k in range(n_win):
        if reset_l[k]:
            book = [0.0] * (2 * n)
            hi, lo = 0, n
        for j in range(off[k], off[k + 1]):
            book[pos_l[j]] = size_l[j]
        hi, lo = max(hi, top_l[k]), min(lo, bottom_l[k])
        h = hi - 1
        while h >= 0 and book[h] == 0.0:
            h -= 1
        hi = h + 1
        if h >= 0:
            bid_i[k], bid_q[k] = h, book[h]
        while lo < n and book[n + lo] == 0.0:
            lo += 1
        if lo < n:
            ask_i[k], ask_q[k] = lo, book[n + lo]

    def column(values: list[int] | list[float]) -> np.ndarray:
        return np.array(values).reshape(n_win, 1)

    return column(bid_i), column(bid_q), column(ask_i), column(ask_q), np.zeros((n_win, 0))


def _lists(idx: np.ndarray, values: np.ndarray) -> pl.Series:
    """Rows of a (windows, depth) array as variable-length lists: the entries where ``idx`` >= 0
    (filled from the left)."""
    present = idx >= 0
    offsets = pa.array(np.concatenate([[0], np.cumsum(present.sum(axis=1))]), pa.int32())
    array = pa.ListArray.from_arrays(offsets, pa.array(values[present], pa.float64()))
    series = pl.from_arrow(array)
    assert isinstance(series, pl.Series)  # (from_arrow of an array is a Series)
    return series


def _judged(win: _Windows) -> pl.DataFrame:
    """The windows with their levels as lists, ``valid``/``reason`` (crossing included: sticky
    until the next snapshot) and ``_changed``: the levels or the validity differ from the window
    before (the first window: True)."""
    b0, a0 = win.bid_idx[:, 0], win.ask_idx[:, 0]
    crossed = (b0 >= 0) & (a0 >= 0) & (b0 >= a0)
    moved = np.ones(len(b0), dtype=bool)
    if len(b0) > 1:
        moved[1:] = (
            (win.bid_idx[1:] != win.bid_idx[:-1]).any(axis=1)
            | (win.ask_idx[1:] != win.ask_idx[:-1]).any(axis=1)
            | (win.bid_size[1:] != win.bid_size[:-1]).any(axis=1)
            | (win.ask_size[1:] != win.ask_size[:-1]).any(axis=1)
        )
    prices = win.prices
    bid_px = np.where(win.bid_idx >= 0, prices[np.maximum(win.bid_idx, 0)], 0.0)
    ask_px = np.where(win.ask_idx >= 0, prices[np.maximum(win.ask_idx, 0)], 0.0)
    reason = pl.coalesce(
        "reason", pl.when((pl.col("_crossed").cast(pl.Int64).cum_sum().over("epoch")) > 0).then(pl.lit("crossed"))
    )
    return (
        win.frame.with_columns(
            pl.Series("_crossed", crossed),
            _lists(win.bid_idx, bid_px).alias("bid_prices"),
            _lists(win.bid_idx, win.bid_size).alias("bid_sizes"),
            _lists(win.ask_idx, ask_px).alias("ask_prices"),
            _lists(win.ask_idx, win.ask_size).alias("ask_sizes"),
        )
        .with_columns(reason.alias("reason"))
        .with_columns(
            pl.col("reason").is_null().alias("valid"),
            (pl.Series(moved) | pl.col("reason").ne_missing(pl.col("reason").shift(1)))
            .fill_null(True)
            .alias("_changed"),
        )
    )


def _days(book: pl.DataFrame | pl.LazyFrame) -> dict[tuple[str, str, date], pl.DataFrame]:
    """Silver-shaped book rows per (exchange, symbol, UTC day of exchange time, else receipt time)."""
    df = book.collect() if isinstance(book, pl.LazyFrame) else book
    if df.is_empty():
        return {}
    df = df.select(
        "exchange",
        "symbol",
        pl.coalesce("ts", "receipt_ts").dt.date().alias("date"),
        "ts",
        "receipt_ts",
        "sequence",
        "snapshot",
        "side",
        "price",
        pl.col("size").cast(pl.Float64),
    )
    one = df.select(
        *(pl.col(c).eq(pl.col(c).first()).all() for c in ("exchange", "symbol")),
        pl.col("date").min().eq(pl.col("date").max()),
    ).row(0)
    if all(one):  # one book-day (as a benchmark or a single-symbol run has): no copy
        return {(str(df["exchange"][0]), str(df["symbol"][0]), df["date"][0]): df}
    parts = df.partition_by(_DAY, as_dict=True)
    return {(str(k[0]), str(k[1]), k[2]): v for k, v in sorted(parts.items())}


LOOKBACK = timedelta(days=1)
"""How far before a day the rebuild of its book reads: the book of a day starts from the last
snapshot of that day or the day before (docs/gold.md)."""

_CHANGED = pl.any_horizontal(
    pl.col(c).ne_missing(pl.col(c).shift(1)) for c in ("bid", "bid_size", "ask", "ask_size", "valid")
) | (pl.int_range(pl.len()) == 0)


@dataclass(slots=True)
class _Day:
    """One (exchange, symbol, UTC day) of book rows, with its sequence rule; the best levels
    after every change of them (:meth:`ticks`) are computed once for quotes and statistics."""

    exchange: str
    symbol: str
    day: date
    part: pl.DataFrame  # the rows of the day before it too
    kind: str
    _ticks: pl.DataFrame | None = None

    def own(self, column: str = "window") -> pl.Expr:
        """Rows of the day itself (not of the day before, read for the book carried in)."""
        return pl.col(column).dt.date() == self.day

    def ticks(self) -> pl.DataFrame:
        if self._ticks is None:
            every_update = _first_level(_judged(_rebuild(self.part, every=None, depth=1, kind=self.kind)))
            self._ticks = every_update.filter(_CHANGED)
        return self._ticks

    def named(self) -> list[pl.Expr]:
        return [
            pl.lit(self.exchange).alias("exchange"),
            pl.lit(self.symbol).alias("symbol"),
            pl.lit(self.day).alias("date"),
        ]


def _book_days(
    book: pl.DataFrame | pl.LazyFrame, kinds: Mapping[str, str] | None, *, only: pl.DataFrame | None = None
) -> list[_Day]:
    """``book`` per (exchange, symbol, day) (those of ``only``, by default every day it holds),
    each with the rows of the day before it (when ``book`` holds them: the book carried over
    midnight, :data:`LOOKBACK`) and its exchange's sequence rule (``kinds``, by default the
    venue registry's)."""
    parts = _days(book)
    wanted = None if only is None else set(only.select(_DAY).iter_rows())
    out = []
    for (e, sym, d), part in parts.items():
        if wanted is not None and (e, sym, d) not in wanted:
            continue
        before = parts.get((e, sym, d - LOOKBACK))
        rows = part if before is None else pl.concat([before, part])
        out.append(_Day(e, sym, d, rows, kinds.get(e, "none") if kinds is not None else _sequence_kind(e)))
    return out


def _forward_filled(frame: pl.DataFrame, every: timedelta, *, by: list[str]) -> pl.DataFrame:
    """``frame`` (sorted by ``window`` within ``by``) with a row for every window of ``every``
    from each group's first to its last, each repeating the row before (``_filled``: True)."""
    if frame.is_empty():
        return frame.with_columns(pl.lit(False).alias("_filled"))
    grid = (
        frame.group_by(by)
        .agg(pl.datetime_ranges(pl.col("window").min(), pl.col("window").max(), every, time_unit="us", time_zone="UTC"))
        .explode("window")
        .sort(*by, "window")
    )
    return (
        grid.join_asof(
            frame.with_columns(pl.col("window").alias("_at")).sort(*by, "window"),
            on="window",
            by=by,
            strategy="backward",
            check_sortedness=False,
        )
        .with_columns((pl.col("window") != pl.col("_at")).alias("_filled"))
        .drop("_at")
    )


def _empty(table: str) -> pl.DataFrame:
    return to_frame(GOLD[table].schema.empty_table())


def book_snapshots(
    book: pl.DataFrame | pl.LazyFrame,
    *,
    every: timedelta,
    depth: int,
    forward_fill: bool = False,
    kinds: Mapping[str, str] | None = None,
) -> pl.DataFrame:
    """gold.book_snapshots rows of every (exchange, symbol, UTC day) of silver-shaped ``book``:
    the top ``depth`` levels at the end of each interval of ``every`` (see the module doc).
    ``kinds``: exchange -> sequence rule (``per_update``, ``per_range``, ``none``); by default
    the venue registry's."""
    days = _book_days(book, kinds)
    return _concat(
        "gold.book_snapshots", [_day_snapshots(d, every, depth=depth, forward_fill=forward_fill) for d in days]
    )


def _concat(table: str, frames: list[pl.DataFrame]) -> pl.DataFrame:
    """``frames`` of ``table``'s rows as one frame of its schema."""
    empty = _empty(table)
    if not frames:
        return empty
    return pl.concat([f.select(empty.columns) for f in frames]).cast(dict(empty.schema))  # type: ignore[arg-type]  # (a Schema is a mapping of dtypes)


def _day_snapshots(d: _Day, every: timedelta, *, depth: int, forward_fill: bool) -> pl.DataFrame:
    f = _judged(_rebuild(d.part, every=every, depth=depth, kind=d.kind)).filter(d.own())
    f = f.with_columns(*d.named(), (pl.col("_changed") | (pl.int_range(pl.len()) == 0)).alias("_changed"))
    if forward_fill:
        f = _forward_filled(f, every, by=["exchange", "symbol"]).with_columns(
            pl.when(pl.col("_filled")).then(0).otherwise(pl.col("updates")).alias("updates")
        )
    else:
        f = f.filter(pl.col("_changed"))
    return f.with_columns(pl.lit(format_duration(every)).alias("interval"), pl.col("window").alias("window_start"))


def quote_columns() -> list[pl.Expr]:
    """mid, spread_bps and micro_price of columns bid, bid_size, ask, ask_size (null where a side
    is missing): mid = (bid + ask) / 2; spread_bps = (ask - bid) / mid * 10^4; micro_price =
    (bid * ask_size + ask * bid_size) / (bid_size + ask_size), the size-weighted mid that leans
    towards the side with less size (Stoikov 2018)."""
    bid, ask, bq, aq = pl.col("bid"), pl.col("ask"), pl.col("bid_size"), pl.col("ask_size")
    mid = (bid + ask) / 2
    return [
        mid.alias("mid"),
        ((ask - bid) / mid * 10_000).alias("spread_bps"),
        ((bid * aq + ask * bq) / (bq + aq)).alias("micro_price"),
    ]


def _first_level(f: pl.DataFrame) -> pl.DataFrame:
    return f.with_columns(
        pl.col("bid_prices").list.first().alias("bid"),
        pl.col("bid_sizes").list.first().alias("bid_size"),
        pl.col("ask_prices").list.first().alias("ask"),
        pl.col("ask_sizes").list.first().alias("ask_size"),
    )


def _quote_rows(f: pl.DataFrame, *, every: timedelta | None, source: str) -> pl.DataFrame:
    """gold.quotes rows from columns window, ts (-> as_of), date, exchange, symbol, sequence,
    bid, bid_size, ask, ask_size, valid: at every change (``every`` None: ts stays the change's
    time) or sampled at the end of each window of ``every`` (ts = window + every)."""
    spec = GOLD["gold.quotes"]
    return (
        f.with_columns(pl.col("ts").alias("as_of"))
        .with_columns(
            pl.col("ts") if every is None else (pl.col("window") + every).alias("ts"),
            pl.lit(TICK if every is None else format_duration(every)).alias("interval"),
            pl.lit(source).alias("source"),
        )
        .with_columns(quote_columns())
        .select(spec.schema.names)
        .cast(dict(_empty(spec.name).schema))  # type: ignore[arg-type]  # (a Schema is a mapping of dtypes)
    )


def book_quotes(
    book: pl.DataFrame | pl.LazyFrame, *, every: timedelta, kinds: Mapping[str, str] | None = None
) -> pl.DataFrame:
    """gold.quotes rows (source ``book``) of silver-shaped ``book``: the best levels after every
    update that changed them or their validity (interval ``tick``, at the update's time), and
    sampled at the end of every interval of ``every`` from each day's first update to its last
    (interval ``every``, ``ts`` = the interval's end: the quote as of just before it)."""
    return _concat("gold.quotes", [_day_quotes(d, every) for d in _book_days(book, kinds)])


def _day_quotes(d: _Day, every: timedelta) -> pl.DataFrame:
    timed = _first_level(_judged(_rebuild(d.part, every=every, depth=1, kind=d.kind))).filter(d.own())
    timed = timed.with_columns(d.named())
    return pl.concat(
        [
            _quote_rows(d.ticks().filter(d.own("ts")).with_columns(d.named()), every=None, source="book"),
            _quote_rows(_forward_filled(timed, every, by=["exchange", "symbol"]), every=every, source="book"),
        ]
    )


def ticker_quotes(ticker: pl.DataFrame | pl.LazyFrame, *, every: timedelta) -> pl.DataFrame:
    """gold.quotes rows (source ``ticker``) of silver-shaped ``ticker`` rows: every change of the
    best bid/ask (interval ``tick``) and the last quote at the end of every interval of ``every``
    from each (exchange, symbol, day)'s first quote to its last."""
    df = ticker.collect() if isinstance(ticker, pl.LazyFrame) else ticker
    by = ["exchange", "symbol", "date"]
    t = (
        df.select(
            "exchange",
            "symbol",
            pl.coalesce("ts", "receipt_ts").alias("ts"),
            "sequence",
            "bid",
            "bid_size",
            "ask",
            "ask_size",
        )
        .with_columns(pl.col("ts").dt.date().alias("date"), pl.lit(True).alias("valid"))
        .sort(*by, "ts", "sequence", nulls_last=True)
    )
    changed = pl.any_horizontal(
        pl.col(c).ne_missing(pl.col(c).shift(1)).over(by) for c in ("bid", "bid_size", "ask", "ask_size")
    ) | (pl.int_range(pl.len()).over(by) == 0)
    ticks = _quote_rows(t.filter(changed), every=None, source="ticker")
    last = (
        t.with_columns(pl.col("ts").dt.truncate(format_duration(every)).alias("window"))
        .group_by(*by, "window", maintain_order=True)
        .agg(pl.all().last())
    )
    timed = _quote_rows(_forward_filled(last, every, by=by), every=every, source="ticker")
    return pl.concat([ticks, timed])


BANDS = (10.0, 50.0)
"""bps of the mid within which gold.microstructure sums each side's size."""


def _grid(first: object, last: object, every: timedelta) -> pl.DataFrame:
    return pl.DataFrame(
        {"window": pl.datetime_range(first, last, every, time_unit="us", time_zone="UTC", eager=True)}  # type: ignore[call-overload]  # (first, last: datetimes read from a frame)
    )


def _tick_stats(ticks: pl.DataFrame, grid: pl.DataFrame, every: timedelta) -> pl.DataFrame:
    """Per window of ``grid``: the time-weighted spread, OFI, realized variance, quote changes and
    whether the book stayed valid, from ``ticks`` (the best levels after every change: ts, bid,
    bid_size, ask, ask_size, valid; one day, in order)."""
    prev = {c: pl.col(c).shift(1) for c in ("bid", "bid_size", "ask", "ask_size")}
    both = pl.col("valid") & pl.col("valid").shift(1)
    step = every.total_seconds() * 1e6
    t = ticks.with_columns(quote_columns()).with_columns(
        pl.col("ts").dt.truncate(format_duration(every)).alias("window"),
        # e_n of Cont, Kukanov & Stoikov (2014), eq. 2
        pl.when(both)
        .then(
            pl.when(pl.col("bid") >= prev["bid"]).then(pl.col("bid_size")).otherwise(0.0)
            - pl.when(pl.col("bid") <= prev["bid"]).then(prev["bid_size"]).otherwise(0.0)
            - pl.when(pl.col("ask") <= prev["ask"]).then(pl.col("ask_size")).otherwise(0.0)
            + pl.when(pl.col("ask") >= prev["ask"]).then(prev["ask_size"]).otherwise(0.0)
        )
        .alias("_e"),
        pl.when(both).then((pl.col("mid").log() - pl.col("mid").log().shift(1)) ** 2).alias("_r2"),
    )
    per_window = t.group_by("window").agg(
        pl.col("_e").sum().alias("ofi"),
        pl.col("_r2").sum().alias("realized_variance"),
        pl.len().cast(pl.Int64).alias("quote_updates"),
    )
    # the spread holds from each change to the next; each window starts with the state carried in
    carried = grid.join_asof(
        t.select("ts", "spread_bps", "valid"), left_on="window", right_on="ts", strategy="backward"
    ).select(pl.col("window").alias("ts"), "spread_bps", "valid")
    end = grid.get_column("window").max() + every  # type: ignore[operator]  # (a datetime)
    points = (
        pl.concat([carried, t.select("ts", "spread_bps", "valid")])
        .sort("ts", maintain_order=True)
        .with_columns(
            pl.col("ts").dt.truncate(format_duration(every)).alias("window"),
            ((pl.col("ts").shift(-1).fill_null(end) - pl.col("ts")).dt.total_microseconds() / step).alias("_dt"),
        )
    )
    weighted = pl.col("valid").fill_null(False) & pl.col("spread_bps").is_not_null()
    timed = points.group_by("window").agg(
        ((pl.col("spread_bps") * pl.col("_dt")).filter(weighted).sum() / pl.col("_dt").filter(weighted).sum()).alias(
            "twa_spread_bps"
        ),
        pl.col("valid").fill_null(False).all().alias("_valid"),
    )
    return grid.join(per_window, on="window", how="left").join(timed, on="window", how="left")


def book_microstructure(
    book: pl.DataFrame | pl.LazyFrame,
    trades: pl.DataFrame | pl.LazyFrame | None,
    *,
    every: timedelta,
    kinds: Mapping[str, str] | None = None,
) -> pl.DataFrame:
    """gold.microstructure rows of silver-shaped ``book`` (and ``trades``, silver.trades-shaped,
    for the trade imbalance): one per window of ``every`` from each (exchange, symbol, day)'s
    first book update to its last. Formulas in docs/gold.md."""
    trade_df = trades.collect() if isinstance(trades, pl.LazyFrame) else trades
    return _concat("gold.microstructure", [_day_stats(d, trade_df, every) for d in _book_days(book, kinds)])


def _day_stats(d: _Day, trades: pl.DataFrame | None, every: timedelta) -> pl.DataFrame:
    win = _rebuild(d.part, every=every, depth=1, kind=d.kind, bands=BANDS)
    names = [f"depth_{side}_{int(b)}bps" for b in BANDS for side in ("bid", "ask")]
    ends = _judged(win).select("window", *(pl.Series(n, win.band_depth[:, i]) for i, n in enumerate(names)))
    ends = ends.filter(d.own())
    grid = _grid(ends.get_column("window").min(), ends.get_column("window").max(), every)
    out = _tick_stats(d.ticks(), grid, every).join_asof(ends, on="window", strategy="backward")
    if trades is not None and not trades.is_empty():
        buy = pl.when(pl.col("side") == "buy").then(pl.col("amount")).otherwise(0.0)
        sell = pl.when(pl.col("side") == "sell").then(pl.col("amount")).otherwise(0.0)
        flow = (
            trades.filter((pl.col("exchange") == d.exchange) & (pl.col("symbol") == d.symbol))
            .with_columns(pl.col("ts").dt.truncate(format_duration(every)).alias("window"))
            .group_by("window")
            .agg(buy.sum().alias("_buy"), sell.sum().alias("_sell"), pl.len().cast(pl.Int64).alias("trades"))
        )
        out = out.join(flow, on="window", how="left")
    else:
        out = out.with_columns(pl.lit(None, pl.Float64).alias(c) for c in ("_buy", "_sell")).with_columns(
            pl.lit(0, pl.Int64).alias("trades")
        )
    return out.with_columns(
        ((pl.col("_buy") - pl.col("_sell")) / (pl.col("_buy") + pl.col("_sell"))).alias("trade_imbalance"),
        pl.col("trades").fill_null(0),
        pl.col("quote_updates").fill_null(0),
        pl.col("_valid").alias("valid"),
        pl.col("window").alias("window_start"),
        pl.lit(format_duration(every)).alias("interval"),
        *d.named(),
    )


# ---- incremental build: touched (exchange, symbol, day)s, one commit per table -------------------


def _lit(v: object) -> str:
    return "'" + str(v).replace("'", "''") + "'"


def _day_predicates(days: pl.DataFrame, head: str) -> list[str]:
    return [
        f"({head} AND exchange = {_lit(e)} AND symbol = {_lit(s)} AND date = {_lit(d.isoformat())})"
        for e, s, d in days.select(_DAY).iter_rows()
    ]


def _read_days(catalog: Catalog, table: str, days: pl.DataFrame, version: int) -> pl.DataFrame:
    """``table``'s rows (as of ``version``) of the (exchange, symbol, date)s of ``days``: whole
    partitions, read only there."""
    where = (
        pl.col("date").is_in(days.get_column("date").unique().implode())
        & pl.col("exchange").is_in(days.get_column("exchange").unique().implode())
        & pl.col("symbol").is_in(days.get_column("symbol").unique().implode())
    )
    return catalog.scan(table, version=version).filter(where).join(days.lazy(), on=_DAY, how="semi").collect()


def _shifted(days: pl.DataFrame, by: tuple[int, ...]) -> pl.DataFrame:
    """``days`` (exchange, symbol, date) and each moved by every offset of ``by`` (in days)."""
    return (
        pl.concat([days.with_columns(pl.col("date") + timedelta(days=n)) for n in by]).unique().sort(_DAY)
        if days.height
        else days
    )


def _touched(new: pl.DataFrame) -> pl.DataFrame:
    return new.select("exchange", "symbol", pl.coalesce("ts", "receipt_ts").dt.date().alias("date")).unique().sort(_DAY)


def _stats_app(s: BookSettings, source: str) -> str:
    return f"gold:{source}:microstructure:{format_duration(s.stats_interval)}"


def _microstructure(catalog: Catalog, s: BookSettings, books: list[_Day], days: pl.DataFrame) -> pl.DataFrame:
    """gold.microstructure of ``days`` from their ``books`` and silver.trades as it is now."""
    trades = None
    if catalog.exists("silver.trades"):
        trades = _read_days(catalog, "silver.trades", days, catalog.open("silver.trades").version())
    return _concat("gold.microstructure", [_day_stats(d, trades, s.stats_interval) for d in books])


def _from_book(
    catalog: Catalog, s: BookSettings, versions: dict[str, tuple[int | None, int]], rebuilt: list[pl.DataFrame]
) -> dict[str, int]:
    """The book tables of the days silver.book rows appended since touch (the days whose
    statistics were rebuilt appended to ``rebuilt``)."""
    every = format_duration(s.interval)
    apps = {
        "gold.book_snapshots": f"gold:silver.book:{every}:depth={s.depth}:{'filled' if s.forward_fill else 'changes'}",
        "gold.quotes": f"gold:silver.book:quotes:{every}",
        "gold.microstructure": _stats_app(s, "silver.book"),
    }
    upto = catalog.open("silver.book").version()
    done = {t: catalog.transaction_version(t, app) for t, app in apps.items()}
    due = [t for t, v in done.items() if v is None or v < upto]
    after = None if any(v is None for v in done.values()) else min(v for v in done.values() if v is not None)
    versions["silver.book"] = (after, upto)
    written = dict.fromkeys(apps, 0)
    if not due:
        return written
    # a day's book carries into the next: the days touched and each next one are rebuilt, from
    # their rows and those of the day before them
    days = _shifted(_touched(to_frame(catalog.changes("silver.book", after=after, upto=upto))), (0, 1))
    silver = _read_days(catalog, "silver.book", _shifted(days, (-1, 0)), upto) if days.height else None
    books = _book_days(silver, None, only=days) if silver is not None else []  # (each day's ticks computed once)
    for table in due:
        if silver is None:
            data, predicates = _empty(table), []
        elif table == "gold.book_snapshots":
            data = _concat(
                table, [_day_snapshots(d, s.interval, depth=s.depth, forward_fill=s.forward_fill) for d in books]
            )
            predicates = _day_predicates(days, f'"interval" = {_lit(every)}')
        elif table == "gold.quotes":  # (every source: a day with a book has no ticker quotes)
            data = _concat(table, [_day_quotes(d, s.interval) for d in books])
            predicates = _day_predicates(days, f'"interval" IN ({_lit(TICK)}, {_lit(every)})')
        else:
            data = _microstructure(catalog, s, books, days)
            rebuilt.append(days)
            predicates = _day_predicates(days, f'"interval" = {_lit(format_duration(s.stats_interval))}')
        _replace.replace_windows(catalog, table, data, predicates, (apps[table], upto))
        written[table] = data.height
    return written


def _pending(
    catalog: Catalog, source: str, table: str, app: str, versions: dict[str, tuple[int | None, int]]
) -> tuple[pl.DataFrame | None, int]:
    """The (exchange, symbol, day)s the rows appended to ``source`` since ``table`` last
    consumed it (``app``) touch (None: nothing new), and the version to record."""
    upto = catalog.open(source).version()
    after = catalog.transaction_version(table, app)
    versions[source] = (after, upto)
    if after is not None and after >= upto:
        return None, upto
    return _touched(to_frame(catalog.changes(source, after=after, upto=upto))), upto


def _stats_from_trades(
    catalog: Catalog, s: BookSettings, versions: dict[str, tuple[int | None, int]], rebuilt: list[pl.DataFrame]
) -> int:
    """gold.microstructure of the days with a book that trades appended since the last run touch
    (their trade imbalance), but those ``rebuilt`` in this run already; days without a book have
    no statistics."""
    app = _stats_app(s, "silver.trades")
    days, upto = _pending(catalog, "silver.trades", "gold.microstructure", app, versions)
    if days is None:
        return 0
    for done in rebuilt:
        days = days.join(done, on=_DAY, how="anti")
    version = catalog.open("silver.book").version()
    book = _read_days(catalog, "silver.book", _shifted(days, (-1, 0)), version) if days.height else None
    days = days.join(_touched(book), on=_DAY, how="semi") if book is not None and book.height else days.clear()
    books = _book_days(book, None, only=days) if book is not None and days.height else []
    data = _microstructure(catalog, s, books, days) if books else _empty("gold.microstructure")
    head = f'"interval" = {_lit(format_duration(s.stats_interval))}'
    _replace.replace_windows(catalog, "gold.microstructure", data, _day_predicates(days, head), (app, upto))
    return data.height


def _from_ticker(catalog: Catalog, s: BookSettings, versions: dict[str, tuple[int | None, int]]) -> int:
    every = format_duration(s.interval)
    app = f"gold:silver.ticker:quotes:{every}"
    days, upto = _pending(catalog, "silver.ticker", "gold.quotes", app, versions)
    if days is None:
        return 0
    if days.height and catalog.exists("silver.book"):  # days with a book quote from it (_from_book)
        booked = _read_days(catalog, "silver.book", days, catalog.open("silver.book").version())
        days = days.join(_touched(booked), on=_DAY, how="anti")
    data = ticker_quotes(_read_days(catalog, "silver.ticker", days, upto), every=s.interval) if days.height else None
    head = f'"interval" IN ({_lit(TICK)}, {_lit(every)}) AND source = {_lit("ticker")}'
    _replace.replace_windows(
        catalog,
        "gold.quotes",
        _empty("gold.quotes") if data is None else data,
        _day_predicates(days, head) if data is not None else [],
        (app, upto),
    )
    return 0 if data is None else data.height


def build_book(catalog: Catalog, settings: BookSettings | None = None) -> BookBuild:
    """Bring gold.book_snapshots, gold.quotes and gold.microstructure up to date with silver.book,
    silver.ticker and silver.trades (see the module doc): the (exchange, symbol, day)s the
    silver rows appended since the last run touch are rebuilt from all of silver and replaced,
    one commit per table and source (its progress transaction in it); nothing new: nothing
    written."""
    s = settings or BookSettings()
    versions: dict[str, tuple[int | None, int]] = {}
    written = dict.fromkeys(("gold.book_snapshots", "gold.quotes", "gold.microstructure"), 0)
    if catalog.exists("silver.book"):
        rebuilt: list[pl.DataFrame] = []
        written = _from_book(catalog, s, versions, rebuilt)
        if catalog.exists("silver.trades"):
            written["gold.microstructure"] += _stats_from_trades(catalog, s, versions, rebuilt)
    if catalog.exists("silver.ticker"):
        written["gold.quotes"] += _from_ticker(catalog, s, versions)
    return BookBuild(written["gold.book_snapshots"], written["gold.quotes"], written["gold.microstructure"], versions)
