"""Gaps in silver, found by the checks each venue allows (its :class:`VenueChecks`, from the venue
registry): trade-id gaps where the venue's ids are contiguous per symbol, book-sequence breaks
where its book updates carry sequences (``per_update``: each +1; ``per_range``: a resync snapshot
past the last update), missing closed candles, silences in the funding stream, and **coverage
gaps** for every venue: time no streaming session covered (``bronze.sessions``: a writer stopped,
crashed, or was killed before its first commit), at the head, between and at the tail of the
sessions; recorded in ``silver.gaps`` with the check that found them, and filled by backfill where
the venue can (else recorded ``unfillable`` with the reason, and not retried).

Detection scans silver itself each run (not just the new rows), so it also finds gaps left by a
run that crashed between its silver commit and its gap bookkeeping.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl
from deltalake import DeltaTable

import crypto_lakehouse.transform._replace as _replace
from crypto_lakehouse.durations import candle_interval
from crypto_lakehouse.errors import GapUnfillable
from crypto_lakehouse.schemas import SESSIONS, table_spec
from crypto_lakehouse.storage import Catalog
from crypto_lakehouse.storage.frames import to_frame
from crypto_lakehouse.transform.history import VenueHistory
from crypto_lakehouse.transform.plans import PLANS, Promote, QualityReport, SilverOptions, VenueChecks

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
        "check": pl.String(),
    }
)
_OPEN, _FILLED, _UNFILLABLE = "open", "filled", "unfillable"
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


def _gaps(
    frame: pl.LazyFrame,
    *,
    table: str,
    check: str,
    interval: pl.Expr | None = None,
    first_id: pl.Expr | None = None,
    last_id: pl.Expr | None = None,
    start: pl.Expr | None = None,
    end: pl.Expr | None = None,
    reason: pl.Expr | None = None,
) -> pl.LazyFrame:
    """``frame`` (with exchange and symbol) as gap rows in :data:`_SCHEMA`'s columns; what is
    not given is null."""

    def given(expr: pl.Expr | None, name: str) -> pl.Expr:
        return (pl.lit(None, _SCHEMA[name]) if expr is None else expr).alias(name)

    return frame.select(
        "exchange",
        "symbol",
        pl.lit(table).alias("table"),
        given(interval, "interval"),
        given(first_id, "first_id"),
        given(last_id, "last_id"),
        given(start, "start"),
        given(end, "end"),
        given(reason, "reason"),
        pl.lit(check).alias("check"),
    )


def _id_gaps(trades: pl.LazyFrame | pl.DataFrame, *, contiguous: Collection[str]) -> pl.DataFrame:
    """Runs of trade ids missing between the lowest and highest id of each (exchange, symbol)
    in silver-shaped ``trades``, for the ``contiguous`` exchanges only (ids +1 per trade per
    symbol; any other kind of id says nothing of completeness): one row per run, with
    ``first_id``/``last_id`` inclusive. Computed on the sorted set of ids, so ids that arrive
    out of order (HTX) are no gap."""
    runs = (
        trades.lazy()
        .filter(pl.col("exchange").is_in(list(contiguous)))
        .select("exchange", "symbol", "id")
        .drop_nulls("id")
        .group_by("exchange", "symbol")
        .agg(  # sort each symbol's integer ids (cheaper than sorting the frame by string keys)
            (ids := pl.col("id").sort()).shift(1).filter(ids.diff() > 1).add(1).alias("first_id"),
            ids.filter(ids.diff() > 1).sub(1).alias("last_id"),
        )
        .explode("first_id", "last_id")
        .drop_nulls("first_id")
    )
    return _gaps(
        runs,
        table="silver.trades",
        check="trade_ids:contiguous",
        first_id=pl.col("first_id"),
        last_id=pl.col("last_id"),
    ).collect()


def _sequence_gaps(book: pl.LazyFrame | pl.DataFrame, *, kinds: Mapping[str, str]) -> pl.DataFrame:
    """Book updates lost, per (exchange, symbol) of silver-shaped ``book``, by the exchange's kind
    of sequence (``kinds``; exchanges of kind ``none`` or not named are not checked).

    The updates (distinct sequence and snapshot flag) are taken in the order they were received
    (ties by sequence). ``per_update`` (Bybit, Kraken Futures): every update, snapshot or delta,
    is the previous one + 1, so a jump from *p* to *s* lost *p+1..s-1*. ``per_range`` (Binance,
    Deribit): an update covers ``first..last`` and bronze keeps only ``last`` (cryptofeed's
    sequence number), so the continuity of ranges cannot be checked from bronze (cryptofeed checks
    it live, ``U``/``pu``, and on a break drops the book and fetches a new snapshot); what bronze
    shows is that resync: a snapshot at *s* after an update at *p* < *s* means updates *p+1..s*
    arrived only folded into the snapshot. A sequence that goes back is no gap (a stale update,
    or the venue restarted its numbering with a snapshot)."""
    checked = {ex: k for ex, k in kinds.items() if k in ("per_update", "per_range")}
    updates = (
        book.lazy()
        .filter(pl.col("exchange").is_in(list(checked)) & pl.col("sequence").is_not_null())
        .group_by("exchange", "symbol", "sequence", "snapshot")
        .agg(pl.col("receipt_ts").min().alias("at"), pl.coalesce("ts", "receipt_ts").min().alias("time"))
        .sort("exchange", "symbol", "at", "sequence")
        .with_columns(
            pl.col("sequence").shift(1).over("exchange", "symbol").alias("prev"),
            pl.col("time").shift(1).over("exchange", "symbol").alias("prev_time"),
            pl.col("exchange").replace_strict(checked, return_dtype=pl.String).alias("kind"),
        )
    )
    per_update = pl.col("kind") == "per_update"
    last = pl.when(per_update).then(pl.col("sequence") - 1).otherwise(pl.col("sequence"))
    breaks = updates.filter(
        pl.when(per_update)
        .then(pl.col("sequence") > pl.col("prev") + 1)
        .otherwise(pl.col("snapshot") & (pl.col("sequence") > pl.col("prev")))
    ).with_columns((pl.col("prev") + 1).alias("first"), last.alias("last"))
    lost = pl.format("updates {}..{} never arrived", "first", "last")
    reason = (
        pl.when(pl.col("snapshot"))
        .then(
            pl.format(
                "book resynced: a snapshot at {} after update {} (the client found a break, or reconnected); {}",
                "sequence",
                "prev",
                pl.when(per_update)
                .then(lost)
                .otherwise(pl.format("updates {}..{} arrived only as it", "first", "last")),
            )
        )
        .otherwise(pl.format("book sequence jumped from {} to {} (+1 per update); {}", "prev", "sequence", lost))
    )
    return pl.concat(
        [
            _gaps(
                breaks.filter(pl.col("kind") == kind),
                table="silver.book",
                check=f"book_sequence:{kind}",
                first_id=pl.col("first"),
                last_id=pl.col("last"),
                start=pl.col("prev_time"),
                end=pl.col("time"),
                reason=reason,
            )
            for kind in ("per_update", "per_range")
        ]
    ).collect()


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
    missing = (
        c.lazy()
        .sort("exchange", "symbol", "interval", "start")
        .with_columns(
            pl.col("start").shift(1).over("exchange", "symbol", "interval").dt.offset_by(pl.col("offset")).alias("next")
        )
        .filter(pl.col("start") > pl.col("next"))
    )
    return _gaps(
        missing,
        table="silver.candles",
        check="candles:interval",
        interval=pl.col("interval"),
        start=pl.col("next"),
        end=pl.col("start"),
    ).collect()


def _funding_gaps(funding: pl.LazyFrame | pl.DataFrame, *, funding_gap: timedelta) -> pl.DataFrame:
    """Silences longer than ``funding_gap`` between consecutive streamed funding rows of each
    (exchange, symbol) in silver-shaped ``funding``: ``start`` 1 µs after the earlier row,
    ``end`` the later row's ``ts``. Only streamed rows count (backfilled settlements are hours
    apart by nature)."""
    silences = (
        funding.lazy()
        .filter(pl.col("source") == "stream")
        .select("exchange", "symbol", "ts")
        .sort("exchange", "symbol", "ts")
        .with_columns(pl.col("ts").shift(1).over("exchange", "symbol").alias("prev"))
        .filter(pl.col("ts") - pl.col("prev") > funding_gap)
    )
    return _gaps(
        silences,
        table="silver.funding",
        check="funding:silence",
        start=pl.col("prev") + pl.duration(microseconds=1),
        end=pl.col("ts"),
    ).collect()


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


def _exchanges(frame: pl.LazyFrame) -> list[str]:
    return frame.select("exchange").unique().collect().get_column("exchange").to_list()


def detect_gaps(catalog: Catalog, *, options: SilverOptions, now: datetime | None = None) -> pl.DataFrame:
    """Every range currently missing from silver (columns of ``silver.gaps`` up to ``end``,
    ``reason``: the cause where one is known, and ``check``: what found it), by the checks each
    venue allows (``options.checks``)."""
    now = now or datetime.now(UTC)
    frames = [_empty()]
    if catalog.exists(SESSIONS.name):
        sessions = catalog.frame(SESSIONS.name)
        previous = _previous(catalog)
        filled = previous.filter(
            (pl.col("table") == "silver.trades") & pl.col("first_id").is_null() & (pl.col("status") == _FILLED)
        )
        covered = coverage_gaps(sessions, now=now, covered=filled)
        frames.append(
            _gaps(
                covered.lazy(),
                table="silver.trades",
                check="coverage:sessions",
                start=pl.col("start"),
                end=pl.col("end"),
                reason=pl.col("reason"),
            ).collect()
        )
    trades = _scan(catalog, "silver.trades")
    if trades is not None:
        contiguous = [ex for ex in _exchanges(trades) if options.checks(ex).trade_ids == "contiguous"]
        frames.append(_id_gaps(trades, contiguous=contiguous))
    book = _scan(catalog, "silver.book")
    if book is not None:
        frames.append(_sequence_gaps(book, kinds={ex: options.checks(ex).book_sequence for ex in _exchanges(book)}))
    candles = _scan(catalog, "silver.candles")
    if candles is not None:
        frames.append(_candle_gaps(candles))
    funding = _scan(catalog, "silver.funding")
    if funding is not None:
        frames.append(_funding_gaps(funding, funding_gap=options.funding_gap))
    return pl.concat([f.cast(_SCHEMA) for f in frames], how="vertical")


def _stored(catalog: Catalog) -> DeltaTable | None:
    """The latest snapshot of ``silver.gaps`` (None: no table yet), a table an older release
    wrote having first gained this release's columns (an empty append that merges the schema:
    an overwrite does not)."""
    if not catalog.exists("silver.gaps"):
        return None
    spec = table_spec("silver.gaps")
    snapshot = catalog.open("silver.gaps")
    if not set(spec.schema.names) - set(snapshot.schema().to_arrow().names):
        return snapshot
    catalog.append("silver.gaps", spec.schema.empty_table())
    return catalog.open("silver.gaps")


def _previous(catalog: Catalog, snapshot: DeltaTable | None = None) -> pl.DataFrame:
    """``silver.gaps`` as stored (in ``snapshot`` if given, else the latest), with the columns
    of this release (those an older one did not write are null)."""
    spec = table_spec("silver.gaps")
    empty = pl.DataFrame(schema=pl.Schema(to_frame(spec.schema.empty_table()).schema))
    if snapshot is None and not catalog.exists("silver.gaps"):
        return empty
    stored = Catalog.scan_snapshot(snapshot).collect() if snapshot is not None else catalog.frame("silver.gaps")
    return stored.with_columns(pl.lit(None, t).alias(c) for c, t in empty.schema.items() if c not in stored.columns)


def _write_gaps(catalog: Catalog, gaps: pl.DataFrame, snapshot: DeltaTable | None) -> None:
    """Replace ``silver.gaps`` with ``gaps``, committed against ``snapshot``, the version they
    were decided from (a commit since raises ``CommitFailedError``); None: the table's first
    rows, committed against it created empty (a racing first pass conflicts)."""
    if snapshot is None:
        catalog.create("silver.gaps")
        snapshot = catalog.open("silver.gaps")
    catalog.overwrite("silver.gaps", gaps.to_arrow().cast(table_spec("silver.gaps").schema), snapshot=snapshot)


def _probe_tails(
    current: pl.DataFrame,
    backfiller: VenueHistory | None,
    *,
    now: datetime,
    options: SilverOptions,
    unfillable: pl.DataFrame,
) -> tuple[pl.DataFrame, dict[tuple[str, str, datetime], pl.DataFrame]]:
    """Open-ended coverage gaps (no session streaming until ``now``) are gaps only if the venue
    traded in them: ask its REST history (at most :data:`TIME_FILL_WINDOW` from the start). A
    quiet tail is dropped (and probed again next run); the trades fetched are kept for the fill.
    Without a backfiller nothing can be asked, nor of a venue that cannot backfill, nor for a
    tail already recorded ``unfillable`` (its ``_KEY`` in ``unfillable``): the tail stays a gap."""
    if backfiller is None:
        return current, {}
    tails = current.filter((pl.col("table") == "silver.trades") & pl.col("first_id").is_null() & (pl.col("end") == now))
    tails = tails.join(unfillable, on=_KEY, how="anti", nulls_equal=True)
    fetched: dict[tuple[str, str, datetime], pl.DataFrame] = {}
    quiet = []
    for exchange, symbol, start in tails.select("exchange", "symbol", "start").iter_rows():
        if options.checks(exchange).can_backfill is False:
            continue
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
    catalog: Catalog, current: pl.DataFrame, backfiller: VenueHistory | None, *, now: datetime, options: SilverOptions
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
        checks = options.checks(exchange)
        if checks.trade_ids != "contiguous" or checks.can_backfill is False:
            continue
        try:
            latest = backfiller.latest_trade_id(exchange, symbol)
        except Exception as exc:  # noqa: BLE001 - REST trouble or no such history: nothing to compare
            LOG.warning("could not ask %s for its latest %s trade id: %s", exchange, symbol, exc)
            continue
        have = last.filter(exchange=exchange, symbol=symbol)["last"]
        if latest is None or have.is_empty() or have[0] is None or latest <= have[0]:
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
                        "trade_ids:contiguous",
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
    not filled. A gap no REST can fill (a book gap; a trade gap of a venue that cannot backfill;
    one the backfiller refuses with :class:`GapUnfillable`) is recorded ``unfillable`` with the
    reason and never retried (it is still closed if it stops being missing). ``promote`` writes
    the rows it returns, ``report`` counts what was found and filled, and which checks ran on
    the (exchange, symbol) pairs this run promoted. Passes of concurrent runs take turns (a
    second reads what the first recorded: :func:`~crypto_lakehouse.transform._replace.rebuild`)."""

    def one_pass() -> tuple[pl.DataFrame, bool]:  # (a pass reads silver.gaps afresh: safe to run again)
        return _fill_pass(catalog, backfiller=backfiller, report=report, now=now, options=options, promote=promote)

    gaps, again = _replace.rebuild(catalog, "silver.gaps", one_pass)
    for _ in range(_PASSES - 1):
        if not again:
            break
        gaps, again = _replace.rebuild(catalog, "silver.gaps", one_pass)
    _report_checks(catalog, gaps, report=report, options=options)
    return gaps


