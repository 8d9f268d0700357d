"""What silver is made of, shared by the promote (``silver``) and the gap filler (``gaps``):
the :class:`Plan` of each silver table (its bronze source, float columns, validation rules), the
run's :class:`SilverOptions`, the :class:`QualityReport` both add metrics to, and the
:data:`Promote` callback the gap filler hands backfilled rows to.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import polars as pl

from crypto_lakehouse.config import SilverSettings
from crypto_lakehouse.durations import candle_interval
from crypto_lakehouse.errors import LakehouseError
from crypto_lakehouse.schemas import SILVER
from crypto_lakehouse.transform.history import VenueLookup
from crypto_lakehouse.venues.registry import venue

__all__ = [
    "ORIGIN",
    "PLANS",
    "TS_MIN",
    "Plan",
    "Promote",
    "QualityReport",
    "Rule",
    "SilverOptions",
    "VenueChecks",
    "float_col",
    "trade_columns",
]

TS_MIN = datetime(2009, 1, 3, tzinfo=UTC)  # the first bitcoin block: nothing trades before it
_UTC = pl.Datetime("us", "UTC")


@dataclass(frozen=True, slots=True)
class VenueChecks:
    """What silver checks of one exchange's data. From the venue registry; for an exchange it
    does not know (or a run given no registry), assumptions that infer nothing: ids ``opaque``
    (identity only: no id gaps), sequence ``none``, backfill ``None`` (ask the backfiller)."""

    exchange: str
    trade_ids: str = "opaque"  # contiguous | monotonic | opaque | none
    book_sequence: str = "none"  # per_update | per_range | none
    can_backfill: bool | None = None
    known: bool = False  # in the registry

    @property
    def integer_ids(self) -> bool:
        """The venue's trade ids are integers (a non-integer id is a bad row)."""
        return self.trade_ids in ("contiguous", "monotonic")


@dataclass(frozen=True, slots=True)
class SilverOptions:
    """How a promote-silver run validates and fills gaps (``[silver]`` in the settings).
    ``venues``: what may be assumed of each venue; by default the registry
    (``crypto_lakehouse.venues.venue``). An exchange it does not know gets no assumption
    (:class:`VenueChecks`' defaults: opaque ids, no sequence)."""

    max_future_skew: timedelta = timedelta(seconds=10)
    funding_gap: timedelta = timedelta(minutes=1)
    symbols: frozenset[str] | None = None  # allow-list; None: any well-formed symbol
    backfill: bool = True
    backfill_max_trades: int = 1_000_000  # trade ids per gap and run (a huge gap continues next run)
    venues: VenueLookup = venue

    @classmethod
    def from_settings(cls, s: SilverSettings, *, venues: VenueLookup = venue) -> SilverOptions:
        return cls(
            max_future_skew=s.max_future_skew,
            funding_gap=s.funding_gap,
            symbols=frozenset(s.symbols) if s.symbols else None,
            backfill=s.backfill,
            backfill_max_trades=s.backfill_max_trades,
            venues=venues,
        )

    def checks(self, exchange: str) -> VenueChecks:
        """The :class:`VenueChecks` of ``exchange`` (a cryptofeed id)."""
        try:
            v = self.venues(exchange)
        except LakehouseError:  # not a venue of the registry: assume nothing
            return VenueChecks(exchange)
        return VenueChecks(exchange, v.trade_ids, v.book_sequence, v.can_backfill, known=True)


Rule = tuple[str, Callable[[], pl.Expr]]  # (name, expression that is TRUE for a bad row)


def float_col(c: str) -> pl.Expr:
    """``__<c>``: column ``c`` parsed to Float64 (null where it is no number)."""
    return pl.col(f"__{c}")


def _not_numeric(c: str, *, nullable: bool = False) -> Rule:
    bad = lambda: float_col(c).is_null() & (pl.col(c).is_not_null() if nullable else pl.lit(True))  # noqa: E731
    return (f"{c}_not_numeric", bad)


def _positive(c: str, *, allow_zero: bool = False) -> Rule:
    return (
        f"{c}_not_positive" if not allow_zero else f"{c}_negative",
        lambda: (float_col(c) < 0) if allow_zero else (float_col(c) <= 0),
    )


