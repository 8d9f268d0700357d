"""gold.info_bars (tick, volume and dollar bars) equals a plain-Python reference built trade by
trade, whatever order silver returns the rows in and however many trades share a timestamp; a
bar closes at the trade that reaches its threshold; bars restart at UTC midnight, so a late
trade rebuilds its day's bars and no other day's; a rerun writes nothing."""

from __future__ import annotations

import json
import random
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from crypto_lakehouse import jobs, load_settings
from crypto_lakehouse.config import BarSettings, Settings
from crypto_lakehouse.errors import InvalidArgument
from crypto_lakehouse.schemas import GOLD, SILVER
from crypto_lakehouse.storage import Catalog
from crypto_lakehouse.transform.bars import BarKind, build_info_bars, info_bars
from tests.transform.helpers import write_bronze

T0 = datetime(2024, 3, 1, tzinfo=UTC)
TABLE = "gold.info_bars"
COLUMNS = GOLD[TABLE].schema.names


# ---- the reference: one trade at a time, as the rule in docs/gold.md reads ------------------


def _order(t: dict[str, Any]) -> tuple[Any, ...]:
    return (
        t["exchange"],
        t["symbol"],
        t["ts"].date(),
        t["ts"],
        t["id"] is None,
        t["id"] or 0,
        t["trade_key"] is None,
        t["trade_key"] or "",
        t["price"],
        t["amount"],
        t["side"],
    )


def reference(trades: list[dict[str, Any]], kind: BarKind, threshold: float) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    bar: dict[str, Any] | None = None
    for t in sorted(trades, key=_order):
        day = (t["exchange"], t["symbol"], t["ts"].date())
        if bar is not None and (bar["exchange"], bar["symbol"], bar["date"]) != day:
            out.append(bar)  # the day's last bar, short of the threshold
            bar = None
        if bar is None:
            same_day = out and (out[-1]["exchange"], out[-1]["symbol"], out[-1]["date"]) == day
            bar = {
                "kind": kind,
                "threshold": float(threshold),
                "exchange": day[0],
                "symbol": day[1],
                "date": day[2],
                "bar": out[-1]["bar"] + 1 if same_day else 0,
                "complete": False,
                "first_trade_ts": t["ts"],
                "first_trade_id": t["id"],
                "open": t["price"],
                "high": t["price"],
                "low": t["price"],
                "volume": 0.0,
                "quote_volume": 0.0,
                "buy_volume": 0.0,
                "sell_volume": 0.0,
                "trades": 0,
            }
        bar["trades"] += 1
        bar["volume"] += t["amount"]
        bar["quote_volume"] += t["price"] * t["amount"]
        bar["buy_volume" if t["side"] == "buy" else "sell_volume"] += t["amount"]
        bar["high"], bar["low"] = max(bar["high"], t["price"]), min(bar["low"], t["price"])
        bar["close"], bar["last_trade_ts"], bar["last_trade_id"] = t["price"], t["ts"], t["id"]
        bar["vwap"] = bar["quote_volume"] / bar["volume"]
        if {"tick": bar["trades"], "volume": bar["volume"], "dollar": bar["quote_volume"]}[kind] >= threshold:
            bar["complete"] = True
            out.append(bar)
            bar = None
    if bar is not None:
        out.append(bar)
    return out


# ---- trades --------------------------------------------------------------------------------


def _trade(
    ts: datetime,
    price: float,
    amount: float,
    *,
    id: int | None,
    side: str = "buy",
    exchange: str = "BINANCE",
    symbol: str = "BTC-USDT",
    key: str | None = None,
) -> dict[str, Any]:
    return {
        "exchange": exchange,
        "symbol": symbol,
        "ts": ts,
        "id": id,
        "trade_key": str(id) if key is None else key,
        "price": price,
        "amount": amount,
        "side": side,
    }


def _frame(trades: list[dict[str, Any]]) -> pl.DataFrame:
    """Silver-shaped trades (every column of silver.trades)."""
    spec = SILVER["silver.trades"]
    df = pl.DataFrame(
        trades,
        schema={
            "exchange": pl.String,
            "symbol": pl.String,
            "ts": pl.Datetime("us", "UTC"),
            "id": pl.Int64,
            "trade_key": pl.String,
            "price": pl.Float64,
            "amount": pl.Float64,
            "side": pl.String,
        },
    )
    return df.with_columns(
        pl.col("ts").dt.date().alias("date"),
        pl.col("ts").alias("receipt_ts"),
        pl.col("trade_key").alias("trade_id"),
        pl.lit("stream").alias("source"),
    ).select(spec.schema.names)


