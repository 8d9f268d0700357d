"""gold.book_snapshots and gold.quotes (transform/book.py): hand-made books checked level by
level, validity (no snapshot, sequence breaks and resyncs, unsequenced updates, crossed books),
the forward-fill option, quotes' mid/spread/micro-price by hand, and the incremental build."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pytest

from crypto_lakehouse.config import BookSettings
from crypto_lakehouse.storage import Catalog
from crypto_lakehouse.transform.book import book_microstructure, book_quotes, book_snapshots, build_book, ticker_quotes
from crypto_lakehouse.transform.gold import build_gold
from crypto_lakehouse.transform.silver import promote_silver
from tests.transform.helpers import write_bronze

T0 = datetime(2026, 3, 2, tzinfo=UTC)
SEC = timedelta(seconds=1)


def at(ms: int) -> datetime:
    return T0 + timedelta(milliseconds=ms)


def snap(ms: int, seq: int | None, bids: list[tuple[float, float]], asks: list[tuple[float, float]]) -> list[dict]:
    return [_row(ms, seq, True, "bid", p, q) for p, q in bids] + [_row(ms, seq, True, "ask", p, q) for p, q in asks]


def delta(ms: int, seq: int | None, *levels: tuple[str, float, float]) -> list[dict]:
    return [_row(ms, seq, False, side, p, q) for side, p, q in levels]


def _row(ms: int, seq: int | None, snapshot: bool, side: str, price: float, size: float) -> dict[str, Any]:
    return {
        "exchange": "X",
        "symbol": "BTC-USDT",
        "ts": at(ms),
        "receipt_ts": at(ms + 3),
        "sequence": seq,
        "snapshot": snapshot,
        "side": side,
        "price": price,
        "size": size,
    }


def frame(*updates: list[dict]) -> pl.DataFrame:
    return pl.DataFrame(
        [r for u in updates for r in u],
        schema={
            "exchange": pl.String,
            "symbol": pl.String,
            "ts": pl.Datetime("us", "UTC"),
            "receipt_ts": pl.Datetime("us", "UTC"),
            "sequence": pl.Int64,
            "snapshot": pl.Boolean,
            "side": pl.String,
            "price": pl.Float64,
            "size": pl.Float64,
        },
    )


def levels(row: dict[str, Any]) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    return list(zip(row["bid_prices"], row["bid_sizes"], strict=True)), list(
        zip(row["ask_prices"], row["ask_sizes"], strict=True)
    )


BOOK = snap(100, 10, [(99.0, 1.0), (98.0, 2.0), (97.0, 3.0)], [(101.0, 4.0), (102.0, 5.0), (103.0, 6.0)])


def snapshots(df: pl.DataFrame, *, kind: str = "per_update", **kw: Any) -> list[dict[str, Any]]:
    return book_snapshots(df, every=kw.pop("every", SEC), depth=kw.pop("depth", 2), kinds={"X": kind}, **kw).to_dicts()


def test_top_levels_at_each_interval_end_after_removals_and_only_where_the_depth_changed() -> None:
    rows = snapshots(
        frame(
            BOOK,
            delta(400, 11, ("bid", 99.5, 7.0)),  # a better bid
            delta(900, 12, ("ask", 101.0, 0.0)),  # the best ask removed
            delta(1_500, 13, ("bid", 97.0, 9.0)),  # below the depth of 2: nothing emitted
            delta(2_200, 14, ("bid", 99.5, 0.0), ("ask", 100.5, 1.5)),  # best bid removed, a better ask
            delta(2_700, 15, ("bid", 96.0, 1.0)),
        )
    )
    assert [r["window_start"] for r in rows] == [T0, T0 + 2 * SEC]
    assert levels(rows[0]) == ([(99.5, 7.0), (99.0, 1.0)], [(102.0, 5.0), (103.0, 6.0)])
    assert levels(rows[1]) == ([(99.0, 1.0), (98.0, 2.0)], [(100.5, 1.5), (102.0, 5.0)])
    assert [(r["sequence"], r["updates"], r["ts"], r["valid"]) for r in rows] == [
        (12, 3, at(900), True),
        (15, 2, at(2_700), True),
    ]


def test_a_snapshot_replaces_the_book_even_inside_an_interval() -> None:
    rows = snapshots(
        frame(
            BOOK,
            delta(1_100, 11, ("bid", 99.5, 7.0)),
            snap(1_600, 20, [(90.0, 1.0)], [(95.0, 2.0)]),  # levels not in it are gone
            delta(1_800, 21, ("ask", 94.0, 3.0)),
        )
    )
    assert levels(rows[-1]) == ([(90.0, 1.0)], [(94.0, 3.0), (95.0, 2.0)])
    assert rows[-1]["valid"]


def test_a_snapshot_comes_before_a_delta_of_its_own_sequence_received_earlier() -> None:
    """Binance: the depth update that makes cryptofeed fetch the REST snapshot is received before
    it and can end at the snapshot's lastUpdateId; cryptofeed applies it after the snapshot."""
    early = [{**r, "receipt_ts": at(90)} for r in delta(95, 10, ("bid", 99.0, 8.0))]
    rows = snapshots(frame(early, BOOK), kind="per_range")
    assert [(r["valid"], r["sequence"]) for r in rows] == [(True, 10)]
    assert levels(rows[0])[0] == [(99.0, 8.0), (98.0, 2.0)]


