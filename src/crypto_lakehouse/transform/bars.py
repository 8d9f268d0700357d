"""silver.trades -> gold.info_bars: information-driven bars (tick, volume and dollar bars) per
(exchange, symbol), beside the time bars of gold.ohlcv.

The rule a user relies on:

- **Trade order.** A (exchange, symbol)'s trades are taken in ``(ts, id, trade_key)`` order
  (exchange time, ties broken by the trade id; a trade without an integer id by its
  ``trade_key``; then price, amount and side, so that the order is total whatever order silver
  returns the rows in).
- **Closing.** A bar accumulates trades until its measure *reaches* the threshold (``>=``):
  ``tick`` counts trades, ``volume`` adds base amounts, ``dollar`` adds ``price * amount``
  (float64, added in trade order from the bar's first trade). The trade that reaches it belongs
  to the closing bar and the next trade opens a new bar from zero: trades are never split, so a
  bar may overshoot its threshold, and one trade larger than several thresholds makes **one**
  bar (no empty bars are made for the rest).
- **Anchor.** Bars restart at each UTC midnight: a day's first trade opens bar 0 of that day
  (``date``, ``bar``). A day's last bar that has not reached the threshold is emitted with
  ``complete`` false; while the day goes on it is replaced as trades come (a later run rebuilds
  the day); once the day is over it stays the day's short remainder.
- **Thresholds** come from ``gold.bars`` in the settings (:class:`crypto_lakehouse.config.BarSettings`):
  per kind, ``default``, ``SYMBOL`` or ``EXCHANGE:SYMBOL``; a kind with no threshold for a symbol
  is not built for it.

Incremental and idempotent like gold.ohlcv: each commit carries the application transaction
``("gold:silver.trades:info_bars:<thresholds>", <silver version>)``. A run reads only the silver
rows appended since that version, rebuilds every (exchange, symbol, UTC day) they touch from all
of silver (a late trade rebuilds its day's bars and no other day's), and replaces those days'
bars in **one** commit (an overwrite whose predicate names those days' partitions). Nothing new:
nothing written. The thresholds are part of the id: a changed ``gold.bars`` rebuilds the whole
table from silver on the next run. The fanned-out gold build (``build_gold_fanned``) builds these
bars in its own process, as :func:`build_gold` does (a day's bars are small next to its trades).
"""

from __future__ import annotations

import json
from datetime import date
from typing import Literal, get_args

import polars as pl

from crypto_lakehouse.config import BarSettings
from crypto_lakehouse.errors import InvalidArgument
from crypto_lakehouse.schemas import GOLD
from crypto_lakehouse.storage import Catalog
from crypto_lakehouse.storage.frames import to_frame

__all__ = ["BAR_KINDS", "BarKind", "build_info_bars", "info_bars", "info_bars_app"]

BarKind = Literal["tick", "volume", "dollar"]
BAR_KINDS: tuple[BarKind, ...] = get_args(BarKind)

_TABLE = "gold.info_bars"
_SOURCE = "silver.trades"
# the total order of a (exchange, symbol)'s trades (module doc)
_ORDER = ["ts", "id", "trade_key", "price", "amount", "side"]
_DAY = ["exchange", "symbol", "date"]


def _bar_starts(values: list[float], days: list[int], threshold: float) -> list[int]:
    """Positions where a bar opens: each day's first value (``days``: their positions, in order)
    and the value after each one at which the bar's running sum (float64, added in order from the
    bar's first value) reaches ``threshold``."""
    starts: list[int] = []
    for first, end in zip(days, [*days[1:], len(values)], strict=True):
        starts.append(first)
        run = 0.0
        for i, v in enumerate(values[first:end], first):
            run += v
            if run >= threshold:
                if i + 1 < end:
                    starts.append(i + 1)
                run = 0.0
    return starts


def _in_trade_order(trades: pl.DataFrame) -> pl.DataFrame:
    """``trades`` sorted by (exchange, symbol) and the trade order of the module doc (days follow
    ``ts``). One (exchange, symbol)'s trades with distinct integer ids are sorted by (ts, id)
    alone, which is that order, and not at all when already so (silver is written in time
    order); the full sort (strings among its keys) only where ties need it."""
    df = trades.filter(pl.col("ts").is_not_null()).with_columns(pl.col("ts").dt.date().alias("date"))
    d_ts, d_id = pl.col("ts").diff(), pl.col("id").diff()
    increasing = ((d_ts > 0) | ((d_ts == 0) & (d_id > 0))).fill_null(True).all()
    one_pair = (pl.col("exchange").n_unique() == 1) & (pl.col("symbol").n_unique() == 1)
    simple, ordered = df.select(one_pair & pl.col("id").is_not_null().all(), increasing).row(0)
    if simple and not ordered:
        df = df.sort("ts", "id")
        ordered = df.select(increasing).item()  # (false: two trades share (ts, id))
    if simple and ordered:
        return df
    # (price, amount, side only break ties of rows without a trade_key, silver's dedup key)
    keys = _ORDER if df.get_column("trade_key").has_nulls() else _ORDER[:3]
    return df.sort(["exchange", "symbol", *keys], nulls_last=True)


