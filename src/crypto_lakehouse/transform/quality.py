"""The completeness ledger, ``gold.completeness``: per (exchange, symbol, channel, UTC day) what
silver holds and what it misses, and one data-quality score (docs/quality.md).

A row counts the day's rows in silver, its rows in ``silver.quarantine``, the seconds of the day
some writer session streamed the channel (``bronze.sessions``), a backfill filled or an archive
imported, trade ids expected vs present where the venue's ids are contiguous, book sequence
breaks, and the gaps (``silver.gaps``) overlapping the day by status. The score multiplies the
share of time covered, of ids present and of rows valid, and divides by one plus the unfilled
gaps (open or unfillable): a day with an unfilled gap never scores 1 and is never ``complete``
(which also needs the day over and its whole time covered, not merely unknown).

Built at the end of every promote-silver run (after its gaps are filled): the ledger's inputs are
silver's tables, ``silver.gaps`` (written only by that step) and the sessions, none of which gold
changes, so the ledger a promote publishes is never a run behind. Incremental like gold: the
commit carries one application transaction ``("completeness:<table>", <version>)`` per input; a
run reads what each input gained since (rows appended; for ``silver.gaps``, rewritten whole each
run, the rows that changed), recomputes exactly the days they touch (per stream, the range from
the first to the last) and replaces them in **one** commit. Nothing new: nothing written.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta

import polars as pl

import crypto_lakehouse.transform._replace as _replace
from crypto_lakehouse.schemas import GOLD, SESSIONS
from crypto_lakehouse.storage import Catalog
from crypto_lakehouse.storage.frames import to_frame
from crypto_lakehouse.transform.gaps import SESSION_GRACE
from crypto_lakehouse.transform.plans import SilverOptions

__all__ = ["CHANNELS", "LEDGER", "build_completeness", "ledger_rows", "score", "session_spans"]

LOG = logging.getLogger(__name__)
LEDGER = "gold.completeness"
# ledger channel (the silver table's kind) -> the cryptofeed channels a session streams it by
CHANNELS: dict[str, tuple[str, ...]] = {
    "trades": ("trades",),
    "book": ("l2_book",),
    "ticker": ("ticker", "l1_book"),
    "funding": ("funding",),
    "liquidations": ("liquidations",),
    "candles": ("candles",),
}
_FEED = {feed: channel for channel, feeds in CHANNELS.items() for feed in feeds}
_UTC = pl.Datetime("us", "UTC")
_DAY = timedelta(days=1)
_STREAM = ["exchange", "symbol", "channel"]
_KEY = [*_STREAM, "date"]
_KEY_SCHEMA = pl.Schema({"exchange": pl.String(), "symbol": pl.String(), "channel": pl.String(), "date": pl.Date()})


def _app(table: str) -> str:
    return f"completeness:{table}"


def _empty_keys() -> pl.DataFrame:
    return pl.DataFrame(schema=_KEY_SCHEMA)


def _ledger_schema() -> pl.Schema:
    return to_frame(GOLD[LEDGER].schema.empty_table()).schema


# ---- sessions: the time each (exchange, symbol, channel) was streamed ------------------------


def session_spans(sessions: pl.DataFrame, *, now: datetime, grace: timedelta = SESSION_GRACE) -> pl.DataFrame:
    """What each streaming session in ``sessions`` (``bronze.sessions`` events) covered, per
    (exchange, symbol, channel of :data:`CHANNELS`): columns exchange, symbol, channel, start,
    end, session_id. As :func:`crypto_lakehouse.transform.gaps.coverage_gaps` reads them: a session covers
    [its start, its last event], or up to ``now`` while it is alive (no ``end``, last event
    within ``grace``, no newer session of its writer)."""
    schema = pl.Schema({"exchange": pl.String(), "symbol": pl.String(), "channel": pl.String()})
    if sessions.is_empty():
        return pl.DataFrame(schema={**schema, "start": _UTC, "end": _UTC, "session_id": pl.String()})
    return (
        sessions.group_by("session_id", "exchange")
        .agg(
            pl.col("writer_id").first(),
            pl.col("symbols").first(),
            pl.col("channels").first(),
            pl.col("at").min().alias("start"),
            pl.col("at").max().alias("last"),
            (pl.col("event") == "end").any().alias("ended"),
        )
        .with_columns(newer=pl.col("start").rank("ordinal", descending=True).over("writer_id", "exchange") > 1)
        .with_columns(
            end=pl.when(~pl.col("ended") & ~pl.col("newer") & (pl.lit(now).cast(_UTC) - pl.col("last") <= grace))
            .then(pl.lit(now).cast(_UTC))
            .otherwise("last")
        )
        .explode("symbols")
        .explode("channels")
        .filter(pl.col("channels").is_in(list(_FEED)))
        .select(
            "exchange",
            pl.col("symbols").alias("symbol"),
            pl.col("channels").replace_strict(_FEED, return_dtype=pl.String).alias("channel"),
            "start",
            "end",
            "session_id",
        )
        .unique()
    )


def _merged(spans: Iterable[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    """``spans`` as sorted disjoint intervals."""
    out: list[tuple[datetime, datetime]] = []
    for lo, hi in sorted(spans):
        if out and lo <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def _day_bounds(day: date, now: datetime) -> tuple[datetime, datetime]:
    start = datetime.combine(day, datetime.min.time(), tzinfo=UTC)
    return start, max(start, min(start + _DAY, now))


def _covered(keys: pl.DataFrame, spans: pl.DataFrame, *, now: datetime) -> pl.DataFrame:
    """Seconds of each key's day (up to ``now``) inside the union of its stream's ``spans``;
    null for a stream no span ever covered."""
    by_stream: dict[tuple[str, str, str], list[tuple[datetime, datetime]]] = {}
    for e, s, c, lo, hi in spans.select(*_STREAM, "start", "end").iter_rows():
        by_stream.setdefault((e, s, c), []).append((lo, hi))
    merged = {k: _merged(v) for k, v in by_stream.items()}
    seconds: list[float | None] = []
    for e, s, c, day in keys.select(_KEY).iter_rows():
        intervals = merged.get((e, s, c))
        if intervals is None:
            seconds.append(None)
            continue
        lo, hi = _day_bounds(day, now)
        seconds.append(sum(max(0.0, (min(b, hi) - max(a, lo)).total_seconds()) for a, b in intervals))
    return keys.select(_KEY).with_columns(pl.Series("covered_seconds", seconds, dtype=pl.Float64))


# ---- gaps and quarantine by day ----------------------------------------------------------------


def _trade_days(catalog: Catalog, pairs: pl.DataFrame, *, until: date | None = None) -> pl.DataFrame:
    """Per (exchange, symbol) of ``pairs`` and day of silver.trades (up to ``until``): rows,
    whether an archive filled it, lowest, highest and distinct ids, and ``prev_max``: the
    highest id of the days before (null on its first day)."""
    schema = {"exchange": pl.String(), "symbol": pl.String(), "date": pl.Date()}
    if pairs.is_empty() or not catalog.exists("silver.trades"):
        return pl.DataFrame(
            schema={**schema, "rows": pl.UInt32(), "archive": pl.Boolean(), "id_min": pl.Int64(), "id_max": pl.Int64()}
        ).with_columns(pl.lit(None, pl.UInt32).alias("ids"), pl.lit(None, pl.Int64).alias("prev_max"))
    return (
        catalog.scan("silver.trades")
        .filter(
            pl.col("exchange").is_in(pairs["exchange"].unique().to_list())
            & pl.col("symbol").is_in(pairs["symbol"].unique().to_list())
        )
        .filter(pl.lit(True) if until is None else pl.col("date") <= until)
        .join(pairs.lazy().select("exchange", "symbol").unique(), on=["exchange", "symbol"], how="semi")
        .group_by("exchange", "symbol", "date")
        .agg(
            pl.len().alias("rows"),
            (pl.col("source") == "archive").any().alias("archive"),
            pl.col("id").min().alias("id_min"),
            pl.col("id").max().alias("id_max"),
            pl.col("id").drop_nulls().n_unique().alias("ids"),
        )
        .sort("exchange", "symbol", "date")
        .with_columns(pl.col("id_max").cum_max().shift(1).over("exchange", "symbol").alias("prev_max"))
        .collect()
    )


def _gap_days(gaps: pl.DataFrame, trade_days: pl.DataFrame) -> pl.DataFrame:
    """Each gap of ``gaps`` (silver.gaps rows) once per day it overlaps, with its status and
    check. A time range covers the days from its start to just before its end; a trade-id gap
    (no time) belongs to the first day whose highest id reaches its first id (the day whose
    expected ids it is missing from), else the symbol's last day of trades."""
    base = gaps.with_columns(pl.col("table").str.strip_prefix("silver.").alias("channel"))
    timed = base.filter(pl.col("start").is_not_null()).with_columns(
        pl.date_ranges(
            pl.col("start").dt.date(),
            pl.max_horizontal(
                pl.col("start").dt.date(),
                (pl.col("end") - pl.duration(microseconds=1)).dt.date().fill_null(pl.col("start").dt.date()),
            ),
        ).alias("date")
    )
    by_id = base.filter(pl.col("start").is_null() & pl.col("first_id").is_not_null())
    days = trade_days.filter(pl.col("id_max").is_not_null()).select("exchange", "symbol", "date", "id_max")
    located = (
        by_id.sort("first_id")
        .join_asof(
            days.sort("id_max"),
            left_on="first_id",
            right_on="id_max",
            by=["exchange", "symbol"],
            strategy="forward",
            check_sortedness=False,  # (sorted by id within each symbol, which is what matters)
        )
        .join(
            days.group_by("exchange", "symbol").agg(pl.col("date").max().alias("last_day")),
            on=["exchange", "symbol"],
            how="left",
        )
        .with_columns(pl.coalesce("date", "last_day").alias("date"))
        .drop_nulls("date")
    )
    cols = [*_KEY, "status", "check"]
    return pl.concat([timed.explode("date").select(cols), located.select(cols)])