def test_the_book_carries_over_midnight_from_the_day_before() -> None:
    late = T0 + timedelta(days=1) - timedelta(milliseconds=500)
    day1 = [{**r, "ts": late, "receipt_ts": late} for r in BOOK]
    day2 = delta(24 * 3_600_000 + 300, 11, ("bid", 99.5, 7.0))
    rows = snapshots(frame(day1, day2))
    assert [(r["date"], r["window_start"], r["valid"]) for r in rows] == [
        (T0.date(), late.replace(microsecond=0), True),
        ((T0 + timedelta(days=1)).date(), T0 + timedelta(days=1), True),
    ]
    assert levels(rows[1])[0] == [(99.5, 7.0), (99.0, 1.0)]  # the snapshot of the day before, then the delta
    alone = snapshots(frame(day2))  # without the day before: no book to start from
    assert [(r["valid"], r["reason"]) for r in alone] == [(False, "no_snapshot")]


def test_before_the_first_snapshot_the_book_is_invalid() -> None:
    rows = snapshots(frame(delta(100, 9, ("bid", 99.0, 1.0)), snap(1_200, 10, [(98.0, 1.0)], [(99.0, 1.0)])))
    assert [(r["valid"], r["reason"]) for r in rows] == [(False, "no_snapshot"), (True, None)]


def test_a_sequence_break_is_invalid_until_the_next_snapshot_and_so_is_the_book_before_it() -> None:
    rows = snapshots(
        frame(
            BOOK,
            delta(1_100, 11, ("bid", 99.5, 7.0)),
            delta(2_100, 13, ("bid", 99.6, 1.0)),  # 12 never arrived (+1 per update)
            delta(3_100, 14, ("bid", 99.7, 1.0)),
            snap(4_100, 30, [(99.0, 1.0)], [(101.0, 1.0)]),  # resync
            delta(5_100, 31, ("bid", 99.1, 1.0)),
        )
    )
    assert [(r["window_start"], r["valid"], r["reason"]) for r in rows] == [
        (T0, True, None),
        (T0 + SEC, False, "sequence_break"),  # the book just before the break: the lost update came after it
        (T0 + 2 * SEC, False, "sequence_break"),
        (T0 + 3 * SEC, False, "sequence_break"),
        (T0 + 4 * SEC, True, None),
        (T0 + 5 * SEC, True, None),
    ]


def test_a_per_range_resync_marks_the_book_before_it_invalid() -> None:
    rows = snapshots(
        frame(
            BOOK,
            delta(1_100, 15, ("bid", 99.5, 7.0)),  # ranges: jumps between deltas are normal
            delta(2_100, 19, ("bid", 99.6, 1.0)),
            snap(3_100, 40, [(99.0, 1.0)], [(101.0, 1.0)]),  # 20..40 arrived only folded into it
        ),
        kind="per_range",
    )
    assert [(r["valid"], r["reason"]) for r in rows] == [
        (True, None),
        (True, None),
        (False, "sequence_break"),
        (True, None),
    ]


def test_updates_without_a_sequence_are_invalid() -> None:
    rows = snapshots(frame(snap(100, None, [(99.0, 1.0)], [(101.0, 1.0)])), kind="none")
    assert [(r["valid"], r["reason"]) for r in rows] == [(False, "unsequenced")]