_PASSES = 3


def _trade_ids_detail(checks: VenueChecks) -> str:
    if checks.trade_ids == "contiguous":
        return "contiguous ids: holes in each symbol's sorted ids"
    return f"skipped: {checks.trade_ids} ids" + ("" if checks.known else " (venue not in the registry)")


_BOOK_DETAIL = {
    "per_update": "per_update: each update's sequence is the previous one + 1",
    "per_range": "per_range: a resync snapshot past the last update (bronze keeps each update's last id only)",
}


def _report_checks(catalog: Catalog, gaps: pl.DataFrame, *, report: QualityReport, options: SilverOptions) -> None:
    """Add to ``report`` which checks ran on each (exchange, symbol) of silver.trades and
    silver.book this run promoted rows of, how, and how many of its gaps are not filled."""
    missing = gaps.filter(pl.col("status") != _FILLED)
    counts = {
        (ex, sym, check): n for ex, sym, check, n in missing.group_by("exchange", "symbol", "check").len().iter_rows()
    }
    sessions = catalog.exists(SESSIONS.name)
    for ex, sym in report.pairs("silver.trades"):
        checks = options.checks(ex)
        found = counts.get((ex, sym, "trade_ids:contiguous"), 0)
        report.checked(
            "silver.trades", "trade_ids", exchange=ex, symbol=sym, detail=_trade_ids_detail(checks), found=found
        )
        detail = "sessions: time no bronze.sessions session covered" if sessions else "skipped: no session recorded"
        found = counts.get((ex, sym, "coverage:sessions"), 0)
        report.checked("silver.trades", "coverage", exchange=ex, symbol=sym, detail=detail, found=found)
    for ex, sym in report.pairs("silver.book"):
        kind = options.checks(ex).book_sequence
        detail = _BOOK_DETAIL.get(kind, f"skipped: book sequence {kind}")
        found = counts.get((ex, sym, f"book_sequence:{kind}"), 0)
        report.checked("silver.book", "book_sequence", exchange=ex, symbol=sym, detail=detail, found=found)


