"""bronze -> silver: validate (failures to ``silver.quarantine``), deduplicate on natural keys,
detect gaps and fill them with the real ccxt client; incremental and idempotent.

Incremental: each silver table's commit carries the Delta application transaction
``("promote:<bronze table>", <bronze version>)``, written in the **same commit** as the rows,
so the next run reads only bronze commits after that version (``Catalog.changes``) and a crash
can never promote a bronze version twice or skip one. Quarantine rows are written first and
deduplicated by a stable hash of the raw row (sha256 of its JSON in the bronze schema's column
order), so a retried or reprocessing run does not quarantine twice.

Idempotent, also under concurrency: rows are deduplicated within the batch (first received wins)
and anti-joined with the keys already in silver, read from one snapshot of the table; the append
is committed **against that snapshot** with the application transaction
``("silver-writer:<table>", <snapshot version> + 1)``, one app id per table shared by every writer
(promote, reprocess, ``backfill``, the gap filler). A writer that committed after the snapshot
carried the same app id, so delta-rs' conflict checker refuses the second commit
(``CommitFailedError``, a concurrent transaction); the loser re-reads, dedups again and retries.
Silver never holds a duplicate, whatever runs at the same time.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import polars as pl
from deltalake import DeltaTable
from deltalake.exceptions import CommitFailedError
from deltalake.transaction import AddAction

import crypto_lakehouse.transform._fanout as _fanout
from crypto_lakehouse.errors import LakehouseError, UnknownTable
from crypto_lakehouse.schemas import BRONZE, SILVER, TIME_COLUMN, TableSpec, table_spec
from crypto_lakehouse.storage import Catalog
from crypto_lakehouse.storage.frames import to_frame
from crypto_lakehouse.transform.gaps import fill_gaps
from crypto_lakehouse.transform.history import VenueHistory
from crypto_lakehouse.transform.plans import (
    ORIGIN,
    PLANS,
    TS_MIN,
    Plan,
    QualityReport,
    Rule,
    SilverOptions,
    float_col,
    trade_columns,
)
from crypto_lakehouse.transform.quality import build_completeness

__all__ = [
    "Fanout",
    "PromoteResult",
    "SilverOptions",
    "backfill",
    "backfill_fanned",
    "promote_silver",
    "promote_silver_fanned",
]

LOG = logging.getLogger(__name__)

# cryptofeed's normalised symbol: BASE[-QUOTE] (the quote left out when it is the base), then
# -PERP, -FX, a future's expiry (YY + month code + day, e.g. 24U27; or YYMMDD) or an option's
# -STRIKE-EXPIRY-call|put (cryptofeed.symbols.Symbol.normalized)
_EXPIRY = r"\d{2}[FGHJKMNQUVXZ]\d{1,2}"
_SUFFIX = rf"-PERP|-FX|-\d{{6}}|-{_EXPIRY}|-\d+(\.\d+)?-{_EXPIRY}-(call|put)"
# at least one dash: a bare BTCUSDT is the venue's own name, not cryptofeed's
SYMBOL_PATTERN = rf"^[A-Z0-9]+(-[A-Z0-9]+({_SUFFIX})?|{_SUFFIX})$"
_UTC = pl.Datetime("us", "UTC")


@dataclass(slots=True)
class PromoteResult:
    """What one promote-silver run did; ``report`` is the rows written to ``silver.dq_report``."""

    run_id: str
    bronze_versions: dict[str, tuple[int | None, int]] = field(default_factory=dict)
    report: pl.DataFrame | None = None
    gaps: pl.DataFrame | None = None
    completeness: pl.DataFrame | None = None  # the gold.completeness rows of the days it touched

    def totals(self) -> dict[str, dict[str, int]]:
        if self.report is None or self.report.is_empty():
            return {}
        agg = self.report.group_by("table", "metric").agg(pl.col("value").sum()).sort("table", "metric")
        out: dict[str, dict[str, int]] = {}
        for table, metric, value in agg.iter_rows():
            out.setdefault(table, {})[metric] = value
        return out


def _validate(plan: Plan, df: pl.DataFrame, now: datetime, opts: SilverOptions) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split rows into (good rows in silver's columns, quarantined rows).

    Exchange time is bounded by :data:`TS_MIN` and by the row's own receipt: ``ts`` may be at
    most ``max_future_skew`` after ``receipt_ts`` (the clocks of the venue and of the writer
    differ). Not by ``now``: a row committed while a slow run runs is received after the run
    started, and is valid. ``now`` only stamps ``detected_at``."""
    floats = (*plan.floats, *plan.nullable_floats)
    parsed = df.with_columns([pl.col(c).cast(pl.Float64, strict=False).alias(f"__{c}") for c in floats])
    if plan.prepare is not None:
        parsed = plan.prepare(parsed, opts)
    when = pl.coalesce("ts", "receipt_ts")  # the time that decides the row's date (TIME_COLUMN, as bronze)
    rules: list[Rule] = [
        (
            "unknown_symbol",
            lambda: (
                ~pl.col("symbol").str.contains(SYMBOL_PATTERN)
                | (~pl.col("symbol").is_in(list(opts.symbols)) if opts.symbols else pl.lit(False))
            ),
        ),
        (
            "ts_out_of_bounds",
            lambda: when.is_null() | (when < TS_MIN) | (when > pl.col("receipt_ts") + opts.max_future_skew),
        ),
        # "NaN", "inf", "1e999" parse to floats that are no price, size or rate
        *((f"{c}_not_finite", lambda c=c: float_col(c).is_nan() | float_col(c).is_infinite()) for c in floats),
        *plan.rules,
    ]
    rule = pl.lit(None, dtype=pl.String)
    for name, expr in reversed(rules):
        rule = pl.when(expr().fill_null(False)).then(pl.lit(name)).otherwise(rule)
    parsed = parsed.with_columns(rule.alias("__rule"))
    bad = parsed.filter(pl.col("__rule").is_not_null())
    quarantine = _quarantine_rows(plan, bad.select(c for c in df.columns if not c.startswith("__")), bad["__rule"], now)
    good = parsed.filter(pl.col("__rule").is_null()).with_columns([pl.col(f"__{c}").alias(c) for c in floats])
    if "__interval" in good.columns:
        good = good.with_columns(pl.col("__interval").alias("interval"))
    return good, quarantine