def test_a_crossed_book_is_invalid_until_the_next_snapshot() -> None:
    rows = snapshots(
        frame(
            BOOK,
            delta(1_100, 11, ("bid", 101.5, 1.0)),  # bid above the best ask
            delta(2_100, 12, ("bid", 101.5, 0.0)),  # uncrossed again, still not trusted
            snap(3_100, 13, [(99.0, 1.0)], [(101.0, 1.0)]),
        )
    )
    assert [(r["valid"], r["reason"]) for r in rows] == [
        (True, None),
        (False, "crossed"),
        (False, "crossed"),
        (True, None),
    ]


def test_forward_fill_emits_every_interval_from_the_first_update_to_the_last() -> None:
    df = frame(BOOK, delta(3_500, 11, ("bid", 99.5, 7.0)))
    rows = snapshots(df, forward_fill=True)
    assert [(r["window_start"], r["updates"]) for r in rows] == [(T0 + i * SEC, n) for i, n in enumerate([1, 0, 0, 1])]
    assert levels(rows[1]) == levels(rows[0]) == levels(rows[2])
    assert len(snapshots(df)) == 2


def test_an_interval_of_100ms_and_a_deeper_depth() -> None:
    rows = snapshots(frame(BOOK, delta(150, 11, ("ask", 100.0, 1.0))), every=timedelta(milliseconds=100), depth=5)
    assert [r["window_start"] for r in rows] == [at(100)]
    assert levels(rows[0]) == (
        [(99.0, 1.0), (98.0, 2.0), (97.0, 3.0)],
        [(100.0, 1.0), (101.0, 4.0), (102.0, 5.0), (103.0, 6.0)],
    )


def test_quotes_mid_spread_and_micro_price_by_hand() -> None:
    df = frame(
        snap(100, 10, [(99.0, 1.0), (98.0, 1.0)], [(101.0, 3.0)]),
        delta(300, 11, ("bid", 98.0, 5.0)),  # not the best level: no tick quote
        delta(600, 12, ("bid", 100.0, 3.0)),
        delta(1_200, 13, ("ask", 101.0, 1.0)),
    )
    q = book_quotes(df, every=SEC, kinds={"X": "per_update"}).sort("interval", "ts")
    ticks = q.filter(pl.col("interval") == "tick")
    assert ticks.select("sequence", "bid", "bid_size", "ask", "ask_size").rows() == [
        (10, 99.0, 1.0, 101.0, 3.0),
        (12, 100.0, 3.0, 101.0, 3.0),
        (13, 100.0, 3.0, 101.0, 1.0),
    ]
    first = ticks.row(0, named=True)
    assert first["mid"] == 100.0
    assert first["spread_bps"] == pytest.approx(200.0)  # 2 / 100 * 10^4
    assert first["micro_price"] == pytest.approx((99.0 * 3.0 + 101.0 * 1.0) / 4.0)  # 99.5
    last = ticks.row(2, named=True)
    assert last["micro_price"] == pytest.approx((100.0 * 1.0 + 101.0 * 3.0) / 4.0)  # 100.75
    timed = q.filter(pl.col("interval") == "1s")
    assert timed.select("ts", "as_of", "sequence").rows() == [(T0 + SEC, at(600), 12), (T0 + 2 * SEC, at(1_200), 13)]
    assert q.get_column("source").unique().to_list() == ["book"]


def test_quotes_from_a_ticker() -> None:
    t = pl.DataFrame(
        {
            "exchange": ["X"] * 4,
            "symbol": ["ETH-USDT"] * 4,
            "ts": [at(100), at(200), at(2_500), at(2_600)],
            "receipt_ts": [at(101), at(201), at(2_501), at(2_601)],
            "sequence": [1, 2, 3, 4],
            "bid": [10.0, 10.0, 10.5, 10.5],
            "bid_size": [2.0, 2.0, 1.0, 1.0],
            "ask": [11.0, 11.0, 11.0, 11.0],
            "ask_size": [2.0, 2.0, 3.0, 3.0],
        }
    )
    q = ticker_quotes(t, every=SEC)
    ticks = q.filter(pl.col("interval") == "tick")
    assert ticks.get_column("sequence").to_list() == [1, 3]  # 2 and 4 repeat the quote before them
    assert ticks.get_column("micro_price").to_list() == [10.5, pytest.approx((10.5 * 3 + 11.0 * 1) / 4)]
    timed = q.filter(pl.col("interval") == "1s").sort("ts")
    assert timed.select("ts", "sequence").rows() == [(T0 + SEC, 2), (T0 + 2 * SEC, 2), (T0 + 3 * SEC, 4)]
    assert set(q.get_column("source")) == {"ticker"}


