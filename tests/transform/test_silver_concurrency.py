"""Silver never holds a duplicate, whatever writes it at the same time: a promote, a reprocess of
a window, ``silver.backfill`` and the gap filler all dedup against a snapshot and commit against
that same snapshot with one shared Delta application id per table, so the second of two racing
writers gets a conflict, re-reads and drops what the first one wrote.

The races are forced, not hoped for: every writer reads silver for its dedup, then waits at a
barrier until the others have read too, and only then commits (old code: each id twice)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from crypto_lakehouse.ingest.backfill import Backfiller
from crypto_lakehouse.loopback import MarketSpec, SyntheticMarket, running_exchange
from crypto_lakehouse.storage import Catalog
from crypto_lakehouse.transform import gaps as gaps_module
from crypto_lakehouse.transform import quality, silver
from crypto_lakehouse.transform.plans import QualityReport
from crypto_lakehouse.transform.silver import SilverOptions, promote_silver

from .helpers import interleave_after, run_together, write_bronze

T0 = datetime(2026, 11, 20, 12, tzinfo=UTC)
NO_BACKFILL = SilverOptions(backfill=False)


def _interleave_after_dedup(monkeypatch: pytest.MonkeyPatch, parties: int) -> None:
    """Each thread's first dedup read of silver waits until ``parties`` threads have read."""
    interleave_after(monkeypatch, silver, "_dedup", parties)


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
        run_together(
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
    run_together(
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
        run_together(
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
    interleave_after(monkeypatch, silver, "_quarantine_seen", 2)
    run_together(
        lambda: promote_silver(catalog, options=NO_BACKFILL),
        lambda: promote_silver(catalog, options=NO_BACKFILL, start=T0, end=T0 + timedelta(hours=1)),
    )
    q = pl.read_delta(str(tmp_path / "silver" / "quarantine"))
    assert q.height == 20 and q["row_hash"].n_unique() == 20


def test_two_promotes_rebuilding_the_completeness_ledger_at_once_both_finish(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each promote ends by rebuilding gold.completeness (a replace of the days it touched):
    a promote and a reprocess computing the ledger at the same moment both finish, and the
    ledger holds each (stream, day) once (old code: the second replace failed, "a concurrent
    transactions added new data", and its promote with it: CI at 11fc9ae)."""
    catalog = Catalog(tmp_path)
    write_bronze(catalog, "bronze.trades", _trades(range(1, 11), symbol="ETH-USDT"))
    promote_silver(catalog, options=NO_BACKFILL)  # a ledger exists: the race is on replacing its rows
    write_bronze(catalog, "bronze.trades", _trades(range(100, 150)))
    interleave_after(monkeypatch, quality, "_compute", 2, unless_serialised=3)
    run_together(
        lambda: promote_silver(catalog, options=NO_BACKFILL),
        lambda: promote_silver(catalog, options=NO_BACKFILL, start=T0, end=T0 + timedelta(hours=1)),
    )
    assert sorted(_silver_ids(tmp_path).cast(pl.Int64).to_list()) == [*range(1, 11), *range(100, 150)]
    ledger = pl.read_delta(str(tmp_path / "gold" / "completeness"))
    keys = ["exchange", "symbol", "channel", "date"]
    assert ledger.select(keys).n_unique() == ledger.height
    assert ledger.filter(channel="trades").select("symbol", "rows").sort("symbol").rows() == [
        ("BTC-USDT", 50),
        ("ETH-USDT", 10),
    ]
    assert quality.build_completeness(catalog, options=NO_BACKFILL).is_empty()  # the progress of both recorded


def test_two_gap_passes_rewriting_silver_gaps_at_once_both_finish(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each promote ends with a gap pass that rewrites silver.gaps: two detecting the same new
    gap at once both finish and silver.gaps records it once (old code: the second overwrite
    failed on the first's commit)."""
    catalog = Catalog(tmp_path)
    write_bronze(catalog, "bronze.trades", _trades([*range(100, 120), *range(130, 150)]))  # ids 120-129 missing
    promote_silver(catalog, options=NO_BACKFILL)
    catalog.overwrite("silver.gaps", catalog.read("silver.gaps").slice(0, 0))  # the gap not yet recorded
    interleave_after(monkeypatch, gaps_module, "detect_gaps", 2, unless_serialised=3)
    run_together(
        lambda: promote_silver(catalog, options=NO_BACKFILL, tables=["trades"]),
        lambda: promote_silver(catalog, options=NO_BACKFILL, start=T0, end=T0 + timedelta(hours=1)),
    )
    recorded = pl.read_delta(str(tmp_path / "silver" / "gaps"))
    assert recorded.select("first_id", "last_id").rows() == [(120, 129)]


def test_a_ledger_rebuild_that_loses_its_commit_reads_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A rebuild on another host (which this host's lock cannot hold back) commits while this
    one computes: this one's replace conflicts, and it reads again and finishes, finding that
    work done (old code: CommitFailedError out of the promote)."""
    catalog = Catalog(tmp_path)
    write_bronze(catalog, "bronze.trades", _trades(range(1, 11), symbol="ETH-USDT"))
    promote_silver(catalog, options=NO_BACKFILL)
    write_bronze(catalog, "bronze.trades", _trades(range(100, 150)))
    real = quality._compute
    elsewhere: list[pl.DataFrame] = []

    def compute(*args, **kwargs):
        if elsewhere:
            return real(*args, **kwargs)
        elsewhere.append(pl.DataFrame())
        out = real(*args, **kwargs)  # this host's build has computed; the other host's commits first
        elsewhere[0] = quality._build(catalog, options=NO_BACKFILL, now=kwargs["now"])
        return out

    monkeypatch.setattr(quality, "_compute", compute)
    with caplog.at_level(logging.INFO, logger="crypto_lakehouse.transform._replace"):
        promote_silver(catalog, options=NO_BACKFILL)
    assert "rebuilding again" in caplog.text
    ledger = pl.read_delta(str(tmp_path / "gold" / "completeness")).filter(channel="trades")
    assert ledger.select("symbol", "rows").sort("symbol").rows() == [("BTC-USDT", 50), ("ETH-USDT", 10)]
    assert elsewhere[0].filter(channel="trades")["symbol"].to_list() == ["BTC-USDT"]
    assert quality.build_completeness(catalog, options=NO_BACKFILL).is_empty()
