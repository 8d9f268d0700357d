"""Gold fanned out over groups of (exchange, symbol): the same bars as the build in one process
(on a Dask LocalCluster of 2 worker processes), one commit of gold.ohlcv per run that adds the new
files and removes the ones it replaces, and exactly once whatever fails, races or compacts."""

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
from crypto_lakehouse.storage import Catalog
from tests.transform.helpers import CrashingRunner, write_bronze

DAY = datetime(2024, 3, 1, tzinfo=UTC)
KEYS = (("BINANCE", "BTC-USDT"), ("BINANCE", "ETH-USDT"), ("BYBIT", "BTC-USDT"))
# 90s is not a multiple of the finest (1m): computed from trades; the others are rolled up
INTERVALS = ["1m", "5m", "90s", "1h", "1d"]
BAR_KEY = ["source", "interval", "exchange", "symbol", "window_start"]


def _trades(exchange: str, symbol: str, day: int, ids: Sequence[int]) -> list[dict[str, Any]]:
    t0 = DAY + timedelta(days=day)
    return [
        {
            "exchange": exchange,
            "symbol": symbol,
            "ts": t0 + timedelta(seconds=(i * 7) % 86_000),
            "receipt_ts": t0 + timedelta(seconds=(i * 7) % 86_000, milliseconds=5),
            "id": str(i),
            "side": "buy" if i % 3 else "sell",
            "price": str(100 + i % 17),
            "amount": str(0.25 + (i % 5) / 10),
        }
        for i in ids
    ]


def _add_trades(root: Path, round_: int) -> None:
    """Trades of 3 (exchange, symbol)s over 3 days; each round adds trades in windows gold
    already holds (late trades: bars replaced) and in new ones, then promotes silver."""
    catalog = Catalog(root)
    for day in range(3):
        for ex, sym in KEYS:
            first = 1_000_000 * (day + 1) + 2_000 * round_
            write_bronze(catalog, "bronze.trades", _trades(ex, sym, day, range(first, first + 300)))
            if round_:  # same second as a round-0 trade ((i * 7) % 86_000 repeats every 86_000 ids)
                late = 1_000_000 * (day + 1) + 86_000 * round_
                write_bronze(catalog, "bronze.trades", _trades(ex, sym, day, range(late, late + 20)))
    jobs.promote_silver(_settings(root), tables=["trades"])


def _settings(root: Path) -> Settings:
    return load_settings(root=str(root), silver={"backfill": False}, gold={"intervals": INTERVALS})