def test_microstructure_by_hand() -> None:
    """Two 1 s windows of a book around 10,000, every statistic computed by hand."""
    df = frame(
        snap(
            100,
            10,
            [(9_999.0, 1.0), (9_995.0, 2.0), (9_960.0, 5.0)],
            [(10_001.0, 3.0), (10_004.0, 4.0), (10_030.0, 6.0)],
        ),
        delta(400, 11, ("bid", 9_999.0, 2.0)),  # best bid size 1 -> 2
        delta(700, 12, ("ask", 10_000.5, 2.0)),  # a better ask
        delta(1_500, 13, ("bid", 9_999.0, 0.0)),  # best bid removed: 9,995
    )
    trades = pl.DataFrame(
        {
            "exchange": ["X"] * 3,
            "symbol": ["BTC-USDT"] * 3,
            "ts": [at(200), at(800), at(1_200)],
            "side": ["buy", "sell", "buy"],
            "amount": [1.0, 3.0, 2.0],
        }
    )
    rows = book_microstructure(df, trades, every=SEC, kinds={"X": "per_update"}).sort("window_start").to_dicts()
    assert [r["window_start"] for r in rows] == [T0, T0 + SEC]
    w0, w1 = rows
    s0, s2, s3 = 2 / 10_000 * 1e4, 1.5 / 9_999.75 * 1e4, 5.5 / 9_997.75 * 1e4  # spread (bps) of each state
    # spread 2 bps from 0.1 s to 0.7 s, s2 to 1.5 s, s3 to the end of the last window (2 s)
    assert w0["twa_spread_bps"] == pytest.approx((s0 * 0.6 + s2 * 0.3) / 0.9)
    assert w1["twa_spread_bps"] == pytest.approx((s2 * 0.5 + s3 * 0.5) / 1.0)
    # OFI e_n: 0.4 s bid size 1 -> 2 at the same price: +2 - 1; 0.7 s a lower ask of 2: -2;
    # 1.5 s the bid falls 9,999 (2) -> 9,995: -2
    assert (w0["ofi"], w1["ofi"]) == (pytest.approx(-1.0), pytest.approx(-2.0))
    assert w0["realized_variance"] == pytest.approx(math.log(9_999.75 / 10_000) ** 2)
    assert w1["realized_variance"] == pytest.approx(math.log(9_997.75 / 9_999.75) ** 2)
    assert (w0["quote_updates"], w1["quote_updates"]) == (3, 1)
    # depth at the end of each window: mid 9,999.75 (10 bps: 9,989.75..10,009.75; 50 bps: 9,949.75..10,049.75)
    assert [w0[f"depth_{s}_{b}bps"] for b in (10, 50) for s in ("bid", "ask")] == [4.0, 9.0, 9.0, 15.0]
    # mid 9,997.75 (10 bps: 9,987.75..10,007.75; 50 bps: 9,947.76..10,047.74)
    assert [w1[f"depth_{s}_{b}bps"] for b in (10, 50) for s in ("bid", "ask")] == [2.0, 9.0, 7.0, 15.0]
    assert (w0["trade_imbalance"], w0["trades"], w1["trade_imbalance"], w1["trades"]) == (-0.5, 2, 1.0, 1)
    assert (w0["valid"], w1["valid"]) == (False, True)  # the first 100 ms had no book


# ---- the incremental build on a catalog --------------------------------------------------------


def _bronze_book(rows: list[dict], exchange: str = "BYBIT") -> list[dict]:
    return [
        {**r, "exchange": exchange, "price": str(r["price"]), "size": str(r["size"]), "update_id": 1, "levels": 1}
        for r in rows
    ]


def _next_day(rows: list[dict]) -> list[dict]:
    """``rows`` a day later, their sequences 100 on (silver keys book rows by sequence)."""
    day = timedelta(days=1)
    return [
        {**r, "ts": r["ts"] + day, "receipt_ts": r["receipt_ts"] + day, "sequence": r["sequence"] + 100} for r in rows
    ]


def _version(catalog: Catalog, table: str) -> int:
    return catalog.open(table).version()