def _quarantine_rows(plan: Plan, rows: pl.DataFrame, rule: pl.Series | str, now: datetime) -> pl.DataFrame:
    """silver.quarantine's rows for ``rows`` (as received), each with its ``rule``."""
    raw = _raw_json(plan, rows)
    return rows.select(
        pl.lit(plan.silver).alias("table"),
        (pl.lit(rule) if isinstance(rule, str) else pl.lit(rule.alias("rule"))).alias("rule"),
        pl.col("exchange"),
        pl.col("symbol"),
    ).with_columns(
        pl.Series("raw", raw, dtype=pl.String),
        pl.Series("row_hash", [_row_hash(r) for r in raw], dtype=pl.Int64),
        pl.lit(now).cast(_UTC).alias("detected_at"),
    )


def _json_value(v: object) -> str:
    if isinstance(v, datetime | date):
        return v.isoformat()
    return str(v)


def _raw_json(plan: Plan, rows: pl.DataFrame) -> list[str]:
    """Each row as JSON with its columns in a fixed order (the bronze table's, then any others by
    name), whatever order the frame has: change-data reads put partition columns last. Values
    are written by Python (timestamps as ISO 8601), not by a library whose format may change."""
    order = {c: i for i, c in enumerate(BRONZE[plan.bronze].schema.names)}
    columns = sorted(rows.columns, key=lambda c: (order.get(c, len(order)), c))
    return [
        json.dumps(dict(zip(columns, r, strict=True)), default=_json_value, separators=(",", ":"))
        for r in rows.select(columns).iter_rows()
    ]


def _row_hash(raw: str) -> int:
    """The first 8 bytes of the sha256 of ``raw``, as a signed 64-bit integer: the same in every
    process and version (Polars' ``hash()`` is not promised to be)."""
    return int.from_bytes(hashlib.sha256(raw.encode()).digest()[:8], "big", signed=True)


def _to_silver(plan: Plan, good: pl.DataFrame, source: str | pl.Expr) -> pl.DataFrame:
    """Silver's columns. ``date`` is the UTC date of the table's time column (``ts``, or
    ``receipt_ts`` when the exchange sent none, as in bronze) for every table: the column reads
    and reprocessing filter on decides the partition, so pruning never loses a row (a candle
    opening at 23:59 closes, and is dated, after midnight)."""
    spec = SILVER[plan.silver]
    cols = {f.name: f for f in spec.schema}
    df = good.with_columns(
        pl.coalesce(TIME_COLUMN[plan.silver], "receipt_ts").dt.date().alias("date"),
        (pl.lit(source) if isinstance(source, str) else source).alias("source"),
    )
    if plan.silver == "silver.trades":
        df = trade_columns(df)
    return df.select(list(cols))


