"""Jobs that build silver and gold: ``promote_silver``, ``promote_gold`` and ``backfill``."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import TypedDict

import polars as pl

from crypto_lakehouse.config import Settings
from crypto_lakehouse.durations import TimeLike, time_range
from crypto_lakehouse.ingest.backfill import Backfiller, Progress, backfiller_from_settings, rest_urls
from crypto_lakehouse.ingest.sessions import recorded_rest_urls
from crypto_lakehouse.jobs._fanout import Runner, runner_from_settings
from crypto_lakehouse.storage import Catalog
from crypto_lakehouse.transform import silver
from crypto_lakehouse.transform.anomalies import AnomalyOptions, build_anomalies
from crypto_lakehouse.transform.gold import GoldResult, build_gold, build_gold_fanned
from crypto_lakehouse.transform.silver import PromoteResult, SilverOptions

__all__ = [
    "BackfillResult",
    "SilverResult",
    "SilverSummary",
    "Window",
    "backfill",
    "count_open_gaps",
    "promote_gold",
    "promote_silver",
]

Window = TimeLike
"""A bound in exchange time: a datetime, or text ``2024-01-01``, ``2024-01-01T12:00:00Z`` or
``-2h`` (that long before now), all UTC (:func:`crypto_lakehouse.durations.parse_time`)."""


def count_open_gaps(gaps: pl.DataFrame | None) -> int:
    """Gaps a promote run left open (backfill off, or the exchange could not fill them)."""
    if gaps is None or gaps.is_empty():
        return 0
    return gaps.filter(pl.col("status") == "open").height


class SilverSummary(TypedDict):
    """:meth:`SilverResult.summary`."""

    run_id: str
    tables: dict[str, dict[str, int]]  # table -> metric -> total
    open_gaps: int
    bronze_versions: dict[str, tuple[int | None, int]]  # bronze table -> (after, upto)


@dataclass(frozen=True, slots=True)
class SilverResult:
    """A promote-silver run: what :func:`crypto_lakehouse.transform.silver.promote_silver`
    reports, and how many gaps it left open."""

    promotion: PromoteResult
    open_gaps: int

    def summary(self) -> SilverSummary:
        """The run as JSON-ready data: run id, totals per table and metric, open gaps and the
        bronze versions promoted (``[after, upto]`` per bronze table)."""
        return {
            "run_id": self.promotion.run_id,
            "tables": self.promotion.totals(),
            "open_gaps": self.open_gaps,
            "bronze_versions": self.promotion.bronze_versions,
        }


def promote_silver(
    settings: Settings,
    *,
    start: Window | None = None,
    end: Window | None = None,
    tables: Sequence[str] | None = None,
    runner: Runner | None = None,
) -> SilverResult:
    """bronze -> silver: only bronze commits not yet promoted, or with ``start``/``end`` that
    window of exchange time again (idempotent either way); gaps are filled over REST unless
    ``silver.backfill`` is off, from each exchange's ``silver.backfill_rest`` entry, else the
    endpoint the root was streamed from (a loopback exchange), else the exchange's own.
    ``tables``: only these (``trades``, ``silver.book``, ...).

    ``runner`` (default: ``scale.runner``'s): where the groups of (exchange, symbol, day) run,
    committed once per table (:func:`crypto_lakehouse.transform.silver.promote_silver_fanned`);
    with none, the job runs in this process unsplit."""
    first, last = time_range(start, end)
    opts = SilverOptions.from_settings(settings.silver)
    catalog = Catalog.from_settings(settings)
    backfiller = backfiller_from_settings(settings, recorded=recorded_rest_urls(catalog))
    names = None if tables is None else list(tables)
    with runner_from_settings(settings.scale) if runner is None else nullcontext(runner) as fanout:
        if fanout is None:
            result = silver.promote_silver(
                catalog, tables=names, start=first, end=last, backfiller=backfiller, options=opts
            )
        else:
            result = silver.promote_silver_fanned(
                catalog, fanout.map, tables=names, start=first, end=last, backfiller=backfiller, options=opts
            )
    return SilverResult(promotion=result, open_gaps=count_open_gaps(result.gaps))


def promote_gold(settings: Settings, *, runner: Runner | None = None) -> GoldResult:
    """silver -> gold: bars at every ``gold.intervals``, exchange candles, funding and the
    tick/volume/dollar bars of ``gold.bars`` (gold.info_bars), for the silver rows added since
    the last run (nothing new: nothing written); then the cross-venue and spike checks of
    gold.anomalies (``quality`` thresholds) for the days those rows touch.

    ``runner`` (default: ``scale.runner``'s): where the trade bars of each group of (exchange,
    symbol) are built, committed to gold.ohlcv once
    (:func:`crypto_lakehouse.transform.gold.build_gold_fanned`); with none, in this process."""
    catalog = Catalog.from_settings(settings)
    with runner_from_settings(settings.scale) if runner is None else nullcontext(runner) as fanout:
        if fanout is None:
            result = build_gold(
                catalog, intervals=settings.gold.intervals, bars=settings.gold.bars, book=settings.gold.book
            )
        else:
            result = build_gold_fanned(
                catalog, fanout.map, intervals=settings.gold.intervals, bars=settings.gold.bars, book=settings.gold.book
            )
    result.anomalies = build_anomalies(catalog, options=AnomalyOptions.from_settings(settings.quality))
    return result


@dataclass(frozen=True, slots=True)
class BackfillResult:
    exchange: str
    symbol: str
    rows_added: int


def backfill(
    settings: Settings,
    *,
    exchange: str,
    symbol: str,
    start: Window,
    end: Window | None = None,
    rest: str | None = None,
    progress: Progress | None = None,
    runner: Runner | None = None,
) -> BackfillResult:
    """Fetch ``exchange``/``symbol`` trades in ``[start, end)`` (``end`` default: now) over REST
    with ccxt into silver, validated and deduplicated like everything else. ``rest``: the REST
    base to use for ``exchange`` (a loopback exchange); without it, ``silver.backfill_rest``'s,
    else the endpoint the root was streamed from, else the exchange's own.

    ``runner`` (default: ``scale.runner``'s): where each UTC day is fetched and staged (its own
    ccxt client), committed to silver once (no ``progress`` then); with none, in this process."""
    name = exchange.upper()
    first, last = time_range(start, datetime.now(UTC) if end is None else end)
    assert first is not None and last is not None  # both given
    catalog = Catalog.from_settings(settings)
    urls = rest_urls(settings.silver.backfill_rest, recorded=recorded_rest_urls(catalog), given={name: rest or ""})
    opts = SilverOptions.from_settings(settings.silver)
    with runner_from_settings(settings.scale) if runner is None else nullcontext(runner) as fanout:
        if fanout is None:
            added = silver.backfill(
                catalog,
                Backfiller(urls, progress=progress),
                exchange=name,
                symbol=symbol,
                start=first,
                end=last,
                options=opts,
            )
        else:
            added = silver.backfill_fanned(
                catalog,
                fanout.map,
                partial(Backfiller, urls),
                exchange=name,
                symbol=symbol,
                start=first,
                end=last,
                options=opts,
            )
    return BackfillResult(exchange=name, symbol=symbol, rows_added=added)
