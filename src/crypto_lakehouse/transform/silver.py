"""bronze -> silver: validate (failures to ``silver.quarantine``), deduplicate on natural keys,
detect gaps and fill them with the real ccxt client; incremental and idempotent.

Incremental: each silver table's commit carries the Delta application transaction
``("promote:<bronze table>", <bronze version>)``, written in the **same commit** as the rows,
so the next run reads only bronze commits after that version (``Catalog.changes``) and a crash
can never promote a bronze version twice or skip one. Quarantine rows are written first and
deduplicated by a hash of the raw row, so a retried run does not quarantine twice.

Idempotent: rows are deduplicated within the batch (first received wins) and anti-joined with
the keys already in silver, so silver never holds a duplicate, whatever is reprocessed.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import polars as pl

from crypto_lakehouse.config import Settings, SilverSettings
from crypto_lakehouse.durations import parse_duration
from crypto_lakehouse.ingest.backfill import Backfiller
from crypto_lakehouse.schemas import SILVER, table_spec
from crypto_lakehouse.storage import Catalog

__all__ = ["PromoteResult", "SilverOptions", "backfill", "parse_window", "promote_from_settings", "promote_silver"]

LOG = logging.getLogger(__name__)

TS_MIN = datetime(2009, 1, 3, tzinfo=UTC)  # the first bitcoin block: nothing trades before it
SYMBOL_PATTERN = r"^[A-Z0-9]+-[A-Z0-9]+(-PERP|-\d{6})?$"
_UTC = pl.Datetime("us", "UTC")


@dataclass(frozen=True, slots=True)
class SilverOptions:
    max_future_skew: timedelta = timedelta(seconds=10)
    funding_gap: timedelta = timedelta(minutes=1)
    symbols: frozenset[str] | None = None  # allow-list; None: any well-formed symbol
    backfill: bool = True
    backfill_max_trades: int = 1_000_000  # trade ids per gap and run (a huge gap continues next run)

    @classmethod
    def from_settings(cls, s: SilverSettings) -> SilverOptions:
        return cls(
            max_future_skew=s.max_future_skew,
            funding_gap=s.funding_gap,
            symbols=frozenset(s.symbols) if s.symbols else None,
            backfill=s.backfill,
            backfill_max_trades=s.backfill_max_trades,
        )


Rule = tuple[str, Callable[[], pl.Expr]]  # (name, expression that is TRUE for a bad row)


def _num(c: str) -> pl.Expr:
    return pl.col(f"__{c}")


def _not_numeric(c: str, *, nullable: bool = False) -> Rule:
    bad = lambda: _num(c).is_null() & (pl.col(c).is_not_null() if nullable else pl.lit(True))  # noqa: E731
    return (f"{c}_not_numeric", bad)


def _positive(c: str, *, allow_zero: bool = False) -> Rule:
    return (
        f"{c}_not_positive" if not allow_zero else f"{c}_negative",
        lambda: (_num(c) < 0) if allow_zero else (_num(c) <= 0),
    )


@dataclass(frozen=True, slots=True)
class _Plan:
    """How one bronze table becomes its silver table."""

    bronze: str
    silver: str
    floats: tuple[str, ...] = ()  # string columns parsed to Float64
    nullable_floats: tuple[str, ...] = ()
    rules: tuple[Rule, ...] = ()
    time_col: str = "ts"  # bounded by TS_MIN .. now + skew
    keep: Callable[[], pl.Expr] | None = None  # rows to promote (others are superseded, counted)

    @property
    def key(self) -> tuple[str, ...]:
        return SILVER[self.silver].key


_SIDES = ("buy", "sell")
PLANS: dict[str, _Plan] = {
    p.silver: p
    for p in (
        _Plan(
            "bronze.trades",
            "silver.trades",
            floats=("price", "amount"),
            rules=(
                ("ts_missing", lambda: pl.col("ts").is_null()),
                ("bad_id", lambda: pl.col("id").cast(pl.Int64, strict=False).is_null()),
                _not_numeric("price"),
                _positive("price"),
                _not_numeric("amount"),
                _positive("amount"),
                ("unknown_side", lambda: ~pl.col("side").is_in(_SIDES)),
            ),
        ),
        _Plan(
            "bronze.book",
            "silver.book",
            floats=("price", "size"),
            rules=(
                _not_numeric("price"),
                _positive("price"),
                _not_numeric("size"),
                _positive("size", allow_zero=True),
                ("unknown_side", lambda: ~pl.col("side").is_in(("bid", "ask"))),
            ),
        ),
        _Plan(
            "bronze.ticker",
            "silver.ticker",
            floats=("bid", "ask"),
            nullable_floats=("bid_size", "ask_size"),
            rules=(
                _not_numeric("bid"),
                _positive("bid"),
                _not_numeric("ask"),
                _positive("ask"),
                _not_numeric("bid_size", nullable=True),
                _not_numeric("ask_size", nullable=True),
                ("crossed_book", lambda: _num("bid") >= _num("ask")),
            ),
        ),
        _Plan(
            "bronze.funding",
            "silver.funding",
            nullable_floats=("mark_price", "index_price", "rate", "predicted_rate"),
            rules=(
                _not_numeric("mark_price", nullable=True),
                ("mark_price_not_positive", lambda: _num("mark_price") <= 0),
                _not_numeric("rate", nullable=True),
                ("rate_out_of_bounds", lambda: _num("rate").abs() > 0.1),
                _not_numeric("index_price", nullable=True),
                _not_numeric("predicted_rate", nullable=True),
            ),
        ),
        _Plan(
            "bronze.liquidations",
            "silver.liquidations",
            floats=("quantity", "price"),
            rules=(
                _not_numeric("price"),
                _positive("price"),
                _not_numeric("quantity"),
                _positive("quantity"),
                ("unknown_side", lambda: ~pl.col("side").is_in(_SIDES)),
            ),
        ),
        _Plan(
            "bronze.candles",
            "silver.candles",
            floats=("open", "high", "low", "close", "volume"),
            rules=(
                *(r for c in ("open", "high", "low", "close") for r in (_not_numeric(c), _positive(c))),
                _not_numeric("volume"),
                _positive("volume", allow_zero=True),
                (
                    "high_low_inconsistent",
                    lambda: (
                        (_num("low") > pl.min_horizontal(_num("open"), _num("close")))
                        | (_num("high") < pl.max_horizontal(_num("open"), _num("close")))
                    ),
                ),
            ),
            time_col="start",
            keep=lambda: pl.col("closed"),
        ),
    )
}


@dataclass(slots=True)
class PromoteResult:
    """What one promote-silver run did; ``report`` is the rows written to ``silver.dq_report``."""

    run_id: str
    bronze_versions: dict[str, tuple[int | None, int]] = field(default_factory=dict)
    report: pl.DataFrame | None = None
    gaps: pl.DataFrame | None = None

    def totals(self) -> dict[str, dict[str, int]]:
        if self.report is None or self.report.is_empty():
            return {}
        agg = self.report.group_by("table", "metric").agg(pl.col("value").sum()).sort("table", "metric")
        out: dict[str, dict[str, int]] = {}
        for table, metric, value in agg.iter_rows():
            out.setdefault(table, {})[metric] = value
        return out


def _validate(plan: _Plan, df: pl.DataFrame, now: datetime, opts: SilverOptions) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split rows into (good rows in silver's columns, quarantined rows)."""
    parsed = df.with_columns(
        [pl.col(c).cast(pl.Float64, strict=False).alias(f"__{c}") for c in (*plan.floats, *plan.nullable_floats)]
    )
    when = pl.col(plan.time_col) if plan.time_col != "ts" else pl.coalesce("ts", "receipt_ts")
    rules: list[Rule] = [
        (
            "unknown_symbol",
            lambda: (
                ~pl.col("symbol").str.contains(SYMBOL_PATTERN)
                | (~pl.col("symbol").is_in(list(opts.symbols)) if opts.symbols else pl.lit(False))
            ),
        ),
        ("ts_out_of_bounds", lambda: when.is_null() | (when < TS_MIN) | (when > now + opts.max_future_skew)),
        *plan.rules,
    ]
    rule = pl.lit(None, dtype=pl.String)
    for name, expr in reversed(rules):
        rule = pl.when(expr().fill_null(False)).then(pl.lit(name)).otherwise(rule)
    parsed = parsed.with_columns(rule.alias("__rule"))
    bad = parsed.filter(pl.col("__rule").is_not_null())
    raw_cols = [c for c in df.columns if not c.startswith("__")]
    quarantine = bad.select(
        pl.lit(plan.silver).alias("table"),
        pl.col("__rule").alias("rule"),
        pl.col("exchange"),
        pl.col("symbol"),
        pl.struct(raw_cols).struct.json_encode().alias("raw"),
    ).with_columns(
        pl.col("raw").hash(seed=0).reinterpret(signed=True).alias("row_hash"),
        pl.lit(now).cast(_UTC).alias("detected_at"),
    )
    good = parsed.filter(pl.col("__rule").is_null()).with_columns(
        [pl.col(f"__{c}").alias(c) for c in (*plan.floats, *plan.nullable_floats)]
    )
    return good, quarantine