def _within_batch(plan: Plan, rows: pl.DataFrame) -> pl.DataFrame:
    """``rows`` with each key once: where a key repeats within the batch, the first received wins."""
    key = list(plan.key)
    repeated = rows.select(pl.len().over(key) > 1).to_series()
    dups = rows.filter(repeated)
    if not dups.height:
        return rows
    return pl.concat([rows.filter(~repeated), dups.sort("receipt_ts").unique(subset=key, keep="first")])


def _dedup(
    plan: Plan, rows: pl.DataFrame, snapshot: DeltaTable | None, conflicts: list[pl.DataFrame] | None = None
) -> pl.DataFrame:
    """``rows`` less those whose key silver holds in ``snapshot`` (None: no table yet). The rows
    among those whose :attr:`Plan.conflict_columns` differ from the stored row's are put in
    ``conflicts`` (replacing what a previous attempt put there)."""
    if not rows.height or snapshot is None:
        return rows
    key = list(plan.key)
    where = pl.col("exchange").is_in(rows.get_column("exchange").unique().to_list()) & pl.col("symbol").is_in(
        rows.get_column("symbol").unique().to_list()
    )
    if plan.silver == "silver.candles":
        # the key has no ts: the same candle can come dated differently (streamed, stamped by its
        # close event; backfilled or archived, by its stop; or written when silver dated candles by
        # their start), but never before the day it opened
        starts = rows.get_column("start")
        first = starts.min()
        assert isinstance(first, datetime)  # (Series.min() is typed as any scalar)
        where &= (pl.col("date") >= first.date()) & pl.col("start").is_between(first, starts.max())
    else:
        dates = rows.get_column("date")
        where &= pl.col("date").is_between(dates.min(), dates.max())
    stored = Catalog.scan_snapshot(snapshot).filter(where)
    if plan.upgrade is not None:
        stored = plan.upgrade(stored)
    existing = stored.select(key).collect()
    if conflicts is not None:
        conflicts.clear()
    if existing.height:
        compare = [c for c in plan.conflict_columns if c not in key]
        seen = rows.join(existing, on=key, how="semi", nulls_equal=True)
        if compare and conflicts is not None and seen.height:
            # the stored values only for the keys seen again (rare): the usual run reads keys alone
            values = stored.select(*key, *compare).join(seen.lazy().select(key), on=key, how="semi").collect()
            both = seen.join(values, on=key, how="inner", suffix="__stored", nulls_equal=True)
            differ = pl.any_horizontal(pl.col(c).ne_missing(pl.col(f"{c}__stored")) for c in compare)
            conflicts.append(both.filter(differ).select(rows.columns))
        rows = rows.join(existing, on=key, how="anti", nulls_equal=True)
    return rows


# How silver tables are written: every append is committed against the snapshot its dedup read,
# carrying the table's writer app id, so two writers racing from one snapshot conflict.
_WRITER_APP = "silver-writer:{table}"
_ATTEMPTS = 30  # commits lost to concurrent writers before giving up (each retry re-reads)


def _snapshot(catalog: Catalog, spec: TableSpec) -> DeltaTable:
    """The latest snapshot of ``spec``'s table, created empty first if it does not exist."""
    catalog.create(spec.name)
    return catalog.open(spec.name)


def _write_deduped(
    catalog: Catalog,
    table: str,
    dedup: Callable[[DeltaTable | None], pl.DataFrame],
    *,
    app: tuple[str, int] | None = None,
) -> pl.DataFrame:
    """Dedup against a snapshot of ``table`` and append what is new against that snapshot,
    under the table's writer app id; on a conflict (another writer committed since), read again
    and retry. ``app`` is recorded in the same commit (a promote's progress), even with no rows,
    unless the table already records it at that version or later. Returns the rows written."""
    spec = table_spec(table)
    writer_app = _WRITER_APP.format(table=table)
    for attempt in range(_ATTEMPTS):
        snapshot = catalog.open(table) if catalog.exists(table) else None
        rows = dedup(snapshot)
        progress = app
        if app is not None and snapshot is not None:
            done = snapshot.transaction_version(app[0])
            if done is not None and done >= app[1]:
                progress = None  # a racing promote recorded this bronze version (or a later one)
        if not rows.height and progress is None:
            return rows
        if snapshot is None:  # a new table: create it, then dedup against it (it may not be new by then)
            _snapshot(catalog, spec)
            continue
        apps = [(writer_app, snapshot.version() + 1), *([progress] if progress else [])]
        try:
            catalog.append_against(table, rows.to_arrow().cast(spec.schema), snapshot=snapshot, transactions=apps)
            return rows
        except CommitFailedError as exc:  # a concurrent writer: its rows may be ours; read again
            LOG.info(
                "%s: concurrent commit since version %d (%s); retry %d", table, snapshot.version(), exc, attempt + 1
            )
            time.sleep(random.uniform(0, 0.02 * (attempt + 1)))
    raise LakehouseError(f"append to {table} lost {_ATTEMPTS} times in a row to concurrent writers; run it again")


