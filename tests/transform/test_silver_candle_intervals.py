"""Candles of calendar intervals in silver: the archive's ``1mo`` and cryptofeed's ``1M`` are one
candle, a candle whose interval means nothing is quarantined with a rule (``unknown_interval``) and
never stops a run, and monthly candles promote end to end (old code: every run's gap step failed
with ``unparsable duration``)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl

from crypto_lakehouse.storage import Catalog
from crypto_lakehouse.transform import silver
from crypto_lakehouse.transform.gold import build_gold
from crypto_lakehouse.transform.plans import QualityReport
from crypto_lakehouse.transform.silver import SilverOptions, promote_silver

from .helpers import write_bronze
from .test_calendar_intervals import MONTHS, _candle, _monthly

NO_BACKFILL = SilverOptions(backfill=False)


def test_archive_and_stream_spellings_of_a_month_are_one_candle_in_silver(tmp_path: Path) -> None:
    """The archive's ``klines/1mo`` and cryptofeed's ``1M`` are the same candle: silver stores the
    exchange's spelling, ``1M``, so the key dedups them (and the gap step and backfill use it)."""
    catalog = Catalog(tmp_path)
    now = MONTHS[-1]
    plan = silver.PLANS["silver.candles"]
    for interval in ("1mo", "1M", "1mo"):
        raw = pl.DataFrame(
            [_monthly(0, interval=interval)],
            schema_overrides={c: pl.Datetime("us", "UTC") for c in ("ts", "receipt_ts", "start", "stop")},
        )
        report = QualityReport("r", now)
        silver._promote_rows(plan, catalog, raw, source="archive", now=now, opts=NO_BACKFILL, report=report, app=None)
    got = pl.read_delta(str(tmp_path / "silver" / "candles"))
    assert got.select("interval", "start").rows() == [("1M", MONTHS[0])]


def test_a_candle_of_an_unknown_interval_is_quarantined_and_the_run_completes(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path)
    t = datetime(2024, 1, 1, tzinfo=UTC)
    good = [_candle("1m", t + timedelta(minutes=i), t + timedelta(minutes=i + 1, milliseconds=-1)) for i in range(3)]
    good += [
        _candle("1w", t, t + timedelta(days=7, milliseconds=-1)),
        _candle("3d", t, t + timedelta(days=3, milliseconds=-1)),
    ]
    bad = _candle("bogus", t, t + timedelta(minutes=1, milliseconds=-1))
    write_bronze(catalog, "bronze.candles", [*good, bad])
    result = promote_silver(catalog, options=NO_BACKFILL)  # old code: ValueError in the gap step
    assert pl.read_delta(str(tmp_path / "silver" / "candles")).height == 5
    q = pl.read_delta(str(tmp_path / "silver" / "quarantine"))
    assert q.select("table", "rule").rows() == [("silver.candles", "unknown_interval")]
    assert result.totals()["silver.candles"]["quarantined:unknown_interval"] == 1
    assert pl.read_delta(str(tmp_path / "silver" / "dq_report")).height > 0  # the run reached its report
    build_gold(catalog, intervals=[timedelta(minutes=1)])


def test_monthly_candles_promote_end_to_end_with_their_missing_month_as_a_gap(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path)
    # January and February streamed, April from the archive (its spelling), March missing
    write_bronze(catalog, "bronze.candles", [_monthly(0), _monthly(1), _monthly(3, interval="1mo")])
    result = promote_silver(catalog, options=NO_BACKFILL, now=MONTHS[-1] + timedelta(days=1))
    candles = pl.read_delta(str(tmp_path / "silver" / "candles")).sort("start")
    assert candles.select("interval", "start").rows() == [("1M", MONTHS[i]) for i in (0, 1, 3)]
    assert candles["date"].to_list() == [date(2024, 2, 1), date(2024, 3, 1), date(2024, 5, 1)]  # of ts
    gaps = result.gaps.filter(pl.col("table") == "silver.candles")
    assert gaps.select("interval", "start", "end").rows() == [("1M", MONTHS[2], MONTHS[3])]
    build_gold(catalog, intervals=[timedelta(minutes=1)])
    gold = pl.read_delta(str(tmp_path / "gold" / "ohlcv"))
    assert sorted(gold.filter(pl.col("interval") == "1M")["window_start"].to_list()) == [MONTHS[i] for i in (0, 1, 3)]