def _quarantine_days(quarantine: pl.DataFrame) -> pl.DataFrame:
    """Each quarantined row of a ledger channel with its key: the UTC day of the row's exchange
    time, else of its receipt (also when its exchange time is what failed)."""

    def day(field: str) -> pl.Expr:
        return pl.col("raw").str.json_path_match(f"$.{field}").str.slice(0, 10).str.to_date(strict=False)

    return (
        quarantine.with_columns(pl.col("table").str.strip_prefix("silver.").alias("channel"))
        .filter(
            pl.col("channel").is_in(list(CHANNELS)) & pl.col("exchange").is_not_null() & pl.col("symbol").is_not_null()
        )
        .with_columns(
            pl.when(pl.col("rule") == "ts_out_of_bounds")
            .then(day("receipt_ts"))
            .otherwise(pl.coalesce(day("ts"), day("receipt_ts")))
            .alias("date")
        )
        .drop_nulls("date")
        .select(_KEY)
    )


# ---- what changed since the last run -------------------------------------------------------------


def _sources(catalog: Catalog) -> list[str]:
    tables = [f"silver.{c}" for c in CHANNELS] + ["silver.quarantine", "silver.gaps", SESSIONS.name]
    return [t for t in tables if catalog.exists(t)]


def _touched(catalog: Catalog, table: str, after: int | None, upto: int, now: datetime) -> pl.DataFrame:
    """The ledger keys whose rows may have changed with ``table``'s commits ``after`` < v <= ``upto``."""
    if table == "silver.gaps":
        current = catalog.frame(table, version=upto)
        old = current.clear()
        if after is not None:
            try:
                old = catalog.frame(table, version=after)
            except Exception as exc:  # noqa: BLE001 - that version's log or files are gone: every gap counts as changed
                LOG.warning(
                    "reading silver.gaps at version %d failed (%s); recomputing the days of every gap", after, exc
                )
        common = [c for c in current.columns if c in old.columns]
        changed = pl.concat(
            [
                current.join(old.select(common), on=common, how="anti", nulls_equal=True).select(common),
                old.join(current.select(common), on=common, how="anti", nulls_equal=True).select(common),
            ]
        )
        return _gap_days(changed, _trade_days(catalog, changed.select("exchange", "symbol").unique())).select(_KEY)
    if table == SESSIONS.name:
        events = catalog.frame(table, version=upto)
        new = to_frame(catalog.changes(table, after=after, upto=upto)) if after is not None else events
        # a session's new events move its covered time on from its last event before them
        first_new = new.group_by("session_id").agg(pl.col("at").min().alias("first_new"))
        since = (
            events.join(first_new, on="session_id")
            .group_by("session_id")
            .agg(
                pl.col("at").filter(pl.col("at") < pl.col("first_new")).max().alias("before"),
                pl.col("first_new").first(),
            )
            .select("session_id", pl.coalesce("before", "first_new").alias("since"))
        )
        spans = session_spans(events.join(first_new, on="session_id", how="semi"), now=now).join(since, on="session_id")
        return (
            spans.with_columns(
                pl.date_ranges(pl.max_horizontal("start", "since").dt.date(), pl.col("end").dt.date()).alias("date")
            )
            .explode("date")
            .drop_nulls("date")
            .select(_KEY)
        )
    if table == "silver.quarantine":
        return _quarantine_days(to_frame(catalog.changes(table, after=after, upto=upto)))
    if after is None:  # a first build: every day of the table (its partition values)
        new = catalog.scan(table, version=upto).select("exchange", "symbol", "date").unique().collect()
    else:
        new = to_frame(catalog.changes(table, after=after, upto=upto))
    channel = table.removeprefix("silver.")
    keys = new.select("exchange", "symbol", pl.lit(channel).alias("channel"), "date").unique()
    if channel == "trades":  # a day's ids expected start after the highest id of the days before
        keys = pl.concat([keys, keys.with_columns(pl.col("date") + _DAY)])
    return keys


