"""Silver never holds a duplicate, whatever writes it at the same time: a promote, a reprocess of
a window, ``silver.backfill`` and the gap filler all dedup against a snapshot and commit against
that same snapshot with one shared Delta application id per table, so the second of two racing
writers gets a conflict, re-reads and drops what the first one wrote.

The races are forced, not hoped for: every writer reads silver for its dedup, then waits at a
barrier until the others have read too, and only then commits (old code: each id twice)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from crypto_lakehouse.ingest.backfill import Backfiller
from crypto_lakehouse.loopback import MarketSpec, SyntheticMarket, running_exchange
from crypto_lakehouse.storage import Catalog
from crypto_lakehouse.transform import silver
from crypto_lakehouse.transform.plans import QualityReport
from crypto_lakehouse.transform.silver import SilverOptions, promote_silver

from .helpers import write_bronze

T0 = datetime(2026, 11, 20, 12, tzinfo=UTC)
NO_BACKFILL = SilverOptions(backfill=False)


def _interleave_after_dedup(monkeypatch: pytest.MonkeyPatch, parties: int) -> None:
    """Each thread's first dedup read of silver waits until ``parties`` threads have read."""
    barrier = threading.Barrier(parties, timeout=60)
    seen = threading.local()
    real = silver._dedup

    def dedup(*args, **kwargs):
        out = real(*args, **kwargs)
        if not getattr(seen, "waited", False):
            seen.waited = True
            barrier.wait()
        return out

    monkeypatch.setattr(silver, "_dedup", dedup)


def _run_together(*jobs: Callable[[], object]) -> None:
    errors: list[BaseException] = []

    def run(job: Callable[[], object]) -> None:
        try:
            job()
        except BaseException as exc:  # noqa: BLE001 - re-raised below in the test thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(job,)) for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors


def _trades(ids: range, *, symbol: str = "BTC-USDT") -> list[dict]:
    return [
        {
            "exchange": "BINANCE",
            "symbol": symbol,
            "ts": T0 + timedelta(milliseconds=i),
            "receipt_ts": T0 + timedelta(milliseconds=i + 5),
            "id": str(i),
            "side": "buy" if i % 2 else "sell",
            "price": f"{100 + i % 7}.5",
            "amount": "0.25",
        }
        for i in ids
    ]


def _silver_ids(root: Path) -> pl.Series:
    return pl.read_delta(str(root / "silver" / "trades"))["id"]


@pytest.mark.parametrize("silver_exists", [False, True], ids=["new-table", "existing-table"])
def test_promote_beside_a_reprocess_of_the_same_rows_leaves_each_id_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, silver_exists: bool
) -> None:
    catalog = Catalog(tmp_path)
    if silver_exists:  # other rows already there: the race is on an existing table, not its creation
        write_bronze(catalog, "bronze.trades", _trades(range(1, 11), symbol="ETH-USDT"))
        promote_silver(catalog, options=NO_BACKFILL)
    write_bronze(catalog, "bronze.trades", _trades(range(100, 150)))
    _interleave_after_dedup(monkeypatch, 2)
    with caplog.at_level(logging.INFO, logger=silver.__name__):
        _run_together(
            lambda: promote_silver(catalog, options=NO_BACKFILL),
            lambda: promote_silver(catalog, options=NO_BACKFILL, start=T0, end=T0 + timedelta(hours=1)),
        )
    if silver_exists:  # both read the same snapshot: the second commit conflicted and was retried
        assert "concurrent commit" in caplog.text
    ids = pl.read_delta(str(tmp_path / "silver" / "trades")).filter(pl.col("symbol") == "BTC-USDT")["id"]
    assert ids.len() == 50 and ids.n_unique() == 50  # old code: 100 rows for 50 ids
    assert _silver_ids(tmp_path).len() == 50 + (10 if silver_exists else 0)
    # the promote's progress is recorded whichever writer won: a rerun reads nothing new
    assert promote_silver(catalog, options=NO_BACKFILL).totals() == {}


def test_three_writers_racing_from_one_snapshot_each_id_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    catalog = Catalog(tmp_path)
    write_bronze(catalog, "bronze.trades", _trades(range(100, 150)))
    now = datetime.now(UTC)
    raw = pl.read_delta(catalog.uri("bronze.trades")).drop("writer_id", "batch_id", "date")

    def gap_filler(rows: pl.DataFrame) -> Callable[[], object]:  # what fill_gaps calls per gap
        plan = silver.PLANS["silver.trades"]
        report = QualityReport("r", now)
        return lambda: silver._promote_rows(
            plan, catalog, rows, source="backfill", now=now, opts=NO_BACKFILL, report=report, app=None
        )

    _interleave_after_dedup(monkeypatch, 3)
    _run_together(
        gap_filler(raw),
        gap_filler(raw.slice(10)),  # overlapping, not equal
        lambda: promote_silver(catalog, options=NO_BACKFILL),
    )
    ids = _silver_ids(tmp_path)
    assert sorted(ids.to_list()) == list(range(100, 150))


def test_promote_beside_silver_backfill_of_the_same_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``lakehouse backfill`` (silver.backfill over REST) of a window the streamed bronze already
    holds, while promote-silver runs: silver ends with each trade once (old code: 100 of 50)."""
    start_ms = 1_700_000_000_000
    market = SyntheticMarket(
        MarketSpec(exchange="BINANCE", symbols=["BTCUSDT"], rate=20, start_ms=start_ms, max_trades=50)
    )
    for _ in range(50):
        market.step()
    start = datetime.fromtimestamp(start_ms / 1000, UTC)
    end = start + timedelta(minutes=10)
    catalog = Catalog(tmp_path)
    with running_exchange(market=market) as ex:
        backfiller = Backfiller({"BINANCE": ex.rest_url}, rate_limit_ms=5)
        fetched = backfiller.trades_by_time("BINANCE", "BTC-USDT", start, end)
        assert fetched.height == 50
        write_bronze(catalog, "bronze.trades", fetched.to_dicts())  # the stream got them all
        _interleave_after_dedup(monkeypatch, 2)
        _run_together(
            lambda: promote_silver(catalog, options=NO_BACKFILL),
            lambda: silver.backfill(catalog, backfiller, exchange="BINANCE", symbol="BTC-USDT", start=start, end=end),
        )
    ids = _silver_ids(tmp_path)
    assert ids.len() == 50 and ids.n_unique() == 50
    assert sorted(ids.to_list()) == list(range(market.tape("BTCUSDT").first_id, market.tape("BTCUSDT").last_id + 1))


def test_writers_racing_on_quarantine_write_each_bad_row_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    catalog = Catalog(tmp_path)
    bad = [{**r, "side": "hold"} for r in _trades(range(1, 21))]
    write_bronze(catalog, "bronze.trades", bad)
    barrier = threading.Barrier(2, timeout=60)
    seen = threading.local()
    real = silver._quarantine_seen

    def quarantine_seen(*args, **kwargs):
        out = real(*args, **kwargs)
        if not getattr(seen, "waited", False):
            seen.waited = True
            barrier.wait()
        return out

    monkeypatch.setattr(silver, "_quarantine_seen", quarantine_seen)
    _run_together(
        lambda: promote_silver(catalog, options=NO_BACKFILL),
        lambda: promote_silver(catalog, options=NO_BACKFILL, start=T0, end=T0 + timedelta(hours=1)),
    )
    q = pl.read_delta(str(tmp_path / "silver" / "quarantine"))
    assert q.height == 20 and q["row_hash"].n_unique() == 20