def _segments(ordered: pl.DataFrame, kind: BarKind, threshold: float) -> pl.Series:
    """For trades in trade order by day, the number of each one's bar (from 0, over the frame)."""
    day = pl.struct(_DAY)
    if kind == "tick":
        in_day = pl.int_range(pl.len(), dtype=pl.Int64).over(_DAY) // int(threshold)
        return ordered.select(pl.struct(day, in_day).rle_id().cast(pl.Int64))[:, 0]
    days = ordered.select(day.is_first_distinct().arg_true())[:, 0].to_list()
    measure = ordered["amount"] if kind == "volume" else ordered["price"] * ordered["amount"]
    starts = pl.Series("starts", _bar_starts(measure.to_list(), days, threshold), dtype=pl.Int64)
    positions = pl.int_range(ordered.height, dtype=pl.Int64, eager=True)
    return (starts.search_sorted(positions, side="right").cast(pl.Int64) - 1).alias("segment")


def _in_order(column: str) -> pl.Expr:
    """The sum of ``column`` over a bar, added in trade order (the running sum the rule uses)."""
    return pl.col(column).cum_sum().last().alias(column)


def info_bars(trades: pl.DataFrame | pl.LazyFrame, *, kind: BarKind, threshold: float) -> pl.DataFrame:
    """The ``kind`` bars closing at ``threshold`` of silver-shaped ``trades`` (any exchanges,
    symbols and days, any row order), in gold.info_bars' columns, by the rule of the module doc."""
    if kind not in BAR_KINDS:
        raise InvalidArgument(f"unknown bar kind {kind!r}; known: {', '.join(BAR_KINDS)}")
    if not threshold > 0 or (kind == "tick" and threshold != int(threshold)):
        what = "whole number of trades" if kind == "tick" else "number"
        raise InvalidArgument(f"a {kind} bar's threshold is a positive {what}, not {threshold!r}")
    return _bars_in_order(
        _in_trade_order(trades.collect() if isinstance(trades, pl.LazyFrame) else trades), kind, threshold
    )


def _bars_in_order(ordered: pl.DataFrame, kind: BarKind, threshold: float) -> pl.DataFrame:
    """:func:`info_bars` of trades :func:`_in_trade_order` has ordered."""
    spec = GOLD[_TABLE]
    if ordered.is_empty():
        return to_frame(spec.schema.empty_table())
    buy = pl.col("side") == "buy"
    bars = (
        ordered.with_columns(
            _segments(ordered, kind, threshold).alias("segment"),
            (pl.col("price") * pl.col("amount")).alias("quote_volume"),
            pl.when(buy).then(pl.col("amount")).otherwise(0.0).alias("buy_volume"),
            pl.when(buy).then(0.0).otherwise(pl.col("amount")).alias("sell_volume"),
        )
        .group_by("segment", maintain_order=True)
        .agg(
            *(pl.col(c).first() for c in _DAY),
            pl.col("ts").first().alias("first_trade_ts"),
            pl.col("ts").last().alias("last_trade_ts"),
            pl.col("id").first().alias("first_trade_id"),
            pl.col("id").last().alias("last_trade_id"),
            pl.col("price").first().alias("open"),
            pl.col("price").max().alias("high"),
            pl.col("price").min().alias("low"),
            pl.col("price").last().alias("close"),
            *(_in_order(c) for c in ("amount", "quote_volume", "buy_volume", "sell_volume")),
            pl.len().cast(pl.Int64).alias("trades"),
        )
        .rename({"amount": "volume"})
    )
    reached = {"tick": pl.col("trades"), "volume": pl.col("volume"), "dollar": pl.col("quote_volume")}[kind]
    return bars.with_columns(
        pl.lit(kind).alias("kind"),
        pl.lit(float(threshold)).alias("threshold"),
        pl.int_range(pl.len(), dtype=pl.Int64).over(_DAY).alias("bar"),
        (reached >= threshold).alias("complete"),
        (pl.col("quote_volume") / pl.col("volume")).alias("vwap"),
    ).select(spec.schema.names)