def _ranges(touched: pl.DataFrame) -> pl.DataFrame:
    """Per stream, every day from the first touched to the last (recomputed whole)."""
    return (
        touched.group_by(_STREAM)
        .agg(pl.col("date").min().alias("lo"), pl.col("date").max().alias("hi"))
        .with_columns(pl.date_ranges("lo", "hi").alias("date"))
        .explode("date")
        .select(_KEY)
    )


# ---- the ledger ----------------------------------------------------------------------------------


def score(
    *,
    rows: pl.Expr | None = None,
    quarantined: pl.Expr | None = None,
    covered: pl.Expr | None = None,
    day_seconds: pl.Expr | None = None,
    ids_expected: pl.Expr | None = None,
    ids_present: pl.Expr | None = None,
    unfilled: pl.Expr | None = None,
) -> pl.Expr:
    """The DQ score (docs/quality.md) of the ledger's columns (each defaults to that column):

    ``coverage * ids * validity / (1 + unfilled)`` where coverage = covered / day seconds (1
    when unknown or the day has not begun), ids = present / expected (1 when ids are not
    contiguous or none is expected), validity = rows / (rows + quarantined) (1 with neither),
    each clipped to [0, 1], and unfilled = gaps open + unfillable."""

    def c(e: pl.Expr | None, name: str) -> pl.Expr:
        return pl.col(name) if e is None else e

    rows_, quarantined_ = c(rows, "rows"), c(quarantined, "quarantined")
    day_, covered_ = c(day_seconds, "day_seconds"), c(covered, "covered_seconds")
    expected, present = c(ids_expected, "ids_expected"), c(ids_present, "ids_present")
    coverage = pl.when(covered_.is_null() | (day_ <= 0)).then(1.0).otherwise(covered_ / day_).clip(0.0, 1.0)
    ids = pl.when(expected.is_null() | (expected <= 0)).then(1.0).otherwise(present / expected).clip(0.0, 1.0)
    total = rows_ + quarantined_
    validity = pl.when(total == 0).then(1.0).otherwise(rows_ / total)
    unfilled_ = pl.col("gaps_open") + pl.col("gaps_unfillable") if unfilled is None else unfilled
    return coverage * ids * validity / (1 + unfilled_)