def test_build_is_incremental_per_day_and_writes_nothing_when_nothing_is_new(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path)
    day2 = _next_day(BOOK)
    write_bronze(catalog, "bronze.book", _bronze_book(BOOK + day2 + delta(1_100, 11, ("bid", 99.5, 1.0))))
    promote_silver(catalog, backfiller=None)
    settings = BookSettings(depth=2)
    first = build_book(catalog, settings)
    snaps = pl.read_delta(catalog.uri("gold.book_snapshots")).sort("window_start")
    assert snaps.select("date", "window_start", "valid").rows() == [
        (T0.date(), T0, True),
        (T0.date(), T0 + SEC, True),
        ((T0 + timedelta(days=1)).date(), T0 + timedelta(days=1), True),
    ]
    assert first.snapshots == 3 and first.quotes > 0
    versions = {t: _version(catalog, t) for t in ("gold.book_snapshots", "gold.quotes")}
    assert build_book(catalog, settings).snapshots == 0
    assert {t: _version(catalog, t) for t in versions} == versions  # nothing new: nothing written

    # a late delta on day 2 only: day 2 is rebuilt, day 1's rows are not rewritten
    late = delta(2_000, 11, ("ask", 100.5, 2.0))  # (111 after 110: in sequence)
    write_bronze(
        catalog,
        "bronze.book",
        _bronze_book(_next_day(late)),
    )
    promote_silver(catalog, backfiller=None)
    again = build_book(catalog, settings)
    assert again.snapshots == 2  # day 2's two windows
    after = pl.read_delta(catalog.uri("gold.book_snapshots")).sort("window_start")
    assert after.height == 4
    assert after.filter(pl.col("date") == T0.date()).equals(snaps.filter(pl.col("date") == T0.date()))
    assert levels(after.row(3, named=True))[1] == [(100.5, 2.0), (101.0, 4.0)]
    assert {t: _version(catalog, t) for t in versions} == {t: v + 1 for t, v in versions.items()}  # one commit each


def test_quotes_come_from_the_ticker_where_there_is_no_book(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path)
    write_bronze(catalog, "bronze.book", _bronze_book(BOOK))
    ticker = [
        {"exchange": ex, "symbol": "BTC-USDT", "ts": at(200), "receipt_ts": at(201), "sequence": 1, "bid": "99",
         "bid_size": "1", "ask": "100", "ask_size": "1", "channel": "ticker"}
        for ex in ("BYBIT", "GEMINI")
    ]  # fmt: skip
    write_bronze(catalog, "bronze.ticker", ticker)
    promote_silver(catalog, backfiller=None)
    result = build_gold(catalog, intervals=[timedelta(minutes=1)], book=BookSettings(depth=2))
    assert result.book is not None and result.book.quotes > 0
    q = pl.read_delta(catalog.uri("gold.quotes"))
    assert q.select("exchange", "source").unique().sort("exchange").rows() == [("BYBIT", "book"), ("GEMINI", "ticker")]


# ---- oracle: cryptofeed's own OrderBook, captured at every update during the replay -------------

ORACLE_DEPTH = 10
ORACLE_EVERY = timedelta(milliseconds=100)


def _observer(seen: list[dict[str, Any]]) -> Any:
    """A callback beside the lakehouse's: the top levels of cryptofeed's ``OrderBook`` as it
    stands after each update it delivers (read at once: cryptofeed keeps mutating it)."""

    async def observe(b: Any, receipt: float) -> None:
        sides = {}
        for name, side in (("bid", b.book.bids), ("ask", b.book.asks)):
            top = [side.index(i) for i in range(min(ORACLE_DEPTH, len(side)))]
            sides[f"{name}_prices"] = [float(p) for p, _ in top]
            sides[f"{name}_sizes"] = [float(q) for _, q in top]
        seen.append(
            {"symbol": b.symbol, "sequence": b.sequence_number, "snapshot": b.delta is None, "ts": b.timestamp,
             "receipt": receipt, **sides}
        )  # fmt: skip

    return observe


def _replay(ex: Any, make_target: Any, root: Path) -> list[dict[str, Any]]:
    """Start the loopback ``ex``, stream ``make_target(ex)`` into bronze under ``root``, recording
    cryptofeed's book at every l2_book callback; then promote silver."""
    import asyncio

    from crypto_lakehouse.ingest import BronzeWriter
    from crypto_lakehouse.loopback.replay import stream_until_finished

    seen: list[dict[str, Any]] = []
    writer = BronzeWriter(Catalog(root), writer_id="oracle", spool_dir=root / "spool")

    async def go() -> None:
        async with ex:
            target = make_target(ex)
            target.observers = {"l2_book": [_observer(seen)]}
            await stream_until_finished(ex, [target], writer, timeout=60)

    asyncio.run(go())
    promote_silver(Catalog(root), backfiller=None)
    return seen


