"""The completeness ledger (gold.completeness): a small hand-written day whose every number is
computed by hand, the rule that an unfilled gap never scores complete, and incrementality."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from crypto_lakehouse.schemas import SESSIONS
from crypto_lakehouse.storage import Catalog
from crypto_lakehouse.transform.plans import SilverOptions
from crypto_lakehouse.transform.quality import build_completeness
from crypto_lakehouse.transform.silver import promote_silver
from tests.transform.helpers import write_bronze

D = date(2026, 11, 20)
T0 = datetime(2026, 11, 20, tzinfo=UTC)
NOW = T0 + timedelta(hours=18)  # the session's clean end: no tail no session covered
OPTS = SilverOptions(backfill=True)
UTC_US = pl.Datetime("us", "UTC")


def _trade(symbol: str, i: int, at: datetime, price: str = "100") -> dict:
    return {"exchange": "BINANCE", "symbol": symbol, "ts": at, "receipt_ts": at, "id": str(i), "side": "buy",
            "price": price, "amount": "1"}  # fmt: skip


class _History:
    """BINANCE's REST in this test (a fake of our own VenueHistory protocol): it serves
    BTC-USDT's trades 4 and 5 by id, and nothing of ETH-USDT's."""

    def trades_by_id(self, exchange: str, symbol: str, first_id: int, last_id: int) -> pl.DataFrame:
        rows = [_trade(symbol, i, T0 + timedelta(hours=7, minutes=i)) for i in range(first_id, last_id + 1)]
        frame = pl.DataFrame(rows, schema={k: UTC_US if k.endswith("ts") else pl.String for k in rows[0]})
        return frame if symbol == "BTC-USDT" else frame.clear()

    def trades_by_time(self, exchange: str, symbol: str, start: datetime, end: datetime) -> pl.DataFrame:
        raise AssertionError("no time range is missing here")

    def candles(self, exchange: str, symbol: str, interval: str, start: datetime, end: datetime) -> pl.DataFrame:
        raise AssertionError("no candles here")

    def funding(self, exchange: str, symbol: str, start: datetime, end: datetime) -> pl.DataFrame:
        raise AssertionError("no funding here")

    def latest_trade_id(self, exchange: str, symbol: str) -> int | None:
        return None

    def contiguous_trade_ids(self, exchange: str) -> bool:
        return True


def _session(catalog: Catalog, *events: tuple[str, datetime], symbols: list[str], channels: list[str]) -> None:
    rows = [
        {"exchange": "BINANCE", "writer_id": "w", "session_id": "s1", "event": event, "at": at, "symbols": symbols,
         "channels": channels, "reason": "stopped" if event == "end" else None, "rest_url": None}
        for event, at in events
    ]  # fmt: skip
    catalog.append(SESSIONS.name, pl.DataFrame(rows).to_arrow().cast(SESSIONS.schema))


def _hand_written_day(catalog: Catalog) -> None:
    """BTC-USDT: trades 1-3 and 6-10 at 07:0<id>, a trade of price 0 (quarantined), ids 4-5
    missing (the venue serves them); ETH-USDT: trades 1, 2, 5 (3-4 missing, the venue has none
    of them); BTC-USDT's book: a delta at sequence 5, then a resync snapshot at 9 (a break); one
    session streamed trades and books of both from 06:00 to 18:00."""
    at = lambda h, m: T0 + timedelta(hours=h, minutes=m)  # noqa: E731
    btc = [_trade("BTC-USDT", i, at(7, i)) for i in (1, 2, 3, 6, 7, 8, 9, 10)]
    eth = [_trade("ETH-USDT", i, at(8, i)) for i in (1, 2, 5)]
    write_bronze(catalog, "bronze.trades", [*btc, *eth, _trade("BTC-USDT", 11, at(7, 11), price="0")])
    book = {"exchange": "BINANCE", "symbol": "BTC-USDT", "side": "bid", "price": "100"}
    write_bronze(
        catalog,
        "bronze.book",
        [
            {**book, "ts": at(9, 0), "receipt_ts": at(9, 0), "sequence": 5, "snapshot": False, "size": "1"},
            {**book, "ts": at(9, 10), "receipt_ts": at(9, 10), "sequence": 9, "snapshot": True, "size": "2"},
        ],
    )
    _session(
        catalog,
        ("start", at(6, 0)),
        ("alive", at(12, 0)),
        ("end", at(18, 0)),
        symbols=["BTC-USDT", "ETH-USDT"],
        channels=["trades", "l2_book"],
    )


def test_the_ledger_of_a_hand_written_day(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path)
    _hand_written_day(catalog)
    result = promote_silver(catalog, backfiller=_History(), options=OPTS, now=NOW)

    ledger = catalog.frame("gold.completeness").sort("symbol", "channel")
    assert result.completeness is not None and result.completeness.sort("symbol", "channel").equals(ledger)
    rows = {(r["symbol"], r["channel"]): r for r in ledger.iter_rows(named=True)}
    assert set(rows) == {("BTC-USDT", "trades"), ("BTC-USDT", "book"), ("ETH-USDT", "trades"), ("ETH-USDT", "book")}
    assert {r["date"] for r in rows.values()} == {D}
    day, covered = 18 * 3600.0, 12 * 3600.0  # the day so far; the session's 06:00-18:00

    btc = rows[("BTC-USDT", "trades")]  # 8 streamed + 2 backfilled; ids 1..10 all there
    assert (btc["rows"], btc["quarantined"], btc["day_seconds"], btc["covered_seconds"]) == (10, 1, day, covered)
    assert (btc["ids_expected"], btc["ids_present"]) == (10, 10)
    assert (btc["gaps_open"], btc["gaps_filled"], btc["gaps_unfillable"], btc["sequence_breaks"]) == (0, 1, 0, 0)
    assert btc["score"] == pytest.approx((12 / 18) * 1.0 * (10 / 11) / 1)

    eth = rows[("ETH-USDT", "trades")]  # ids 3..4 asked for, not served: the gap stays open
    assert (eth["rows"], eth["quarantined"], eth["ids_expected"], eth["ids_present"]) == (3, 0, 5, 3)
    assert (eth["gaps_open"], eth["gaps_filled"], eth["gaps_unfillable"]) == (1, 0, 0)
    assert eth["score"] == pytest.approx((12 / 18) * (3 / 5) * 1.0 / (1 + 1))

    book = rows[("BTC-USDT", "book")]  # no REST serves past book updates: unfillable
    assert (book["rows"], book["sequence_breaks"], book["gaps_unfillable"], book["gaps_open"]) == (2, 1, 1, 0)
    assert (book["ids_expected"], book["ids_present"]) == (None, None)
    assert book["score"] == pytest.approx((12 / 18) / (1 + 1))

    quiet = rows[("ETH-USDT", "book")]  # streamed, nothing arrived: a row of 0 rows says so
    assert (quiet["rows"], quiet["covered_seconds"]) == (0, covered) and quiet["score"] == pytest.approx(12 / 18)
    assert not ledger["complete"].any()  # the day is not over (nor whole)


def _one_trade_day(catalog: Catalog, ids: list[int]) -> None:
    trades = [_trade("BTC-USDT", i, T0 + timedelta(hours=1, seconds=i % 3600)) for i in ids]
    write_bronze(catalog, "bronze.trades", trades)


def test_a_day_with_an_unfilled_gap_never_scores_complete(tmp_path: Path) -> None:
    later = T0 + timedelta(days=2)  # the day is over

    def ledger(name: str, ids: list[int], *, streamed: bool) -> dict:
        catalog = Catalog(tmp_path / name)
        _one_trade_day(catalog, ids)
        if streamed:  # a session streamed the whole day
            day = (("start", T0), ("alive", T0 + timedelta(hours=12)), ("end", T0 + timedelta(days=1)))
            _session(catalog, *day, symbols=["BTC-USDT"], channels=["trades"])
        promote_silver(catalog, options=SilverOptions(backfill=False), now=later)
        (row,) = catalog.frame("gold.completeness").filter(date=D, channel="trades").iter_rows(named=True)
        return row

    whole = ledger("whole", [1, 2, 3], streamed=True)
    assert (whole["score"], whole["complete"], whole["covered_seconds"]) == (1.0, True, 86_400.0)
    # nothing known missing, but nothing vouches for the day's time either
    unknown = ledger("unknown", [1, 2, 3], streamed=False)
    assert (unknown["score"], unknown["complete"], unknown["covered_seconds"]) == (1.0, False, None)

    holed = ledger("holed", [1, 2, 3, 100_000], streamed=True)  # 99,996 ids missing, backfill off: open
    assert holed["gaps_open"] == 1 and holed["complete"] is False and holed["score"] < 1
    assert holed["score"] == pytest.approx((4 / 100_000) / 2)


def test_the_ledger_is_incremental_and_idempotent(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path)
    later = T0 + timedelta(days=3)
    opts = SilverOptions(backfill=False)
    _one_trade_day(catalog, [1, 2, 3])
    promote_silver(catalog, options=opts, now=later)
    version = catalog.open("gold.completeness").version()
    assert build_completeness(catalog, options=opts, now=later).is_empty()  # nothing new: nothing written
    assert catalog.open("gold.completeness").version() == version
    first = catalog.frame("gold.completeness")

    # a trade of the next day: that day is added, the first one is not rewritten
    write_bronze(catalog, "bronze.trades", [_trade("BTC-USDT", 4, T0 + timedelta(days=1, hours=2))])
    touched = promote_silver(catalog, options=opts, now=later).completeness
    assert touched is not None and touched["date"].to_list() == [D + timedelta(days=1)]
    ledger = catalog.frame("gold.completeness").sort("date")
    assert ledger["date"].to_list() == [D, D + timedelta(days=1)]
    assert ledger.row(0, named=True) == first.row(0, named=True)  # recomputed the same
    assert ledger.row(1, named=True)["ids_expected"] == 1 and (ledger["score"] == 1).all()


def test_new_heartbeats_of_a_session_recompute_the_days_its_coverage_grew_into(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path)
    opts = SilverOptions(backfill=False)
    _one_trade_day(catalog, [1, 2, 3])
    beat = T0 + timedelta(hours=12)
    _session(catalog, ("start", T0 + timedelta(hours=6)), ("alive", beat), symbols=["BTC-USDT"], channels=["trades"])
    first = promote_silver(catalog, options=opts, now=beat + timedelta(seconds=30)).completeness
    assert first is not None and first["covered_seconds"].to_list() == [6 * 3600.0 + 30]  # alive: up to now

    # the same session beats again after midnight: its coverage grew over the rest of D and into D+1
    late = T0 + timedelta(days=1, minutes=10)
    _session(catalog, ("alive", late), symbols=["BTC-USDT"], channels=["trades"])
    again = build_completeness(catalog, options=opts, now=late + timedelta(seconds=30))
    assert again.select("date", "rows", "covered_seconds").rows() == [
        (D, 3, 18 * 3600.0),
        (D + timedelta(days=1), 0, 630.0),
    ]
    assert catalog.frame("gold.completeness").sort("date").equals(again.sort("date"))
