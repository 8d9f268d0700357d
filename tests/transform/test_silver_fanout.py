"""Promote-silver and backfill fanned out over groups of (exchange, symbol, day): the same silver
as the job in one process (on a Dask LocalCluster of 2 worker processes), one commit per table,
and exactly once whatever fails or races."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from crypto_lakehouse import jobs, load_settings
from crypto_lakehouse.config import Settings
from crypto_lakehouse.loopback import FaultPlan, MarketSpec, SyntheticMarket, running_exchange
from crypto_lakehouse.storage import Catalog
from tests.transform.helpers import CrashingRunner, stream_into_bronze, write_bronze

DAY = datetime(2024, 3, 1, tzinfo=UTC)
RUN_COLUMNS = {"detected_at", "run_id", "run_at", "updated_at"}  # when a run ran: differ between any two runs
# silver.gaps: a silence still open when a run ran ends at that run's time


def _trades(exchange: str, symbol: str, day: int, ids: Sequence[int], *, price: str = "100") -> list[dict[str, Any]]:
    t0 = DAY + timedelta(days=day)
    return [
        {
            "exchange": exchange,
            "symbol": symbol,
            "ts": t0 + timedelta(seconds=i % 80_000),
            "receipt_ts": t0 + timedelta(seconds=i % 80_000, milliseconds=5),
            "id": str(i),
            "side": "buy" if i % 3 else "sell",
            "price": price,
            "amount": "0.5",
        }
        for i in ids
    ]


def _more_bronze(catalog: Catalog, round_: int) -> None:
    """Trades of 2 venues x 2 symbols over 3 days in several commits: ids repeated within and
    across commits, a gap, a price of 0 (quarantined); ``round_`` 1 adds later ids and repeats."""
    base = 1_000 * round_
    for day in range(3):
        for ex, sym in (("BINANCE", "BTC-USDT"), ("BINANCE", "ETH-USDT"), ("BYBIT", "BTC-USDT")):
            first = 100_000 * (day + 1) + base
            write_bronze(catalog, "bronze.trades", _trades(ex, sym, day, [*range(first, first + 40), first + 5]))
            write_bronze(catalog, "bronze.trades", _trades(ex, sym, day, range(first + 30, first + 60)))
            write_bronze(catalog, "bronze.trades", _trades(ex, sym, day, [first + 70], price="0"))


@pytest.fixture(scope="module")
def bronze(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bronze root with every table the synthetic futures market streams (with duplicates and
    malformed frames) and hand-written trades over three days."""
    root = tmp_path_factory.mktemp("fanout") / "lake"
    spec = MarketSpec(
        first_id=1_000_000, exchange="BINANCE_FUTURES", symbols=["BTCUSDT", "ETHUSDT"], rate=10_000, max_trades=1_500
    )
    with running_exchange(market=spec, faults=FaultPlan(duplicate_every=40, malformed_every=150)) as ex:
        stream_into_bronze(ex, root)
    _more_bronze(Catalog(root), 0)
    return root


@pytest.fixture(scope="module")
def cluster() -> Iterator[jobs.Runner]:
    with jobs.dask_runner(workers=2) as runner:
        yield runner


def _copy(bronze: Path, to: Path) -> Settings:
    shutil.copytree(bronze, to)
    return load_settings(root=str(to), silver={"backfill": False})


def _silver(root: Path, *, ignore: tuple[str, ...] = ()) -> dict[str, pl.DataFrame]:
    """Every silver table but the run's report, sorted, less the columns that say when it ran
    (and ``ignore``)."""
    out = {}
    for path in sorted((root / "silver").iterdir()):
        if path.name == "dq_report" or not (path / "_delta_log").exists():
            continue
        df = pl.read_delta(str(path))
        df = df.drop([c for c in df.columns if c in RUN_COLUMNS or c in ignore or (path.name, c) == ("gaps", "end")])
        out[path.name] = df.sort(df.columns, nulls_last=True)
    return out


def _assert_same(a: Path, b: Path, *, ignore: tuple[str, ...] = ()) -> None:
    left, right = _silver(a, ignore=ignore), _silver(b, ignore=ignore)
    assert sorted(left) == sorted(right)
    for name in left:
        try:
            assert_frame_equal(left[name], right[name])
        except AssertionError as exc:
            raise AssertionError(f"silver.{name}: {exc}") from None


