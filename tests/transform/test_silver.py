"""promote-silver: ground truth after faults, quarantine with rules, dedup, gaps filled by ccxt,
idempotent reruns and window reprocessing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from crypto_lakehouse.ingest import BronzeWriter
from crypto_lakehouse.ingest.backfill import Backfiller
from crypto_lakehouse.loopback import FaultPlan, MarketSpec, SyntheticMarket, running_exchange
from crypto_lakehouse.storage import Catalog
from crypto_lakehouse.transform.silver import SilverOptions, promote_silver

from .helpers import stream_into_bronze

LAKEHOUSE = [sys.executable, "-m", "crypto_lakehouse.cli"]


def _silver(root: Path, table: str = "trades") -> pl.DataFrame:
    return pl.read_delta(str(root / "silver" / table))


def _truth_ids(market: SyntheticMarket, symbol: str) -> list[int]:
    tape = market.tape(symbol)
    return list(range(tape.first_id, tape.last_id + 1))


def test_faulty_stream_then_promote_equals_ground_truth_and_rerun_is_a_noop(tmp_path: Path) -> None:
    spec = MarketSpec(
        first_id=1_000_000, exchange="BINANCE_FUTURES", symbols=["BTCUSDT", "ETHUSDT"], rate=15_000, max_trades=2_500
    )
    faults = FaultPlan(
        skip_trades=[(1_000_300, 1_000_449), (2_001_000, 2_001_004)], duplicate_every=40, malformed_every=150
    )
    with running_exchange(market=spec, faults=faults) as ex:
        stream_into_bronze(ex, tmp_path)
        catalog = Catalog(tmp_path)
        result = promote_silver(catalog, backfiller=Backfiller({"BINANCE_FUTURES": ex.rest_url}, rate_limit_ms=5))
        silver = _silver(tmp_path)
        for sym, std in (("BTCUSDT", "BTC-USDT-PERP"), ("ETHUSDT", "ETH-USDT-PERP")):
            got = silver.filter(pl.col("symbol") == std).sort("id")
            assert got["id"].to_list() == _truth_ids(ex.market, sym)  # no loss, no duplicate
            tape = ex.market.tape(sym)
            assert got["price"].to_list() == [tape.price[i] / 100 for i in range(len(tape))]
        backfilled = silver.filter(pl.col("source") == "backfill")["id"].sort().to_list()
        assert backfilled == [*range(1_000_300, 1_000_450), *range(2_001_000, 2_001_005)]
        totals = result.totals()["silver.trades"]
        assert totals["gaps_found"] == totals["gaps_filled"] == 2 and totals["duplicates"] > 0
        dead = pl.read_delta(str(tmp_path / "bronze" / "dead_letter"))
        assert dead.height == sum(ex.status()["malformed_sent"].values())  # every malformed frame kept, with why
        assert dead["error"].null_count() == 0
        gaps = _silver(tmp_path, "gaps")
        assert set(gaps["status"]) == {"filled"} and gaps["rows_filled"].sum() == 155

        versions = {t: catalog.open(t).version() for t in ("silver.trades", "silver.gaps", "silver.dq_report")}
        again = promote_silver(catalog, backfiller=Backfiller({"BINANCE_FUTURES": ex.rest_url}, rate_limit_ms=5))
    assert again.totals() == {}  # nothing new: no rows, no gaps, no report rows
    assert _silver(tmp_path).height == silver.height
    assert {t: catalog.open(t).version() for t in versions} == versions  # not even an empty commit


def _bronze_rows(writer: BronzeWriter, now: float) -> None:
    good = ("BINANCE", "BTC-USDT", now - 5, now, "10", "buy", "100.5", "0.25", None)
    writer.add_many(
        "bronze.trades",
        [
            good,
            ("BINANCE", "BTC-USDT", now - 5, now, "11", "buy", "-1", "0.25", None),  # price_not_positive
            ("BINANCE", "BTC-USDT", now - 5, now, "12", "hold", "100.5", "0.25", None),  # unknown_side
            ("BINANCE", "BTC-USDT", now - 5, now, "13", "sell", "100.5", "lots", None),  # amount_not_numeric
            ("BINANCE", "BTC-USDT", now + 3600, now, "14", "sell", "100.5", "1", None),  # ts_out_of_bounds
            ("BINANCE", "btc-usdt", now - 5, now, "15", "sell", "100.5", "1", None),  # unknown_symbol
            ("BINANCE", "BTC-USDT", now - 5, now, "x16", "sell", "100.5", "1", None),  # bad_id
            good,  # a duplicate within the batch
        ],
    )
    writer.add_many(
        "bronze.ticker",
        [
            ("BINANCE", "BTC-USDT", now - 5, now, 1, "100.0", "1", "100.1", "2", "ticker"),
            ("BINANCE", "BTC-USDT", now - 4, now, 2, "100.2", "1", "100.1", "2", "ticker"),  # crossed_book
        ],
    )
    writer.add_many(
        "bronze.candles",
        [
            (
                "BINANCE",
                "BTC-USDT",
                now - 5,
                now,
                "1m",
                now - 65,
                now - 5.001,
                3,
                "100",
                "101",
                "99",
                "100.5",
                "3",
                True,
            ),
            (
                "BINANCE",
                "BTC-USDT",
                now - 5,
                now,
                "1m",
                now - 125,
                now - 65.001,
                3,
                "100",
                "99",
                "98",
                "100.5",
                "3",
                True,
            ),
            (
                "BINANCE",
                "BTC-USDT",
                now - 5,
                now,
                "1m",
                now - 5,
                now + 54.999,
                3,
                "100",
                "101",
                "99",
                "100.5",
                "3",
                False,
            ),
        ],
    )


def test_bad_rows_are_quarantined_with_their_rule_and_never_twice(tmp_path: Path) -> None:
    import asyncio

    catalog = Catalog(tmp_path)
    writer = BronzeWriter(catalog, writer_id="w", spool_dir=tmp_path / "spool")
    now = time.time()

    async def write() -> None:
        await writer.start()
        _bronze_rows(writer, now)
        await writer.flush()

    asyncio.run(write())
    result = promote_silver(catalog, backfiller=None)  # Binance ids are integers
    q = _silver(tmp_path, "quarantine")
    rules = sorted(zip(q["table"], q["rule"], strict=True))
    assert rules == sorted(
        [
            ("silver.trades", "price_not_positive"),
            ("silver.trades", "unknown_side"),
            ("silver.trades", "amount_not_numeric"),
            ("silver.trades", "ts_out_of_bounds"),
            ("silver.trades", "unknown_symbol"),
            ("silver.trades", "bad_id"),
            ("silver.ticker", "crossed_book"),
            ("silver.candles", "high_low_inconsistent"),
        ]
    )
    assert json.loads(q.filter(pl.col("rule") == "unknown_side")["raw"][0])["side"] == "hold"
    assert _silver(tmp_path)["id"].to_list() == [10]
    assert _silver(tmp_path, "ticker").height == 1 and _silver(tmp_path, "candles").height == 1
    totals = result.totals()
    assert totals["silver.trades"]["duplicates"] == 1 and totals["silver.candles"]["superseded"] == 1
    assert totals["silver.trades"]["quarantined:bad_id"] == 1
    report = _silver(tmp_path, "dq_report")
    assert set(report["run_id"]) == {result.run_id}

    # reprocess the whole window: idempotent, in silver and in quarantine
    window = dict(start=datetime.fromtimestamp(now - 3600, UTC), end=datetime.fromtimestamp(now + 7200, UTC))
    promote_silver(catalog, backfiller=None, **window)
    assert _silver(tmp_path, "quarantine").height == q.height
    assert _silver(tmp_path)["id"].to_list() == [10]
    # a duplicate arriving in a later bronze commit is dropped against silver
    asyncio.run(write())
    later = promote_silver(catalog, backfiller=None)
    assert later.totals()["silver.trades"]["duplicates"] == 2 and _silver(tmp_path).height == 1


def test_missing_candle_is_backfilled_from_the_exchange_klines(tmp_path: Path) -> None:
    import asyncio

    market = SyntheticMarket(
        MarketSpec(first_id=1_000_000, exchange="BINANCE", symbols=["BTCUSDT"], rate=50, start_ms=1_700_000_040_000)
    )
    for _ in range(12_000):  # ~6 minutes of exchange time
        market.step()
    klines = market.klines("BTCUSDT", "1m", start_ms=None, end_ms=None, limit=1000)[:-1]  # closed ones
    catalog = Catalog(tmp_path)
    writer = BronzeWriter(catalog, writer_id="w", spool_dir=tmp_path / "spool")
    missing = klines[2][0]

    async def write() -> None:
        await writer.start()
        writer.add_many(
            "bronze.candles",
            [
                (
                    "BINANCE",
                    "BTC-USDT",
                    (k[6] + 1) / 1000,
                    time.time(),
                    "1m",
                    k[0] / 1000,
                    k[6] / 1000,
                    k[8],
                    k[1],
                    k[2],
                    k[3],
                    k[4],
                    k[5],
                    True,
                )
                for k in klines
                if k[0] != missing
            ],
        )
        await writer.flush()

    asyncio.run(write())
    with running_exchange(market=market) as ex:
        result = promote_silver(catalog, backfiller=Backfiller({"BINANCE": ex.rest_url}, rate_limit_ms=5))
    candles = _silver(tmp_path, "candles").sort("start")
    assert [int(t.timestamp() * 1000) for t in candles["start"]] == [k[0] for k in klines]
    filled = candles.filter(pl.col("source") == "backfill")
    assert filled.height == 1 and int(filled["start"][0].timestamp() * 1000) == missing
    k = next(k for k in klines if k[0] == missing)
    assert filled.select("open", "high", "low", "close", "volume").row(0) == tuple(float(x) for x in k[1:6])
    assert result.totals()["silver.candles"]["gaps_filled"] == 1


def test_sigkilled_writer_outage_becomes_a_gap_that_is_filled(tmp_path: Path) -> None:
    root = tmp_path / "lake"
    spec = MarketSpec(first_id=1_000_000, exchange="BINANCE", symbols=["BTCUSDT"], rate=3_000)
    env = {**os.environ, "LAKEHOUSE_WRITER__ID": "proc", "LAKEHOUSE_WRITER__MAX_AGE": "200ms"}

    def stream(*extra: str) -> subprocess.Popen:
        return subprocess.Popen(
            [
                *LAKEHOUSE,
                "stream",
                "--endpoint",
                ex.rest_url,
                "--root",
                str(root),
                "--symbols",
                "BTC-USDT",
                "--channels",
                "trades",
                "--no-progress",
                *extra,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=tmp_path,
            env=env,
        )

    with running_exchange(market=spec) as ex:
        proc = stream()
        deadline = time.monotonic() + 60
        while not (root / "bronze" / "trades" / "_delta_log" / "00000000000000000002.json").exists():
            assert time.monotonic() < deadline
            time.sleep(0.1)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
        time.sleep(1.5)  # the market goes on while the writer is down
        proc = stream("--duration", "2")
        proc.communicate(timeout=60)
        assert proc.returncode == 0
        result = promote_silver(Catalog(root), backfiller=Backfiller({"BINANCE": ex.rest_url}, rate_limit_ms=5))
        silver = _silver(root).sort("id")
        ids = silver["id"].to_list()
        assert ids == list(range(1_000_000, ids[-1] + 1))  # the outage was filled: contiguous
        tape = ex.market.tape("BTCUSDT")
        assert silver["price"].to_list() == [tape.price[i] / 100 for i in range(len(ids))]
        assert result.totals()["silver.trades"]["gaps_filled"] >= 1
        assert silver.filter(pl.col("source") == "backfill").height > 0


def test_backfill_by_time_walks_every_hour_of_a_sparse_market(tmp_path: Path) -> None:
    market = SyntheticMarket(
        MarketSpec(first_id=1_000_000, exchange="BINANCE", symbols=["BTCUSDT"], rate=0.5, start_ms=1_700_000_000_000)
    )  # one trade every 3 s
    for _ in range(3_600):  # 3 hours
        market.step()
    with running_exchange(market=market) as ex:
        got = Backfiller({"BINANCE": ex.rest_url}, rate_limit_ms=5).trades_by_time(
            "BINANCE",
            "BTC-USDT",
            datetime.fromtimestamp(1_700_000_000, UTC),
            datetime.fromtimestamp(1_700_000_000 + 4 * 3600, UTC),
        )
    assert got["id"].cast(pl.Int64).to_list() == _truth_ids(market, "BTCUSDT")  # all 3 hours, not just the first


def test_a_gap_bigger_than_one_runs_budget_is_filled_over_several_runs(tmp_path: Path) -> None:
    spec = MarketSpec(first_id=1_000_000, exchange="BINANCE", symbols=["BTCUSDT"], rate=15_000, max_trades=3_000)
    with running_exchange(market=spec, faults=FaultPlan(skip_trades=[(1_000_100, 1_002_599)])) as ex:
        stream_into_bronze(ex, tmp_path)
        catalog = Catalog(tmp_path)
        opts = SilverOptions(backfill_max_trades=1_000)
        backfiller = Backfiller({"BINANCE": ex.rest_url}, rate_limit_ms=5)
        runs = []
        for _ in range(4):
            runs.append(promote_silver(catalog, backfiller=backfiller, options=opts))
            if _silver(tmp_path).height == 3_000:
                break
        ids = _silver(tmp_path)["id"].sort().to_list()
    assert ids == _truth_ids(ex.market, "BTCUSDT")
    assert len(runs) == 3  # 2,500 missing ids at 1,000 per run
    assert "continues next run" in runs[0].gaps.filter(pl.col("status") == "open")["reason"][0]