def _to_silver(plan: _Plan, good: pl.DataFrame, source: str | pl.Expr) -> pl.DataFrame:
    spec = SILVER[plan.silver]
    cols = {f.name: f for f in spec.schema}
    df = good.with_columns(
        pl.coalesce("ts", "receipt_ts").dt.date().alias("date")
        if plan.time_col == "ts"
        else pl.col("start").dt.date().alias("date"),
        (pl.lit(source) if isinstance(source, str) else source).alias("source"),
    )
    if "id" in cols and cols["id"].type == pl.Int64 or plan.silver == "silver.trades":
        df = df.with_columns(pl.col("id").cast(pl.Int64))
    return df.select(list(cols))


def _dedup(plan: _Plan, catalog: Catalog, rows: pl.DataFrame) -> tuple[pl.DataFrame, int]:
    """Drop duplicates within ``rows`` (first received wins) and rows whose key silver holds."""
    key = list(plan.key)
    before = rows.height
    # only rows whose key repeats need ordering: of those, the first received wins
    repeated = rows.select(pl.len().over(key) > 1).to_series()
    dups = rows.filter(repeated)
    if dups.height:
        dups = dups.sort("receipt_ts").unique(subset=key, keep="first")
        rows = pl.concat([rows.filter(~repeated), dups])
    if rows.height and catalog.exists(plan.silver):
        dates = rows.get_column("date")
        existing = (
            pl.scan_delta(catalog.uri(plan.silver), storage_options=catalog.storage_options)
            .filter(
                pl.col("exchange").is_in(rows.get_column("exchange").unique().to_list())
                & pl.col("symbol").is_in(rows.get_column("symbol").unique().to_list())
                & pl.col("date").is_between(dates.min(), dates.max())
            )
            .select(key)
            .collect()
        )
        if existing.height:
            rows = rows.join(existing, on=key, how="anti", nulls_equal=True)
    return rows, before - rows.height