def _quarantine_seen(catalog: Catalog, q: pl.DataFrame, snapshot: DeltaTable | None) -> pl.DataFrame:
    """``q`` less the rows ``snapshot`` of silver.quarantine already holds (by table + row hash)."""
    if snapshot is None or not q.height:
        return q
    seen = (
        Catalog.scan_snapshot(snapshot)
        .filter(pl.col("table").is_in(q.get_column("table").unique().to_list()))
        .select("table", "row_hash")
        .collect()
    )
    return q.join(seen, on=["table", "row_hash"], how="anti")


def _quarantine(catalog: Catalog, q: pl.DataFrame) -> int:
    """Append quarantined rows not already there (by table + hash of the raw row)."""
    if q.is_empty():
        return 0
    columns = [f.name for f in table_spec("silver.quarantine").schema]
    q = q.unique(subset=["table", "row_hash"], keep="first").select(columns)
    return _write_deduped(catalog, "silver.quarantine", lambda snapshot: _quarantine_seen(catalog, q, snapshot)).height


def _sort_out(
    plan: Plan,
    raw: pl.DataFrame,
    *,
    source: str | pl.Expr,
    now: datetime,
    opts: SilverOptions,
    report: QualityReport,
) -> tuple[pl.DataFrame, pl.DataFrame, int]:
    """``raw`` (bronze-shaped rows) counted, filtered and validated: (silver rows deduplicated
    within the batch, quarantined rows, rows that passed validation)."""
    report.add(plan.silver, "rows_in", raw)
    if plan.empty is not None and plan.empty[0] in raw.columns:  # (bronze of an earlier release lacks it)
        is_empty = plan.empty[1]()
        report.add(plan.silver, "empty_updates", raw.filter(is_empty))
        raw = raw.filter(~is_empty)
    if plan.keep is not None:
        superseded = raw.filter(~plan.keep())
        report.add(plan.silver, "superseded", superseded)
        raw = raw.filter(plan.keep())
    good, bad = _validate(plan, raw, now, opts)
    for rule in bad.get_column("rule").unique().to_list():
        report.add(plan.silver, f"quarantined:{rule}", bad.filter(pl.col("rule") == rule))
    return _within_batch(plan, _to_silver(plan, good, source)), bad, good.height


