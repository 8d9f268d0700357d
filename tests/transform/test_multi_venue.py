"""Several venues at once: one process streams the synthetic Binance futures market, the
synthetic OKX market (each with trades withheld) and the recorded BYBIT session through one
FeedHandler and one writer into one root; promote fills each venue's gaps from its own REST;
silver and gold are right per venue, and one SQL query lines the venues up side by side."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
from cryptofeed.connection import connection_stats

from crypto_lakehouse.ingest import BronzeWriter, stream_to_bronze
from crypto_lakehouse.ingest.backfill import Backfiller
from crypto_lakehouse.loopback import FaultPlan, LoopbackExchange, MarketSpec, SyntheticMarket, running_exchange
from crypto_lakehouse.loopback.capture import CaptureExchange, load_capture
from crypto_lakehouse.loopback.replay import capture_subscription, replay_target, synthetic_target
from crypto_lakehouse.query import Lakehouse
from crypto_lakehouse.storage import Catalog
from crypto_lakehouse.transform.gold import build_gold
from crypto_lakehouse.transform.silver import promote_silver

TRADES = 1_200  # per symbol
SYNTHETIC = {  # exchange -> (market, faults)
    "BINANCE_FUTURES": (
        MarketSpec(
            first_id=1_000_000,
            exchange="BINANCE_FUTURES",
            symbols=["BTCUSDT", "ETHUSDT"],
            rate=8_000,
            max_trades=TRADES,
        ),
        FaultPlan(skip_trades=[(1_000_200, 1_000_259)]),
    ),
    "OKX": (
        MarketSpec(
            first_id=7_000_000, exchange="OKX", symbols=["BTC-USDT-SWAP"], rate=6_000, seed=11, max_trades=TRADES
        ),
        FaultPlan(skip_trades=[(7_000_500, 7_000_529)], duplicate_every=50),
    ),
}


def _stream_all(synthetic: list[LoopbackExchange], captures: Path, root: Path) -> int:
    """Stream every venue through one FeedHandler into one writer until each exchange has sent
    everything and cryptofeed has received it; returns the BYBIT trade callbacks."""
    writer = BronzeWriter(Catalog(root), writer_id="many", spool_dir=root / "spool", max_age_s=0.3)
    bybit_trades = 0

    async def count(_trade: object, _receipt: float) -> None:
        nonlocal bybit_trades
        bybit_trades += 1

    async def go() -> None:
        started = time.time()
        async with CaptureExchange(load_capture(captures / "BYBIT.jsonl.zst")) as recorded:
            replay = replay_target(recorded, capture_subscription(recorded.capture))
            replay.candle_interval = recorded.capture.candle_interval
            replay.observers = {"trades": [count]}
            targets = [*(synthetic_target(ex, channels=["trades", "l2_book", "ticker"]) for ex in synthetic), replay]
            stop = asyncio.Event()
            task = asyncio.create_task(stream_to_bronze(targets, writer, stop=stop, sessions=False))
            deadline = time.monotonic() + 120

            def everything_arrived(exchange: str, sent: int) -> bool:
                return sum(s.received for s in connection_stats(exchange, since=started).values()) >= sent

            while not (
                all(ex.status()["finished"] for ex in synthetic)
                and recorded.finished.is_set()
                and all(everything_arrived(ex.venue.exchange, ex.stats.messages_sent) for ex in synthetic)
                and everything_arrived("BYBIT", recorded.stats.messages_sent)
            ):
                assert time.monotonic() < deadline and not task.done(), "the venues did not finish"
                await asyncio.sleep(0.1)
            await asyncio.sleep(0.3)
            stop.set()
            await task

    asyncio.run(go())
    return bybit_trades


def _truth(market: SyntheticMarket, name: str) -> pl.DataFrame:
    """Every trade the exchange made in ``name`` (the faults withheld some from the stream only)."""
    tape = market.tape(name)
    rows = [tape.record(i) for i in range(len(tape))]
    return pl.DataFrame(
        {
            "id": [r["a"] for r in rows],
            "ts": [datetime.fromtimestamp(t / 1000, UTC) for t in tape.time_ms[: len(rows)]],
            "side": ["sell" if r["m"] else "buy" for r in rows],
            "price": [float(str(r["p"])) for r in rows],
            "amount": [float(str(r["q"])) for r in rows],
        },
        schema_overrides={"ts": pl.Datetime("us", "UTC")},
    )


def test_two_synthetic_venues_and_a_recorded_one_in_one_process_land_right_per_venue(
    tmp_path: Path, captures: Path
) -> None:
    with (
        running_exchange(market=SYNTHETIC["BINANCE_FUTURES"][0], faults=SYNTHETIC["BINANCE_FUTURES"][1]) as binance,
        running_exchange(market=SYNTHETIC["OKX"][0], faults=SYNTHETIC["OKX"][1]) as okx,
    ):
        bybit_callbacks = _stream_all([binance, okx], captures, tmp_path)
        catalog = Catalog(tmp_path)
        backfiller = Backfiller({"BINANCE_FUTURES": binance.rest_url, "OKX": okx.rest_url}, rate_limit_ms=5)
        result = promote_silver(catalog, backfiller=backfiller)
        markets = {"BINANCE_FUTURES": binance.market, "OKX": okx.market}

    # silver per venue: each synthetic venue's tape exactly (its withheld trades backfilled from its
    # own REST, OKX's duplicates dropped); the recorded venue's every trade, nothing quarantined
    silver = pl.read_delta(str(tmp_path / "silver" / "trades"))
    for exchange, market in markets.items():
        for name in market.symbols:
            got = silver.filter(exchange=exchange, symbol=market.std_symbol(name)).sort("id")
            assert got.select(
                "id", "ts", "side", pl.col("price").cast(pl.Float64), pl.col("amount").cast(pl.Float64)
            ).equals(_truth(market, name)), (exchange, name)
    assert silver.filter(source="backfill").group_by("exchange").len().sort("exchange").rows() == [
        ("BINANCE_FUTURES", 60),
        ("OKX", 30),
    ]
    bybit = silver.filter(exchange="BYBIT")
    assert bybit.height == bybit_callbacks == 347  # cryptofeed's expected count for the recording
    # linear trades carry UUIDs (no integer id), spot trades integers: every id kept as text
    assert bybit["trade_id"].null_count() == 0 and 0 < bybit["id"].null_count() < bybit.height
    quarantined = {k: v for t in result.totals().values() for k, v in t.items() if k.startswith("quarantined")}
    # the only rows quarantined: BYBIT spot tickers, which carry no best bid/ask (cryptofeed 3.0.1
    # delivers them as 0 and 0), never a trade
    bad = pl.read_delta(str(tmp_path / "silver" / "quarantine"))
    spot = pl.col("raw").str.json_path_match("$.symbol").str.count_matches("-") == 1
    assert bad.filter(~spot | (pl.col("table") != "silver.ticker")).height == 0
    assert quarantined == {"quarantined:bid_not_positive": bad.height}

    # gold per venue: each 1m close is the last trade of that minute on that venue
    build_gold(catalog, intervals=[timedelta(minutes=1)])
    lake = Lakehouse(str(tmp_path))
    side_by_side = lake.sql(
        """
        SELECT b.window_start, b.close AS binance, o.close AS okx
        FROM gold.bars b JOIN gold.bars o USING (window_start, symbol, interval)
        WHERE b.exchange = 'BINANCE_FUTURES' AND o.exchange = 'OKX'
          AND symbol = 'BTC-USDT-PERP' AND interval = '1m'
        ORDER BY window_start
        """
    )
    assert side_by_side.height >= 1
    for exchange, column, name in (("BINANCE_FUTURES", "binance", "BTCUSDT"), ("OKX", "okx", "BTC-USDT-SWAP")):
        truth = _truth(markets[exchange], name)
        closes = (
            truth.sort("ts", "id")
            .group_by(pl.col("ts").dt.truncate("1m").alias("window_start"))
            .agg(pl.col("price").last())
        )
        windows = side_by_side.select(pl.col("window_start").dt.convert_time_zone("UTC"))
        expected = windows.join(closes, on="window_start", how="left")["price"]
        assert side_by_side[column].cast(pl.Float64).to_list() == expected.to_list(), exchange
