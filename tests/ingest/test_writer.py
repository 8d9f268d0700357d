"""The streaming writer against the synthetic market: no loss, no duplicates, bad frames kept."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import polars as pl

from crypto_lakehouse.exchange import MALFORMED_KINDS, FaultPlan, LoopbackExchange, MarketSpec
from crypto_lakehouse.ingest import BronzeWriter, FeedTarget, stream_to_bronze
from crypto_lakehouse.ingest.replay import stream_until_finished
from crypto_lakehouse.storage import Catalog


def _target(ex: LoopbackExchange, symbols: list[str]) -> FeedTarget:
    v = ex.venue
    return FeedTarget(
        v.exchange,
        symbols=[v.std_symbol(s) for s in symbols],
        channels=v.channels,
        ws_url=ex.ws_url,
        rest_url=ex.rest_url,
        cert_pem=ex.cert_pem,
    )


def _run(spec: MarketSpec, root: Path, faults: FaultPlan | None = None, **writer_kw) -> tuple[BronzeWriter, dict]:
    writer = BronzeWriter(Catalog(root), writer_id="w1", spool_dir=root / "spool", max_age_s=0.2, **writer_kw)

    async def go() -> dict:
        async with LoopbackExchange(market=spec, faults=faults) as ex:
            await stream_until_finished(ex, [_target(ex, spec.symbols)], writer)
            return ex.status()

    return writer, asyncio.run(go())


def test_synthetic_run_of_n_trades_lands_n_distinct_ids(tmp_path: Path) -> None:
    n = 3_000
    spec = MarketSpec(exchange="BINANCE_FUTURES", symbols=["BTCUSDT", "ETHUSDT"], rate=20_000, max_trades=n)
    writer, _ = _run(spec, tmp_path)
    trades = pl.read_delta(str(tmp_path / "bronze" / "trades"))
    for sym, first in (("BTC-USDT-PERP", 1_000_000), ("ETH-USDT-PERP", 2_000_000)):
        ids = trades.filter(pl.col("symbol") == sym)["id"].cast(pl.Int64)
        assert ids.n_unique() == ids.len() == n
        assert ids.sort().to_list() == list(range(first, first + n))
    assert writer.stats["bronze.trades"].commits >= 2  # batched by age, several ACID appends
    for kind in ("book", "ticker", "funding", "liquidations", "candles"):
        assert pl.scan_delta(str(tmp_path / "bronze" / kind)).select(pl.len()).collect().item() > 0, kind


def test_malformed_frames_go_to_dead_letter_and_good_ones_land(tmp_path: Path) -> None:
    n = 2_000
    spec = MarketSpec(exchange="BINANCE_FUTURES", symbols=["BTCUSDT"], rate=20_000, max_trades=n)
    _, status = _run(spec, tmp_path, FaultPlan(malformed_every=97))
    trades = pl.read_delta(str(tmp_path / "bronze" / "trades"))
    assert sorted(trades["id"].cast(pl.Int64).to_list()) == list(range(1_000_000, 1_000_000 + n))
    dead = pl.read_delta(str(tmp_path / "bronze" / "dead_letter"))
    assert dead.height == sum(status["malformed_sent"].values()) > len(MALFORMED_KINDS)
    assert status["connections_opened"] == 2  # the bad frames did not cost a reconnect
    assert dead["payload"].str.len_chars().min() > 0 and dead["error"].null_count() == 0
    assert set(dead["exchange"]) == {"BINANCE_FUTURES"}
    # each kind is recognisable in the kept payloads
    payloads = "\n".join(dead["payload"].to_list())
    assert "502 Bad Gateway" in payloads and "mysteryEvent" in payloads and '"oops"' in payloads


def test_duplicates_and_skips_are_kept_as_received(tmp_path: Path) -> None:
    """Bronze is what the exchange said: a duplicate frame is two rows, a skipped trade is absent
    (silver dedups and backfills)."""
    spec = MarketSpec(exchange="BINANCE", symbols=["BTCUSDT"], rate=20_000, max_trades=1_000)
    _run(spec, tmp_path, FaultPlan(duplicate_every=100, skip_trades=[(1_000_500, 1_000_509)]))
    ids = pl.read_delta(str(tmp_path / "bronze" / "trades"))["id"].cast(pl.Int64).to_list()
    skipped = set(range(1_000_500, 1_000_510))
    doubled = {i for i in range(1_000_000, 1_001_000, 100)} - skipped
    assert len(ids) == 1_000 - len(skipped) + len(doubled)
    assert not skipped & set(ids)
    assert {i for i in ids if ids.count(i) == 2} == doubled


def test_several_exchanges_in_one_process_write_concurrently(tmp_path: Path) -> None:
    """One FeedHandler, two feeds (spot and USD-M futures), one writer: both land in full."""
    spot = MarketSpec(exchange="BINANCE", symbols=["BTCUSDT"], rate=10_000, max_trades=1_500)
    perp = MarketSpec(exchange="BINANCE_FUTURES", symbols=["BTCUSDT"], rate=10_000, max_trades=1_500)
    writer = BronzeWriter(Catalog(tmp_path), writer_id="multi", spool_dir=tmp_path / "spool", max_age_s=0.2)

    async def go() -> None:
        async with LoopbackExchange(market=spot) as a, LoopbackExchange(market=perp) as b:
            stop = asyncio.Event()
            task = asyncio.create_task(
                stream_to_bronze([_target(a, spot.symbols), _target(b, perp.symbols)], writer, stop=stop)
            )
            await asyncio.wait_for(asyncio.gather(a.finished.wait(), b.finished.wait()), 60)
            await asyncio.sleep(1.0)
            stop.set()
            await task

    asyncio.run(go())
    trades = pl.read_delta(str(tmp_path / "bronze" / "trades"))
    per = trades.group_by("exchange", "symbol").agg(pl.col("id").n_unique().alias("ids"), pl.len()).sort("exchange")
    assert per.rows() == [("BINANCE", "BTC-USDT", 1_500, 1_500), ("BINANCE_FUTURES", "BTC-USDT-PERP", 1_500, 1_500)]


def test_auto_compaction_merges_small_files_and_loses_nothing(tmp_path: Path) -> None:
    writer = BronzeWriter(Catalog(tmp_path), writer_id="w1", spool_dir=tmp_path / "spool", compact_every=4)
    now = time.time()

    async def stream() -> None:
        await writer.start()
        for k in range(14):  # 14 commits of 100 trades, two symbols
            rows = [
                ("BINANCE", ("BTC-USDT", "ETH-USDT")[i % 2], now + i, now + i, str(i), "buy", "1.5", "2", None)
                for i in range(k * 100, (k + 1) * 100)
            ]
            writer.add_many("bronze.trades", rows)
            await writer.flush()

    asyncio.run(stream())
    st = writer.stats["bronze.trades"]
    assert (st.commits, st.compactions) == (14, 3)
    trades = pl.read_delta(str(tmp_path / "bronze" / "trades"))
    assert sorted(trades["id"].cast(pl.Int64).to_list()) == list(range(1_400))
    dt = Catalog(tmp_path).open("bronze.trades")
    assert [h["operation"] for h in dt.history()].count("OPTIMIZE") == 3
    # per partition: the merged file plus one file per commit since the last compaction (2)
    per_partition = Counter(uri.rsplit("/", 1)[0] for uri in dt.file_uris())
    assert max(per_partition.values()) <= 3
    assert sum(per_partition.values()) < 14