def _conflicting(
    plan: Plan, batch: pl.DataFrame, conflicts: list[pl.DataFrame], *, now: datetime, report: QualityReport
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(rows whose key silver holds with other values, their quarantine rows), logged and counted."""
    conflicting = pl.concat(conflicts) if conflicts else batch.clear()
    if not conflicting.height:
        return conflicting, _quarantine_rows(plan, conflicting, "key_conflict", now)
    LOG.warning(
        "%s: %d rows carry a key silver already holds with OTHER values (%s, e.g. %s): the stored rows are "
        "kept and these are quarantined as key_conflict; two sources disagree (or a market reused its ids)",
        plan.silver,
        conflicting.height,
        ", ".join(plan.conflict_columns),
        conflicting.select(plan.key).row(0),
    )
    report.add(plan.silver, "quarantined:key_conflict", conflicting)
    return conflicting, _quarantine_rows(plan, conflicting, "key_conflict", now)


def _promote_rows(
    plan: Plan,
    catalog: Catalog,
    raw: pl.DataFrame,
    *,
    source: str | pl.Expr,
    now: datetime,
    opts: SilverOptions,
    report: QualityReport,
    app: tuple[str, int] | None,
) -> int:
    """Validate, quarantine, dedup and append ``raw`` (bronze-shaped rows); returns rows written."""
    batch, bad, passed = _sort_out(plan, raw, source=source, now=now, opts=opts, report=report)
    _quarantine(catalog, bad)
    conflicts: list[pl.DataFrame] = []
    rows = _write_deduped(catalog, plan.silver, lambda snapshot: _dedup(plan, batch, snapshot, conflicts), app=app)
    conflicting, quarantined = _conflicting(plan, batch, conflicts, now=now, report=report)
    _quarantine(catalog, quarantined)
    report.add(plan.silver, "duplicates", value=passed - rows.height - conflicting.height)
    report.add(plan.silver, "rows_out", rows)
    return rows.height


def _bronze_frame(
    catalog: Catalog, plan: Plan, *, after: int | None, upto: int, start: datetime | None, end: datetime | None
) -> pl.DataFrame:
    """Bronze rows to promote: a window of exchange time (``start``/``end``, on the table's time
    column and pruned by ``date``, its date, for every table), or the commits after ``after``."""
    if start is not None or end is not None:
        return _in_window(catalog.scan(plan.bronze, version=upto), plan, start, end).collect()
    if after is None:  # the whole table: Polars reads a snapshot fastest
        return catalog.frame(plan.bronze, version=upto)
    return to_frame(catalog.changes(plan.bronze, after=after, upto=upto))


def _in_window(lf: pl.LazyFrame, plan: Plan, start: datetime | None, end: datetime | None) -> pl.LazyFrame:
    """Bronze rows whose exchange time (the table's time column) is in ``[start, end)``, pruned
    by ``date``, their date."""
    t = pl.col(TIME_COLUMN[plan.bronze])
    if start is not None:
        lf = lf.filter((t >= start) & (pl.col("date") >= start.date()))
    if end is not None:
        lf = lf.filter((t < end) & (pl.col("date") <= end.date()))
    return lf


def _with_origin(raw: pl.DataFrame) -> pl.DataFrame:
    """Bronze rows as promote reads them: ``__source`` (``archive`` for rows the archive importer
    wrote, whose writer ids are ``archive:<archive path>``, else ``stream``) and :data:`ORIGIN`
    (the bronze commit of each row: what identifies a trade without id), less the writer's
    bookkeeping columns."""
    archived = pl.col("writer_id").str.starts_with("archive:") if "writer_id" in raw.columns else pl.lit(False)
    raw = raw.with_columns(pl.when(archived).then(pl.lit("archive")).otherwise(pl.lit("stream")).alias("__source"))
    if "writer_id" in raw.columns:
        raw = raw.with_columns(pl.concat_str("writer_id", "batch_id", separator=":").alias(ORIGIN))
    return raw.drop("writer_id", "batch_id", "date", strict=False)


def _silver_names(tables: list[str] | None) -> list[str]:
    """The silver tables ``tables`` names (``trades`` or ``silver.trades``, any case), in the
    order given; all of them when None. An unknown name is an :class:`UnknownTable` listing them."""
    if tables is None:
        return list(PLANS)
    names = [t.strip().lower() for t in tables]
    names = [n if n.startswith("silver.") else f"silver.{n}" for n in names]
    unknown = [t for t, n in zip(tables, names, strict=True) if n not in PLANS]
    if unknown:
        known = ", ".join(n.removeprefix("silver.") for n in PLANS)
        raise UnknownTable(f"no silver table {', '.join(map(repr, unknown))} to promote; tables: {known}")
    return names


def promote_silver(
    catalog: Catalog,
    *,
    tables: list[str] | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    backfiller: VenueHistory | None = None,
    options: SilverOptions | None = None,
    now: datetime | None = None,
) -> PromoteResult:
    """Promote bronze commits not yet promoted (or, with ``start``/``end``, reprocess that window
    of exchange time) into silver; detect gaps and fill them with ``backfiller``."""
    opts = options or SilverOptions()
    now = now or datetime.now(UTC)
    result = PromoteResult(run_id=uuid.uuid4().hex[:12])
    report = QualityReport(result.run_id, now)
    reprocess = start is not None or end is not None
    for plan, app_id, after, upto in _pending(catalog, tables, reprocess=reprocess, result=result):
        raw = _bronze_frame(catalog, plan, after=after, upto=upto, start=start, end=end)
        _promote_rows(
            plan,
            catalog,
            _with_origin(raw),
            source=pl.col("__source"),
            now=now,
            opts=opts,
            report=report,
            app=None if reprocess else (app_id, upto),
        )
    _fill_and_report(catalog, result, report, backfiller=backfiller, opts=opts, now=now)
    return result


def _pending(
    catalog: Catalog, tables: list[str] | None, *, reprocess: bool, result: PromoteResult
) -> Iterator[tuple[Plan, str, int | None, int]]:
    """(plan, progress app id, bronze version promoted last, bronze version to promote up to) of
    each silver table ``tables`` names whose bronze table exists and has commits not yet
    promoted (every one when ``reprocess``); each such bronze table's versions are recorded in
    ``result.bronze_versions``, promoted or not."""
    for name in _silver_names(tables):
        plan = PLANS[name]
        if not catalog.exists(plan.bronze):
            continue
        app_id = f"promote:{plan.bronze}"
        upto = catalog.open(plan.bronze).version()
        after = catalog.transaction_version(plan.silver, app_id)
        result.bronze_versions[plan.bronze] = (after, upto)
        if reprocess or after is None or after < upto:
            yield plan, app_id, after, upto


def _fill_and_report(
    catalog: Catalog,
    result: PromoteResult,
    report: QualityReport,
    *,
    backfiller: VenueHistory | None,
    opts: SilverOptions,
    now: datetime,
) -> None:
    """A promote's end: gaps detected and filled (in this process), the report appended, then
    the completeness ledger of the days touched (it reads the gaps just written)."""
    result.gaps = fill_gaps(
        catalog,
        backfiller=backfiller if opts.backfill else None,
        report=report,
        now=now,
        options=opts,
        promote=lambda plan, raw: _promote_rows(
            plan, catalog, raw, source="backfill", now=now, opts=opts, report=report, app=None
        ),
    )
    result.report = report.frame()
    if result.report.height:
        catalog.append("silver.dq_report", result.report.to_arrow().cast(table_spec("silver.dq_report").schema))
    result.completeness = build_completeness(catalog, options=opts, now=now)


def backfill(
    catalog: Catalog,
    backfiller: VenueHistory,
    *,
    exchange: str,
    symbol: str,
    start: datetime,
    end: datetime,
    options: SilverOptions | None = None,
) -> int:
    """Fetch ``exchange``/``symbol`` trades in ``[start, end)`` over REST into silver
    (validated and deduplicated like everything else); returns the rows added."""
    opts = options or SilverOptions()
    now = datetime.now(UTC)
    report = QualityReport(uuid.uuid4().hex[:12], now)
    raw = backfiller.trades_by_time(exchange.upper(), symbol, start, end)
    n = _promote_rows(
        PLANS["silver.trades"], catalog, raw, source="backfill", now=now, opts=opts, report=report, app=None
    )
    frame = report.frame()
    if frame.height:
        catalog.append("silver.dq_report", frame.to_arrow().cast(table_spec("silver.dq_report").schema))
    return n


# ---- fanned out: groups of (exchange, symbol, day) on a runner, one commit per table ---------------

Fanout = _fanout.Fanout


@dataclass(frozen=True, slots=True)
class _Task:
    """One task of a fanned-out promote: bronze files of whole (exchange, symbol, day)
    partitions, deduplicated against silver (and silver.quarantine) as of the versions the
    coordinator read."""

    where: _fanout.Where
    table: str  # the silver table
    files: tuple[tuple[str, dict[str, str]], ...]
    silver_version: int
    quarantine_version: int | None  # None: no quarantine yet
    start: datetime | None
    end: datetime | None
    now: datetime
    opts: SilverOptions
    run_id: str


@dataclass(frozen=True, slots=True)
class _Staged:
    """What a task wrote (uncommitted files) and counted."""

    rows: list[AddAction]
    quarantine: list[AddAction]
    report: list[tuple[str, str | None, str | None, str, int, str | None]]


def _stage_task(task: _Task) -> _Staged:
    """A worker's part of :func:`promote_silver_fanned`: read the task's bronze files, validate,
    deduplicate and write silver's and the quarantine's files (uncommitted)."""
    catalog = task.where.catalog()
    plan = PLANS[task.table]
    raw = to_frame(catalog.read_files(plan.bronze, task.files))
    if task.start is not None or task.end is not None:
        raw = _in_window(raw.lazy(), plan, task.start, task.end).collect()
    report = QualityReport(task.run_id, task.now)
    return _stage_rows(
        plan,
        catalog,
        _with_origin(raw),
        source=pl.col("__source"),
        now=task.now,
        opts=task.opts,
        report=report,
        versions=(task.silver_version, task.quarantine_version),
    )


def _stage_rows(
    plan: Plan,
    catalog: Catalog,
    raw: pl.DataFrame,
    *,
    source: str | pl.Expr,
    now: datetime,
    opts: SilverOptions,
    report: QualityReport,
    versions: tuple[int, int | None],
) -> _Staged:
    """:func:`_promote_rows` without the commits: the rows silver (at ``versions[0]``) does not
    hold and the quarantine rows silver.quarantine (at ``versions[1]``; None: there is none yet)
    does not, written as uncommitted files."""
    batch, bad, passed = _sort_out(plan, raw, source=source, now=now, opts=opts, report=report)
    conflicts: list[pl.DataFrame] = []
    rows = _dedup(plan, batch, catalog.open(plan.silver, version=versions[0]), conflicts)
    conflicting, quarantined = _conflicting(plan, batch, conflicts, now=now, report=report)
    report.add(plan.silver, "duplicates", value=passed - rows.height - conflicting.height)
    report.add(plan.silver, "rows_out", rows)
    q_spec = table_spec("silver.quarantine")
    q = pl.concat([bad, quarantined]).unique(subset=["table", "row_hash"], keep="first", maintain_order=True)
    stored = None if versions[1] is None else catalog.open(q_spec.name, version=versions[1])
    q = _quarantine_seen(catalog, q.select(q_spec.schema.names), stored)
    if q.height:
        catalog.create(q_spec.name)  # (empty: the coordinator commits against its first version)
    return _Staged(
        rows=catalog.stage(plan.silver, rows.to_arrow().cast(SILVER[plan.silver].schema)),
        quarantine=catalog.stage(q_spec.name, q.to_arrow().cast(q_spec.schema)),
        report=report.rows,
    )


def _commit_staged(
    catalog: Catalog,
    table: str,
    make: Callable[[DeltaTable, DeltaTable | None], list[_Staged]],
    *,
    app: tuple[str, int] | None,
    report: QualityReport,
) -> bool:
    """Stage (``make``, given snapshots of ``table`` and silver.quarantine) and commit the
    quarantine's files, then ``table``'s with ``app``, each once, under the table's writer app id
    (:func:`_write_deduped`'s). A commit lost to a concurrent writer (or a racing job) stages
    everything again against the new snapshots: the files of the lost attempt are never
    referenced. False when ``app`` was already recorded (a racing job did it: nothing written).
    silver.quarantine is created only when there are rows to quarantine (as in one process)."""
    q_name = "silver.quarantine"
    for attempt in range(_ATTEMPTS):
        catalog.create(table)
        silver = catalog.open(table)
        quarantine = catalog.open(q_name) if catalog.exists(q_name) else None
        if app is not None and (silver.transaction_version(app[0]) or -1) >= app[1]:
            return False
        staged = make(silver, quarantine)
        q_files = [f for s in staged for f in s.quarantine]
        files = [f for s in staged for f in s.rows]
        try:
            if q_files:  # against the snapshot the tasks deduplicated against (none: the empty first version)
                q_snapshot = quarantine if quarantine is not None else catalog.open(q_name, version=0)
                catalog.commit_staged(
                    q_name,
                    q_files,
                    snapshot=q_snapshot,
                    transactions=[(_WRITER_APP.format(table=q_name), q_snapshot.version() + 1)],
                )
            if files or app is not None:
                apps = [(_WRITER_APP.format(table=table), silver.version() + 1), *([app] if app else [])]
                catalog.commit_staged(table, files, snapshot=silver, transactions=apps)
        except CommitFailedError as exc:
            LOG.info(
                "%s: concurrent commit since version %d (%s); staging again (%d)",
                table,
                silver.version(),
                exc,
                attempt + 1,
            )
            time.sleep(random.uniform(0, 0.02 * (attempt + 1)))
            continue
        report.rows += _summed([r for s in staged for r in s.report])
        return True
    raise LakehouseError(f"commit to {table} lost {_ATTEMPTS} times in a row to concurrent writers; run it again")


def _summed(
    rows: list[tuple[str, str | None, str | None, str, int, str | None]],
) -> list[tuple[str, str | None, str | None, str, int, str | None]]:
    """Report rows of several tasks, one per (table, exchange, symbol, metric, detail), values
    summed, in first-seen order: the rows one task over all of them would have counted."""
    totals: dict[tuple[str, str | None, str | None, str, str | None], int] = {}
    for table, ex, sym, metric, value, detail in rows:
        key = (table, ex, sym, metric, detail)
        totals[key] = totals.get(key, 0) + value
    return [(t, ex, sym, m, v, d) for (t, ex, sym, m, d), v in totals.items() if v]


def promote_silver_fanned(
    catalog: Catalog,
    fanout: Fanout,
    *,
    tables: list[str] | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    backfiller: VenueHistory | None = None,
    options: SilverOptions | None = None,
    now: datetime | None = None,
) -> PromoteResult:
    """:func:`promote_silver` with its bronze rows split into groups of (exchange, symbol, day)
    partitions (candles: of (exchange, symbol), their key spans days) that ``fanout`` runs
    anywhere: each task validates and deduplicates its rows against one snapshot of silver and
    writes data files; this process then commits them **once per table**, with the bronze
    version promoted as the commit's application transaction (and the table's writer app id, so
    a racing job or writer makes the commit fail and the groups are staged again). The same rows
    as :func:`promote_silver`; the gaps are filled in this process afterwards."""
    opts = options or SilverOptions()
    now = now or datetime.now(UTC)
    result = PromoteResult(run_id=uuid.uuid4().hex[:12])
    report = QualityReport(result.run_id, now)
    where = _fanout.Where.of(catalog)
    reprocess = start is not None or end is not None
    for plan, app_id, after, upto in _pending(catalog, tables, reprocess=reprocess, result=result):
        name = plan.silver
        if reprocess:
            first, last = (start or TS_MIN).date(), (end.date() if end else date.max)
            files = [
                (p, v)
                for p, v in catalog.active_files(plan.bronze, version=upto)
                if first.isoformat() <= v.get("date", "") <= last.isoformat()
            ]
        elif after is None:
            files = catalog.active_files(plan.bronze, version=upto)
        else:
            files = catalog.appended_files(plan.bronze, after=after, upto=upto)
        by = ("exchange", "symbol") if plan.silver == "silver.candles" else ("exchange", "symbol", "date")
        groups = _fanout.tasks_of(files, by=by)

        def make(
            silver: DeltaTable, quarantine: DeltaTable | None, name: str = name, groups: list[Any] = groups
        ) -> list[_Staged]:
            q_version = None if quarantine is None else quarantine.version()
            tasks = [
                _Task(where, name, g, silver.version(), q_version, start, end, now, opts, result.run_id) for g in groups
            ]
            return fanout(_stage_task, tasks)

        _commit_staged(catalog, name, make, app=None if reprocess else (app_id, upto), report=report)
    _fill_and_report(catalog, result, report, backfiller=backfiller, opts=opts, now=now)
    return result


@dataclass(frozen=True, slots=True)
class _Fetch:
    """One task of a fanned-out backfill: a window of one symbol's trades."""

    where: _fanout.Where
    history: Callable[[], VenueHistory]  # made in the worker (ccxt clients do not travel)
    exchange: str
    symbol: str
    start: datetime
    end: datetime
    silver_version: int
    quarantine_version: int | None
    now: datetime
    opts: SilverOptions
    run_id: str


def _fetch_task(task: _Fetch) -> _Staged:
    """A worker's part of :func:`backfill_fanned`: fetch the window, stage what silver lacks."""
    catalog = task.where.catalog()
    raw = task.history().trades_by_time(task.exchange, task.symbol, task.start, task.end)
    return _stage_rows(
        PLANS["silver.trades"],
        catalog,
        raw,
        source="backfill",
        now=task.now,
        opts=task.opts,
        report=QualityReport(task.run_id, task.now),
        versions=(task.silver_version, task.quarantine_version),
    )


def _days(start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
    """``[start, end)`` cut at each UTC midnight."""
    out, lo = [], start
    while lo < end:
        midnight = datetime.combine(lo.date(), datetime.min.time(), tzinfo=UTC) + timedelta(days=1)
        hi = min(end, midnight)
        out.append((lo, hi))
        lo = hi
    return out


def backfill_fanned(
    catalog: Catalog,
    fanout: Fanout,
    history: Callable[[], VenueHistory],
    *,
    exchange: str,
    symbol: str,
    start: datetime,
    end: datetime,
    options: SilverOptions | None = None,
) -> int:
    """:func:`backfill` with ``[start, end)`` cut into UTC days that ``fanout`` fetches and stages
    anywhere (each with its own ccxt client from ``history``), committed to silver.trades once;
    returns the rows added."""
    opts = options or SilverOptions()
    now = datetime.now(UTC)
    report = QualityReport(uuid.uuid4().hex[:12], now)
    where = _fanout.Where.of(catalog)
    name = exchange.upper()

    def make(silver: DeltaTable, quarantine: DeltaTable | None) -> list[_Staged]:
        q_version = None if quarantine is None else quarantine.version()
        tasks = [
            _Fetch(where, history, name, symbol, lo, hi, silver.version(), q_version, now, opts, report.run_id)
            for lo, hi in _days(start, end)
        ]
        return fanout(_fetch_task, tasks)

    _commit_staged(catalog, "silver.trades", make, app=None, report=report)
    frame = report.frame()
    if frame.height:
        catalog.append("silver.dq_report", frame.to_arrow().cast(table_spec("silver.dq_report").schema))
    return sum(v for t, _, _, m, v, _ in report.rows if t == "silver.trades" and m == "rows_out")
