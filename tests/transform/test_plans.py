"""Silver's validation rules (``transform/plans.py`` and ``silver._validate``), fast: a bronze-shaped
row in memory, the rule it is quarantined under (or none) out. No Delta table, no socket.

Each case starts from a valid row of its table and changes one or two values; the expected rule
is the reason a user finds in ``silver.quarantine``. Where a row breaks several rules, the first
in this order is reported: unknown_symbol, ts_out_of_bounds, <column>_not_finite, then the
table's own rules in their order. End to end (promote, quarantine once, dq_report): test_silver.py
and test_silver_validation.py.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl
import pytest

from crypto_lakehouse.schemas import BRONZE
from crypto_lakehouse.transform.plans import PLANS, TS_MIN, QualityReport, _parse_intervals
from crypto_lakehouse.transform.silver import SilverOptions, _validate

from .helpers import valid_bronze_fields

T0 = datetime(2026, 11, 20, 12, tzinfo=UTC)
RECEIPT = T0 + timedelta(milliseconds=3)
NOW = T0 + timedelta(minutes=5)

# one valid row per bronze table, as _promote_rows hands them to _validate (writer columns dropped)
VALID: dict[str, dict[str, Any]] = valid_bronze_fields(T0)
VALID["bronze.trades"] |= {"id": "7", "type": None}
_DROPPED = ("date", "writer_id", "batch_id")


def _schema(table: str) -> dict[str, pl.DataType]:
    arrow = BRONZE[table].schema
    return {n: t for n, t in pl.from_arrow(arrow.empty_table()).schema.items() if n not in _DROPPED}  # type: ignore[union-attr]


def _frame(table: str, *rows: dict[str, Any]) -> pl.DataFrame:
    full = [{"exchange": "BINANCE", "symbol": "BTC-USDT", "ts": T0, "receipt_ts": RECEIPT, **r} for r in rows]
    return pl.DataFrame(full, schema=_schema(table), orient="row")


def _validate_one(table: str, opts: SilverOptions | None = None, **changes: Any) -> tuple[pl.DataFrame, pl.DataFrame]:
    df = _frame(table, {**VALID[table], **changes})
    return _validate(PLANS["silver." + table.split(".")[1]], df, NOW, opts or SilverOptions())


def _rule(table: str, opts: SilverOptions | None = None, **changes: Any) -> str | None:
    """The rule the valid row of ``table`` with ``changes`` is quarantined under; None: it is good."""
    good, bad = _validate_one(table, opts, **changes)
    assert good.height + bad.height == 1, (good, bad)  # every row goes exactly one way
    return bad["rule"][0] if bad.height else None


@pytest.mark.parametrize("table", list(VALID))
def test_the_valid_row_of_each_table_passes(table: str) -> None:
    assert _rule(table) is None


# ------------------------------------------------------------------------------ rules of every table


@pytest.mark.parametrize(
    ("symbol", "rule"),
    [
        ("BTC-USDT", None),
        ("BTC-USDT-PERP", None),
        ("BTC-USD-240628", None),  # a dated future
        ("1000PEPE-USDT", None),
        ("btc-usdt", "unknown_symbol"),  # the exchange's spelling, not normalised
        ("BTCUSDT", "unknown_symbol"),
        ("BTC-USD-2406", "unknown_symbol"),
        ("BTC-USDT-PERPX", "unknown_symbol"),
        ("BTC_USDT", "unknown_symbol"),
        ("", "unknown_symbol"),
    ],
)
@pytest.mark.parametrize("table", ["bronze.trades", "bronze.funding", "bronze.candles"])
def test_a_symbol_must_be_normalised(table: str, symbol: str, rule: str | None) -> None:
    assert _rule(table, symbol=symbol) == rule


def test_the_symbol_allow_list_quarantines_the_others() -> None:
    only_eth = SilverOptions(symbols=frozenset({"ETH-USDT"}))
    assert _rule("bronze.trades", only_eth) == "unknown_symbol"
    assert _rule("bronze.trades", only_eth, symbol="ETH-USDT") is None
    assert _rule("bronze.trades", SilverOptions(symbols=frozenset({"BTC-USDT", "ETH-USDT"}))) is None


@pytest.mark.parametrize("table", list(VALID))
def test_exchange_time_is_bounded_by_the_first_block_and_by_its_own_receipt(table: str) -> None:
    skew = SilverOptions().max_future_skew
    assert skew == timedelta(seconds=10)
    # a candle cannot open after its ts: move its start along with an early ts
    opens = (lambda t: {"start": t}) if table == "bronze.candles" else (lambda t: {})
    assert _rule(table, ts=TS_MIN, receipt_ts=T0, **opens(TS_MIN)) is None
    assert _rule(table, ts=TS_MIN - timedelta(microseconds=1), receipt_ts=T0, **opens(TS_MIN)) == "ts_out_of_bounds"
    assert _rule(table, ts=RECEIPT - timedelta(days=3), **opens(T0 - timedelta(days=4))) is None  # late is fine
    assert _rule(table, ts=RECEIPT + skew) is None  # the venue's clock may run ahead of ours...
    assert _rule(table, ts=RECEIPT + skew + timedelta(microseconds=1)) == "ts_out_of_bounds"  # ...this much
    assert _rule(table, SilverOptions(max_future_skew=timedelta(minutes=1)), ts=RECEIPT + timedelta(seconds=59)) is None


def test_the_time_of_the_run_does_not_bound_exchange_time() -> None:
    """A row committed while a slow run runs was received after the run started: valid. ``now``
    only stamps when the row was quarantined."""
    plan, df = PLANS["silver.trades"], _frame("bronze.trades", VALID["bronze.trades"])
    good, bad = _validate(plan, df, T0 - timedelta(hours=1), SilverOptions())
    assert (good.height, bad.height) == (1, 0)
    _, bad = _validate(plan, _frame("bronze.trades", {**VALID["bronze.trades"], "side": "x"}), NOW, SilverOptions())
    assert bad["detected_at"].to_list() == [NOW]


@pytest.mark.parametrize(
    ("table", "column"),
    [(t, c) for p in PLANS.values() for t in [p.bronze] for c in (*p.floats, *p.nullable_floats)],
)
@pytest.mark.parametrize("spelling", ["NaN", "-inf", "1e999"])
def test_a_number_that_is_not_finite_has_its_own_rule(table: str, column: str, spelling: str) -> None:
    # before the positivity rules: "-inf" is not finite rather than not positive
    assert _rule(table, **{column: spelling}) == f"{column}_not_finite"


# ------------------------------------------------------------------------------ each table's own rules


@pytest.mark.parametrize(
    ("changes", "rule"),
    [
        ({"ts": None}, "ts_missing"),  # the receipt is no exchange time for a trade
        ({"id": "abc"}, "bad_id"),
        ({"id": "1.5"}, "bad_id"),
        ({"id": None}, "bad_id"),
        ({"id": "+7"}, None),
        ({"price": "abc"}, "price_not_numeric"),
        ({"price": ""}, "price_not_numeric"),
        ({"price": " 100.5"}, "price_not_numeric"),
        ({"price": "0"}, "price_not_positive"),
        ({"price": "-1"}, "price_not_positive"),
        ({"price": "1e-8"}, None),
        ({"amount": "x"}, "amount_not_numeric"),
        ({"amount": "0"}, "amount_not_positive"),
        ({"amount": "-0.25"}, "amount_not_positive"),
        ({"side": "hold"}, "unknown_side"),
        ({"side": "BUY"}, "unknown_side"),
        ({"side": "sell"}, None),
        ({"type": "liquidation"}, None),  # not validated
        # several at once: the first rule in order
        ({"symbol": "btc", "side": "hold"}, "unknown_symbol"),
        ({"ts": None, "id": "x"}, "ts_missing"),
        ({"price": "abc", "amount": "0"}, "price_not_numeric"),
        ({"price": "0", "side": "hold"}, "price_not_positive"),
        ({"amount": "NaN", "price": "x", "side": "hold"}, "amount_not_finite"),
    ],
)
def test_trade_rules(changes: dict[str, Any], rule: str | None) -> None:
    assert _rule("bronze.trades", **changes) == rule


@pytest.mark.parametrize(
    ("exchange", "trade_id", "rule"),
    [
        ("BINANCE", "12", None),  # contiguous integers
        ("BINANCE", "a1b2", "bad_id"),
        ("BITFINEX", "1234567", None),  # monotonic integers
        ("BITFINEX", "x", "bad_id"),
        ("BYBIT", "5f1c8d5e-0f6a-5e3b-9b0a-3c1f0e2d4a6b", None),  # UUIDs: identity only
        ("BYBIT", None, "missing_id"),
        ("BYBIT", " ", "missing_id"),
        ("BITFLYER", None, None),  # no ids: nothing to check
        ("PHEMEX", "whatever", None),
        ("NOT_A_VENUE", "abc", None),  # not in the registry: ids are opaque
        ("NOT_A_VENUE", None, "missing_id"),
    ],
)
def test_trade_ids_are_validated_by_the_venues_kind_of_id(
    exchange: str, trade_id: str | None, rule: str | None
) -> None:
    assert _rule("bronze.trades", exchange=exchange, id=trade_id) == rule


def test_an_exchange_the_registry_does_not_know_is_not_assumed_to_have_integer_ids() -> None:
    assert _rule("bronze.trades", SilverOptions(), exchange="NOT_A_VENUE", id="abc") is None
    assert _rule("bronze.trades", SilverOptions(), exchange="NOT_A_VENUE", id=None) == "missing_id"
    assert _rule("bronze.trades", SilverOptions(), exchange="BINANCE", id="abc") == "bad_id"  # the registry's default


@pytest.mark.parametrize(
    ("changes", "rule"),
    [
        ({"size": "0"}, None),  # a level removed from the book
        ({"size": "-1"}, "size_negative"),
        ({"size": "x"}, "size_not_numeric"),
        ({"price": "0"}, "price_not_positive"),
        ({"price": "x"}, "price_not_numeric"),
        ({"side": "ask"}, None),
        ({"side": "buy"}, "unknown_side"),  # a book has bids and asks
        ({"ts": None}, None),  # some venues send no book time: dated by its receipt
    ],
)
def test_book_rules(changes: dict[str, Any], rule: str | None) -> None:
    assert _rule("bronze.book", **changes) == rule


@pytest.mark.parametrize(
    ("changes", "rule"),
    [
        ({"bid": "100.5", "ask": "100.5"}, "crossed_book"),  # locked: no venue's own best quotes meet
        ({"bid": "101", "ask": "100.5"}, "crossed_book"),
        ({"bid": "100.49", "ask": "100.5"}, None),
        ({"bid_size": None, "ask_size": None}, None),  # sizes are optional...
        ({"bid_size": "x"}, "bid_size_not_numeric"),  # ...but numbers when given
        ({"ask_size": "?"}, "ask_size_not_numeric"),
        ({"bid": "0"}, "bid_not_positive"),
        ({"bid": "x"}, "bid_not_numeric"),
        ({"ask": "-100.5"}, "ask_not_positive"),  # not crossed_book: positivity comes first
    ],
)
def test_ticker_rules(changes: dict[str, Any], rule: str | None) -> None:
    assert _rule("bronze.ticker", **changes) == rule


@pytest.mark.parametrize(
    ("changes", "rule"),
    [
        ({"mark_price": None, "index_price": None, "rate": None, "predicted_rate": None}, None),
        ({"rate": "0.1"}, None),  # the bound itself is a valid rate...
        ({"rate": "-0.1"}, None),
        ({"rate": "0.1001"}, "rate_out_of_bounds"),  # ...beyond it, a 10 % funding rate is not
        ({"rate": "-0.5"}, "rate_out_of_bounds"),
        ({"rate": "x"}, "rate_not_numeric"),
        ({"mark_price": "0"}, "mark_price_not_positive"),
        ({"mark_price": "-1"}, "mark_price_not_positive"),
        ({"mark_price": "x"}, "mark_price_not_numeric"),
        ({"index_price": "x"}, "index_price_not_numeric"),
        ({"predicted_rate": "x"}, "predicted_rate_not_numeric"),
        ({"ts": None}, None),  # dated by its receipt
    ],
)
def test_funding_rules(changes: dict[str, Any], rule: str | None) -> None:
    assert _rule("bronze.funding", **changes) == rule


@pytest.mark.parametrize(
    ("changes", "rule"),
    [
        ({"price": "-1"}, "price_not_positive"),
        ({"price": "x"}, "price_not_numeric"),
        ({"quantity": "0"}, "quantity_not_positive"),
        ({"quantity": "x"}, "quantity_not_numeric"),
        ({"side": "bid"}, "unknown_side"),
        ({"side": "buy"}, None),
        ({"price": "x", "quantity": "0"}, "price_not_numeric"),
        ({"status": "whatever", "id": None}, None),  # not validated
    ],
)
def test_liquidation_rules(changes: dict[str, Any], rule: str | None) -> None:
    assert _rule("bronze.liquidations", **changes) == rule


@pytest.mark.parametrize(
    ("changes", "rule"),
    [
        ({"interval": "5x"}, "unknown_interval"),
        ({"interval": "1M", "start": T0 - timedelta(days=31)}, None),
        ({"start": T0}, None),  # reported the moment it opens
        ({"start": T0 + timedelta(microseconds=1)}, "ts_out_of_bounds"),  # opens after it was reported
        ({"ts": None, "start": RECEIPT + timedelta(seconds=1)}, "ts_out_of_bounds"),  # ...or received
        ({"ts": None}, None),
        ({"start": datetime(2008, 12, 31, tzinfo=UTC)}, "ts_out_of_bounds"),
        ({"open": "0"}, "open_not_positive"),
        ({"close": "x"}, "close_not_numeric"),
        ({"high": "-101"}, "high_not_positive"),
        ({"volume": "0"}, None),  # a minute without trades
        ({"volume": "-1"}, "volume_negative"),
        ({"trades": None}, None),
        # high and low must hold open and close (open 100, close 100.5 in the valid row)
        ({"open": "100", "high": "100.5", "low": "100", "close": "100.5"}, None),
        ({"open": "100", "high": "100", "low": "100", "close": "100"}, None),
        ({"low": "100.2"}, "high_low_inconsistent"),  # above the open
        ({"low": "100.5"}, "high_low_inconsistent"),
        ({"high": "100.4"}, "high_low_inconsistent"),  # below the close
        ({"high": "99.5", "open": "99", "close": "99", "low": "99.8"}, "high_low_inconsistent"),  # low above high
        ({"interval": "5x", "open": "0"}, "unknown_interval"),
    ],
)
def test_candle_rules(changes: dict[str, Any], rule: str | None) -> None:
    assert _rule("bronze.candles", **changes) == rule


def test_only_closed_candles_are_promoted() -> None:
    # the promote drops still-open candles (counted as superseded) before it validates anything
    plan = PLANS["silver.candles"]
    still_open = {**VALID["bronze.candles"], "closed": False}
    df = _frame("bronze.candles", VALID["bronze.candles"], still_open)
    assert plan.keep is not None
    assert df.filter(plan.keep())["closed"].to_list() == [True]
    assert all(p.keep is None for name, p in PLANS.items() if name != "silver.candles")


# ------------------------------------------------------------------------------ what comes out


def test_good_rows_carry_parsed_numbers_and_quarantined_rows_their_raw_text() -> None:
    plan = PLANS["silver.trades"]
    rows = [
        VALID["bronze.trades"],
        {**VALID["bronze.trades"], "id": "8", "price": "abc"},
        {**VALID["bronze.trades"], "id": "9", "price": "99.75", "amount": "2", "side": "sell"},
    ]
    good, bad = _validate(plan, _frame("bronze.trades", *rows), NOW, SilverOptions())
    assert good.select("id", "side", "price", "amount").rows() == [("7", "buy", 100.5, 0.25), ("9", "sell", 99.75, 2.0)]
    assert good.schema["price"] == pl.Float64 and good.schema["amount"] == pl.Float64
    assert bad.columns == ["table", "rule", "exchange", "symbol", "raw", "row_hash", "detected_at"]
    assert bad.select("table", "rule", "exchange", "symbol").row(0) == (
        "silver.trades",
        "price_not_numeric",
        "BINANCE",
        "BTC-USDT",
    )
    raw = json.loads(bad["raw"][0])
    assert list(raw) == ["exchange", "symbol", "ts", "receipt_ts", "id", "side", "price", "amount", "type"]
    assert raw["price"] == "abc" and raw["id"] == "8" and raw["ts"] == "2026-11-20T12:00:00+00:00"
    assert bad.schema["row_hash"] == pl.Int64


def test_a_rows_quarantine_hash_is_its_identity() -> None:
    _, a = _validate_one("bronze.trades", side="x")
    _, again = _validate_one("bronze.trades", side="x")
    _, other = _validate_one("bronze.trades", side="x", id="8")
    assert a["row_hash"][0] == again["row_hash"][0] != other["row_hash"][0]


def test_a_candles_interval_is_stored_in_the_exchanges_spelling() -> None:
    good, _ = _validate_one("bronze.candles", interval="1mo", start=T0 - timedelta(days=30))
    assert good["interval"].to_list() == ["1M"]


def test_parse_intervals_names_each_interval_once_and_nulls_what_is_none() -> None:
    df = pl.DataFrame({"interval": ["1m", "1mo", "1M", "3d", "1w", "5x", "0M", "1m", "1h"]})
    assert _parse_intervals(df, SilverOptions())["__interval"].to_list() == [
        "1m",
        "1M",
        "1M",
        "3d",
        "1w",
        None,
        None,
        "1m",
        "1h",
    ]
    assert (
        _parse_intervals(df, SilverOptions())["interval"].to_list() == df["interval"].to_list()
    )  # the raw value is kept


@pytest.mark.parametrize("table", list(VALID))
def test_an_empty_batch_validates_to_nothing(table: str) -> None:
    # a backfill that found nothing hands the promote an empty frame
    good, bad = _validate(PLANS["silver." + table.split(".")[1]], _frame(table), NOW, SilverOptions())
    assert good.height == 0 and bad.height == 0


# ------------------------------------------------------------------------------ the data-quality report


def test_quality_report_counts_rows_per_symbol_and_skips_zeros() -> None:
    report = QualityReport("run1", NOW)
    rows = pl.DataFrame({"exchange": ["B", "B", "B", "C"], "symbol": ["X-Y", "X-Y", "Z-Y", "X-Y"]})
    report.add("silver.trades", "rows_in", rows)
    report.add("silver.trades", "duplicates", value=0)  # nothing: no row
    report.add("silver.trades", "rows_in", rows.clear())  # nothing either
    report.add("silver.gaps", "gaps_found", value=2, exchange="B", symbol="X-Y")
    frame = report.frame()
    assert frame.columns == ["run_id", "run_at", "table", "exchange", "symbol", "metric", "value", "detail"]
    assert sorted(frame.drop("run_id", "run_at", "detail").rows()) == [
        ("silver.gaps", "B", "X-Y", "gaps_found", 2),
        ("silver.trades", "B", "X-Y", "rows_in", 2),
        ("silver.trades", "B", "Z-Y", "rows_in", 1),
        ("silver.trades", "C", "X-Y", "rows_in", 1),
    ]
    assert set(frame["run_id"]) == {"run1"} and set(frame["run_at"]) == {NOW}


def test_quality_report_records_each_check_that_ran_even_when_it_found_nothing() -> None:
    report = QualityReport("run1", NOW)
    report.add("silver.trades", "rows_in", value=3, exchange="BYBIT", symbol="BTC-USDT-PERP")
    report.add("silver.book", "rows_in", value=5, exchange="BYBIT", symbol="BTC-USDT-PERP")
    report.checked(
        "silver.trades", "trade_ids", exchange="BYBIT", symbol="BTC-USDT-PERP", detail="skipped: opaque ids", found=0
    )
    assert report.pairs("silver.book") == [("BYBIT", "BTC-USDT-PERP")]
    assert report.frame().filter(metric="check:trade_ids").select("value", "detail").row(0) == (
        0,
        "skipped: opaque ids",
    )