def _expected(seen: list[dict[str, Any]]) -> pl.DataFrame:
    """cryptofeed's book at the end of each 100 ms window per (symbol, UTC day), the callbacks
    taken in delivery order with their time as the writer stores it (exchange time, else receipt
    time, in µs; running maximum); ``changed``: its levels differ from the window before;
    ``synced``: a snapshot was delivered earlier that day or the day before. (A day's first window
    counts as a change when its book holds a level: silver keeps no row of an update without
    levels.)"""
    us = pl.Datetime("us", "UTC")
    t = pl.coalesce((pl.col("ts") * 1e6).round(), (pl.col("receipt") * 1e6).round()).cast(pl.Int64).cast(us)
    day = ["symbol", "date"]
    lv = list(("bid_prices", "bid_sizes", "ask_prices", "ask_sizes"))
    return (
        pl.DataFrame(seen, infer_schema_length=None)
        .with_columns(t.alias("t"))
        .with_columns(pl.col("t").dt.date().alias("date"))
        .with_columns(  # (a jump of more than a day between callbacks starts a new run of time)
            ((pl.col("date") - pl.col("date").shift(1)).abs() > timedelta(days=1))
            .fill_null(False)
            .cum_sum()
            .over("symbol")
            .alias("_run"),
            pl.when("snapshot").then(pl.col("date")).forward_fill().over("symbol").alias("_synced_on"),
        )
        .with_columns(
            pl.col("t").cum_max().over("symbol", "_run").dt.truncate("100ms").alias("window_start"),
            pl.col("_synced_on")
            .is_between(pl.col("date") - timedelta(days=1), pl.col("date"))
            .fill_null(False)
            .alias("synced"),
        )
        .group_by(*day, "window_start", maintain_order=True)
        .agg(pl.col("sequence", "synced", *lv).last())
        .with_columns(
            pl.when(pl.col("window_start").shift(1).over(day).is_null())
            .then(pl.col("bid_prices").list.len() + pl.col("ask_prices").list.len() > 0)
            .otherwise(pl.any_horizontal(pl.col(c).ne_missing(pl.col(c).shift(1)).over(day) for c in lv))
            .alias("changed")
        )
    )


def _assert_equal_to_cryptofeed(root: Path, seen: list[dict[str, Any]]) -> pl.DataFrame:
    """Every snapshot the rebuild emits once the day's book was synced equals cryptofeed's book
    at the same update (the window's last), level by level, exactly; every window in which
    cryptofeed's top levels changed is emitted. Returns the snapshots."""
    silver = pl.read_delta(str(root / "silver" / "book"))
    snaps = book_snapshots(silver, every=ORACLE_EVERY, depth=ORACLE_DEPTH)
    expected = _expected(seen)
    got = snaps.join(expected, on=["symbol", "window_start"], how="left", suffix="_cf")
    unseen = got.filter(pl.col("synced").is_null())  # every emitted window is one cryptofeed saw
    assert unseen.is_empty(), unseen.select("symbol", "window_start", "ts", "sequence", "updates", "reason").to_dicts()
    assert (got.get_column("reason").ne_missing("no_snapshot") == got.get_column("synced")).all()
    synced = got.filter(pl.col("synced"))
    for c in ("sequence", "bid_prices", "bid_sizes", "ask_prices", "ask_sizes"):
        diff = synced.filter(pl.col(c).ne_missing(pl.col(f"{c}_cf")))
        assert diff.is_empty(), (c, diff.select("symbol", "window_start", c, f"{c}_cf").head(3).to_dicts())
    must = expected.filter(pl.col("changed") & pl.col("synced")).select("symbol", "window_start")
    missing = must.join(snaps, on=["symbol", "window_start"], how="anti")
    assert missing.is_empty(), missing.head(3).to_dicts()
    assert synced.height >= must.height > 0
    # the quote at every change of the best levels: cryptofeed's best levels at that update
    ticks = book_quotes(silver, every=ORACLE_EVERY).filter((pl.col("interval") == "tick") & pl.col("valid"))
    best = pl.DataFrame(seen, infer_schema_length=None).select(
        "symbol",
        "sequence",
        *(
            pl.col(f"{s}_{c}s").list.first().alias(f"{s}{x}_cf")
            for s in ("bid", "ask")
            for c, x in (("price", ""), ("size", "_size"))
        ),
    )
    q = ticks.join(best.unique(["symbol", "sequence"], keep="last"), on=["symbol", "sequence"], how="left")
    for c in ("bid", "bid_size", "ask", "ask_size"):
        assert q.filter(pl.col(c).ne_missing(pl.col(f"{c}_cf"))).is_empty(), c
    assert ticks.height > 0
    return snaps


