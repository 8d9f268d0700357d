"""Bars (``transform/gold.py``: ``ohlcv``, ``rollup``, ``_clusters``, ``_candle_runs``), fast:
trades in memory, bars out, no Delta table.

Hand-computed bars; a roll-up of 1m bars equals the bars computed directly from the trades, on
a seeded random market; windows on the UTC epoch grid (weeks from Monday), as the exchanges'
klines. Against independent implementations (ccxt, pandas) and incrementally: test_gold.py.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from crypto_lakehouse.durations import candle_interval
from crypto_lakehouse.schemas import GOLD
from crypto_lakehouse.transform.gold import _MAX_CLUSTERS, _candle_runs, _clusters, ohlcv, rollup

T0 = datetime(2024, 1, 1, tzinfo=UTC)  # a Monday
_UTC = pl.Datetime("us", "UTC")
_TRADES = {
    "exchange": pl.String,
    "symbol": pl.String,
    "id": pl.Int64,
    "ts": _UTC,
    "price": pl.Float64,
    "amount": pl.Float64,
    "side": pl.String,
}


def _trades(rows: list[tuple[str, int, datetime, float, float, str]]) -> pl.DataFrame:
    """(symbol, id, ts, price, amount, side) -> silver-shaped trades (the columns bars read)."""
    return pl.DataFrame([("BINANCE", *r) for r in rows], schema=_TRADES, orient="row")


def _s(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


# rows in an order that is neither time nor id order (Delta keeps none); ties in time at the
# first and the last trade of the first minute, so open and close depend on the id
TAPE = _trades(
    [
        ("BTC-USDT", 16, _s(50), 99.0, 2.0, "sell"),
        ("BTC-USDT", 12, _s(5), 102.0, 1.0, "sell"),
        ("BTC-USDT", 19, _s(120), 107.0, 0.25, "buy"),
        ("BTC-USDT", 13, _s(20), 105.0, 2.0, "sell"),
        ("BTC-USDT", 18, _s(119.999999), 109.0, 1.5, "sell"),
        ("ETH-USDT", 11, _s(30), 50.0, 2.0, "buy"),  # the same id in another symbol
        ("BTC-USDT", 15, _s(50), 101.0, 0.5, "buy"),
        ("BTC-USDT", 14, _s(20), 98.0, 0.5, "buy"),
        ("BTC-USDT", 11, _s(5), 100.0, 1.0, "buy"),
        ("BTC-USDT", 17, _s(60), 110.0, 0.5, "buy"),
    ]
)
_COLUMNS = ["open", "high", "low", "close", "volume", "quote_volume", "trades", "buy_volume", "sell_volume"]


def _bars(bars: pl.DataFrame) -> dict[tuple[str, datetime], dict]:
    return {(r["symbol"], r["window_start"]): r for r in bars.iter_rows(named=True)}


def test_one_minute_bars_by_hand() -> None:
    bars = ohlcv(TAPE, "1m")
    assert bars.columns == GOLD["gold.ohlcv"].schema.names
    got = _bars(bars)
    assert sorted(got) == [("BTC-USDT", _s(0)), ("BTC-USDT", _s(60)), ("BTC-USDT", _s(120)), ("ETH-USDT", _s(0))]
    first = got[("BTC-USDT", _s(0))]  # ids 11..16
    quote = 100 * 1 + 102 * 1 + 105 * 2 + 98 * 0.5 + 99 * 2 + 101 * 0.5  # 709.5
    assert [first[c] for c in _COLUMNS] == [100.0, 105.0, 98.0, 99.0, 7.0, quote, 6, 2.0, 5.0]
    assert first["vwap"] == pytest.approx(709.5 / 7)
    assert (first["source"], first["interval"]) == ("trades", "1m")
    second = got[("BTC-USDT", _s(60))]  # ids 17, 18: 00:01:00 and 00:01:59.999999
    assert [second[c] for c in _COLUMNS] == [110.0, 110.0, 109.0, 109.0, 2.0, 218.5, 2, 0.5, 1.5]
    assert second["vwap"] == 109.25
    third = got[("BTC-USDT", _s(120))]  # id 19, on the minute: it opens the next bar
    assert [third[c] for c in _COLUMNS] == [107.0, 107.0, 107.0, 107.0, 0.25, 26.75, 1, 0.25, 0.0]
    eth = got[("ETH-USDT", _s(0))]
    assert [eth[c] for c in _COLUMNS] == [50.0, 50.0, 50.0, 50.0, 2.0, 100.0, 1, 2.0, 0.0]
    assert eth["vwap"] == 50.0


def test_five_minute_bar_by_hand_and_from_a_lazy_frame() -> None:
    (bar,) = ohlcv(TAPE.lazy().filter(pl.col("symbol") == "BTC-USDT"), "5m").iter_rows(named=True)
    assert bar["window_start"] == T0 and bar["interval"] == "5m"
    assert [bar[c] for c in _COLUMNS] == [100.0, 110.0, 98.0, 107.0, 9.25, 954.75, 9, 2.75, 6.5]
    assert bar["vwap"] == pytest.approx(954.75 / 9.25)


def test_open_and_close_follow_trade_ids_where_time_ties_whatever_the_row_order() -> None:
    tie = _trades(
        [
            ("BTC-USDT", 2, _s(1), 20.0, 1.0, "buy"),
            ("BTC-USDT", 1, _s(1), 10.0, 1.0, "buy"),
            ("BTC-USDT", 4, _s(2), 40.0, 1.0, "buy"),
            ("BTC-USDT", 3, _s(2), 30.0, 1.0, "buy"),
        ]
    )
    for seed in range(5):  # already in order, reversed, shuffled
        rows = tie.sample(fraction=1.0, shuffle=True, seed=seed)
        for df in (rows, rows.sort("ts", "id"), rows.sort("ts", "id", descending=[False, True])):
            (bar,) = ohlcv(df, "1m").select("open", "close").rows()
            assert bar == (10.0, 40.0), df


@pytest.mark.parametrize(
    ("every", "ts", "window_start"),
    [
        ("1h", datetime(2024, 1, 1, 10, 59, 59, 999999, tzinfo=UTC), datetime(2024, 1, 1, 10, tzinfo=UTC)),
        ("1h", datetime(2024, 1, 1, 11, tzinfo=UTC), datetime(2024, 1, 1, 11, tzinfo=UTC)),
        ("4h", datetime(2024, 1, 1, 3, 59, tzinfo=UTC), datetime(2024, 1, 1, 0, tzinfo=UTC)),
        # 2024-01-01 00:00 UTC is 1_704_067_200 s after the epoch, 360 s past a multiple of 420 s
        ("7m", datetime(2024, 1, 1, 0, 0, 30, tzinfo=UTC), datetime(2023, 12, 31, 23, 54, tzinfo=UTC)),
        ("1d", datetime(2024, 2, 29, 23, 59, 59, tzinfo=UTC), datetime(2024, 2, 29, tzinfo=UTC)),
        ("1w", datetime(2024, 1, 3, 12, tzinfo=UTC), datetime(2024, 1, 1, tzinfo=UTC)),  # Wednesday -> Monday
        ("1w", datetime(2024, 1, 7, 23, 59, tzinfo=UTC), datetime(2024, 1, 1, tzinfo=UTC)),  # Sunday
        ("1w", datetime(2024, 1, 8, tzinfo=UTC), datetime(2024, 1, 8, tzinfo=UTC)),
        ("1w", datetime(1970, 1, 1, tzinfo=UTC), datetime(1969, 12, 29, tzinfo=UTC)),  # the epoch was a Thursday
    ],
)
def test_windows_are_on_the_utc_epoch_grid_and_weeks_start_on_monday(
    every: str, ts: datetime, window_start: datetime
) -> None:
    """Whatever trades a run sees, a bar of ``every`` always covers the same window."""
    bars = ohlcv(_trades([("BTC-USDT", 1, ts, 1.0, 1.0, "buy")]), every)
    assert bars["window_start"].to_list() == [window_start]
    rolled = rollup(ohlcv(_trades([("BTC-USDT", 1, ts, 1.0, 1.0, "buy")]), "1m").lazy(), every).collect()
    assert rolled["window_start"].to_list() == [window_start]


def test_no_trades_no_bars() -> None:
    empty = _trades([])
    schema = pl.from_arrow(GOLD["gold.ohlcv"].schema.empty_table()).schema  # type: ignore[union-attr]
    bars = ohlcv(empty, "1m")
    assert bars.is_empty() and bars.schema == schema
    rolled = rollup(bars.lazy(), "1h").collect()
    assert rolled.is_empty() and rolled.schema == schema


# ------------------------------------------------------------------------------ roll-ups


def _market(seed: int) -> pl.DataFrame:
    """~3 hours of two symbols from Sunday 22:47 UTC into Monday (a day and a week boundary):
    bursts, quiet minutes, trades sharing a millisecond, rows shuffled. Prices are multiples of
    1/64 and amounts of 1/1024, so every sum is exact in float64 whatever its order."""
    rng = random.Random(seed)
    rows = []
    for symbol in ("BTC-USDT", "ETH-USDT"):
        t, trade_id = datetime(2023, 12, 31, 22, 47, 13, tzinfo=UTC), rng.randint(1, 10**9)
        k = rng.randint(640_000, 660_000)
        while t < datetime(2024, 1, 1, 1, 50, tzinfo=UTC):
            # mostly ms apart, sometimes the same ms, sometimes a silence of minutes
            t += timedelta(milliseconds=rng.choice([0, 0, 1, 7, 250, 1_000, 5_000, 180_000 * (rng.random() < 0.05)]))
            k = max(1, k + rng.randint(-64, 64))
            rows.append((symbol, trade_id, t, k / 64, rng.randint(1, 4096) / 1024, rng.choice(["buy", "sell"])))
            trade_id += 1
    return _trades(rows).sample(fraction=1.0, shuffle=True, seed=seed)


def _sorted(bars: pl.DataFrame) -> pl.DataFrame:
    return bars.sort("exchange", "symbol", "window_start")


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_rolling_up_one_minute_bars_equals_bars_from_the_trades(seed: int) -> None:
    """Gold computes the finest interval from trades and rolls every multiple up from those bars:
    every column must come out as if computed from the trades directly."""
    trades = _market(seed)
    assert trades.group_by("symbol", "ts").len()["len"].max() > 1  # ties in time
    minutes = ohlcv(trades, "1m")
    assert 150 < minutes.height < 2 * 184  # some quiet minutes among ~3 h of two symbols
    for every in ("5m", "7m", "15m", "1h", "1d", "1w"):
        direct = ohlcv(trades, every)
        assert direct.height > (1 if every in ("1d", "1w") else 2)  # several windows: boundaries are crossed
        assert_frame_equal(_sorted(rollup(minutes.lazy(), every).collect()), _sorted(direct), check_exact=True)
    # and from bars in any row order (gold concatenates kept and fresh bars)
    shuffled = minutes.sample(fraction=1.0, shuffle=True, seed=seed).lazy()
    assert_frame_equal(_sorted(rollup(shuffled, "1h").collect()), _sorted(ohlcv(trades, "1h")), check_exact=True)


# ------------------------------------------------------------------------------ which windows to recompute


def _windows(*rows: tuple[str, datetime]) -> pl.DataFrame:
    return pl.DataFrame(
        [("BINANCE", s, w) for s, w in rows],
        schema={"exchange": pl.String, "symbol": pl.String, "window_start": _UTC},
        orient="row",
    )


def _m(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def _ranges(clusters: pl.DataFrame) -> list[tuple[str, datetime, datetime]]:
    return sorted(clusters.select("symbol", "lo", "hi").rows())


def test_touched_windows_become_contiguous_ranges_per_symbol() -> None:
    touched = _windows(
        ("BTC-USDT", _m(5)),
        ("BTC-USDT", _m(1)),
        ("ETH-USDT", _m(3)),  # would join BTC-USDT's two runs if symbols were mixed
        ("BTC-USDT", _m(0)),
        ("BTC-USDT", _m(2)),
        ("BTC-USDT", _m(4)),
        ("BTC-USDT", _m(9)),
    )
    assert _ranges(_clusters(touched, timedelta(minutes=1))) == [
        ("BTC-USDT", _m(0), _m(3)),
        ("BTC-USDT", _m(4), _m(6)),
        ("BTC-USDT", _m(9), _m(10)),
        ("ETH-USDT", _m(3), _m(4)),
    ]
    assert _clusters(_windows(), timedelta(minutes=1)).is_empty()


def test_very_many_scattered_windows_become_one_covering_range() -> None:
    step = timedelta(minutes=5)
    scattered = [("BTC-USDT", _m(10 * i)) for i in range(_MAX_CLUSTERS + 1)]  # every other 5m window
    few = [("ETH-USDT", _m(0)), ("ETH-USDT", _m(20))]
    runs = _ranges(_clusters(_windows(*scattered, *few), step))
    assert runs == [
        ("BTC-USDT", _m(0), _m(10 * _MAX_CLUSTERS + 5)),  # first window to the end of the last
        ("ETH-USDT", _m(0), _m(5)),
        ("ETH-USDT", _m(20), _m(25)),
    ]
    assert len(_clusters(_windows(*scattered), step, widen=False)) == _MAX_CLUSTERS + 1  # exchange candles
    assert len(_clusters(_windows(*scattered[:-1]), step)) == _MAX_CLUSTERS  # at the limit: kept apart


def test_candle_runs_step_by_calendar_months_and_weeks() -> None:
    month = candle_interval("1M")
    assert month is not None
    touched = _windows(
        *(("BTC-USDT", datetime(2024, m, 1, tzinfo=UTC)) for m in (5, 1, 2, 3)),  # 29, 31 and 31 days apart
        ("BTC-USDT", datetime(2024, 12, 1, tzinfo=UTC)),
        ("BTC-USDT", datetime(2025, 1, 1, tzinfo=UTC)),
        ("ETH-USDT", datetime(2024, 4, 1, tzinfo=UTC)),
    )
    assert _ranges(_candle_runs(touched, month)) == [
        ("BTC-USDT", datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 4, 1, tzinfo=UTC)),
        ("BTC-USDT", datetime(2024, 5, 1, tzinfo=UTC), datetime(2024, 6, 1, tzinfo=UTC)),
        ("BTC-USDT", datetime(2024, 12, 1, tzinfo=UTC), datetime(2025, 2, 1, tzinfo=UTC)),
        ("ETH-USDT", datetime(2024, 4, 1, tzinfo=UTC), datetime(2024, 5, 1, tzinfo=UTC)),
    ]
    week = candle_interval("1w")
    assert week is not None
    weeks = _windows(*(("BTC-USDT", T0 + timedelta(days=d)) for d in (0, 7, 21)))
    assert _ranges(_candle_runs(weeks, week)) == [
        ("BTC-USDT", T0, T0 + timedelta(days=14)),
        ("BTC-USDT", T0 + timedelta(days=21), T0 + timedelta(days=28)),
    ]


def test_a_symbols_bars_are_the_same_bits_built_alone_or_beside_other_symbols() -> None:
    """A fanned-out gold build computes each symbol's bars in its own task: they must equal, bit
    for bit, the bars the build in one process computes from every symbol's trades at once
    (Polars' group-by sums add partial sums of slices of the whole frame, which move with the
    other symbols' rows)."""
    rng = random.Random(7)
    n = 400_000
    symbols = ["BTC-USDT", "ETH-USDT", "SOL-USDT", "XRP-USDT"]
    trades = pl.DataFrame(
        {
            "exchange": ["BINANCE"] * n,
            "symbol": [symbols[i % 4] for i in range(n)],
            "id": list(range(n)),
            "ts": [T0 + timedelta(milliseconds=i * 50) for i in range(n)],
            "price": [100 + rng.random() for _ in range(n)],
            "amount": [rng.random() * 3 for _ in range(n)],
            "side": [rng.choice(("buy", "sell")) for _ in range(n)],
        },
        schema=_TRADES,
    )
    by = ["symbol", "window_start"]
    for every in ("1m", "1h"):
        together = ohlcv(trades, every)
        apart = pl.concat([ohlcv(part, every) for part in trades.partition_by("symbol")])
        assert_frame_equal(apart.sort(by), together.sort(by), check_exact=True)
    fine = ohlcv(trades, "1m")
    rolled = rollup(fine.lazy(), "1d").collect()
    rolled_apart = pl.concat([rollup(p.lazy(), "1d").collect() for p in fine.partition_by("symbol")])
    assert_frame_equal(rolled_apart.sort(by), rolled.sort(by), check_exact=True)