@dataclass(frozen=True, slots=True)
class Plan:
    """How one bronze table becomes its silver table."""

    bronze: str
    silver: str
    floats: tuple[str, ...] = ()  # string columns parsed to Float64
    nullable_floats: tuple[str, ...] = ()
    rules: tuple[Rule, ...] = ()
    keep: Callable[[], pl.Expr] | None = None  # rows to promote (others are superseded, counted)
    # (column, expression TRUE for a row that carries no data): an update the venue sent empty
    # (bronze keeps it so updates stay countable); counted as ``empty_updates``, never promoted
    empty: tuple[str, Callable[[], pl.Expr]] | None = None
    # adds parsed ``__<column>`` columns the rules need beyond the floats (candles: the interval;
    # trades: the venue's kind of id)
    prepare: Callable[[pl.DataFrame, SilverOptions], pl.DataFrame] | None = None
    # reads stored rows (of this or an earlier release) with this release's key columns
    upgrade: Callable[[pl.LazyFrame], pl.LazyFrame] | None = None
    # columns a row with a key silver already holds must repeat: a row whose key is stored with
    # other values here is a conflict (two markets, or a venue that reused ids), not a duplicate
    conflict_columns: tuple[str, ...] = ()

    @property
    def key(self) -> tuple[str, ...]:
        return SILVER[self.silver].key


def _parse_intervals(df: pl.DataFrame, _opts: SilverOptions) -> pl.DataFrame:
    """``__interval``: a candle's interval as silver stores it (``1mo`` -> ``1M``), null when it
    is no interval (:func:`candle_interval`). Parsed once per distinct value."""
    names = {v: (iv.name if (iv := candle_interval(v)) else None) for v in df.get_column("interval").unique().to_list()}
    return df.with_columns(pl.col("interval").replace_strict(names, return_dtype=pl.String).alias("__interval"))


ORIGIN = "__origin"
"""The column promote adds to bronze rows: ``<writer_id>:<batch_id>``, the commit that wrote them."""
_TRADE_IDS, _INT_ID, _ROW = "__trade_ids", "__int_id", "__row"


def _trade_ids(df: pl.DataFrame, opts: SilverOptions) -> pl.DataFrame:
    """``__trade_ids`` (the venue's kind of id), ``__int_id`` (the id as an integer, null where
    it is none) and ``__row`` (what identifies a row of a venue without ids: its bronze commit,
    contents and rank among identical rows of that commit, which is the same however they are
    ordered, since they are identical)."""
    kinds = {ex: opts.checks(ex).trade_ids for ex in df.get_column("exchange").unique().to_list()}
    ident = [
        pl.col(ORIGIN) if ORIGIN in df.columns else pl.lit(None, pl.String),
        pl.col("exchange"),
        pl.col("symbol"),
        pl.col("ts").dt.epoch("us"),
        pl.col("receipt_ts").dt.epoch("us"),
        pl.col("side"),
        pl.col("price"),
        pl.col("amount"),
    ]
    text = [e.cast(pl.String).fill_null("") for e in ident]
    row = pl.concat_str([*text, pl.int_range(pl.len()).over(text).cast(pl.String)], separator="|")
    return df.with_columns(
        pl.col("exchange").replace_strict(kinds, return_dtype=pl.String).alias(_TRADE_IDS),
        pl.col("id").cast(pl.Int64, strict=False).alias(_INT_ID),
        (row if "none" in kinds.values() else pl.lit(None, pl.String)).alias(_ROW),  # only venues without ids need it
    )


def trade_columns(df: pl.DataFrame) -> pl.DataFrame:
    """Silver's id columns of validated trades (with :func:`_trade_ids`' columns): ``id`` the
    integer id (null where the venue's is no integer), ``trade_id`` the id as the venue sent it,
    ``trade_key`` the dedup key: the id (as an integer's text where it is one) or, for a venue
    without ids, ``row:`` and a sha256 of ``__row`` (only re-deliveries of one bronze row match)."""
    none = df.get_column(_TRADE_IDS) == "none"
    rows = df.get_column(_ROW).filter(none).to_list()
    keys = iter(f"row:{hashlib.sha256(r.encode()).hexdigest()[:32]}" for r in rows)
    by_row = [next(keys) if n else None for n in none.to_list()] if rows else [None] * df.height
    return df.with_columns(
        pl.col(_INT_ID).alias("id"),
        pl.col("id").alias("trade_id"),
        pl.coalesce(pl.Series("__key", by_row, dtype=pl.String), pl.col(_INT_ID).cast(pl.String), pl.col("id")).alias(
            "trade_key"
        ),
    )


def _legacy_trade_key(trades: pl.LazyFrame) -> pl.LazyFrame:
    """Rows written before ``trade_key`` existed (integer ids only) are keyed by their id."""
    legacy = pl.col("id").cast(pl.String)
    if "trade_key" not in trades.collect_schema().names():
        return trades.with_columns(legacy.alias("trade_key"))
    return trades.with_columns(pl.coalesce("trade_key", legacy).alias("trade_key"))


