"""Ground truth on OKX: the synthetic OKX market streamed through the unmodified cryptofeed
``OKX`` handler into bronze, with trades withheld, duplicated, and a ``lakehouse stream`` process
SIGKILLed mid-market; promote silver (id gaps + the real ``ccxt.okx`` walking back by trade id
against the loopback REST) and silver.trades is exactly the exchange's tape."""

from __future__ import annotations

import signal
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from crypto_lakehouse.ingest.backfill import Backfiller
from crypto_lakehouse.loopback import FaultPlan, MarketSpec, SyntheticMarket, running_exchange
from crypto_lakehouse.storage import Catalog
from crypto_lakehouse.transform.silver import promote_silver

from .helpers import lakehouse_stream, stream_into_bronze


def _truth(market: SyntheticMarket, inst: str, upto: int | None = None) -> list[tuple]:
    """(id, ts, side, price, amount) of every trade the exchange made (the first ``upto``)."""
    tape = market.tape(inst)
    rows = []
    for i in range(len(tape) if upto is None else upto):
        r = tape.record(i)
        ts = datetime.fromtimestamp(tape.time_ms[i] / 1000, UTC)
        rows.append((r["a"], ts, "sell" if r["m"] else "buy", float(str(r["p"])), float(str(r["q"]))))
    return rows


def _silver_trades(root: Path, symbol: str) -> list[tuple]:
    silver = pl.read_delta(str(root / "silver" / "trades")).filter(symbol=symbol).sort("id")
    return [
        (i, ts, side, float(p), float(a))
        for i, ts, side, p, a in silver.select("id", "ts", "side", "price", "amount").iter_rows()
    ]


def test_okx_skipped_and_duplicated_trades_then_promote_equals_ground_truth(tmp_path: Path) -> None:
    spec = MarketSpec(
        first_id=1_000_000, exchange="OKX", symbols=["BTC-USDT-SWAP", "ETH-USDT"], rate=12_000, max_trades=2_500
    )
    faults = FaultPlan(skip_trades=[(1_000_300, 1_000_449), (2_001_000, 2_001_004)], duplicate_every=40)
    with running_exchange(market=spec, faults=faults) as ex:
        stream_into_bronze(ex, tmp_path, channels=["trades", "l2_book", "ticker", "funding"])
        bronze = pl.read_delta(str(tmp_path / "bronze" / "trades"))
        assert bronze.height == 2 * 2_500 - 155 + ex.status()["trades_duplicated"]  # as streamed: faults in
        result = promote_silver(Catalog(tmp_path), backfiller=Backfiller({"OKX": ex.rest_url}, rate_limit_ms=5))
        market = ex.market
    for inst, std in (("BTC-USDT-SWAP", "BTC-USDT-PERP"), ("ETH-USDT", "ETH-USDT")):
        assert _silver_trades(tmp_path, std) == _truth(market, inst)  # ids, times, sides, prices, amounts
    silver = pl.read_delta(str(tmp_path / "silver" / "trades"))
    assert silver.filter(source="backfill")["id"].sort().to_list() == [
        *range(1_000_300, 1_000_450),
        *range(2_001_000, 2_001_005),
    ]
    totals = result.totals()["silver.trades"]
    assert totals["gaps_found"] == totals["gaps_filled"] == 2 and totals["duplicates"] > 0
    gaps = pl.read_delta(str(tmp_path / "silver" / "gaps"))
    assert set(gaps["status"]) == {"filled"} and gaps["rows_filled"].sum() == 155


def test_okx_sigkilled_writer_outage_becomes_a_gap_that_is_filled(tmp_path: Path) -> None:
    root = tmp_path / "lake"
    spec = MarketSpec(first_id=1_000_000, exchange="OKX", symbols=["BTC-USDT-SWAP"], rate=3_000)

    def stream(*extra: str) -> subprocess.Popen:
        return lakehouse_stream(ex, root, "BTC-USDT-PERP", *extra)

    with running_exchange(market=spec) as ex:
        proc = stream()
        deadline = time.monotonic() + 60
        while not (root / "bronze" / "trades" / "_delta_log" / "00000000000000000002.json").exists():
            assert time.monotonic() < deadline, proc.stderr.read() if proc.poll() is not None and proc.stderr else ""
            time.sleep(0.1)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
        time.sleep(1.5)  # the market goes on while the writer is down
        proc = stream("--duration", "2")
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        streamed = pl.read_delta(str(root / "bronze" / "trades"))["id"].cast(pl.Int64)
        result = promote_silver(Catalog(root), backfiller=Backfiller({"OKX": ex.rest_url}, rate_limit_ms=5))
        got = _silver_trades(root, "BTC-USDT-PERP")
        truth = _truth(ex.market, "BTC-USDT-SWAP", upto=got[-1][0] - 1_000_000 + 1)
    assert len(set(range(1_000_000, int(streamed.max()))) - set(streamed.to_list())) > 1_000  # the outage lost trades
    assert got == truth  # contiguous from the first trade, every field as the exchange made it
    assert result.totals()["silver.trades"]["gaps_filled"] >= 1
