"""Gaps in silver: trade-id gaps (Binance aggTrade ids are contiguous per symbol), missing closed
candles, and silences in the funding stream; recorded in ``silver.gaps`` and filled by backfill.

Detection scans silver itself each run (not just the new rows), so it also finds gaps left by a
run that crashed between its silver commit and its gap bookkeeping.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import polars as pl

from crypto_lakehouse.durations import parse_duration
from crypto_lakehouse.schemas import table_spec
from crypto_lakehouse.storage import Catalog

if TYPE_CHECKING:
    from crypto_lakehouse.ingest.backfill import Backfiller

__all__ = ["detect_gaps", "fill_gaps"]

LOG = logging.getLogger(__name__)
_UTC = pl.Datetime("us", "UTC")
_KEY = ["exchange", "symbol", "table", "interval", "first_id", "start"]
_SCHEMA = {
    "exchange": pl.String,
    "symbol": pl.String,
    "table": pl.String,
    "interval": pl.String,
    "first_id": pl.Int64,
    "last_id": pl.Int64,
    "start": _UTC,
    "end": _UTC,
}


def _scan(catalog: Catalog, table: str) -> pl.LazyFrame | None:
    if not catalog.exists(table):
        return None
    return pl.scan_delta(catalog.uri(table), storage_options=catalog.storage_options)


def _empty() -> pl.DataFrame:
    return pl.DataFrame(schema=_SCHEMA)


def detect_gaps(catalog: Catalog, *, funding_gap: timedelta) -> pl.DataFrame:
    """Every range currently missing from silver (columns of ``silver.gaps`` up to ``end``)."""
    frames = [_empty()]
    trades = _scan(catalog, "silver.trades")
    if trades is not None:
        frames.append(
            trades.select("exchange", "symbol", "id")
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
            )
            .collect()
        )
    candles = _scan(catalog, "silver.candles")
    if candles is not None:
        c = candles.select("exchange", "symbol", "interval", "start").unique().collect()
        steps = pl.DataFrame(
            {
                "interval": (ivs := c.get_column("interval").unique().to_list()),
                "step": [parse_duration(i) for i in ivs],
            },
            schema={"interval": pl.String, "step": pl.Duration("us")},
        )
        c = c.join(steps, on="interval")
        frames.append(
            c.sort("exchange", "symbol", "interval", "start")
            .with_columns(pl.col("start").shift(1).over("exchange", "symbol", "interval").alias("prev"))
            .filter(pl.col("start") - pl.col("prev") > pl.col("step"))
            .select(
                "exchange",
                "symbol",
                pl.lit("silver.candles").alias("table"),
                "interval",
                pl.lit(None, pl.Int64).alias("first_id"),
                pl.lit(None, pl.Int64).alias("last_id"),
                (pl.col("prev") + pl.col("step")).alias("start"),
                pl.col("start").alias("end"),
            )
        )
    funding = _scan(catalog, "silver.funding")
    if funding is not None:
        frames.append(
            funding.filter(pl.col("source") == "stream")
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
            )
            .collect()
        )
    return pl.concat([f.cast(_SCHEMA) for f in frames], how="vertical")


def _previous(catalog: Catalog) -> pl.DataFrame:
    spec = table_spec("silver.gaps")
    if catalog.exists("silver.gaps"):
        return pl.read_delta(catalog.uri("silver.gaps"), storage_options=catalog.storage_options)
    return pl.DataFrame(schema=pl.Schema(pl.from_arrow(spec.schema.empty_table()).schema))


def fill_gaps(
    catalog: Catalog,
    *,
    backfiller: Backfiller | None,
    report: Any,
    now: datetime,
    options: Any,
    promote: Callable[[Any, pl.DataFrame], int],
) -> pl.DataFrame:
    """Record new gaps, close those no longer missing, try to backfill the open ones, and rewrite
    ``silver.gaps``. Returns the gaps table as written."""
    from crypto_lakehouse.transform.silver import PLANS

    current = detect_gaps(catalog, funding_gap=options.funding_gap)
    previous = _previous(catalog)
    if current.is_empty() and previous.is_empty():
        return previous
    was_open = previous.filter(pl.col("status") == "open")
    history = previous.filter(pl.col("status") != "open")
    closed = was_open.join(current, on=_KEY, how="anti", nulls_equal=True).with_columns(
        pl.lit("filled").alias("status"),
        pl.lit(now).cast(_UTC).alias("filled_at"),
        pl.lit("no longer missing").alias("reason"),
    )
    still_open = was_open.join(current, on=_KEY, how="semi", nulls_equal=True)
    new = current.join(previous, on=_KEY, how="anti", nulls_equal=True).with_columns(
        pl.lit(now).cast(_UTC).alias("detected_at"),
        pl.lit("open").alias("status"),
        pl.lit(None, pl.String).alias("reason"),
        pl.lit(0, pl.Int64).alias("attempts"),
        pl.lit(0, pl.Int64).alias("rows_filled"),
        pl.lit(None, _UTC).alias("filled_at"),
    )
    if new.is_empty() and closed.is_empty() and still_open.is_empty():
        return previous  # nothing changed: no commit
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
            if table == "silver.trades":
                # bounded per run: a huge gap (say, between old archives and the stream) continues next run
                last = min(gap["last_id"], gap["first_id"] + options.backfill_max_trades - 1)
                partial = last < gap["last_id"]
                raw = backfiller.trades_by_id(gap["exchange"], gap["symbol"], gap["first_id"], last)
                expected = last - gap["first_id"] + 1
                got = raw.get_column("id").cast(pl.Int64).n_unique()
            elif table == "silver.candles":
                raw = backfiller.candles(gap["exchange"], gap["symbol"], gap["interval"], gap["start"], gap["end"])
                expected = (gap["end"] - gap["start"]) // parse_duration(gap["interval"])
                got = raw.height
            else:
                raw = backfiller.funding(gap["exchange"], gap["symbol"], gap["start"], gap["end"])
                expected = got = raw.height  # the exchange keeps settlements only: take what it has
            added = promote(PLANS[table], raw)
            gap["rows_filled"] += added
            report.add(table, "backfilled_rows", value=added, exchange=gap["exchange"], symbol=gap["symbol"])
            if got < expected:
                gap["reason"] = f"the exchange returned {got} of {expected} missing rows; retried next run"
            elif partial:
                total = gap["last_id"] - gap["first_id"] + 1
                gap["reason"] = f"filled {got} of {total} ids (backfill_max_trades per run); continues next run"
            else:
                gap.update(status="filled", filled_at=now, reason=f"backfilled {got} rows over REST")
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
    return out