SEQUENCED = ["BINANCE", "BINANCE_FUTURES", "BYBIT", "DERIBIT", "KRAKEN_FUTURES", "BITFINEX"]


@pytest.mark.parametrize("name", SEQUENCED)
def test_snapshots_equal_cryptofeeds_book_on_the_recorded_sessions(captures: Path, tmp_path: Path, name: str) -> None:
    from crypto_lakehouse.loopback.capture import CaptureExchange, load_capture
    from crypto_lakehouse.loopback.replay import capture_subscription, replay_target

    cap = load_capture(captures / f"{name}.jsonl.zst")
    ex = CaptureExchange(cap)
    sub = capture_subscription(cap)  # (every channel recorded: the replay waits for each recorded subscription)
    seen = _replay(ex, lambda ex: replay_target(ex, sub, candle_interval=cap.candle_interval), tmp_path)
    snaps = _assert_equal_to_cryptofeed(tmp_path, seen)
    assert snaps.get_column("valid").any()


@pytest.mark.parametrize("name", ["OKX", "COINBASE"])
def test_a_venue_without_book_sequences_is_never_valid(captures: Path, tmp_path: Path, name: str) -> None:
    """silver keys book rows by sequence: without one, updates repeating a level cannot be told
    apart (nor ordered), so no snapshot of such a book may claim to be valid."""
    from crypto_lakehouse.loopback.capture import CaptureExchange, load_capture
    from crypto_lakehouse.loopback.replay import capture_subscription, replay_target

    cap = load_capture(captures / f"{name}.jsonl.zst")
    ex = CaptureExchange(cap)
    sub = capture_subscription(cap)
    _replay(ex, lambda ex: replay_target(ex, sub, candle_interval=cap.candle_interval), tmp_path)
    snaps = book_snapshots(pl.read_delta(str(tmp_path / "silver" / "book")), every=ORACLE_EVERY, depth=ORACLE_DEPTH)
    assert snaps.height > 0
    assert not snaps.get_column("valid").any()
    assert "unsequenced" in set(snaps.get_column("reason"))


def test_snapshots_equal_cryptofeeds_book_on_the_synthetic_market_across_a_reconnect(tmp_path: Path) -> None:
    """The synthetic Binance futures market (depth updates in ranges, a REST snapshot), its
    first connection dropped midway: cryptofeed reconnects and resyncs with a new snapshot."""
    from crypto_lakehouse.loopback import FaultPlan, LoopbackExchange, MarketSpec
    from crypto_lakehouse.loopback.replay import synthetic_target

    spec = MarketSpec(exchange="BINANCE_FUTURES", symbols=["BTCUSDT", "ETHUSDT"], rate=3_000, max_trades=4_000)
    ex = LoopbackExchange(market=spec, faults=FaultPlan(drop_at=400))
    seen = _replay(ex, lambda ex: synthetic_target(ex, channels=["l2_book"]), tmp_path)
    assert sum(s["snapshot"] for s in seen) >= 4  # a snapshot per symbol per connection
    snaps = _assert_equal_to_cryptofeed(tmp_path, seen)
    assert snaps.get_column("valid").sum() >= 10
    assert "sequence_break" in set(snaps.get_column("reason"))  # the book before each resync