def info_bars_app(thresholds: BarSettings) -> str:
    """The application transaction id of a build with ``thresholds``: they are part of it, so a
    changed ``gold.bars`` rebuilds every bar from silver."""
    return "gold:silver.trades:info_bars:" + json.dumps(thresholds.model_dump(), sort_keys=True, separators=(",", ":"))


# (exchange, symbol) -> the UTC days to build (None: every day silver holds)
_Days = dict[tuple[str, str], list[date] | None]


def _bars_of(silver: pl.LazyFrame, days: _Days, thresholds: BarSettings) -> pl.DataFrame:
    """Every configured kind's bars of each (exchange, symbol) of ``days`` on its days, each at
    its own threshold, from ``silver``'s trades (read one (exchange, symbol) at a time)."""
    out = [to_frame(GOLD[_TABLE].schema.empty_table())]
    for (exchange, symbol), on in days.items():
        where = (pl.col("exchange") == exchange) & (pl.col("symbol") == symbol)
        if on is not None:
            where = where & pl.col("date").is_in(on)  # (the partition column = the UTC day of ts: prunes files)
        trades = _in_trade_order(silver.filter(where).collect())  # (once for every kind)
        for kind in BAR_KINDS:
            threshold = thresholds.threshold(kind, exchange, symbol)
            if threshold is not None:
                out.append(_bars_in_order(trades, kind, threshold))
    return pl.concat(out)


def _configured(pairs: pl.DataFrame, thresholds: BarSettings) -> pl.DataFrame:
    """The rows of ``pairs`` whose (exchange, symbol) has some kind of bar configured."""
    keep = [any(thresholds.threshold(k, e, s) is not None for k in BAR_KINDS) for e, s in pairs.select(_DAY[:2]).rows()]
    return pairs.filter(pl.Series(keep, dtype=pl.Boolean))


def _lit(value: object) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def _days_predicate(days: _Days) -> str:
    """A delta-rs predicate naming the partitions of ``days`` (each list given)."""
    clauses = [
        f"(exchange = {_lit(e)} AND symbol = {_lit(s)} AND date IN ({', '.join(_lit(d) for d in on or [])}))"
        for (e, s), on in days.items()
    ]
    return " OR ".join(clauses) if clauses else "false"


def _write(catalog: Catalog, bars: pl.DataFrame, *, predicate: str | None, app: tuple[str, int]) -> None:
    spec = GOLD[_TABLE]
    catalog.replace(
        _TABLE,
        bars.select(spec.schema.names).to_arrow().cast(spec.schema),
        predicate=predicate,
        app_id=app[0],
        version=app[1],
    )


def build_info_bars(catalog: Catalog, *, thresholds: BarSettings | None) -> dict[str, int]:
    """Bring gold.info_bars up to date with silver.trades (module doc); returns the bars
    (re)written per kind. No threshold configured (``thresholds`` None or empty): nothing done."""
    if thresholds is None or not thresholds.enabled() or not catalog.exists(_SOURCE):
        return {}
    app_id = info_bars_app(thresholds)
    upto = catalog.open(_SOURCE).version()
    after = catalog.transaction_version(_TABLE, app_id)
    if after is not None and after >= upto:
        return {}
    silver = catalog.scan(_SOURCE, version=upto)
    if after is None:  # a first build (or new thresholds): all of silver, the whole table replaced
        pairs = _configured(silver.select("exchange", "symbol").unique().collect(), thresholds)
        bars = _bars_of(silver, {(e, s): None for e, s in pairs.sort(_DAY[:2]).rows()}, thresholds)
        if bars.height or catalog.exists(_TABLE):
            _write(catalog, bars, predicate=None, app=(app_id, upto))
        return _counts(bars)
    new = to_frame(catalog.changes(_SOURCE, after=after, upto=upto)).filter(pl.col("ts").is_not_null())
    touched = _configured(new.select("exchange", "symbol", pl.col("ts").dt.date().alias("date")).unique(), thresholds)
    days: _Days = {(e, s): sorted(on) for e, s, on in touched.group_by(_DAY[:2]).agg("date").sort(_DAY[:2]).rows()}
    # (nothing to build, silver having moved: an empty commit records the progress)
    bars = _bars_of(silver, days, thresholds)
    _write(catalog, bars, predicate=_days_predicate(days), app=(app_id, upto))
    return _counts(bars)


def _counts(bars: pl.DataFrame) -> dict[str, int]:
    return {str(kind): n for kind, n in bars.group_by("kind").len().sort("kind").iter_rows()}