def _quarantine(catalog: Catalog, q: pl.DataFrame) -> int:
    """Append quarantined rows not already there (by table + hash of the raw row)."""
    if q.is_empty():
        return 0
    q = q.unique(subset=["table", "row_hash"], keep="first")
    if catalog.exists("silver.quarantine"):
        seen = (
            pl.scan_delta(catalog.uri("silver.quarantine"), storage_options=catalog.storage_options)
            .filter(pl.col("table").is_in(q.get_column("table").unique().to_list()))
            .select("table", "row_hash")
            .collect()
        )
        q = q.join(seen, on=["table", "row_hash"], how="anti")
    if q.height:
        catalog.append(
            "silver.quarantine", q.select([f.name for f in table_spec("silver.quarantine").schema]).to_arrow()
        )
    return q.height


class _Report:
    def __init__(self, run_id: str, now: datetime):
        self.run_id, self.now = run_id, now
        self.rows: list[tuple] = []

    def add(
        self,
        table: str,
        metric: str,
        counts: pl.DataFrame | None = None,
        value: int | None = None,
        exchange: str | None = None,
        symbol: str | None = None,
    ) -> None:
        if counts is not None:
            for ex, sym, n in counts.group_by("exchange", "symbol").len().iter_rows():
                if n:
                    self.rows.append((table, ex, sym, metric, n))
        elif value:
            self.rows.append((table, exchange, symbol, metric, value))

    def frame(self) -> pl.DataFrame:
        return pl.DataFrame(
            [(self.run_id, self.now, *r) for r in self.rows],
            schema={
                "run_id": pl.String,
                "run_at": _UTC,
                "table": pl.String,
                "exchange": pl.String,
                "symbol": pl.String,
                "metric": pl.String,
                "value": pl.Int64,
            },
            orient="row",
        )


def _promote_rows(
    plan: _Plan,
    catalog: Catalog,
    raw: pl.DataFrame,
    *,
    source: str,
    now: datetime,
    opts: SilverOptions,
    report: _Report,
    app: tuple[str, int] | None,
) -> int:
    """Validate, quarantine, dedup and append ``raw`` (bronze-shaped rows); returns rows written."""
    report.add(plan.silver, "rows_in", raw)
    if plan.keep is not None:
        superseded = raw.filter(~plan.keep())
        report.add(plan.silver, "superseded", superseded)
        raw = raw.filter(plan.keep())
    good, bad = _validate(plan, raw, now, opts)
    for rule in bad.get_column("rule").unique().to_list():
        report.add(plan.silver, f"quarantined:{rule}", bad.filter(pl.col("rule") == rule))
    _quarantine(catalog, bad)
    rows, dups = _dedup(plan, catalog, _to_silver(plan, good, source))
    report.add(plan.silver, "duplicates", value=dups)
    report.add(plan.silver, "rows_out", rows)
    if rows.height or app is not None:
        app_id, version = app if app else (None, None)
        catalog.append(plan.silver, rows.to_arrow().cast(SILVER[plan.silver].schema), app_id=app_id, version=version)
    return rows.height