def test_a_late_trade_rebuilds_only_the_statistics_of_its_day(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path)
    write_bronze(catalog, "bronze.book", _bronze_book(BOOK + delta(61_000, 11, ("bid", 99.5, 1.0))))

    def trade(ms: int, tid: str, side: str) -> dict[str, Any]:
        return {"exchange": "BYBIT", "symbol": "BTC-USDT", "ts": at(ms), "receipt_ts": at(ms + 1), "id": tid,
                "side": side, "price": "100", "amount": "2"}  # fmt: skip

    write_bronze(catalog, "bronze.trades", [trade(500, "a", "buy")])
    promote_silver(catalog, backfiller=None)
    first = build_book(catalog, BookSettings(depth=2))
    stats = pl.read_delta(catalog.uri("gold.microstructure")).sort("window_start")
    assert first.microstructure == 2 == stats.height  # 1 m windows from the first update to the last
    assert stats.select("trades", "trade_imbalance").rows() == [(1, 1.0), (0, None)]
    versions = {t: _version(catalog, t) for t in ("gold.book_snapshots", "gold.quotes", "gold.microstructure")}

    write_bronze(catalog, "bronze.trades", [trade(900, "b", "sell"), trade(950, "c", "sell")])
    promote_silver(catalog, backfiller=None)
    build_book(catalog, BookSettings(depth=2))
    stats = pl.read_delta(catalog.uri("gold.microstructure")).sort("window_start")
    assert stats.select("trades", "trade_imbalance").rows() == [(3, pytest.approx(-1 / 3)), (0, None)]
    after = {t: _version(catalog, t) for t in versions}
    assert after == {**versions, "gold.microstructure": versions["gold.microstructure"] + 1}
    build_book(catalog, BookSettings(depth=2))
    assert {t: _version(catalog, t) for t in versions} == after  # nothing new: nothing written


def test_a_late_row_before_midnight_rebuilds_the_next_day_too(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path)
    late = T0 + timedelta(days=1) - timedelta(milliseconds=500)
    day1 = [{**r, "ts": late, "receipt_ts": late} for r in BOOK]
    write_bronze(
        catalog, "bronze.book", _bronze_book(day1 + delta(24 * 3_600_000 + 300, 12, ("bid", 99.5, 7.0)), "BINANCE")
    )
    promote_silver(catalog, backfiller=None)
    build_book(catalog, BookSettings(depth=2))
    before = pl.read_delta(catalog.uri("gold.book_snapshots")).sort("window_start")
    assert levels(before.row(1, named=True))[1] == [(101.0, 4.0), (102.0, 5.0)]

    at_2359 = late + timedelta(milliseconds=300)
    missed = [{**r, "ts": at_2359, "receipt_ts": at_2359} for r in delta(0, 11, ("ask", 100.5, 2.0))]
    write_bronze(catalog, "bronze.book", _bronze_book(missed, "BINANCE"))
    promote_silver(catalog, backfiller=None)
    assert build_book(catalog, BookSettings(depth=2)).snapshots == 2  # day 1 and the day after it
    after = pl.read_delta(catalog.uri("gold.book_snapshots")).sort("window_start")
    assert [levels(r)[1] for r in after.iter_rows(named=True)] == [[(100.5, 2.0), (101.0, 4.0)]] * 2


def test_replay_delivers_a_book_snapshot_at_its_interval_end_after_every_update_inside_it(tmp_path: Path) -> None:
    """A snapshot is the book as it stood at the end of its interval: a replay that delivered it
    at window_start would show a backtest updates that had not happened yet. Its event time is
    window_start + interval, after every silver.book update of its window; a quote comes at its
    own time (a change, or an interval's end)."""
    from crypto_lakehouse.query import Lakehouse

    catalog = Catalog(tmp_path)
    updates = [*BOOK, *delta(400, 11, ("bid", 99.5, 1.0)), *delta(1_300, 12, ("ask", 100.5, 2.0))]
    write_bronze(catalog, "bronze.book", _bronze_book(updates))
    promote_silver(catalog, backfiller=None)
    build_book(catalog, BookSettings(depth=2))
    events = pl.from_arrow(
        pa.Table.from_batches(
            Lakehouse(tmp_path).replay_batches(
                ["gold.book_snapshots", "silver.book", "gold.quotes"], start=T0, end=T0 + 3 * SEC
            )
        )
    ).with_row_index("pos")
    snaps = events.filter(pl.col("table") == "gold.book_snapshots")
    book = events.filter(pl.col("table") == "silver.book")
    assert snaps.height == 2 and book.height == len(updates)
    assert (snaps["event_ts"] == snaps["window_start"] + SEC).all()
    for snap_row in snaps.iter_rows(named=True):
        inside = book.filter((pl.col("ts") >= snap_row["window_start"]) & (pl.col("ts") < snap_row["event_ts"]))
        assert inside.height > 0 and inside["pos"].max() < snap_row["pos"]  # type: ignore[operator]  # (max of an int column)
    quotes = events.filter(pl.col("table") == "gold.quotes")
    assert quotes.height > 0 and (quotes["event_ts"] == quotes["ts"]).all()