def _unfillable(gap: dict[str, Any], checks: VenueChecks) -> str | None:
    """Why ``gap`` cannot be backfilled, known before asking any REST (None: try)."""
    if gap["table"] == "silver.book":
        return "no venue serves past book updates over REST (the next snapshot restored the book, not the updates)"
    if gap["table"] == "silver.trades" and checks.can_backfill is False:
        return f"{checks.exchange}'s REST serves only its latest trades, or none: it cannot backfill (docs/venues.md)"
    return None


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

    snapshot = _stored(catalog)
    previous = _previous(catalog, snapshot)
    tracked = previous.filter(pl.col("status").is_in([_OPEN, _UNFILLABLE]))
    current = detect_gaps(catalog, options=options, now=now)
    current, fetched = _probe_tails(
        current, backfiller, now=now, options=options, unfillable=tracked.filter(status=_UNFILLABLE).select(_KEY)
    )
    current = pl.concat([current, _short_tails(catalog, current, backfiller, now=now, options=options)], how="vertical")
    if current.is_empty() and previous.is_empty():
        return previous, False
    history = previous.filter(~pl.col("status").is_in([_OPEN, _UNFILLABLE]))
    closed = tracked.join(current, on=_KEY, how="anti", nulls_equal=True).with_columns(
        pl.lit(_FILLED).alias("status"),
        pl.lit(now).cast(_UTC).alias("filled_at"),
        pl.lit("no longer missing").alias("reason"),
    )
    # still missing: an open-ended range (a tail no session covers) reaches further each run
    still = tracked.drop("end", "last_id", "check").join(
        current.select(*_KEY, "end", "last_id", "check"), on=_KEY, how="inner", nulls_equal=True
    )
    still_open, kept = still.filter(status=_OPEN), still.filter(status=_UNFILLABLE)  # unfillable: not retried
    moved = kept.join(tracked, on=[*_KEY, "end", "last_id", "check"], how="anti", nulls_equal=True)
    new = current.join(previous, on=_KEY, how="anti", nulls_equal=True).with_columns(
        pl.lit(now).cast(_UTC).alias("detected_at"),
        pl.lit(_OPEN).alias("status"),
        pl.lit(0, pl.Int64).alias("attempts"),
        pl.lit(0, pl.Int64).alias("rows_filled"),
        pl.lit(None, _UTC).alias("filled_at"),
    )
    if new.is_empty() and closed.is_empty() and still_open.is_empty() and moved.is_empty():
        return previous, False  # nothing changed: no commit
    for row in new.iter_rows(named=True):
        report.add(row["table"], "gaps_found", value=1, exchange=row["exchange"], symbol=row["symbol"])
    columns = [f.name for f in table_spec("silver.gaps").schema]
    todo = pl.concat([still_open.select(columns), new.select(columns)], how="vertical")
    done = []
    for gap in todo.iter_rows(named=True):
        why = _unfillable(gap, options.checks(gap["exchange"]))
        if why is not None:
            done.append(_mark_unfillable(gap, why, report))
            continue
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
                gap.update(status=_FILLED, filled_at=now, reason=f"backfilled {got} rows over REST{how}")
                report.add(table, "gaps_filled", value=1, exchange=gap["exchange"], symbol=gap["symbol"])
        except GapUnfillable as exc:  # the venue's REST cannot reach it: record why, never retry
            done.append(_mark_unfillable(gap, str(exc), report))
            continue
        except Exception as exc:  # network, exchange or validation trouble: keep it open, retry next run
            LOG.warning("backfill of %s %s %s failed: %s", gap["table"], gap["exchange"], gap["symbol"], exc)
            gap["reason"] = f"{type(exc).__name__}: {exc}"
        done.append(gap)
    out = pl.concat(
        [
            history.select(columns),
            closed.select(columns),
            kept.select(columns),
            pl.DataFrame(done, schema=todo.schema).select(columns),
        ],
        how="vertical",
    )
    _write_gaps(catalog, out, snapshot)
    return out, by_time_added


def _mark_unfillable(gap: dict[str, Any], why: str, report: QualityReport) -> dict[str, Any]:
    """``gap`` recorded unfillable: its cause (where known) and why no REST can fill it."""
    gap.update(status=_UNFILLABLE, reason=f"{gap['reason']}; unfillable: {why}" if gap["reason"] else why)
    report.add(gap["table"], "gaps_unfillable", value=1, exchange=gap["exchange"], symbol=gap["symbol"])
    return gap