def _versions(root: Path) -> dict[str, int]:
    return {name: Catalog(root).open(f"silver.{name}").version() for name in _silver(root)}


def _commits_since(root: Path, table: str, version: int) -> list[dict[str, Any]]:
    log = root / "silver" / table / "_delta_log"
    out = []
    for f in sorted(log.glob("*.json")):
        if int(f.stem) > version:
            out.append(next(json.loads(x)["commitInfo"] for x in f.read_text().splitlines() if "commitInfo" in x))
    return out


def test_fanned_promote_on_a_local_cluster_equals_the_job_in_one_process(
    bronze: Path, cluster: jobs.Runner, tmp_path: Path
) -> None:
    alone, fanned = _copy(bronze, tmp_path / "alone"), _copy(bronze, tmp_path / "fanned")
    expected = jobs.promote_silver(alone)
    got = jobs.promote_silver(fanned, runner=cluster)
    _assert_same(tmp_path / "alone", tmp_path / "fanned")
    assert got.promotion.totals() == expected.promotion.totals()
    assert got.promotion.totals()["silver.trades"]["duplicates"] > 0
    assert got.promotion.bronze_versions == expected.promotion.bronze_versions
    # one commit per silver table (its rows, its progress), whatever the number of groups
    trades = _commits_since(tmp_path / "fanned", "trades", 0)
    assert len(trades) == 1 and trades[0]["operation"] == "WRITE"
    assert Catalog(tmp_path / "fanned").open("silver.trades").transaction_version("promote:bronze.trades") == (
        Catalog(tmp_path / "fanned").open("bronze.trades").version()
    )

    # incremental: new bronze commits (repeating ids already promoted) promote the same way
    for root in (tmp_path / "alone", tmp_path / "fanned"):
        _more_bronze(Catalog(root), 1)
    jobs.promote_silver(alone)
    before = _versions(tmp_path / "fanned")
    jobs.promote_silver(fanned, runner=cluster)
    _assert_same(tmp_path / "alone", tmp_path / "fanned")
    assert _versions(tmp_path / "fanned")["trades"] == before["trades"] + 1

    # a re-run with nothing new commits nothing (silver.gaps, the gap filler's state, is rewritten by any run)
    again = _versions(tmp_path / "fanned")
    jobs.promote_silver(fanned, runner=cluster)
    assert {k: v for k, v in _versions(tmp_path / "fanned").items() if k != "gaps"} == {
        k: v for k, v in again.items() if k != "gaps"
    }


def test_a_reprocessed_window_is_promoted_the_same_fanned_out(bronze: Path, tmp_path: Path) -> None:
    alone, fanned = _copy(bronze, tmp_path / "alone"), _copy(bronze, tmp_path / "fanned")
    window = {"start": DAY + timedelta(days=1), "end": DAY + timedelta(days=2, hours=20), "tables": ["trades"]}
    jobs.promote_silver(alone, **window)
    jobs.promote_silver(fanned, runner=jobs.InProcess(), **window)
    _assert_same(tmp_path / "alone", tmp_path / "fanned")
    days = _silver(tmp_path / "fanned")["trades"]["date"].unique().sort().to_list()
    assert days == [(DAY + timedelta(days=1)).date(), (DAY + timedelta(days=2)).date()]


def test_a_crashed_worker_commits_nothing_and_the_rerun_equals_the_job_in_one_process(
    bronze: Path, tmp_path: Path
) -> None:
    alone, fanned = _copy(bronze, tmp_path / "alone"), _copy(bronze, tmp_path / "fanned")
    catalog = Catalog(tmp_path / "fanned")
    with pytest.raises(RuntimeError, match="worker lost"):
        jobs.promote_silver(fanned, runner=CrashingRunner(), tables=["trades"])
    assert not catalog.exists("silver.trades") or catalog.frame("silver.trades").height == 0
    orphans = list((tmp_path / "fanned" / "silver" / "trades").rglob("*.parquet"))
    assert orphans  # the other tasks' files are on disk, referenced by no commit: vacuum's
    jobs.promote_silver(alone, tables=["trades"])
    jobs.promote_silver(fanned, runner=jobs.InProcess(), tables=["trades"])
    _assert_same(tmp_path / "alone", tmp_path / "fanned")


