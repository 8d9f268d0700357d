"""gold.ohlcv equals implementations nobody here wrote (ccxt's build_ohlcvc, pandas resample),
VWAP is sum(p*q)/sum(q), and a late trade rewrites its window and only its window."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import ccxt
import pandas as pd
import polars as pl
import pytest

from crypto_lakehouse.loopback import MarketSpec, SyntheticMarket
from crypto_lakehouse.schemas import SILVER
from crypto_lakehouse.storage import Catalog
from crypto_lakehouse.transform.gold import build_gold

INTERVALS = {"1m": timedelta(minutes=1), "5m": timedelta(minutes=5), "1h": timedelta(hours=1)}


def _silver_trades(market: SyntheticMarket) -> pl.DataFrame:
    rows = []
    for sym in market.symbols.values():
        tape = sym.tape
        std = market.venue.std_symbol(sym.name)
        for i in range(len(tape)):
            rows.append(
                (
                    market.venue.exchange,
                    std,
                    tape.first_id + i,
                    tape.time_ms[i],
                    tape.price[i] / 100,
                    tape.qty[i] / 1000,
                    "sell" if tape.buyer_maker[i] else "buy",
                )
            )
    df = pl.DataFrame(rows, schema=["exchange", "symbol", "id", "ms", "price", "amount", "side"], orient="row")
    return (
        df.with_columns(
            pl.from_epoch("ms", time_unit="ms").dt.replace_time_zone("UTC").dt.cast_time_unit("us").alias("ts"),
        )
        .with_columns(
            pl.col("ts").dt.date().alias("date"), pl.col("ts").alias("receipt_ts"), pl.lit("stream").alias("source")
        )
        .with_columns(pl.col("id").cast(pl.String).alias("trade_id"), pl.col("id").cast(pl.String).alias("trade_key"))
        .drop("ms")
    )


def _write_silver(catalog: Catalog, df: pl.DataFrame) -> None:
    spec = SILVER["silver.trades"]
    catalog.append("silver.trades", df.select(spec.schema.names).to_arrow().cast(spec.schema))


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory):
    # ~2.5 hours of exchange time, two symbols, many trades sharing a millisecond (ties by id)
    market = SyntheticMarket(
        MarketSpec(exchange="BINANCE_FUTURES", symbols=["BTCUSDT", "ETHUSDT"], rate=4, start_ms=1_700_000_000_000)
    )
    for _ in range(6_000):
        market.step()
    root = tmp_path_factory.mktemp("gold")
    catalog = Catalog(root)
    trades = _silver_trades(market).sort("symbol", "id")
    # every 3rd trade shares the previous trade's millisecond: open/close ties broken by id
    trades = trades.with_columns(
        pl.when(pl.int_range(pl.len()) % 3 == 1).then(pl.col("ts").shift(1)).otherwise(pl.col("ts")).alias("ts")
    ).with_columns(pl.col("ts").dt.date().alias("date"))
    assert trades.group_by("symbol", "ts").len()["len"].max() > 1
    # rows land in an order unrelated to time, as Delta does not keep row order
    _write_silver(catalog, trades.sample(fraction=1.0, shuffle=True, seed=3))
    build_gold(catalog, intervals=list(INTERVALS.values()))
    gold = pl.read_delta(str(root / "gold" / "ohlcv"))
    return catalog, trades, gold


@pytest.mark.parametrize("interval", list(INTERVALS))
def test_ohlcv_equals_ccxt_build_ohlcvc(built, interval: str) -> None:
    _, trades, gold = built
    for symbol in ("BTC-USDT-PERP", "ETH-USDT-PERP"):
        t = trades.filter(pl.col("symbol") == symbol).sort("ts", "id")
        ccxt_trades = [
            {"timestamp": int(r["ts"].timestamp() * 1000), "price": r["price"], "amount": r["amount"]}
            for r in t.iter_rows(named=True)
        ]
        expected = ccxt.Exchange.build_ohlcvc(ccxt.Exchange(), ccxt_trades, interval)
        got = gold.filter((pl.col("symbol") == symbol) & (pl.col("interval") == interval)).sort("window_start")
        assert got.height == len(expected)
        for row, exp in zip(got.iter_rows(named=True), expected, strict=True):
            assert int(row["window_start"].timestamp() * 1000) == exp[0]
            for name, value in zip(("open", "high", "low", "close", "volume"), exp[1:6], strict=True):
                assert math.isclose(row[name], value, rel_tol=1e-9), (interval, name, row, exp)
            assert row["trades"] == exp[6]


@pytest.mark.parametrize("interval", list(INTERVALS))
def test_ohlcv_equals_pandas_resample(built, interval: str) -> None:
    _, trades, gold = built
    rule = {"1m": "1min", "5m": "5min", "1h": "1h"}[interval]
    for symbol in ("BTC-USDT-PERP", "ETH-USDT-PERP"):
        t = trades.filter(pl.col("symbol") == symbol).sort("ts", "id").to_pandas().set_index("ts")
        ohlc = t["price"].resample(rule).ohlc()
        vol = t["amount"].resample(rule).sum()
        count = t["price"].resample(rule).count()
        keep = count > 0  # pandas emits empty windows; gold leaves them out (documented)
        expected = pd.concat([ohlc, vol.rename("volume"), count.rename("trades")], axis=1)[keep]
        got = gold.filter((pl.col("symbol") == symbol) & (pl.col("interval") == interval)).sort("window_start")
        assert got.height == len(expected)
        assert [int(x.timestamp()) for x in got["window_start"]] == [int(x.timestamp()) for x in expected.index]
        for col in ("open", "high", "low", "close", "volume"):
            for a, b in zip(got[col].to_list(), expected[col].to_list(), strict=True):
                assert math.isclose(a, b, rel_tol=1e-9)
        assert got["trades"].to_list() == expected["trades"].astype(int).to_list()


def test_vwap_and_buy_sell_volume(built) -> None:
    _, trades, gold = built
    bars = gold.filter(pl.col("interval") == "5m")
    check = (
        trades.with_columns(pl.col("ts").dt.truncate("5m").alias("window_start"))
        .group_by("symbol", "window_start")
        .agg(
            ((pl.col("price") * pl.col("amount")).sum() / pl.col("amount").sum()).alias("vwap_expected"),
            pl.col("amount").filter(pl.col("side") == "buy").sum().alias("buy_expected"),
        )
        .join(bars, on=["symbol", "window_start"])
    )
    assert check.height == bars.height
    for r in check.iter_rows(named=True):
        assert math.isclose(r["vwap"], r["vwap_expected"], rel_tol=1e-9)
        assert math.isclose(r["buy_volume"], r["buy_expected"], rel_tol=1e-9)
        assert math.isclose(r["buy_volume"] + r["sell_volume"], r["volume"], rel_tol=1e-9)


def test_rerun_is_a_noop_and_a_late_trade_updates_only_its_window(built) -> None:
    catalog, trades, gold = built
    version = catalog.open("gold.ohlcv").version()
    build_gold(catalog, intervals=list(INTERVALS.values()))
    assert catalog.open("gold.ohlcv").version() == version  # nothing new, nothing written

    old = trades.filter(pl.col("symbol") == "BTC-USDT-PERP").sort("ts").row(100, named=True)
    late = pl.DataFrame(
        [
            {
                **old,
                "id": 999_999_999,
                "price": old["price"] * 2,
                "amount": 1.0,
                "source": "backfill",
                "receipt_ts": datetime.now(UTC),
            }
        ]
    ).cast(trades.schema)
    _write_silver(catalog, late)
    result = build_gold(catalog, intervals=list(INTERVALS.values()))
    assert result.bars_written == {"1m": 1, "5m": 1, "1h": 1}
    after = pl.read_delta(catalog.uri("gold.ohlcv"))
    key = ["source", "interval", "exchange", "symbol", "window_start"]
    changed = (
        after.join(gold, on=key, how="anti").height
        + gold.join(after, on=[*gold.columns], how="anti", nulls_equal=True).height
    )
    assert changed == 3  # one bar per interval differs
    for interval in INTERVALS:
        window = old["ts"].replace(microsecond=0)
        start = pl.Series([window]).dt.truncate(interval)[0]
        bar = after.filter(
            (pl.col("interval") == interval) & (pl.col("symbol") == "BTC-USDT-PERP") & (pl.col("window_start") == start)
        )
        before = gold.filter(
            (pl.col("interval") == interval) & (pl.col("symbol") == "BTC-USDT-PERP") & (pl.col("window_start") == start)
        )
        assert bar["trades"][0] == before["trades"][0] + 1
        assert bar["high"][0] == max(before["high"][0], old["price"] * 2)


def test_exchange_candles_are_kept_apart_and_funding_gets_rolling_means(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path)
    t0 = datetime(2026, 11, 1, tzinfo=UTC)
    candles = (
        pl.DataFrame(
            {
                "exchange": ["BINANCE"] * 3,
                "symbol": ["BTC-USDT"] * 3,
                "interval": ["1m"] * 3,
                "start": [t0 + timedelta(minutes=i) for i in range(3)],
                "trades": [5, 6, 7],
                "open": [1.0, 2.0, 3.0],
                "high": [2.0, 3.0, 4.0],
                "low": [0.5, 1.5, 2.5],
                "close": [2.0, 3.0, 4.0],
                "volume": [10.0, 11.0, 12.0],
                "source": ["stream"] * 3,
            }
        )
        .with_columns(
            pl.col("start").dt.cast_time_unit("us"),
            (pl.col("start").dt.cast_time_unit("us") + timedelta(seconds=59, milliseconds=999)).alias("stop"),
        )
        .with_columns(
            pl.col("stop").alias("ts"), pl.col("stop").alias("receipt_ts"), pl.col("start").dt.date().alias("date")
        )
    )
    spec = SILVER["silver.candles"]
    catalog.append("silver.candles", candles.select(spec.schema.names).to_arrow().cast(spec.schema))
    fund = (
        pl.DataFrame(
            {
                "exchange": ["BINANCE_FUTURES"] * 4,
                "symbol": ["BTC-USDT-PERP"] * 4,
                "ts": [t0 + timedelta(hours=8 * i) for i in range(4)],
                "rate": [0.0001, 0.0003, -0.0001, 0.0002],
                "mark_price": [100.0, 101.0, 102.0, 103.0],
                "source": ["backfill"] * 4,
            }
        )
        .with_columns(pl.col("ts").dt.cast_time_unit("us"))
        .with_columns(
            pl.col("ts").alias("receipt_ts"),
            pl.col("ts").dt.date().alias("date"),
            pl.lit(None, pl.Float64).alias("index_price"),
            pl.lit(None, pl.Float64).alias("predicted_rate"),
            pl.lit(None, pl.Datetime("us", "UTC")).alias("next_funding_time"),
        )
    )
    fspec = SILVER["silver.funding"]
    catalog.append("silver.funding", fund.select(fspec.schema.names).to_arrow().cast(fspec.schema))
    result = build_gold(catalog, intervals=[timedelta(minutes=1)])
    assert result.exchange_candles == 3 and result.funding_rows == 4
    bars = pl.read_delta(catalog.uri("gold.ohlcv"))
    assert set(bars["source"]) == {"exchange"} and bars.sort("window_start")["trades"].to_list() == [5, 6, 7]
    f = pl.read_delta(catalog.uri("gold.funding")).sort("funding_time")
    assert f["rate_avg_1d"].to_list()[2] == pytest.approx((0.0001 + 0.0003 - 0.0001) / 3)
    assert f["annualized_rate"].to_list()[0] == pytest.approx(0.0001 * 3 * 365)
    assert build_gold(catalog, intervals=[timedelta(minutes=1)]).funding_rows == 0  # nothing new


def test_many_backfilled_candle_holes_do_not_erase_other_candles(tmp_path: Path) -> None:
    """More than 64 separate touched windows in one rebuild: exchange candles are replaced window
    by window, never by a covering range (that would delete the candles in between)."""
    catalog = Catalog(tmp_path)
    t0 = datetime(2026, 11, 1, tzinfo=UTC)
    spec = SILVER["silver.candles"]

    def candles(minutes: list[int], source: str) -> None:
        df = (
            pl.DataFrame({"start": [t0 + timedelta(minutes=m) for m in minutes]})
            .with_columns(
                pl.col("start").dt.cast_time_unit("us"),
                pl.lit("BINANCE").alias("exchange"),
                pl.lit("BTC-USDT").alias("symbol"),
                pl.lit("1m").alias("interval"),
                pl.lit(3, pl.Int64).alias("trades"),
                *(
                    pl.lit(v).alias(c)
                    for c, v in (("open", 1.0), ("high", 2.0), ("low", 0.5), ("close", 1.5), ("volume", 3.0))
                ),
                pl.lit(source).alias("source"),
            )
            .with_columns((pl.col("start") + timedelta(seconds=59)).alias("stop"))
            .with_columns(
                pl.col("stop").alias("ts"), pl.col("stop").alias("receipt_ts"), pl.col("start").dt.date().alias("date")
            )
        )
        catalog.append("silver.candles", df.select(spec.schema.names).to_arrow().cast(spec.schema))

    holes = list(range(2, 300, 4))[:70]
    candles([m for m in range(300) if m not in holes], "stream")
    build_gold(catalog, intervals=[timedelta(minutes=1)])
    candles(holes, "backfill")
    build_gold(catalog, intervals=[timedelta(minutes=1)])
    bars = pl.read_delta(catalog.uri("gold.ohlcv")).filter(pl.col("source") == "exchange")
    assert bars.height == 300 and bars["window_start"].n_unique() == 300