def _rows(catalog: Catalog, keys: pl.DataFrame, trade_days: pl.DataFrame) -> pl.DataFrame:
    """Rows per key in its silver table, and whether an archive filled the day (trades)."""
    frames = [
        trade_days.select(
            "exchange", "symbol", pl.lit("trades").alias("channel"), "date", pl.col("rows").cast(pl.Int64), "archive"
        )
    ]
    for (channel,), part in keys.group_by("channel"):
        table = f"silver.{channel}"
        if channel == "trades" or not catalog.exists(table):
            continue
        frames.append(
            catalog.scan(table)
            .filter(
                pl.col("exchange").is_in(part["exchange"].unique().to_list())
                & pl.col("symbol").is_in(part["symbol"].unique().to_list())
                & pl.col("date").is_between(part["date"].min(), part["date"].max())
            )
            .group_by("exchange", "symbol", "date")
            .agg(pl.len().cast(pl.Int64).alias("rows"), (pl.col("source") == "archive").any().alias("archive"))
            .with_columns(pl.lit(str(channel)).alias("channel"))
            .select(*_KEY, "rows", "archive")
            .collect()
        )
    return pl.concat(frames).join(keys, on=_KEY, how="semi")


def ledger_rows(
    keys: pl.DataFrame,
    *,
    rows: pl.DataFrame,
    trade_days: pl.DataFrame,
    quarantined: pl.DataFrame,
    gap_days: pl.DataFrame,
    spans: pl.DataFrame,
    contiguous: Iterable[str],
    now: datetime,
) -> pl.DataFrame:
    """The ledger's rows for the days of ``keys`` that any input mentions (pure: the inputs are
    the frames :func:`build_completeness` reads). ``rows``: key, rows, archive; ``trade_days``:
    :func:`_trade_days`; ``quarantined``, ``gap_days``: one row per quarantined row / gap-day
    (:func:`_quarantine_days`, :func:`_gap_days`); ``spans``: covered time per stream
    (:func:`session_spans` plus filled time gaps); ``contiguous``: exchanges whose trade ids
    are contiguous."""
    span_days = spans.with_columns(
        pl.date_ranges(pl.col("start").dt.date(), pl.col("end").dt.date()).alias("date")
    ).explode("date")
    found = pl.concat(
        [rows.select(_KEY), quarantined.select(_KEY), gap_days.select(_KEY), span_days.select(_KEY)]
    ).unique()
    found = found.join(keys, on=_KEY, how="semi")
    if found.is_empty():
        return pl.DataFrame(schema=_ledger_schema())
    q = quarantined.group_by(_KEY).agg(pl.len().cast(pl.Int64).alias("quarantined"))
    status = pl.col("status")
    g = gap_days.group_by(_KEY).agg(
        (status == "open").sum().cast(pl.Int64).alias("gaps_open"),
        (status == "filled").sum().cast(pl.Int64).alias("gaps_filled"),
        (status == "unfillable").sum().cast(pl.Int64).alias("gaps_unfillable"),
        pl.col("check").str.starts_with("book_sequence").sum().cast(pl.Int64).alias("sequence_breaks"),
    )
    contiguous = list(contiguous)
    ids = trade_days.filter(pl.col("exchange").is_in(contiguous)).select(
        "exchange",
        "symbol",
        pl.lit("trades").alias("channel"),
        "date",
        (pl.col("id_max") - pl.coalesce("prev_max", pl.col("id_min") - 1)).cast(pl.Int64).alias("ids_expected"),
        pl.col("ids").cast(pl.Int64).alias("ids_present"),
    )
    out = (
        found.join(rows, on=_KEY, how="left")
        .join(q, on=_KEY, how="left")
        .join(g, on=_KEY, how="left")
        .join(ids, on=_KEY, how="left")
        .join(_covered(found, spans, now=now), on=_KEY, how="left")
        .with_columns(
            pl.col("rows", "quarantined", "gaps_open", "gaps_filled", "gaps_unfillable", "sequence_breaks").fill_null(0)
        )
    )
    bounds = [_day_bounds(d, now) for d in out["date"].to_list()]
    day_seconds = pl.Series("day_seconds", [(hi - lo).total_seconds() for lo, hi in bounds], dtype=pl.Float64)
    over = pl.Series("over", [lo + _DAY <= now for lo, _ in bounds], dtype=pl.Boolean)
    out = out.with_columns(day_seconds, over).with_columns(
        # an archive file is a whole checksummed day
        pl.when(pl.col("archive").fill_null(False))
        .then("day_seconds")
        .otherwise("covered_seconds")
        .alias("covered_seconds")
    )
    out = out.with_columns(score().alias("score")).with_columns(
        # complete needs proof the whole day was covered, not only nothing known missing
        ((pl.col("score") == 1.0) & pl.col("over") & pl.col("covered_seconds").is_not_null()).alias("complete"),
        pl.lit(now).cast(_UTC).alias("updated_at"),
    )
    return out.select(GOLD[LEDGER].schema.names).sort(_KEY)


