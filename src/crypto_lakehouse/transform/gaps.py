"""Gaps in silver: trade-id gaps (Binance aggTrade ids are contiguous per symbol), missing closed
candles, silences in the funding stream, and **coverage gaps**: time no streaming session covered
(``bronze.sessions``: a writer stopped, crashed, or was killed before its first commit), at the
head, between and at the tail of the sessions; recorded in ``silver.gaps`` and filled by backfill.

Detection scans silver itself each run (not just the new rows), so it also finds gaps left by a
run that crashed between its silver commit and its gap bookkeeping.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import polars as pl

from crypto_lakehouse.durations import candle_interval
from crypto_lakehouse.schemas import SESSIONS, table_spec
from crypto_lakehouse.storage import Catalog
from crypto_lakehouse.storage.frames import to_frame
from crypto_lakehouse.transform.history import VenueHistory
from crypto_lakehouse.transform.plans import PLANS, Promote, QualityReport, SilverOptions

__all__ = ["SESSION_GRACE", "TIME_FILL_WINDOW", "coverage_gaps", "detect_gaps", "fill_gaps"]

LOG = logging.getLogger(__name__)
_UTC = pl.Datetime("us", "UTC")
_KEY = ["exchange", "symbol", "table", "interval", "first_id", "start"]
_SCHEMA = pl.Schema(
    {
        "exchange": pl.String(),
        "symbol": pl.String(),
        "table": pl.String(),
        "interval": pl.String(),
        "first_id": pl.Int64(),
        "last_id": pl.Int64(),
        "start": _UTC,
        "end": _UTC,
        "reason": pl.String(),
    }
)
# a session whose last heartbeat is older than this is dead (3 missed heartbeats of 30 s)
SESSION_GRACE = timedelta(seconds=90)
# a coverage gap is backfilled by time at most this much per run (a long outage catches up over runs)
TIME_FILL_WINDOW = timedelta(hours=1)


def _scan(catalog: Catalog, table: str) -> pl.LazyFrame | None:
    if not catalog.exists(table):
        return None
    return catalog.scan(table)


def _empty() -> pl.DataFrame:
    return pl.DataFrame(schema=_SCHEMA)


def _id_gaps(trades: pl.LazyFrame | pl.DataFrame) -> pl.DataFrame:
    """Runs of trade ids missing between the lowest and highest id of each (exchange, symbol)
    in silver-shaped ``trades`` (Binance aggTrade ids are contiguous): one row per run, with
    ``first_id``/``last_id`` inclusive."""
    return (
        trades.lazy()
        .select("exchange", "symbol", "id")
        .group_by("exchange", "symbol")
        .agg(  # sort each symbol's integer ids (cheaper than sorting the frame by string keys)
            (ids := pl.col("id").sort()).shift(1).filter(ids.diff() > 1).add(1).alias("first_id"),
            ids.filter(ids.diff() > 1).sub(1).alias("last_id"),
        )
        .explode("first_id", "last_id")
        .drop_nulls("first_id")
        .select(
            "exchange",
            "symbol",
            pl.lit("silver.trades").alias("table"),
            pl.lit(None, pl.String).alias("interval"),
            "first_id",
            "last_id",
            pl.lit(None, _UTC).alias("start"),
            pl.lit(None, _UTC).alias("end"),
            pl.lit(None, pl.String).alias("reason"),
        )
        .collect()
    )


def _candle_gaps(candles: pl.LazyFrame | pl.DataFrame) -> pl.DataFrame:
    """Windows missing between consecutive candles of each (exchange, symbol, interval) in
    silver-shaped ``candles``: ``[start, end)`` from where the next candle should have opened
    (one interval on, calendar months included) to where the next one did. Candles of an
    interval :func:`candle_interval` does not know are left out."""
    c = candles.lazy().select("exchange", "symbol", "interval", "start").unique().collect()
    offsets = {iv: ci.offset for iv in c.get_column("interval").unique().to_list() if (ci := candle_interval(iv))}
    c = c.filter(pl.col("interval").is_in(list(offsets))).with_columns(
        pl.col("interval").replace_strict(offsets, return_dtype=pl.String).alias("offset")
    )
    return (
        c.sort("exchange", "symbol", "interval", "start")
        .with_columns(
            pl.col("start").shift(1).over("exchange", "symbol", "interval").dt.offset_by(pl.col("offset")).alias("next")
        )
        .filter(pl.col("start") > pl.col("next"))
        .select(
            "exchange",
            "symbol",
            pl.lit("silver.candles").alias("table"),
            "interval",
            pl.lit(None, pl.Int64).alias("first_id"),
            pl.lit(None, pl.Int64).alias("last_id"),
            pl.col("next").alias("start"),
            pl.col("start").alias("end"),
            pl.lit(None, pl.String).alias("reason"),
        )
    )


def _funding_gaps(funding: pl.LazyFrame | pl.DataFrame, *, funding_gap: timedelta) -> pl.DataFrame:
    """Silences longer than ``funding_gap`` between consecutive streamed funding rows of each
    (exchange, symbol) in silver-shaped ``funding``: ``start`` 1 µs after the earlier row,
    ``end`` the later row's ``ts``. Only streamed rows count (backfilled settlements are hours
    apart by nature)."""
    return (
        funding.lazy()
        .filter(pl.col("source") == "stream")
        .select("exchange", "symbol", "ts")
        .sort("exchange", "symbol", "ts")
        .with_columns(pl.col("ts").shift(1).over("exchange", "symbol").alias("prev"))
        .filter(pl.col("ts") - pl.col("prev") > funding_gap)
        .select(
            "exchange",
            "symbol",
            pl.lit("silver.funding").alias("table"),
            pl.lit(None, pl.String).alias("interval"),
            pl.lit(None, pl.Int64).alias("first_id"),
            pl.lit(None, pl.Int64).alias("last_id"),
            (pl.col("prev") + pl.duration(microseconds=1)).alias("start"),
            pl.col("ts").alias("end"),
            pl.lit(None, pl.String).alias("reason"),
        )
        .collect()
    )


def coverage_gaps(
    sessions: pl.DataFrame, *, now: datetime, grace: timedelta = SESSION_GRACE, covered: pl.DataFrame | None = None
) -> pl.DataFrame:
    """Time no streaming session of trades covered, per (exchange, symbol): between sessions and
    after the last one when none is running (``now`` closes it), from the first session on.

    ``sessions`` holds ``bronze.sessions`` events. A session covers [its start, its last event]
    (its heartbeats), or up to ``now`` while it is alive (no ``end``, last event within
    ``grace``, and its writer id has started no newer session): a session killed without a
    trace of its end covers up to its last heartbeat, conservatively. ``covered`` (exchange,
    symbol, start, end) adds ranges filled otherwise (backfilled coverage gaps). Columns:
    exchange, symbol, start, end, reason."""
    out_schema = pl.Schema(
        {"exchange": pl.String(), "symbol": pl.String(), "start": _UTC, "end": _UTC, "reason": pl.String()}
    )
    trades = sessions.filter(pl.col("channels").list.contains("trades"))
    if trades.is_empty():
        return pl.DataFrame(schema=out_schema)
    runs = (
        trades.group_by("session_id", "exchange")
        .agg(
            pl.col("writer_id").first(),
            pl.col("symbols").first(),
            pl.col("at").min().alias("start"),
            pl.col("at").max().alias("last"),
            (pl.col("event") == "end").any().alias("ended"),
            pl.col("reason").filter(pl.col("event") == "end").first().alias("why"),
        )
        .with_columns(  # a writer id runs in one process at a time: a newer session of it ends the older
            superseded=pl.col("start").rank("ordinal", descending=True).over("writer_id", "exchange") > 1
        )
        .with_columns(
            alive=~pl.col("ended") & ~pl.col("superseded") & (pl.lit(now).cast(_UTC) - pl.col("last") <= grace)
        )
        .with_columns(
            end=pl.when("alive").then(pl.lit(now).cast(_UTC)).otherwise("last"),
            cause=pl.when("ended")
            .then(pl.format("writer {} stopped ({})", "writer_id", pl.col("why").fill_null("no reason given")))
            .otherwise(pl.format("writer {} went silent (killed or cut off)", "writer_id")),
        )
        .explode("symbols")
        .rename({"symbols": "symbol"})
        .select("exchange", "symbol", "start", "end", "cause")
    )
    if covered is not None and not covered.is_empty():
        runs = pl.concat(
            [runs, covered.select("exchange", "symbol", "start", "end", pl.lit("backfilled").alias("cause"))]
        )
    gaps = []
    for (exchange, symbol), group in runs.sort("start").group_by("exchange", "symbol", maintain_order=True):
        reach, cause = None, None
        for start, end, why in group.select("start", "end", "cause").iter_rows():
            if reach is not None and start > reach:
                gaps.append((exchange, symbol, reach, start, f"no session streamed: {cause}"))
            if reach is None or end >= reach:
                reach, cause = end, why
        if reach is not None and reach < now:
            gaps.append((exchange, symbol, reach, now, f"no session streaming since: {cause}"))
    return pl.DataFrame(gaps, schema=out_schema, orient="row")


def detect_gaps(catalog: Catalog, *, funding_gap: timedelta, now: datetime | None = None) -> pl.DataFrame:
    """Every range currently missing from silver (columns of ``silver.gaps`` up to ``end``, and
    ``reason``: the cause where one is known)."""
    now = now or datetime.now(UTC)
    frames = [_empty()]
    if catalog.exists(SESSIONS.name):
        sessions = catalog.frame(SESSIONS.name)
        previous = _previous(catalog)
        filled = previous.filter(
            (pl.col("table") == "silver.trades") & pl.col("first_id").is_null() & (pl.col("status") == "filled")
        )
        frames.append(
            coverage_gaps(sessions, now=now, covered=filled).select(
                "exchange",
                "symbol",
                pl.lit("silver.trades").alias("table"),
                pl.lit(None, pl.String).alias("interval"),
                pl.lit(None, pl.Int64).alias("first_id"),
                pl.lit(None, pl.Int64).alias("last_id"),
                "start",
                "end",
                "reason",
            )
        )
    trades = _scan(catalog, "silver.trades")
    if trades is not None:
        frames.append(_id_gaps(trades))
    candles = _scan(catalog, "silver.candles")
    if candles is not None:
        frames.append(_candle_gaps(candles))
    funding = _scan(catalog, "silver.funding")
    if funding is not None:
        frames.append(_funding_gaps(funding, funding_gap=funding_gap))
    return pl.concat([f.cast(_SCHEMA) for f in frames], how="vertical")


def _previous(catalog: Catalog) -> pl.DataFrame:
    spec = table_spec("silver.gaps")
    if catalog.exists("silver.gaps"):
        return catalog.frame("silver.gaps")
    return pl.DataFrame(schema=pl.Schema(to_frame(spec.schema.empty_table()).schema))


def _probe_tails(
    current: pl.DataFrame, backfiller: VenueHistory | None, *, now: datetime
) -> tuple[pl.DataFrame, dict[tuple[str, str, datetime], pl.DataFrame]]:
    """Open-ended coverage gaps (no session streaming until ``now``) are gaps only if the venue
    traded in them: ask its REST history (at most :data:`TIME_FILL_WINDOW` from the start). A
    quiet tail is dropped (and probed again next run); the trades fetched are kept for the fill.
    Without a backfiller nothing can be asked: the tail stays a gap."""
    if backfiller is None:
        return current, {}
    tails = current.filter((pl.col("table") == "silver.trades") & pl.col("first_id").is_null() & (pl.col("end") == now))
    fetched: dict[tuple[str, str, datetime], pl.DataFrame] = {}
    quiet = []
    for exchange, symbol, start in tails.select("exchange", "symbol", "start").iter_rows():
        end = min(now, start + TIME_FILL_WINDOW)
        try:
            raw = backfiller.trades_by_time(exchange, symbol, start, end)
        except Exception as exc:  # noqa: BLE001 - it stays a gap; the fill retries and reports it
            LOG.warning("could not ask %s for %s trades since %s: %s", exchange, symbol, start, exc)
            continue
        if raw.is_empty() and end == now:
            quiet.append((exchange, symbol, start))
        else:
            fetched[(exchange, symbol, start)] = raw
    if not quiet:
        return current, fetched
    drop = pl.DataFrame(quiet, schema={"exchange": pl.String, "symbol": pl.String, "start": _UTC}, orient="row")
    is_tail = (pl.col("table") == "silver.trades") & pl.col("first_id").is_null()
    return pl.concat(
        [current.filter(~is_tail), current.filter(is_tail).join(drop, on=["exchange", "symbol", "start"], how="anti")]
    ), fetched


def _short_tails(
    catalog: Catalog, current: pl.DataFrame, backfiller: VenueHistory | None, *, now: datetime
) -> pl.DataFrame:
    """Where trade ids are contiguous and no session is streaming a symbol, compare silver's last
    id with the venue's latest (REST): trades after it are an id gap, whatever their timestamps
    say (a stream stopped while trades were in flight misses trades stamped before its end)."""
    if backfiller is None or not catalog.exists("silver.trades") or not catalog.exists(SESSIONS.name):
        return _empty()
    sessions = catalog.frame(SESSIONS.name)
    idle = coverage_gaps(sessions, now=now).filter(pl.col("end") == now)
    out = [_empty()]
    last = catalog.scan("silver.trades").group_by("exchange", "symbol").agg(pl.col("id").max().alias("last")).collect()
    for exchange, symbol in idle.select("exchange", "symbol").unique().iter_rows():
        try:
            if not backfiller.contiguous_trade_ids(exchange):
                continue
            latest = backfiller.latest_trade_id(exchange, symbol)
        except Exception as exc:  # noqa: BLE001 - unknown venue or REST trouble: nothing to compare
            LOG.warning("could not ask %s for its latest %s trade id: %s", exchange, symbol, exc)
            continue
        have = last.filter(exchange=exchange, symbol=symbol)["last"]
        if latest is None or have.is_empty() or latest <= have[0]:
            continue
        known = current.filter(exchange=exchange, symbol=symbol, table="silver.trades", first_id=have[0] + 1)
        if known.height:
            continue
        out.append(
            pl.DataFrame(
                [
                    (
                        exchange,
                        symbol,
                        "silver.trades",
                        None,
                        have[0] + 1,
                        latest,
                        None,
                        None,
                        f"no session streaming; the venue's latest trade id is {latest}, silver's {have[0]}",
                    )
                ],
                schema=_SCHEMA,
                orient="row",
            )  # fmt: skip
        )
    return pl.concat(out, how="vertical")


def fill_gaps(
    catalog: Catalog,
    *,
    backfiller: VenueHistory | None,
    report: QualityReport,
    now: datetime,
    options: SilverOptions,
    promote: Promote,
) -> pl.DataFrame:
    """Record new gaps, close those no longer missing, try to backfill the open ones, and rewrite
    ``silver.gaps``. Returns the gaps table as written.

    A coverage gap is filled by time; where ids are contiguous that can reveal an id gap (trades
    the stream received late are stamped before the session's end), which a second pass fills
    in the same run (at most :data:`_PASSES` passes). Without a ``backfiller`` gaps are recorded,
    not filled; ``promote`` writes the rows it returns, ``report`` counts what was found and filled."""
    gaps, again = _fill_pass(catalog, backfiller=backfiller, report=report, now=now, options=options, promote=promote)
    for _ in range(_PASSES - 1):
        if not again:
            break
        gaps, again = _fill_pass(
            catalog, backfiller=backfiller, report=report, now=now, options=options, promote=promote
        )
    return gaps


_PASSES = 3


def _fill_pass(
    catalog: Catalog,
    *,
    backfiller: VenueHistory | None,
    report: QualityReport,
    now: datetime,
    options: SilverOptions,
    promote: Promote,
) -> tuple[pl.DataFrame, bool]:
    """One pass of :func:`fill_gaps`; True when a fill by time added rows (look again)."""
    by_time_added = False

    current = detect_gaps(catalog, funding_gap=options.funding_gap, now=now)
    current, fetched = _probe_tails(current, backfiller, now=now)
    current = pl.concat([current, _short_tails(catalog, current, backfiller, now=now)], how="vertical")
    previous = _previous(catalog)
    if current.is_empty() and previous.is_empty():
        return previous, False
    was_open = previous.filter(pl.col("status") == "open")
    history = previous.filter(pl.col("status") != "open")
    closed = was_open.join(current, on=_KEY, how="anti", nulls_equal=True).with_columns(
        pl.lit("filled").alias("status"),
        pl.lit(now).cast(_UTC).alias("filled_at"),
        pl.lit("no longer missing").alias("reason"),
    )
    # still missing: an open-ended range (a tail no session covers) reaches further each run
    still_open = was_open.drop("end", "last_id").join(
        current.select(*_KEY, "end", "last_id"), on=_KEY, how="inner", nulls_equal=True
    )
    new = current.join(previous, on=_KEY, how="anti", nulls_equal=True).with_columns(
        pl.lit(now).cast(_UTC).alias("detected_at"),
        pl.lit("open").alias("status"),
        pl.lit(0, pl.Int64).alias("attempts"),
        pl.lit(0, pl.Int64).alias("rows_filled"),
        pl.lit(None, _UTC).alias("filled_at"),
    )
    if new.is_empty() and closed.is_empty() and still_open.is_empty():
        return previous, False  # nothing changed: no commit
    for row in new.iter_rows(named=True):
        report.add(row["table"], "gaps_found", value=1, exchange=row["exchange"], symbol=row["symbol"])
    columns = [f.name for f in table_spec("silver.gaps").schema]
    todo = pl.concat([still_open.select(columns), new.select(columns)], how="vertical")
    done = []
    for gap in todo.iter_rows(named=True):
        if backfiller is None:
            gap["reason"] = gap["reason"] or "backfill disabled"
            done.append(gap)
            continue
        gap["attempts"] += 1
        try:
            table = gap["table"]
            partial = False  # a trade gap bigger than one run's budget
            if table == "silver.trades" and gap["first_id"] is None:  # time no session covered
                end = min(gap["end"], gap["start"] + TIME_FILL_WINDOW)  # the rest is a new gap next run
                raw = fetched.get((gap["exchange"], gap["symbol"], gap["start"]))
                if raw is None:
                    raw = backfiller.trades_by_time(gap["exchange"], gap["symbol"], gap["start"], end)
                expected = got = raw.height  # unknown in advance: id gaps (next run) check what it returned
                gap["end"] = end
            elif table == "silver.trades":
                # bounded per run: a huge gap (say, between old archives and the stream) continues next run
                last = min(gap["last_id"], gap["first_id"] + options.backfill_max_trades - 1)
                partial = last < gap["last_id"]
                raw = backfiller.trades_by_id(gap["exchange"], gap["symbol"], gap["first_id"], last)
                expected = last - gap["first_id"] + 1
                got = raw.get_column("id").cast(pl.Int64).n_unique()
            elif table == "silver.candles":
                raw = backfiller.candles(gap["exchange"], gap["symbol"], gap["interval"], gap["start"], gap["end"])
                step = candle_interval(gap["interval"])
                if step is None:  # silver quarantines candles of such intervals: no gap has one
                    raise ValueError(f"{gap['interval']!r} is not a candle interval")
                expected = step.count(gap["start"], gap["end"])
                got = raw.height
            else:
                raw = backfiller.funding(gap["exchange"], gap["symbol"], gap["start"], gap["end"])
                expected = got = raw.height  # the exchange keeps settlements only: take what it has
            added = promote(PLANS[table], raw)
            by_time_added |= bool(added) and table == "silver.trades" and gap["first_id"] is None
            gap["rows_filled"] += added
            report.add(table, "backfilled_rows", value=added, exchange=gap["exchange"], symbol=gap["symbol"])
            if got < expected:
                gap["reason"] = f"the exchange returned {got} of {expected} missing rows; retried next run"
            elif partial:
                total = gap["last_id"] - gap["first_id"] + 1
                gap["reason"] = f"filled {got} of {total} ids (backfill_max_trades per run); continues next run"
            else:
                how = " (trades in that time)" if table == "silver.trades" and gap["first_id"] is None else ""
                gap.update(status="filled", filled_at=now, reason=f"backfilled {got} rows over REST{how}")
                report.add(table, "gaps_filled", value=1, exchange=gap["exchange"], symbol=gap["symbol"])
        except Exception as exc:  # network, exchange or validation trouble: keep it open, retry next run
            LOG.warning("backfill of %s %s %s failed: %s", gap["table"], gap["exchange"], gap["symbol"], exc)
            gap["reason"] = f"{type(exc).__name__}: {exc}"
        done.append(gap)
    out = pl.concat(
        [history.select(columns), closed.select(columns), pl.DataFrame(done, schema=todo.schema).select(columns)],
        how="vertical",
    )
    catalog.overwrite("silver.gaps", out.to_arrow().cast(table_spec("silver.gaps").schema))
    return out, by_time_added