def _bronze_frame(
    catalog: Catalog, plan: _Plan, *, after: int | None, upto: int, start: datetime | None, end: datetime | None
) -> pl.DataFrame:
    if start is not None or end is not None:
        lf = pl.scan_delta(catalog.uri(plan.bronze), version=upto, storage_options=catalog.storage_options)
        t = pl.col(plan.time_col)
        prune = plan.time_col == "ts"  # `date` is the date of ts; a long candle's start can be days earlier
        if start is not None:
            lf = lf.filter((t >= start) & ((pl.col("date") >= start.date()) if prune else pl.lit(True)))
        if end is not None:
            lf = lf.filter((t < end) & ((pl.col("date") <= end.date()) if prune else pl.lit(True)))
        return lf.collect()
    if after is None:  # the whole table: Polars reads a snapshot fastest
        return pl.read_delta(catalog.uri(plan.bronze), version=upto, storage_options=catalog.storage_options)
    return pl.from_arrow(catalog.changes(plan.bronze, after=after, upto=upto))  # type: ignore[return-value]


def promote_silver(
    catalog: Catalog,
    *,
    tables: list[str] | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    backfiller: Backfiller | None = None,
    options: SilverOptions | None = None,
    now: datetime | None = None,
) -> PromoteResult:
    """Promote bronze commits not yet promoted (or, with ``start``/``end``, reprocess that window
    of exchange time) into silver; detect gaps and fill them with ``backfiller``."""
    opts = options or SilverOptions()
    now = now or datetime.now(UTC)
    result = PromoteResult(run_id=uuid.uuid4().hex[:12])
    report = _Report(result.run_id, now)
    for name in tables or list(PLANS):
        plan = PLANS[name if name.startswith("silver.") else f"silver.{name}"]
        if not catalog.exists(plan.bronze):
            continue
        app_id = f"promote:{plan.bronze}"
        upto = catalog.open(plan.bronze).version()
        after = catalog.committed_version(plan.silver, app_id)
        reprocess = start is not None or end is not None
        if not reprocess and after is not None and after >= upto:
            result.bronze_versions[plan.bronze] = (after, upto)
            continue  # nothing new
        raw = _bronze_frame(catalog, plan, after=after, upto=upto, start=start, end=end)
        result.bronze_versions[plan.bronze] = (after, upto)
        # rows the archive importer wrote carry writer ids "archive:<file>"
        archived = pl.col("writer_id").str.starts_with("archive:") if "writer_id" in raw.columns else pl.lit(False)
        raw = raw.with_columns(pl.when(archived).then(pl.lit("archive")).otherwise(pl.lit("stream")).alias("__source"))
        _promote_rows(
            plan,
            catalog,
            raw.drop("writer_id", "batch_id", "date", strict=False),
            source=pl.col("__source"),
            now=now,
            opts=opts,
            report=report,
            app=None if reprocess else (app_id, upto),
        )
    from crypto_lakehouse.transform.gaps import fill_gaps

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
    return result


def backfill(
    catalog: Catalog,
    backfiller: Backfiller,
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
    report = _Report(uuid.uuid4().hex[:12], now)
    raw = backfiller.trades_by_time(exchange.upper(), symbol, start, end)
    n = _promote_rows(
        PLANS["silver.trades"], catalog, raw, source="backfill", now=now, opts=opts, report=report, app=None
    )
    frame = report.frame()
    if frame.height:
        catalog.append("silver.dq_report", frame.to_arrow().cast(table_spec("silver.dq_report").schema))
    return n


def parse_window(text: str | None) -> datetime | None:
    """``2024-01-01``, ``2024-01-01T12:00:00Z`` or ``-2h`` (relative to now) -> UTC datetime."""
    if text is None:
        return None
    text = text.strip()
    if text.startswith("-"):
        return datetime.now(UTC) - parse_duration(text[1:])
    t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def promote_from_settings(
    settings: Settings,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    tables: list[str] | None = None,
) -> PromoteResult:
    """:func:`promote_silver` with the catalog, backfill endpoints and options of ``settings``."""
    catalog = Catalog(settings.root, storage_options=settings.storage_options)
    opts = SilverOptions.from_settings(settings.silver)
    backfiller = Backfiller(settings.silver.backfill_rest) if opts.backfill else None
    return promote_silver(catalog, tables=tables, start=start, end=end, backfiller=backfiller, options=opts)