_SIDES = ("buy", "sell")
PLANS: dict[str, Plan] = {
    p.silver: p
    for p in (
        Plan(
            "bronze.trades",
            "silver.trades",
            floats=("price", "amount"),
            rules=(
                ("ts_missing", lambda: pl.col("ts").is_null()),
                # the venue's ids are integers: anything else is a bad row
                ("bad_id", lambda: pl.col(_TRADE_IDS).is_in(("contiguous", "monotonic")) & pl.col(_INT_ID).is_null()),
                # the venue's ids are opaque: identity only, but there must be one
                (
                    "missing_id",
                    lambda: (pl.col(_TRADE_IDS) == "opaque") & (pl.col("id").str.strip_chars() == "").fill_null(True),
                ),
                _not_numeric("price"),
                _positive("price"),
                _not_numeric("amount"),
                _positive("amount"),
                ("unknown_side", lambda: ~pl.col("side").is_in(_SIDES)),
            ),
            prepare=_trade_ids,
            upgrade=_legacy_trade_key,
            conflict_columns=("ts", "side", "price", "amount"),
        ),
        Plan(
            "bronze.book",
            "silver.book",
            floats=("price", "size"),
            empty=("levels", lambda: (pl.col("levels") == 0).fill_null(False)),  # null: written without a count
            rules=(
                _not_numeric("price"),
                _positive("price"),
                _not_numeric("size"),
                _positive("size", allow_zero=True),
                ("unknown_side", lambda: ~pl.col("side").is_in(("bid", "ask"))),
            ),
        ),
        Plan(
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
                ("crossed_book", lambda: float_col("bid") >= float_col("ask")),
            ),
        ),
        Plan(
            "bronze.funding",
            "silver.funding",
            nullable_floats=("mark_price", "index_price", "rate", "predicted_rate"),
            rules=(
                _not_numeric("mark_price", nullable=True),
                ("mark_price_not_positive", lambda: float_col("mark_price") <= 0),
                _not_numeric("rate", nullable=True),
                ("rate_out_of_bounds", lambda: float_col("rate").abs() > 0.1),
                _not_numeric("index_price", nullable=True),
                _not_numeric("predicted_rate", nullable=True),
            ),
        ),
        Plan(
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
        Plan(
            "bronze.candles",
            "silver.candles",
            floats=("open", "high", "low", "close", "volume"),
            rules=(
                ("unknown_interval", lambda: pl.col("__interval").is_null()),
                (  # the window cannot open after the candle was reported
                    "ts_out_of_bounds",
                    lambda: (pl.col("start") < TS_MIN) | (pl.col("start") > pl.coalesce("ts", "receipt_ts")),
                ),
                *(r for c in ("open", "high", "low", "close") for r in (_not_numeric(c), _positive(c))),
                _not_numeric("volume"),
                _positive("volume", allow_zero=True),
                (
                    "high_low_inconsistent",
                    lambda: (
                        (float_col("low") > pl.min_horizontal(float_col("open"), float_col("close")))
                        | (float_col("high") < pl.max_horizontal(float_col("open"), float_col("close")))
                    ),
                ),
            ),
            keep=lambda: pl.col("closed"),
            prepare=_parse_intervals,
        ),
    )
}


class QualityReport:
    """The data-quality metrics of one run, as rows of ``silver.dq_report``: counts per table,
    metric and (exchange, symbol), added by validation, dedup and the gap filler, and the checks
    the gap detection ran (metric ``check:<name>``, ``detail`` how, ``value`` what it found)."""

    def __init__(self, run_id: str, now: datetime):
        self.run_id, self.now = run_id, now
        self.rows: list[tuple[str, str | None, str | None, str, int, str | None]] = []

    def add(
        self,
        table: str,
        metric: str,
        counts: pl.DataFrame | None = None,
        value: int | None = None,
        exchange: str | None = None,
        symbol: str | None = None,
    ) -> None:
        """Count ``counts``' rows per (exchange, symbol), or add ``value`` (zero: nothing)."""
        if counts is not None:
            for ex, sym, n in counts.group_by("exchange", "symbol").len().iter_rows():
                if n:
                    self.rows.append((table, ex, sym, metric, n, None))
        elif value:
            self.rows.append((table, exchange, symbol, metric, value, None))

    def checked(self, table: str, check: str, *, exchange: str, symbol: str, detail: str, found: int) -> None:
        """Record that ``check`` ran (or was skipped, ``detail`` says why) on ``exchange``/``symbol``
        and found ``found`` gaps (zero included: a check that found nothing is still reported)."""
        self.rows.append((table, exchange, symbol, f"check:{check}", found, detail))

    def pairs(self, table: str) -> list[tuple[str, str]]:
        """The (exchange, symbol) pairs this run's metrics of ``table`` name, sorted."""
        return sorted({(ex, sym) for t, ex, sym, *_ in self.rows if t == table and ex is not None and sym is not None})

    def frame(self) -> pl.DataFrame:
        """The rows added so far, in ``silver.dq_report``'s columns."""
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
                "detail": pl.String,
            },
            orient="row",
        )


Promote = Callable[[Plan, pl.DataFrame], int]
"""Validate, dedup and append bronze-shaped rows to ``plan``'s silver table; returns rows written."""