class _Racing(jobs.InProcess):
    """A runner that, once its tasks are staged, lets a whole other promote of the same root run
    and commit first (a second coordinator)."""

    def __init__(self, settings: Settings) -> None:
        self.settings, self.raced = settings, 0

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any], /) -> list[Any]:
        done = super().map(fn, items)
        if not self.raced:
            self.raced += 1
            jobs.promote_silver(self.settings, runner=jobs.InProcess())
        return done


def test_two_coordinators_racing_apply_the_job_once(bronze: Path, tmp_path: Path) -> None:
    alone, fanned = _copy(bronze, tmp_path / "alone"), _copy(bronze, tmp_path / "fanned")
    jobs.promote_silver(alone)
    racing = _Racing(fanned)
    jobs.promote_silver(fanned, runner=racing)
    assert racing.raced == 1
    _assert_same(tmp_path / "alone", tmp_path / "fanned")
    trades = _silver(tmp_path / "fanned")["trades"]
    assert trades.select("exchange", "symbol", "trade_key").is_unique().all()


def test_a_concurrent_writer_between_staging_and_commit_makes_the_job_stage_again(bronze: Path, tmp_path: Path) -> None:
    """A backfill (another silver writer) commits trades the staged job also holds: the job's
    commit is refused and its groups are staged again, so silver holds each trade once."""
    alone, fanned = _copy(bronze, tmp_path / "alone"), _copy(bronze, tmp_path / "fanned")
    catalog = Catalog(tmp_path / "fanned")
    bronze_rows = (
        catalog.frame("bronze.trades").filter((pl.col("exchange") == "BINANCE") & (pl.col("price") != "0")).head(50)
    )

    class Writer(jobs.InProcess):
        calls = 0

        def map(self, fn: Callable[[Any], Any], items: Sequence[Any], /) -> list[Any]:
            done = super().map(fn, items)
            Writer.calls += 1
            if Writer.calls == 1:  # a writer of the same rows lands first
                from crypto_lakehouse.transform.silver import PLANS, QualityReport, _promote_rows
                from crypto_lakehouse.transform.silver import SilverOptions as Opts

                now = datetime.now(UTC)
                raw = bronze_rows.drop("writer_id", "batch_id", "date")
                _promote_rows(
                    PLANS["silver.trades"], catalog, raw, source="stream", now=now, opts=Opts(),
                    report=QualityReport("x", now), app=None,
                )  # fmt: skip
            return done

    jobs.promote_silver(alone, tables=["trades"])
    jobs.promote_silver(fanned, runner=Writer(), tables=["trades"])
    assert Writer.calls == 2  # staged twice
    _assert_same(tmp_path / "alone", tmp_path / "fanned")


def test_fanned_backfill_over_days_on_a_local_cluster_equals_the_job_in_one_process(
    cluster: jobs.Runner, tmp_path: Path
) -> None:
    start_ms = 1_700_000_000_000 - 3_600_000 * 2  # two hours before a UTC midnight... and after it
    midnight = datetime.fromtimestamp(1_700_006_400, UTC)  # 2023-11-15T00:00Z
    start = datetime.fromtimestamp(start_ms / 1000, UTC)
    market = SyntheticMarket(MarketSpec(exchange="BINANCE", symbols=["BTCUSDT"], rate=0.05, start_ms=start_ms))
    while market.now_ms < midnight.timestamp() * 1000 + 3_600_000:
        market.step()
    with running_exchange(market=market) as ex:
        for name, runner in (("alone", None), ("fanned", cluster)):
            settings = load_settings(root=str(tmp_path / name), silver={"backfill": False})
            result = jobs.backfill(
                settings,
                exchange="binance",
                symbol="BTC-USDT",
                start=start,
                end=midnight + timedelta(hours=1),
                rest=ex.rest_url,
                runner=runner,
            )
            end_ms = (midnight + timedelta(hours=1)).timestamp() * 1000
            assert result.rows_added == sum(1 for t in market.tape("BTCUSDT").time_ms if t < end_ms) > 100
    _assert_same(tmp_path / "alone", tmp_path / "fanned", ignore=("receipt_ts",))  # (a backfill's is when it fetched)
    days = _silver(tmp_path / "fanned")["trades"]["date"].unique().to_list()
    assert len(days) == 2  # the window crossed midnight: two tasks, one commit
    assert len(_commits_since(tmp_path / "fanned", "trades", 0)) == 1
