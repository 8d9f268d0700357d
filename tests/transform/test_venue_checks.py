"""Silver checks what each venue allows (the registry's kinds), fast: hand-made silver-shaped
frames in memory. Trade ids per kind (id gaps, dedup keys), book sequence breaks per kind, and
gaps recorded ``unfillable`` (a small in-test ``VenueHistory`` that raises ``GapUnfillable``).
End to end through promote with a non-Binance venue: test_silver_venues.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from crypto_lakehouse.errors import GapUnfillable
from crypto_lakehouse.storage import Catalog
from crypto_lakehouse.transform.gaps import _id_gaps, _sequence_gaps, fill_gaps
from crypto_lakehouse.transform.plans import PLANS, QualityReport, SilverOptions, _trade_ids, trade_columns
from crypto_lakehouse.venues import venue

from .helpers import write_bronze

T0 = datetime(2026, 11, 20, 12, tzinfo=UTC)
_UTC = pl.Datetime("us", "UTC")
OPTS = SilverOptions(backfill=True)


# ------------------------------------------------------------------------------ trade ids per kind


def _ids(exchange: str, ids: list[int]) -> list[tuple[str, str, int]]:
    return [(exchange, "BTC-USDT", i) for i in ids]


def test_id_gaps_only_where_the_venues_ids_are_contiguous() -> None:
    rows = [
        *_ids("BINANCE", [1, 2, 5]),  # contiguous: 3..4 lost
        *_ids("HTX", [13, 10, 12, 15]),  # contiguous as a set, out of order: 11 and 14 lost
        *_ids("BITFINEX", [100, 250, 900]),  # monotonic (shared across symbols): no gap
        *_ids("GATE", [7, 70]),
    ]
    trades = pl.DataFrame(rows, schema={"exchange": pl.String, "symbol": pl.String, "id": pl.Int64}, orient="row")
    contiguous = [ex for ex in ("BINANCE", "HTX", "BITFINEX", "GATE") if OPTS.checks(ex).trade_ids == "contiguous"]
    gaps = _id_gaps(trades, contiguous=contiguous)
    assert sorted(gaps.select("exchange", "first_id", "last_id").rows()) == [
        ("BINANCE", 3, 4),
        ("HTX", 11, 11),
        ("HTX", 14, 14),
    ]
    assert set(gaps["check"]) == {"trade_ids:contiguous"}


def test_opaque_and_missing_ids_leave_null_integer_ids_out_of_id_gaps() -> None:
    trades = pl.DataFrame(
        {"exchange": ["OKX"] * 3, "symbol": ["BTC-USDT"] * 3, "id": [1, None, 4]}, schema_overrides={"id": pl.Int64}
    )
    assert _id_gaps(trades, contiguous=["OKX"])[["first_id", "last_id"]].rows() == [(2, 3)]


def _bronze_trades(exchange: str, *rows: tuple[str | None, str, float], origin: str = "w:1") -> pl.DataFrame:
    """(id, price, seconds after T0) -> bronze-shaped trades as promote validates them."""
    return pl.DataFrame(
        [
            {
                "exchange": exchange,
                "symbol": "BTC-USDT-PERP",
                "ts": T0 + timedelta(seconds=s),
                "receipt_ts": T0 + timedelta(seconds=s, milliseconds=5),
                "id": i,
                "side": "buy",
                "price": p,
                "amount": "0.5",
                "__origin": origin,
            }
            for i, p, s in rows
        ],
        schema_overrides={"ts": _UTC, "receipt_ts": _UTC, "id": pl.String},
    )


def _keyed(df: pl.DataFrame) -> pl.DataFrame:
    return trade_columns(_trade_ids(df, OPTS)).select("id", "trade_id", "trade_key")


def test_each_kind_of_id_keeps_the_venues_text_and_an_integer_where_there_is_one() -> None:
    assert _keyed(_bronze_trades("BINANCE", ("42", "1", 0))).row(0) == (42, "42", "42")
    uuid = "5f1c8d5e-0f6a-5e3b-9b0a-3c1f0e2d4a6b"
    assert _keyed(_bronze_trades("BYBIT", (uuid, "1", 0))).row(0) == (None, uuid, uuid)
    (i, trade_id, key) = _keyed(_bronze_trades("BITFLYER", (None, "1", 0))).row(0)
    assert i is None and trade_id is None and key.startswith("row:")


def test_without_ids_only_a_redelivered_bronze_row_has_the_same_key() -> None:
    # two distinct trades that look alike (same time, side, price, size) in one bronze commit
    twins = _bronze_trades("BITFLYER", (None, "100", 0), (None, "100", 0), (None, "101", 0))
    keys = _keyed(twins)["trade_key"].to_list()
    assert len(set(keys)) == 3, "distinct trades that look alike are never one key"
    again = _keyed(twins.reverse())["trade_key"].to_list()  # the same commit read again, in another order
    assert sorted(again) == sorted(keys)
    other_commit = _keyed(_bronze_trades("BITFLYER", (None, "100", 0), origin="w:2"))["trade_key"][0]
    assert other_commit not in keys


# ------------------------------------------------------------------------------ book sequences per kind


def _book(exchange: str, *updates: tuple[int | None, bool, float]) -> pl.DataFrame:
    """(sequence, snapshot, seconds after T0) -> silver-shaped book rows, two levels per update."""
    rows = [
        (exchange, "BTC-USDT-PERP", T0 + timedelta(seconds=s), T0 + timedelta(seconds=s, milliseconds=1), q, snap, side)
        for q, snap, s in updates
        for side in ("bid", "ask")
    ]
    schema = {"exchange": pl.String, "symbol": pl.String, "ts": _UTC, "receipt_ts": _UTC, "sequence": pl.Int64}
    return pl.DataFrame(rows, schema={**schema, "snapshot": pl.Boolean, "side": pl.String}, orient="row")


def _breaks(book: pl.DataFrame) -> list[tuple[str, int, int, str]]:
    exchanges = book["exchange"].unique().to_list()
    gaps = _sequence_gaps(
        book.sample(fraction=1, shuffle=True, seed=1), kinds={ex: venue(ex).book_sequence for ex in exchanges}
    )
    return sorted(gaps.select("exchange", "first_id", "last_id", "check").rows())


def test_per_update_sequences_break_where_an_update_is_skipped() -> None:
    book = _book("BYBIT", (100, True, 0), (101, False, 1), (102, False, 2), (105, False, 3), (106, False, 4))
    assert _breaks(book) == [("BYBIT", 103, 104, "book_sequence:per_update")]
    gaps = _sequence_gaps(book, kinds={"BYBIT": "per_update"})
    assert "jumped from 102 to 105" in gaps["reason"][0]
    assert (gaps["start"][0], gaps["end"][0]) == (T0 + timedelta(seconds=2), T0 + timedelta(seconds=3))


def test_per_update_resync_snapshot_past_the_next_update_is_a_break_and_a_stale_update_is_not() -> None:
    book = _book("KRAKEN_FUTURES", (10, True, 0), (11, False, 1), (11, False, 2), (20, True, 3), (21, False, 4))
    assert _breaks(book) == [("KRAKEN_FUTURES", 12, 19, "book_sequence:per_update")]
    snapshot_next = _book("KRAKEN_FUTURES", (10, True, 0), (11, False, 1), (12, True, 2), (13, False, 3))
    assert _breaks(snapshot_next) == []


def test_per_range_checks_only_what_bronze_shows_a_resync_snapshot() -> None:
    # Binance: each delta covers U..u and bronze keeps u: any increase between deltas is fine
    book = _book("BINANCE", (1000, True, 0), (1007, False, 1), (1030, False, 2), (1100, True, 3), (1150, False, 4))
    assert _breaks(book) == [("BINANCE", 1031, 1100, "book_sequence:per_range")]
    assert "arrived only as it" in _sequence_gaps(book, kinds={"BINANCE": "per_range"})["reason"][0]


def test_venues_without_sequences_are_not_checked() -> None:
    book = _book("COINBASE", (None, True, 0), (None, False, 1)).vstack(_book("OKX", (5, False, 0), (50, False, 1)))
    assert _breaks(book) == []


# ------------------------------------------------------------------------------ unfillable gaps


class _LatestOnly:
    """A venue whose REST serves only its latest trades: what the ccxt backfiller answers for
    such venues (a fake of our own VenueHistory protocol)."""

    def __init__(self) -> None:
        self.asked = 0

    def _refuse(self) -> pl.DataFrame:
        self.asked += 1
        raise GapUnfillable("OKX serves its last 100 trades only in this test")

    def trades_by_id(self, exchange: str, symbol: str, first_id: int, last_id: int) -> pl.DataFrame:
        return self._refuse()

    def trades_by_time(self, exchange: str, symbol: str, start: datetime, end: datetime) -> pl.DataFrame:
        return self._refuse()

    def candles(self, exchange: str, symbol: str, interval: str, start: datetime, end: datetime) -> pl.DataFrame:
        return self._refuse()

    def funding(self, exchange: str, symbol: str, start: datetime, end: datetime) -> pl.DataFrame:
        return self._refuse()

    def latest_trade_id(self, exchange: str, symbol: str) -> int | None:
        return None

    def contiguous_trade_ids(self, exchange: str) -> bool:
        return True


def _fill(catalog: Catalog, history: _LatestOnly, now: datetime) -> tuple[pl.DataFrame, pl.DataFrame]:
    report = QualityReport("r", now)
    report.add("silver.trades", "rows_in", value=1, exchange="OKX", symbol="BTC-USDT")
    gaps = fill_gaps(
        catalog,
        backfiller=history,
        report=report,
        now=now,
        options=OPTS,
        promote=lambda plan, raw: pytest.fail("nothing can be backfilled here"),
    )
    return gaps, report.frame()


@pytest.mark.parametrize("exchange", ["OKX", "BYBIT"])
def test_a_gap_no_rest_can_fill_is_unfillable_with_the_reason_and_not_retried(tmp_path: Path, exchange: str) -> None:
    """OKX can page back by id, but this backfiller refuses (GapUnfillable); Bybit cannot backfill
    by the registry, so it is not even asked."""
    catalog = Catalog(tmp_path)
    trades = [("1", 0), ("2", 1), ("6", 2)] if exchange == "OKX" else [("a", 0), ("b", 1)]
    at = [T0 + timedelta(seconds=s) for _, s in trades]
    trade = {"exchange": exchange, "symbol": "BTC-USDT", "side": "buy", "price": "1", "amount": "1"}
    rows = [{**trade, "ts": t, "receipt_ts": t, "id": i} for (i, _), t in zip(trades, at, strict=True)]
    write_bronze(catalog, "bronze.trades", rows)
    # a session that stopped: the rest of the time is a coverage gap, as an id gap on OKX
    write_bronze_sessions(catalog, exchange)
    from crypto_lakehouse.transform.silver import promote_silver

    history = _LatestOnly()
    now = T0 + timedelta(minutes=10)
    promote_silver(catalog, backfiller=history, options=OPTS, now=now, tables=["trades"])
    gaps = pl.read_delta(str(tmp_path / "silver" / "gaps"))
    assert set(gaps["status"]) == {"unfillable"}, gaps
    expected = {"coverage:sessions", "trade_ids:contiguous"} if exchange == "OKX" else {"coverage:sessions"}
    assert set(gaps["check"]) == expected
    if exchange == "OKX":
        assert all(r.endswith("OKX serves its last 100 trades only in this test") for r in gaps["reason"])
    else:
        assert "unfillable: BYBIT's REST serves only its latest trades" in gaps["reason"][0]
        assert history.asked == 0
    asked = history.asked
    again, report = _fill(catalog, history, now + timedelta(minutes=5))
    assert history.asked == asked, "an unfillable gap is not asked for again"
    assert set(again["status"]) == {"unfillable"} and again.height == gaps.height
    assert again.filter(check="coverage:sessions")["end"][0] == now + timedelta(minutes=5)  # kept current
    checks = dict(report.filter(pl.col("metric").str.starts_with("check:")).select("metric", "detail").rows())
    assert checks["check:coverage"].startswith("sessions")


def write_bronze_sessions(catalog: Catalog, exchange: str) -> None:
    from crypto_lakehouse.schemas import SESSIONS

    events = [("start", T0 - timedelta(seconds=1), None), ("end", T0 + timedelta(seconds=3), "stopped")]
    table = SESSIONS.schema.empty_table().from_pylist(
        [
            {"exchange": exchange, "writer_id": "w", "session_id": "s", "event": e, "at": at, "symbols": ["BTC-USDT"],
             "channels": ["trades"], "reason": why}
            for e, at, why in events
        ],
        schema=SESSIONS.schema,
    )  # fmt: skip
    catalog.append(SESSIONS.name, table)


def test_plans_know_the_trade_plan() -> None:  # (the plan the e2e test relies on)
    assert PLANS["silver.trades"].key == ("exchange", "symbol", "trade_key")