@pytest.fixture(scope="module")
def silver(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("gold-fanout") / "lake"
    _add_trades(root, 0)
    return root


@pytest.fixture(scope="module")
def cluster() -> Iterator[jobs.Runner]:
    with jobs.dask_runner(workers=2) as runner:
        yield runner


def _copies(silver: Path, tmp_path: Path) -> tuple[Path, Path]:
    alone, fanned = tmp_path / "alone", tmp_path / "fanned"
    shutil.copytree(silver, alone)
    shutil.copytree(silver, fanned)
    return alone, fanned


def _gold(root: Path) -> pl.DataFrame:
    df = pl.read_delta(str(root / "gold" / "ohlcv"))
    return df.sort(df.columns, nulls_last=True)


def _assert_same(alone: Path, fanned: Path) -> None:
    assert_frame_equal(_gold(fanned), _gold(alone))
    assert _gold(fanned).select(BAR_KEY).is_unique().all()


def _commits(root: Path) -> list[dict[str, Any]]:
    """Every gold.ohlcv commit's actions, oldest first."""
    log = root / "gold" / "ohlcv" / "_delta_log"
    return [[json.loads(x) for x in f.read_text().splitlines()] for f in sorted(log.glob("*.json"))]


def test_fanned_gold_on_a_local_cluster_equals_the_build_in_one_process(
    silver: Path, cluster: jobs.Runner, tmp_path: Path
) -> None:
    alone, fanned = _copies(silver, tmp_path)
    expected = jobs.promote_gold(_settings(alone))
    got = jobs.promote_gold(_settings(fanned), runner=cluster)
    _assert_same(alone, fanned)
    assert got.bars_written == expected.bars_written and set(got.bars_written) == set(INTERVALS)
    assert got.silver_versions == expected.silver_versions
    assert len(_commits(fanned)) == 2  # created, then the job's one commit (every group, every interval)

    # incremental: late trades in windows gold holds and trades in new ones, replaced in one commit
    for root in (alone, fanned):
        _add_trades(root, 1)
    before = len(_commits(fanned))
    expected = jobs.promote_gold(_settings(alone))
    got = jobs.promote_gold(_settings(fanned), runner=cluster)
    _assert_same(alone, fanned)
    assert got.bars_written == expected.bars_written
    commits = _commits(fanned)
    assert len(commits) == before + 1
    actions = commits[-1]
    removed = [a["remove"]["path"] for a in actions if "remove" in a]
    assert removed and [a for a in actions if "add" in a]  # the replaced files went in the same commit
    txn = next(a["txn"] for a in actions if "txn" in a)
    assert (
        txn["appId"].startswith("gold:silver.trades:")
        and txn["version"] == Catalog(fanned).open("silver.trades").version()
    )

    # a re-run with nothing new commits nothing
    jobs.promote_gold(_settings(fanned), runner=cluster)
    assert len(_commits(fanned)) == before + 1


def test_a_pruned_read_of_fanned_gold_equals_an_unpruned_one(silver: Path, tmp_path: Path) -> None:
    """The statistics of the files the workers wrote are correct bounds: a read pruned by them
    (delta-rs and Polars skip files by min/max) returns what filtering every row does."""
    _, fanned = _copies(silver, tmp_path)
    jobs.promote_gold(_settings(fanned), runner=jobs.InProcess())
    _add_trades(fanned, 1)
    jobs.promote_gold(_settings(fanned), runner=jobs.InProcess())
    path = str(fanned / "gold" / "ohlcv")
    full = pl.read_delta(path)
    cuts = full["window_start"].sort().gather_every(max(1, full.height // 25)).to_list()
    for cut in cuts:
        for expr in (pl.col("window_start") >= cut, pl.col("window_start") < cut, pl.col("window_start") == cut):
            want = full.filter(expr).sort(BAR_KEY)
            assert pl.scan_delta(path).filter(expr).collect().sort(BAR_KEY).equals(want), str(expr)
    for column in ("high", "volume", "trades"):
        mid = full[column].median()
        want = full.filter(pl.col(column) > mid).sort(BAR_KEY)
        assert pl.scan_delta(path).filter(pl.col(column) > mid).collect().sort(BAR_KEY).equals(want), column


def test_a_crashed_worker_commits_nothing_and_the_rerun_equals_the_build_in_one_process(
    silver: Path, tmp_path: Path
) -> None:
    alone, fanned = _copies(silver, tmp_path)
    for root in (alone, fanned):
        jobs.promote_gold(_settings(root))
        _add_trades(root, 1)
    before = _gold(fanned)
    versions = len(_commits(fanned))
    with pytest.raises(RuntimeError, match="worker lost"):
        jobs.promote_gold(_settings(fanned), runner=CrashingRunner())
    assert len(_commits(fanned)) == versions and _gold(fanned).equals(before)  # nothing visible
    jobs.promote_gold(_settings(alone))
    jobs.promote_gold(_settings(fanned), runner=jobs.InProcess())
    _assert_same(alone, fanned)


class _Racing(jobs.InProcess):
    """A runner that, once its tasks are staged, lets ``race`` run first (once)."""

    def __init__(self, race: Callable[[], None]) -> None:
        self.race, self.calls = race, 0

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any], /) -> list[Any]:
        done = super().map(fn, items)
        self.calls += 1
        if self.calls == 1:
            self.race()
        return done


def test_two_coordinators_racing_apply_the_build_once(silver: Path, tmp_path: Path) -> None:
    alone, fanned = _copies(silver, tmp_path)
    for root in (alone, fanned):
        jobs.promote_gold(_settings(root))
        _add_trades(root, 1)
    jobs.promote_gold(_settings(alone))
    racing = _Racing(lambda: jobs.promote_gold(_settings(fanned), runner=jobs.InProcess()))
    jobs.promote_gold(_settings(fanned), runner=racing)
    assert racing.calls == 1  # the other coordinator committed the same progress: nothing staged again
    _assert_same(alone, fanned)


def test_a_compaction_between_staging_and_commit_makes_the_build_stage_again(silver: Path, tmp_path: Path) -> None:
    """delta-rs commits a remove of a file a concurrent compaction already rewrote (the
    compacted copy's rows would come back next to the new bars): the commit checks, under the
    compaction's lock, that every file it replaces is still there, and stages again if not."""
    alone, fanned = _copies(silver, tmp_path)
    for root in (alone, fanned):
        jobs.promote_gold(_settings(root))
        _add_trades(root, 1)
        _add_trades(root, 2)
    jobs.promote_gold(_settings(alone))
    compacted: list[Any] = []

    def compact() -> None:
        # (z-ordered: rewrites a partition's files even when it has one, as each partition here has)
        compacted.extend(jobs.compact(_settings(fanned), tables=["gold.ohlcv"], z_order=["window_start"]))

    racing = _Racing(compact)
    jobs.promote_gold(_settings(fanned), runner=racing)
    assert compacted[0].files_before > 0 and racing.calls == 2  # staged again on the compacted snapshot
    operations = [next(a["commitInfo"]["operation"] for a in c if "commitInfo" in a) for c in _commits(fanned)]
    assert operations[-2:] == ["OPTIMIZE", "WRITE"]
    _assert_same(alone, fanned)