def _compute(catalog: Catalog, keys: pl.DataFrame, *, options: SilverOptions, now: datetime) -> pl.DataFrame:
    """The ledger's rows for ``keys`` (every day of every stream in them), from the inputs as they are."""
    trade_pairs = keys.filter(pl.col("channel") == "trades").select("exchange", "symbol").unique()
    last = keys["date"].max()
    assert isinstance(last, date)  # (Series.max() is typed as any scalar)
    trade_days = _trade_days(catalog, trade_pairs, until=last)  # (and the days before it: prev_max)
    gaps = catalog.frame("silver.gaps") if catalog.exists("silver.gaps") else None
    gap_days = (
        _gap_days(gaps, _trade_days(catalog, gaps.select("exchange", "symbol").unique()))
        if gaps is not None and gaps.height
        else pl.DataFrame(schema={**_KEY_SCHEMA, "status": pl.String(), "check": pl.String()})
    )
    quarantined = (
        _quarantine_days(
            catalog.scan("silver.quarantine")
            .filter(pl.col("table").is_in([f"silver.{c}" for c in keys["channel"].unique().to_list()]))
            .collect()
        )
        if catalog.exists("silver.quarantine")
        else _empty_keys()
    )
    spans = (
        session_spans(catalog.frame(SESSIONS.name), now=now).drop("session_id")
        if catalog.exists(SESSIONS.name)
        else pl.DataFrame(schema={**_KEY_SCHEMA, "start": _UTC, "end": _UTC}).drop("date")
    )
    if gaps is not None and gaps.height:  # time a backfill filled counts as covered
        filled = gaps.filter(
            (pl.col("status") == "filled") & pl.col("start").is_not_null() & pl.col("end").is_not_null()
        ).select("exchange", "symbol", pl.col("table").str.strip_prefix("silver.").alias("channel"), "start", "end")
        spans = pl.concat([spans, filled.join(spans.select(_STREAM).unique(), on=_STREAM, how="semi")])
    contiguous = [e for e in keys["exchange"].unique().to_list() if options.checks(e).trade_ids == "contiguous"]
    return ledger_rows(
        keys,
        rows=_rows(catalog, keys, trade_days),
        trade_days=trade_days,
        quarantined=quarantined,
        gap_days=gap_days,
        spans=spans,
        contiguous=contiguous,
        now=now,
    )