def _random_trades(seed: int, n: int = 1_500) -> list[dict[str, Any]]:
    """Three (exchange, symbol)s over three UTC days; a third of the trades share the symbol's
    previous trade's microsecond; one has no integer ids (ties by trade_key, or without one by
    price, amount and side)."""
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    clocks = dict.fromkeys(
        [("BINANCE", "BTC-USDT"), ("BINANCE", "ETH-USDT"), ("KRAKEN", "BTC-USD")], T0 - timedelta(hours=2)
    )
    for i in range(n):
        exchange, symbol = rng.choice(list(clocks))
        if rng.random() > 0.35:  # else: the same microsecond as the symbol's previous trade
            clocks[exchange, symbol] += timedelta(microseconds=rng.randrange(1, 1_000_000_000))
        ts = clocks[exchange, symbol]
        no_id = exchange == "KRAKEN"
        out.append(
            _trade(
                ts,
                round(rng.uniform(90, 110), 2),
                rng.choice([rng.uniform(0.001, 2.0), 0.1, 0.5, 7.5]),
                id=None if no_id else 10_000 + i,
                key=f"row:{rng.getrandbits(40):x}" if no_id else None,
                side=rng.choice(["buy", "sell"]),
                exchange=exchange,
                symbol=symbol,
            )
        )
        if no_id and rng.random() < 0.2:  # a row written before trade_key: ties by price, amount, side
            out[-1]["trade_key"] = None
    return out


def _rows(bars: pl.DataFrame) -> list[dict[str, Any]]:
    return bars.sort("exchange", "symbol", "date", "bar").to_dicts()


def _reference_rows(trades: list[dict[str, Any]], kind: BarKind, threshold: float) -> list[dict[str, Any]]:
    return [{c: b[c] for c in COLUMNS} for b in reference(trades, kind, threshold)]


THRESHOLDS: dict[BarKind, float] = {"tick": 7, "volume": 3.0, "dollar": 250.0}


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
@pytest.mark.parametrize("kind", list(THRESHOLDS))
def test_bars_equal_the_reference_on_shuffled_ties(kind: BarKind, seed: int) -> None:
    trades = _random_trades(seed)
    assert len({(t["symbol"], t["ts"]) for t in trades}) < len(trades) * 0.8  # many same-time ties
    assert len({t["ts"].date() for t in trades}) >= 3  # across UTC midnights
    shuffled = trades[:]
    random.Random(seed + 100).shuffle(shuffled)
    got = _rows(info_bars(_frame(shuffled), kind=kind, threshold=THRESHOLDS[kind]))
    expected = _reference_rows(trades, kind, THRESHOLDS[kind])
    assert len(expected) > 20 and any(not b["complete"] for b in expected)
    assert got == expected  # exactly: every float bit for bit


def _volumes(amounts: list[float], kind: BarKind = "volume", threshold: float = 1.0) -> list[tuple[int, float, bool]]:
    trades = [_trade(T0 + timedelta(seconds=i), 100.0, a, id=i) for i, a in enumerate(amounts)]
    bars = _rows(info_bars(_frame(trades), kind=kind, threshold=threshold))
    return [(b["trades"], b["volume"], b["complete"]) for b in bars]


def test_a_bar_closes_when_the_threshold_is_reached_exactly() -> None:
    assert _volumes([0.5, 0.25, 0.25, 0.75, 0.25]) == [(3, 1.0, True), (2, 1.0, True)]


def test_the_trade_that_crosses_the_threshold_belongs_to_the_closing_bar() -> None:
    # 0.5 + 0.75 overshoots: both in bar 0; the next bar starts from zero (no carry-over)
    assert _volumes([0.5, 0.75, 0.5, 0.25]) == [(2, 1.25, True), (2, 0.75, False)]


def test_one_huge_trade_spanning_several_thresholds_makes_one_bar() -> None:
    assert _volumes([0.25, 5.0, 0.5]) == [(2, 5.25, True), (1, 0.5, False)]
    assert _volumes([5.0, 0.5, 0.5]) == [(1, 5.0, True), (2, 1.0, True)]


