"""silver -> gold: OHLCV bars at any fixed interval (+ VWAP, buy/sell volume), the exchange's own
candles kept apart, and funding per settlement with rolling averages.

Incremental and idempotent: each gold commit carries the Delta application transaction
``("gold:<silver table>", <silver version>)``. A run reads only the silver rows appended since
(late backfilled trades included), finds the bars they touch per interval, recomputes exactly
those bars from all of silver and replaces them in **one** commit (``overwrite`` with a
predicate covering only those windows). Rerunning with nothing new writes nothing.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import polars as pl
from deltalake.exceptions import CommitFailedError
from deltalake.transaction import AddAction

import crypto_lakehouse.transform._fanout as _fanout
import crypto_lakehouse.transform._replace as _replace
import crypto_lakehouse.transform.book as _book
from crypto_lakehouse.config import BarSettings, BookSettings
from crypto_lakehouse.durations import CandleInterval, candle_interval, format_duration
from crypto_lakehouse.errors import FilesRewritten, LakehouseError
from crypto_lakehouse.schemas import GOLD
from crypto_lakehouse.storage import Catalog
from crypto_lakehouse.storage.frames import to_frame
from crypto_lakehouse.transform.bars import build_info_bars

__all__ = ["GoldResult", "build_gold", "build_gold_fanned", "ohlcv", "rollup"]

LOG = logging.getLogger(__name__)
_UTC = pl.Datetime("us", "UTC")
_MAX_CLUSTERS = 64  # per (interval, exchange, symbol): beyond this, one range is recomputed


@dataclass(slots=True)
class GoldResult:
    bars_written: dict[str, int] = field(default_factory=dict)  # interval -> bars (re)written
    exchange_candles: int = 0
    funding_rows: int = 0
    info_bars: dict[str, int] = field(default_factory=dict)  # kind -> gold.info_bars bars (re)written
    anomalies: int = 0  # gold.anomalies rows (re)written (jobs.promote_gold)
    silver_versions: dict[str, tuple[int | None, int]] = field(default_factory=dict)
    book: _book.BookBuild | None = None  # gold.book_snapshots and gold.quotes (transform/book.py)


_KEYS = ["exchange", "symbol", "window_start"]


def _in_trade_order(trades: pl.DataFrame) -> pl.DataFrame:
    """Trades ordered by (ts, id) within each (exchange, symbol); parts that already are (silver
    files are written in time order) are not sorted again."""
    parts = []
    for part in trades.partition_by("exchange", "symbol"):
        d_ts, d_id = pl.col("ts").diff(), pl.col("id").diff()
        if not part.select(((d_ts > 0) | ((d_ts == 0) & (d_id > 0))).fill_null(True).all()).item():
            part = part.sort("ts", "id")
        parts.append(part)
    return pl.concat(parts) if parts else trades


def _sum(column: str) -> pl.Expr:
    """The sum of ``column`` in each group, added in the group's row order: the same bits
    whatever else the frame holds. (Polars' ``sum()`` in a ``group_by`` adds partial sums of
    slices of the whole frame, whose bounds move with its other rows, so the same trades give
    bars differing in the last bit when built with or without other symbols: measured: 130k of
    400k groups of 5M rows.)"""
    return pl.col(column).implode().list.sum().alias(column)


def ohlcv(trades: pl.LazyFrame | pl.DataFrame, every: str) -> pl.DataFrame:
    """Bars of ``every`` from silver-shaped trades. Open/close follow exchange time with ties
    broken by trade id (Delta keeps no row order): each bar's first and last trade in (ts, id)
    order."""
    df = trades.collect() if isinstance(trades, pl.LazyFrame) else trades
    buy = pl.col("side") == "buy"
    return (
        _in_trade_order(df)
        .lazy()
        .with_columns(
            pl.col("ts").dt.truncate(every).alias("window_start"),
            (pl.col("price") * pl.col("amount")).alias("_quote"),
            pl.when(buy).then(pl.col("amount")).otherwise(0.0).alias("_buy"),
            pl.when(buy).then(0.0).otherwise(pl.col("amount")).alias("_sell"),
        )
        .group_by(_KEYS)
        .agg(
            pl.col("price").first().alias("open"),
            pl.col("price").max().alias("high"),
            pl.col("price").min().alias("low"),
            pl.col("price").last().alias("close"),
            _sum("amount").alias("volume"),
            _sum("_quote").alias("quote_volume"),
            pl.len().cast(pl.Int64).alias("trades"),
            _sum("_buy").alias("buy_volume"),
            _sum("_sell").alias("sell_volume"),
        )
        .with_columns(
            (pl.col("quote_volume") / pl.col("volume")).alias("vwap"),
            pl.lit("trades").alias("source"),
            pl.lit(every).alias("interval"),
        )
        .select(GOLD["gold.ohlcv"].schema.names)
        .collect()
    )


def rollup(bars: pl.LazyFrame, every: str) -> pl.LazyFrame:
    """Bars of a multiple ``every`` from finer bars: exact for every column (open of the first
    sub-bar, close of the last, sums of volumes and counts, VWAP from the summed quote volume)."""
    return (
        bars.sort("window_start")
        .with_columns(pl.col("window_start").dt.truncate(every))
        .group_by("exchange", "symbol", "window_start")
        .agg(
            pl.col("open").first(),
            pl.col("high").max(),
            pl.col("low").min(),
            pl.col("close").last(),
            *(_sum(c) for c in ("volume", "quote_volume", "trades", "buy_volume", "sell_volume")),
        )
        .with_columns(
            (pl.col("quote_volume") / pl.col("volume")).alias("vwap"),
            pl.lit("trades").alias("source"),
            pl.lit(every).alias("interval"),
        )
        .select(GOLD["gold.ohlcv"].schema.names)
    )


def _clusters(touched: pl.DataFrame, step: timedelta, *, widen: bool = True) -> pl.DataFrame:
    """Touched windows -> contiguous runs per (exchange, symbol): columns lo, hi (exclusive).
    With ``widen``, a key with very many runs gets one covering range instead (only valid when
    everything in that range is recomputed, as trade bars are)."""
    runs = (
        touched.sort("exchange", "symbol", "window_start")
        .with_columns(
            ((pl.col("window_start").diff().over("exchange", "symbol") != step).fill_null(True).cum_sum()).alias("run")
        )
        .group_by("exchange", "symbol", "run")
        .agg(pl.col("window_start").min().alias("lo"), (pl.col("window_start").max() + step).alias("hi"))
    )
    many = runs.group_by("exchange", "symbol").len().filter(pl.col("len") > _MAX_CLUSTERS)
    if widen and many.height:  # too many scattered windows: recompute one covering range instead (same result)
        wide = (
            runs.join(many, on=["exchange", "symbol"])
            .group_by("exchange", "symbol")
            .agg(pl.col("lo").min(), pl.col("hi").max())
        )
        runs = pl.concat([runs.join(many, on=["exchange", "symbol"], how="anti").drop("run"), wide], how="diagonal")
    return runs.select("exchange", "symbol", "lo", "hi")


def _lit(v: object) -> str:
    if hasattr(v, "isoformat"):
        return f"'{v.isoformat()}'"
    return "'" + str(v).replace("'", "''") + "'"


def _predicate(source: str, interval: str, clusters: pl.DataFrame, column: str = "window_start") -> list[str]:
    return [
        f'("source" = {_lit(source)} AND "interval" = {_lit(interval)} AND exchange = {_lit(e)} '
        f"AND symbol = {_lit(s)} AND {column} >= {_lit(lo)} AND {column} < {_lit(hi)})"
        for e, s, lo, hi in clusters.iter_rows()
    ]


def _new_rows(catalog: Catalog, table: str, app_id: str) -> tuple[pl.DataFrame | None, int | None, int]:
    """Rows appended to ``table`` since gold last consumed it (None: nothing new)."""
    upto = catalog.open(table).version()
    after = catalog.transaction_version("gold.ohlcv" if table != "silver.funding" else "gold.funding", app_id)
    if after is not None and after >= upto:
        return None, after, upto
    if after is None:
        return catalog.frame(table, version=upto), after, upto
    return to_frame(catalog.changes(table, after=after, upto=upto)), after, upto


def _in_clusters(clusters: pl.DataFrame, column: str) -> pl.Expr:
    cond = pl.lit(False)
    for e, sym, lo, hi in clusters.iter_rows():
        cond = cond | (
            (pl.col("exchange") == e) & (pl.col("symbol") == sym) & (pl.col(column) >= lo) & (pl.col(column) < hi)
        )
    return cond


@dataclass(frozen=True, slots=True)
class _Bars:
    """Bars of one interval, and the windows they replace per (exchange, symbol) (``lo``, ``hi``
    runs; None: a first build, nothing to replace)."""

    every: str
    bars: pl.DataFrame
    clusters: pl.DataFrame | None


def _trade_bars(
    new: pl.DataFrame, steps: list[timedelta], *, silver: pl.LazyFrame, gold: pl.LazyFrame | None
) -> list[_Bars]:
    """The bars of every interval of ``steps`` (sorted) that the trades ``new`` touch. The finest
    is computed from trades (``silver``'s, in each touched window); every multiple of it is
    rolled up from those bars (the fresh ones plus those ``gold`` already holds), so a late trade
    in a day costs one fine bar and a roll-up, not a re-read of the day's trades. Intervals that
    are not multiples of the finest are computed from trades. ``gold`` None: a first build, from
    ``new`` alone (all of silver)."""
    base = steps[0]
    rolled = [s for s in steps[1:] if s % base == timedelta(0)]
    direct = [base, *(s for s in steps[1:] if s % base != timedelta(0))]
    out: list[_Bars] = []
    for step in direct:
        every = format_duration(step)
        if gold is None:
            out.append(_Bars(every, ohlcv(new.lazy(), every), None))
            continue
        touched = new.select("exchange", "symbol", pl.col("ts").dt.truncate(every).alias("window_start")).unique()
        clusters = _clusters(touched, step)
        lo, hi = clusters["lo"].min(), clusters["hi"].max()
        assert isinstance(lo, datetime) and isinstance(hi, datetime)  # (min/max are typed as any scalar)
        source = silver.filter(pl.col("date").is_between(lo.date(), hi.date()) & _in_clusters(clusters, "ts"))
        out.append(_Bars(every, ohlcv(source, every), clusters))
    touched_base, base_every = out[0].bars, out[0].every
    for step in rolled:
        every = format_duration(step)
        if gold is None:
            out.append(_Bars(every, rollup(touched_base.lazy(), every).collect(), None))
            continue
        touched = touched_base.select("exchange", "symbol", pl.col("window_start").dt.truncate(every)).unique()
        clusters = _clusters(touched, step)
        kept = (
            gold.filter(
                (pl.col("source") == "trades")
                & (pl.col("interval") == base_every)
                & _in_clusters(clusters, "window_start")
            )
            .collect()
            .join(touched_base, on=["exchange", "symbol", "window_start"], how="anti")
        )
        fine = pl.concat([kept, touched_base]).lazy()
        out.append(_Bars(every, rollup(fine, every).collect(), clusters))
    return out


def _trades_app(steps: list[timedelta]) -> str:
    # the interval set is part of the progress id: a changed set rebuilds every bar from silver,
    # so roll-ups never run on finer bars gold never computed
    return "gold:silver.trades:" + ",".join(format_duration(s) for s in steps)


def _build_trade_bars(catalog: Catalog, intervals: list[timedelta], result: GoldResult) -> None:
    """Bars of ``intervals`` for the silver trades appended since the last run (:func:`_trade_bars`),
    replacing those gold holds for the same windows in one commit."""
    steps = sorted(set(intervals))
    app_id = _trades_app(steps)
    new, after, upto = _new_rows(catalog, "silver.trades", app_id)
    result.silver_versions["silver.trades"] = (after, upto)
    if new is None or new.is_empty() or not steps:
        if new is not None and catalog.exists("gold.ohlcv"):
            _replace.replace_windows(
                catalog, "gold.ohlcv", pl.DataFrame(schema=_ohlcv_schema()), ["false"], (app_id, upto)
            )
        return
    first_build = not catalog.exists("gold.ohlcv")
    out = _trade_bars(
        new,
        steps,
        silver=catalog.scan("silver.trades", version=upto),
        gold=None if first_build else catalog.scan("gold.ohlcv"),
    )
    predicates = [p for b in out if b.clusters is not None for p in _predicate("trades", b.every, b.clusters)]
    result.bars_written.update({b.every: b.bars.height for b in out})
    _replace.replace_windows(catalog, "gold.ohlcv", pl.concat([b.bars for b in out]), predicates, (app_id, upto))


def _build_exchange_candles(catalog: Catalog, result: GoldResult) -> None:
    app_id = "gold:silver.candles"
    new, after, upto = _new_rows(catalog, "silver.candles", app_id)
    result.silver_versions["silver.candles"] = (after, upto)
    if new is None or new.is_empty():
        if new is not None:  # consumed an empty batch: record the progress
            _replace.replace_windows(
                catalog, "gold.ohlcv", pl.DataFrame(schema=_ohlcv_schema()), ["false"], (app_id, upto)
            )
        return
    bars = new.select(
        pl.lit("exchange").alias("source"),
        "interval",
        "exchange",
        "symbol",
        pl.col("start").alias("window_start"),
        "open",
        "high",
        "low",
        "close",
        "volume",
        pl.lit(None, pl.Float64).alias("quote_volume"),
        "trades",
        pl.lit(None, pl.Float64).alias("buy_volume"),
        pl.lit(None, pl.Float64).alias("sell_volume"),
        pl.lit(None, pl.Float64).alias("vwap"),
    )
    predicates = []
    known = {iv: candle_interval(iv) for iv in bars.get_column("interval").unique().to_list()}
    steps = {iv: step for iv, step in known.items() if step is not None}
    unknown = [iv for iv, step in known.items() if step is None]
    if unknown:  # silver quarantines these; rows written before it did are left out, not fatal
        LOG.warning("gold.ohlcv: skipping exchange candles of unknown interval(s) %s", unknown)
        bars = bars.filter(~pl.col("interval").is_in(unknown))
    for (interval,), part in bars.group_by("interval"):
        touched = part.select("exchange", "symbol", "window_start").unique()
        predicates += _predicate("exchange", str(interval), _candle_runs(touched, steps[interval]))
    _replace.replace_windows(catalog, "gold.ohlcv", bars, predicates, (app_id, upto))
    result.exchange_candles = bars.height


def _candle_runs(touched: pl.DataFrame, step: CandleInterval) -> pl.DataFrame:
    """Like :func:`_clusters` (never widened) for candles of any interval, calendar months
    included: a run continues while each window opens one interval after the previous one."""
    ws, by = pl.col("window_start"), ["exchange", "symbol"]
    return (
        touched.sort(*by, "window_start")
        .with_columns((ws.shift(1).over(by).dt.offset_by(step.offset) != ws).fill_null(True).cum_sum().alias("run"))
        .group_by(*by, "run")
        .agg(ws.min().alias("lo"), ws.max().dt.offset_by(step.offset).alias("hi"))
        .select(*by, "lo", "hi")
    )


def _record_progress(catalog: Catalog, app_id: str, upto: int) -> None:
    """A commit of gold.ohlcv that changes no row, recording that ``app_id`` consumed ``upto``."""
    _replace.replace_windows(catalog, "gold.ohlcv", pl.DataFrame(schema=_ohlcv_schema()), ["false"], (app_id, upto))


def _ohlcv_schema() -> pl.Schema:
    return to_frame(GOLD["gold.ohlcv"].schema.empty_table()).schema


def _build_funding(catalog: Catalog, result: GoldResult) -> None:
    """Funding per settlement: the exchange's settlements (backfilled history) where silver has
    them, else the last streamed estimate before each settlement time; then rolling means."""
    app_id = "gold:silver.funding"
    new, after, upto = _new_rows(catalog, "silver.funding", app_id)
    result.silver_versions["silver.funding"] = (after, upto)
    if new is None:
        return
    f = catalog.frame("silver.funding", version=upto)
    settled = f.filter(pl.col("source") != "stream").select(
        "exchange",
        "symbol",
        pl.col("ts").alias("funding_time"),
        "rate",
        "mark_price",
        pl.lit("settlement").alias("source"),
    )
    estimates = (
        f.filter(
            (pl.col("source") == "stream") & pl.col("next_funding_time").is_not_null() & pl.col("rate").is_not_null()
        )
        .sort("ts")
        .group_by("exchange", "symbol", "next_funding_time")
        .agg(pl.col("rate").last(), pl.col("mark_price").last())
        .select(
            "exchange",
            "symbol",
            pl.col("next_funding_time").alias("funding_time"),
            "rate",
            "mark_price",
            pl.lit("stream").alias("source"),
        )
    )
    estimates = estimates.join(settled, on=["exchange", "symbol", "funding_time"], how="anti")
    out = (
        pl.concat([settled, estimates])
        .sort("exchange", "symbol", "funding_time")
        .with_columns(
            pl.col("rate").rolling_mean(3, min_samples=1).over("exchange", "symbol").alias("rate_avg_1d"),
            pl.col("rate").rolling_mean(21, min_samples=1).over("exchange", "symbol").alias("rate_avg_7d"),
            (pl.col("rate") * 3 * 365).alias("annualized_rate"),
        )
    )
    spec = GOLD["gold.funding"]
    catalog.replace(
        "gold.funding", out.select(spec.schema.names).to_arrow().cast(spec.schema), app_id=app_id, version=upto
    )
    result.funding_rows = out.height


def build_gold(
    catalog: Catalog,
    *,
    intervals: list[timedelta],
    bars: BarSettings | None = None,
    book: BookSettings | None = None,
) -> GoldResult:
    """Bring gold up to date with silver (see module doc); ``bars``: the thresholds of
    gold.info_bars (:mod:`crypto_lakehouse.transform.bars`; None: not built); ``book``: the book
    tables' settings (:mod:`crypto_lakehouse.transform.book`; None: the defaults)."""
    return _build(catalog, lambda result: _build_trade_bars(catalog, intervals, result), bars=bars, book=book)


# ---- fanned out: groups of (exchange, symbol) on a runner, one commit of gold.ohlcv -------------

_ATTEMPTS = 5  # a fanned-out build restaged this often (lost to a racing job or a compaction)


@dataclass(frozen=True, slots=True)
class _Task:
    """One task of a fanned-out gold build: the silver.trades files holding the new rows of
    whole (exchange, symbol)s (gold's partitions are per symbol: no two tasks replace one file)."""

    where: _fanout.Where
    files: tuple[tuple[str, dict[str, str]], ...]
    steps: tuple[timedelta, ...]
    silver_version: int
    gold_version: int | None  # None: a first build (gold holds no trade bars)


@dataclass(frozen=True, slots=True)
class _Staged:
    """What a task wrote (uncommitted files), the gold files they replace, and bars per interval."""

    files: list[AddAction]
    removes: list[str]
    bars: dict[str, int]


def _bars_task(task: _Task) -> _Staged:
    """A worker's part of :func:`build_gold_fanned`: the bars its new trades touch
    (:func:`_trade_bars`, as in one process), plus the other rows of the gold files holding the
    windows they replace, written as gold.ohlcv files (uncommitted)."""
    catalog = task.where.catalog()
    new = to_frame(catalog.read_files("silver.trades", task.files))
    if new.is_empty():
        return _Staged([], [], {})
    gold = None if task.gold_version is None else catalog.scan("gold.ohlcv", version=task.gold_version)
    out = _trade_bars(
        new, list(task.steps), silver=catalog.scan("silver.trades", version=task.silver_version), gold=gold
    )
    frames = [b.bars for b in out]
    removes: list[str] = []
    if task.gold_version is not None:
        replaced = pl.lit(False)
        ranges: list[tuple[dict[str, str], datetime, datetime]] = []
        for b in out:
            assert b.clusters is not None  # (not a first build)
            replaced = replaced | ((pl.col("interval") == b.every) & _in_clusters(b.clusters, "window_start"))
            ranges += [
                ({"source": "trades", "interval": b.every, "exchange": e, "symbol": sym}, lo, hi)
                for e, sym, lo, hi in b.clusters.iter_rows()
            ]
        old = catalog.files_overlapping("gold.ohlcv", version=task.gold_version, column="window_start", ranges=ranges)
        if old:
            frames.append(to_frame(catalog.read_files("gold.ohlcv", old)).filter(~replaced))
            removes = [path for path, _ in old]
    spec = GOLD["gold.ohlcv"]
    data = pl.concat([f.select(spec.schema.names) for f in frames]).to_arrow().cast(spec.schema)
    return _Staged(catalog.stage("gold.ohlcv", data), removes, {b.every: b.bars.height for b in out})


def build_gold_fanned(
    catalog: Catalog,
    fanout: _fanout.Fanout,
    *,
    intervals: list[timedelta],
    bars: BarSettings | None = None,
    book: BookSettings | None = None,
) -> GoldResult:
    """:func:`build_gold` with the trade bars built by groups of (exchange, symbol) that
    ``fanout`` runs anywhere: each task computes its symbols' bars from the silver and gold
    snapshots this process read and writes data files, with the rest of each gold file it
    replaces; this process commits them **once**, removing the replaced files, with the silver
    version consumed as the commit's application transaction (a racing job or a compaction of
    the same files since makes it stage again; a job done already writes nothing). The same
    bars as :func:`build_gold`. Exchange candles, funding (small), gold.info_bars (``bars``) and
    the book tables (``book``) are built in this process."""
    return _build(catalog, lambda result: _fan_trade_bars(catalog, fanout, intervals, result), bars=bars, book=book)


def _build(
    catalog: Catalog,
    trade_bars: Callable[[GoldResult], None],
    *,
    bars: BarSettings | None,
    book: BookSettings | None,
) -> GoldResult:
    """Every gold table, the trade bars of gold.ohlcv by ``trade_bars`` (in one process or fanned
    out). Builds take turns on a host (the whole build holds gold.ohlcv's rebuild lock: a second
    finds the first's progress and has nothing left to do); one whose commit loses (a
    compaction between its load and its commit, a build on another host, which the lock does not
    hold back: see :func:`._replace.rebuild`) runs again from the progress recorded (docs/gold.md)."""
    return _replace.rebuild(catalog, "gold.ohlcv", lambda: _build_once(catalog, trade_bars, bars=bars, book=book))


def _build_once(
    catalog: Catalog,
    trade_bars: Callable[[GoldResult], None],
    *,
    bars: BarSettings | None,
    book: BookSettings | None,
) -> GoldResult:
    result = GoldResult(book=_book.build_book(catalog, book))
    if catalog.exists("silver.trades"):
        trade_bars(result)
        result.info_bars = build_info_bars(catalog, thresholds=bars)
    if catalog.exists("silver.candles"):
        _build_exchange_candles(catalog, result)
    if catalog.exists("silver.funding"):
        _build_funding(catalog, result)
    return result


def _fan_trade_bars(catalog: Catalog, fanout: _fanout.Fanout, intervals: list[timedelta], result: GoldResult) -> None:
    steps = sorted(set(intervals))
    app_id = _trades_app(steps)
    where = _fanout.Where.of(catalog)
    for attempt in range(_ATTEMPTS):
        upto = catalog.open("silver.trades").version()
        after = catalog.transaction_version("gold.ohlcv", app_id)
        result.silver_versions["silver.trades"] = (after, upto)
        if after is not None and after >= upto:
            return
        if after is None:
            files = catalog.active_files("silver.trades", version=upto)
        else:
            files = catalog.appended_files("silver.trades", after=after, upto=upto)
        if not files or not steps:  # nothing to build: record the progress (as in one process)
            if catalog.exists("gold.ohlcv"):
                _replace.replace_windows(
                    catalog, "gold.ohlcv", pl.DataFrame(schema=_ohlcv_schema()), ["false"], (app_id, upto)
                )
            return
        catalog.create("gold.ohlcv")
        gold = catalog.open("gold.ohlcv")
        if (gold.transaction_version(app_id) or -1) >= upto:
            return
        first = after is None and not any(
            v.get("source") == "trades" for _, v in catalog.active_files("gold.ohlcv", version=gold.version())
        )
        tasks = [
            _Task(where, group, tuple(steps), upto, None if first else gold.version())
            for group in _fanout.tasks_of(files, by=("exchange", "symbol"))
        ]
        staged: list[_Staged] = fanout(_bars_task, tasks)
        try:
            catalog.commit_staged(
                "gold.ohlcv",
                [f for s in staged for f in s.files],
                snapshot=gold,
                transactions=[(app_id, upto)],
                removes=[p for s in staged for p in s.removes],
            )
        except (CommitFailedError, FilesRewritten) as exc:
            LOG.info(
                "gold.ohlcv: lost a race since version %d (%s); staging again (%d)", gold.version(), exc, attempt + 1
            )
            time.sleep(random.uniform(0, 0.05 * (attempt + 1)))
            continue
        for s in staged:
            for every, n in s.bars.items():
                result.bars_written[every] = result.bars_written.get(every, 0) + n
        return
    raise LakehouseError(f"gold.ohlcv: the build lost {_ATTEMPTS} times in a row to concurrent commits; run it again")