def _lit(v: object) -> str:
    return "'" + str(v).replace("'", "''") + "'"


def _predicate(keys: pl.DataFrame) -> str:
    """SQL matching the ledger rows of ``keys``' streams from their first day to their last."""
    ranges = keys.group_by(_STREAM).agg(pl.col("date").min().alias("lo"), pl.col("date").max().alias("hi"))
    parts = [
        f"(exchange = {_lit(e)} AND symbol = {_lit(s)} AND channel = {_lit(c)} "
        f"AND date >= {_lit(lo)} AND date <= {_lit(hi)})"
        for e, s, c, lo, hi in ranges.select(*_STREAM, "lo", "hi").sort(_STREAM).iter_rows()
    ]
    return " OR ".join(parts) if parts else "false"


def build_completeness(catalog: Catalog, *, options: SilverOptions, now: datetime | None = None) -> pl.DataFrame:
    """Bring ``gold.completeness`` up to date with its inputs (see module doc); returns the rows
    it (re)wrote: the ledger of the days touched since the last run (empty: nothing new).
    Concurrent builds take turns (a second reads the progress the first recorded)."""
    at = now or datetime.now(UTC)
    return _replace.rebuild(catalog, LEDGER, lambda: _build(catalog, options=options, now=at))


def _build(catalog: Catalog, *, options: SilverOptions, now: datetime) -> pl.DataFrame:
    """One try of :func:`build_completeness`: progress read from, and the replace committed
    against, one snapshot of the ledger."""
    snapshot = catalog.open(LEDGER) if catalog.exists(LEDGER) else None
    progress: list[tuple[str, int]] = []
    touched = [_empty_keys()]
    for table in _sources(catalog):
        upto = catalog.open(table).version()
        after = snapshot.transaction_version(_app(table)) if snapshot is not None else None
        if after is not None and after >= upto:
            continue
        progress.append((_app(table), upto))
        touched.append(_touched(catalog, table, after, upto, now).cast(_KEY_SCHEMA))
    if not progress:
        return pl.DataFrame(schema=_ledger_schema())
    keys = _ranges(pl.concat(touched).unique())
    ledger = _compute(catalog, keys, options=options, now=now) if keys.height else pl.DataFrame(schema=_ledger_schema())
    spec = GOLD[LEDGER]
    if snapshot is None:  # the first ledger: committed against the empty table (a racing first one conflicts)
        catalog.create(LEDGER)
        snapshot = catalog.open(LEDGER)
    data = ledger.to_arrow().cast(spec.schema)
    catalog.replace(LEDGER, data, predicate=_predicate(keys), transactions=progress, snapshot=snapshot)
    return ledger