def test_tick_and_dollar_thresholds() -> None:
    assert _volumes([0.5] * 5, "tick", 2) == [(2, 1.0, True), (2, 1.0, True), (1, 0.5, False)]
    # price 100: each trade is 50 of quote volume; 120 is reached by the third
    assert _volumes([0.5] * 7, "dollar", 120.0) == [(3, 1.5, True), (3, 1.5, True), (1, 0.5, False)]


def test_bars_restart_at_utc_midnight_and_ties_go_by_trade_id() -> None:
    night = T0 + timedelta(days=1)
    trades = [
        _trade(night - timedelta(seconds=1), 101.0, 1.0, id=2),
        _trade(night - timedelta(seconds=1), 100.0, 1.0, id=1),  # same time, lower id: first
        _trade(night, 102.0, 1.0, id=3),
        _trade(night + timedelta(seconds=1), 103.0, 1.0, id=4),
    ]
    bars = _rows(info_bars(_frame(trades), kind="tick", threshold=3))
    assert [(b["date"], b["bar"], b["trades"], b["complete"]) for b in bars] == [
        (date(2024, 3, 1), 0, 2, False),  # cut by midnight, short of 3 trades
        (date(2024, 3, 2), 0, 2, False),
    ]
    assert (bars[0]["open"], bars[0]["close"], bars[0]["first_trade_id"], bars[0]["last_trade_id"]) == (
        100.0,
        101.0,
        1,
        2,
    )


@pytest.mark.parametrize(("kind", "threshold"), [("tick", 2.5), ("tick", 0), ("volume", -1.0), ("renko", 5.0)])
def test_a_bad_kind_or_threshold_is_refused(kind: Any, threshold: float) -> None:
    with pytest.raises(InvalidArgument, match="bar"):
        info_bars(_frame([_trade(T0, 100.0, 1.0, id=1)]), kind=kind, threshold=threshold)


# ---- incremental: one commit per run, only the touched days rebuilt --------------------------


def _write_silver(catalog: Catalog, trades: list[dict[str, Any]]) -> None:
    spec = SILVER["silver.trades"]
    catalog.append("silver.trades", _frame(trades).to_arrow().cast(spec.schema))


def _day_trades(day: int, ids: range, *, symbol: str = "BTC-USDT") -> list[dict[str, Any]]:
    return [
        _trade(
            T0 + timedelta(days=day, seconds=40 * (i % 2_000)), 100.0 + i % 13, 0.1 + (i % 7) / 10, id=i, symbol=symbol
        )
        for i in ids
    ]


def _commit(root: Path, version: int) -> list[dict[str, Any]]:
    path = root / "gold" / "info_bars" / "_delta_log" / f"{version:020d}.json"
    return [json.loads(line) for line in path.read_text().splitlines()]


def _gold(catalog: Catalog) -> pl.DataFrame:
    return catalog.frame(TABLE).select(COLUMNS).sort("kind", "exchange", "symbol", "date", "bar")


SETTINGS = BarSettings(tick={"default": 50}, volume={"BINANCE:BTC-USDT": 20.0}, dollar={"default": 3_000.0})


def _expected(catalog: Catalog, thresholds: BarSettings) -> pl.DataFrame:
    silver = catalog.frame("silver.trades")
    parts = []
    for (exchange, symbol), part in silver.partition_by("exchange", "symbol", as_dict=True).items():
        for kind in ("tick", "volume", "dollar"):
            threshold = thresholds.threshold(kind, str(exchange), str(symbol))
            if threshold is not None:
                parts.append(pl.DataFrame(_reference_rows(part.to_dicts(), kind, threshold)))
    return pl.concat(parts).sort("kind", "exchange", "symbol", "date", "bar")


def test_a_late_trade_rebuilds_only_its_day_and_a_rerun_writes_nothing(tmp_path: Path) -> None:
    root = tmp_path / "lake"
    catalog = Catalog(root)
    _write_silver(catalog, [t for day in range(3) for t in _day_trades(day, range(day * 10_000, day * 10_000 + 900))])
    _write_silver(catalog, _day_trades(0, range(50_000, 50_100), symbol="ETH-USDT"))
    written = build_info_bars(catalog, thresholds=SETTINGS)
    assert set(written) == {"tick", "volume", "dollar"}
    first = catalog.open(TABLE).version()
    assert _gold(catalog).equals(_expected(catalog, SETTINGS))
    before = {p for p, _ in catalog.active_files(TABLE) if "date=2024-03-02" not in p}

    # a late trade on day 1 (2024-03-02), in the middle of the day
    _write_silver(catalog, [_trade(T0 + timedelta(days=1, hours=3), 250.0, 9.0, id=10_450)])
    build_info_bars(catalog, thresholds=SETTINGS)
    assert catalog.open(TABLE).version() == first + 1  # one commit
    actions = _commit(root, first + 1)
    removed = [a["remove"]["path"] for a in actions if "remove" in a]
    added = [a["add"]["path"] for a in actions if "add" in a]
    assert removed and added
    assert all("symbol=BTC-USDT" in p and "date=2024-03-02" in p for p in removed + added)
    assert {p for p, _ in catalog.active_files(TABLE) if "date=2024-03-02" not in p} == before  # other days untouched
    gold = _gold(catalog)
    assert gold.filter(pl.col("trades") == 0).is_empty()
    assert gold.select(pl.struct("kind", "exchange", "symbol", "date", "bar").is_unique().all()).item()
    assert gold.equals(_expected(catalog, SETTINGS))

    assert build_info_bars(catalog, thresholds=SETTINGS) == {}  # nothing new
    assert catalog.open(TABLE).version() == first + 1


def test_changed_thresholds_rebuild_every_bar(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path / "lake")
    _write_silver(catalog, _day_trades(0, range(600)) + _day_trades(0, range(5_000, 5_100), symbol="ETH-USDT"))
    build_info_bars(catalog, thresholds=SETTINGS)
    fewer = BarSettings(tick={"default": 100, "ETH-USDT": None})
    build_info_bars(catalog, thresholds=fewer)
    gold = _gold(catalog)
    assert gold.select("kind", "symbol", "threshold").unique().rows() == [("tick", "BTC-USDT", 100.0)]
    assert gold.equals(_expected(catalog, fewer))


# ---- end to end: bronze -> promote silver -> promote gold ---------------------------------


def _bronze(day: int, ids: range, symbol: str) -> list[dict[str, Any]]:
    return [
        {
            "exchange": "BINANCE",
            "symbol": symbol,
            "ts": T0 + timedelta(days=day, seconds=(i * 13) % 86_000),
            "receipt_ts": T0 + timedelta(days=day, seconds=(i * 13) % 86_000, milliseconds=3),
            "id": str(i),
            "side": "sell" if i % 3 else "buy",
            "price": str(100 + i % 11),
            "amount": str(0.25 + (i % 4) / 8),
        }
        for i in ids
    ]


def _settings(root: Path) -> Settings:
    return load_settings(
        root=str(root),
        silver={"backfill": False},
        gold={"intervals": ["1h"], "bars": {"tick": {"default": 40}, "dollar": {"BINANCE:ETH-USDT": 2_500}}},
    )


@pytest.mark.parametrize("fanned", [False, True])
def test_promote_gold_builds_the_bars_of_the_settings(tmp_path: Path, fanned: bool) -> None:
    root = tmp_path / "lake"
    catalog = Catalog(root)
    runner = jobs.InProcess() if fanned else None
    for day in range(2):
        for symbol in ("BTC-USDT", "ETH-USDT"):
            write_bronze(catalog, "bronze.trades", _bronze(day, range(1_000 * day, 1_000 * day + 300), symbol))
    settings = _settings(root)
    jobs.promote_silver(settings, tables=["trades"])
    result = jobs.promote_gold(settings, runner=runner)
    expected = _expected(catalog, settings.gold.bars)
    assert result.info_bars == dict(expected.group_by("kind").len().iter_rows())
    assert set(expected["symbol"].filter(expected["kind"] == "dollar")) == {"ETH-USDT"}
    assert _gold(catalog).equals(expected)

    # late trades in day 0 only: that day's bars rebuilt in one commit; nothing new: nothing written
    version = catalog.open(TABLE).version()
    write_bronze(catalog, "bronze.trades", _bronze(0, range(500, 520), "ETH-USDT"))
    jobs.promote_silver(settings, tables=["trades"])
    assert set(jobs.promote_gold(settings, runner=runner).info_bars) == {"tick", "dollar"}
    assert catalog.open(TABLE).version() == version + 1
    assert all("date=2024-03-01" in a["remove"]["path"] for a in _commit(root, version + 1) if "remove" in a)
    assert _gold(catalog).equals(_expected(catalog, settings.gold.bars))
    assert jobs.promote_gold(settings, runner=runner).info_bars == {}
    assert catalog.open(TABLE).version() == version + 1
