"""Every table's Arrow schema, partition columns and natural key, in one place.

Bronze keeps what the exchange said. Prices and quantities are stored as **decimal strings in
plain positional notation** of the Decimal cryptofeed parsed (``"60001.43"``, ``"0.00100000"``,
``"0.00000010"``), never exponent notation such as ``1.0E-7``: exact, with no scale limit and no
float rounding, and cheap on the hot path. For every plain decimal the exchange sent (all
Binance-family venues) this is the exchange's text character for character, trailing zeros
included; text in exponent notation is written out (``1E+2`` -> ``"100"``). Silver parses them
into typed decimals. Timestamps are timezone-aware UTC with microsecond precision (Delta's
``timestamp`` type; tz-naive would need ``timestampNtz`` and a newer protocol that Spark/Trino
readers may lack).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypeIs, get_args

import pyarrow as pa

from crypto_lakehouse.errors import UnknownTable

__all__ = [
    "BRONZE",
    "DECIMAL_TEXT",
    "GOLD",
    "META",
    "ROW_LAYOUT",
    "SESSIONS",
    "SILVER",
    "TABLES",
    "TABLE_NAMES",
    "TIME_COLUMN",
    "UTC_US",
    "WRITER_FILLED",
    "TableName",
    "TableSpec",
    "markdown",
    "table_name",
    "table_spec",
]

UTC_US = pa.timestamp("us", tz="UTC")

TableName = Literal[
    "bronze.trades",
    "bronze.book",
    "bronze.ticker",
    "bronze.funding",
    "bronze.liquidations",
    "bronze.candles",
    "bronze.open_interest",
    "bronze.index",
    "bronze.l3_book",
    "bronze.dead_letter",
    "bronze.sessions",
    "silver.trades",
    "silver.book",
    "silver.ticker",
    "silver.funding",
    "silver.liquidations",
    "silver.candles",
    "silver.quarantine",
    "silver.gaps",
    "silver.dq_report",
    "gold.ohlcv",
    "gold.funding",
    "gold.info_bars",
    "gold.completeness",
    "gold.anomalies",
    "gold.book_snapshots",
    "gold.quotes",
    "gold.microstructure",
    "meta.archive_manifest",
    "meta.tags",
    "meta.api_keys",
    "meta.audit",
]
"""Every table's ``layer.kind`` name, for type checkers (a test keeps it equal to ``TABLES``);
at run time :func:`table_spec` checks a name and raises :class:`UnknownTable` naming the known ones."""
TABLE_NAMES: tuple[TableName, ...] = get_args(TableName)


@dataclass(frozen=True, slots=True)
class TableSpec:
    """A table: ``layer.kind`` name, schema, partition columns and natural key."""

    name: str
    schema: pa.Schema
    partition_by: tuple[str, ...]
    key: tuple[str, ...]
    description: str

    @property
    def layer(self) -> str:
        return self.name.split(".", 1)[0]

    @property
    def kind(self) -> str:
        return self.name.split(".", 1)[1]


def _f(name: str, typ: pa.DataType, nullable: bool = True, doc: str = "") -> pa.Field[pa.DataType]:
    return pa.field(name, typ, nullable=nullable, metadata={"doc": doc} if doc else None)


_WHERE = [
    _f("exchange", pa.string(), False, "cryptofeed exchange id, e.g. BINANCE_FUTURES"),
    _f("symbol", pa.string(), False, "cryptofeed normalised symbol, e.g. BTC-USDT-PERP"),
    _f("date", pa.date32(), False, "UTC date of ts (of receipt_ts when the exchange sent no time)"),
]
_WHEN = [
    _f("ts", UTC_US, True, "exchange event time, UTC"),
    _f("receipt_ts", UTC_US, False, "time this process received the message, UTC"),
]
_INGEST = [
    _f("writer_id", pa.string(), False, "id of the writer process that appended the row"),
    _f("batch_id", pa.int64(), False, "writer's batch sequence number = Delta txn version of the commit"),
]
_PARTITIONS = ("exchange", "symbol", "date")


def _bronze(kind: str, fields: list[pa.Field[pa.DataType]], key: tuple[str, ...], description: str) -> TableSpec:
    return TableSpec(
        name=f"bronze.{kind}",
        schema=pa.schema([*_WHERE, *_WHEN, *fields, *_INGEST]),
        partition_by=_PARTITIONS,
        key=key,
        description=description,
    )


_S = pa.string()


def _update(unit: str) -> list[pa.Field[pa.DataType]]:
    """The columns that make each delivered book update countable from its rows (a snapshot or
    delta has one row per level or order; an update carrying none keeps one row, side null)."""
    return [
        _f(
            "update_id",
            pa.int64(),
            True,
            "the delivered update the row belongs to: the writer's book callbacks counted from 1 per run; "
            "distinct (writer_id, receipt_ts, update_id) = updates delivered (null: written before the column)",
        ),
        _f("levels", pa.int64(), True, f"{unit} the update carried; 0: none (its one row has side, price, size null)"),
    ]


BRONZE: dict[str, TableSpec] = {
    t.name: t
    for t in (
        _bronze(
            "trades",
            [
                _f("id", _S, True, "exchange trade id (Binance: aggregate trade id)"),
                _f("side", _S, False, "taker side: buy or sell"),
                _f("price", _S, False, "as sent, plain decimal text"),
                _f("amount", _S, False, "base quantity, as sent, plain decimal text"),
                _f("type", _S, True, "trade type when the exchange gives one"),
            ],
            ("exchange", "symbol", "id"),
            "every trade received",
        ),
        _bronze(
            "book",
            [
                *_update("levels"),
                _f("sequence", pa.int64(), True, "exchange update id after this message (Binance u / lastUpdateId)"),
                _f("snapshot", pa.bool_(), False, "true: a full-book snapshot level; false: a delta"),
                _f("side", _S, True, "bid or ask (null: an update that carried no level)"),
                _f("price", _S, True, "level price, as sent, plain decimal text"),
                _f("size", _S, True, "new size at the level, as sent; 0 removes it"),
            ],
            ("exchange", "symbol", "sequence", "snapshot", "side", "price"),
            "L2 book: one row per level of each snapshot and each delta",
        ),
        _bronze(
            "ticker",
            [
                _f("sequence", pa.int64(), True, "exchange update id (Binance u; null where the venue sends none)"),
                _f("bid", _S, False),
                _f("bid_size", _S, True, "null where the venue's ticker carries no size"),
                _f("ask", _S, False),
                _f("ask_size", _S, True),
                _f("channel", _S, True, "cryptofeed channel: ticker or l1_book (null: written before the column)"),
            ],
            ("exchange", "symbol", "sequence", "ts"),
            "best bid/ask updates: cryptofeed's ticker and l1_book channels",
        ),
        _bronze(
            "funding",
            [
                _f("mark_price", _S, True),
                _f("index_price", _S, True),
                _f("rate", _S, True, "current funding rate estimate"),
                _f("predicted_rate", _S, True),
                _f("next_funding_time", UTC_US, True),
            ],
            ("exchange", "symbol", "ts"),
            "mark price / funding rate updates (futures)",
        ),
        _bronze(
            "liquidations",
            [
                _f("id", _S, True),
                _f("side", _S, False),
                _f("quantity", _S, False),
                _f("price", _S, False),
                _f("status", _S, True),
            ],
            ("exchange", "symbol", "ts", "side", "price", "quantity"),
            "forced liquidation orders (futures)",
        ),
        _bronze(
            "candles",
            [
                _f("interval", _S, False, "exchange interval, e.g. 1m"),
                _f("start", UTC_US, False, "window open time"),
                _f("stop", UTC_US, False, "window close time (inclusive end, as the exchange sends)"),
                _f("trades", pa.int64(), True),
                _f("open", _S, False),
                _f("high", _S, False),
                _f("low", _S, False),
                _f("close", _S, False),
                _f("volume", _S, False),
                _f("closed", pa.bool_(), False, "true once the window is final"),
            ],
            ("exchange", "symbol", "interval", "start", "ts"),
            "the exchange's own klines, updates and closes",
        ),
        _bronze(
            "open_interest",
            [_f("open_interest", _S, False, "open interest as sent, plain decimal text (contracts or base)")],
            ("exchange", "symbol", "ts"),
            "open interest updates (futures)",
        ),
        _bronze(
            "index",
            [_f("price", _S, False, "index price as sent, plain decimal text")],
            ("exchange", "symbol", "ts"),
            "index price updates",
        ),
        _bronze(
            "l3_book",
            [
                *_update("orders"),
                _f("sequence", pa.int64(), True, "exchange sequence of the update, when it sends one"),
                _f("snapshot", pa.bool_(), False, "true: an order of a full-book snapshot; false: a delta"),
                _f("side", _S, True, "bid or ask (null: an update that carried no order)"),
                _f("order_id", _S, True, "the exchange's order id"),
                _f("price", _S, True, "order price, plain decimal text"),
                _f("size", _S, True, "order size after the update; 0 removes the order"),
            ],
            ("exchange", "symbol", "sequence", "snapshot", "side", "order_id", "price"),
            "L3 (order-level) book: one row per order of each snapshot and each delta",
        ),
        TableSpec(
            name="bronze.dead_letter",
            schema=pa.schema(
                [
                    _f("date", pa.date32(), False),
                    _f("received_at", UTC_US, False),
                    _f("exchange", _S, True),
                    _f("channel", _S, True, "stream/channel the payload came from, when known"),
                    _f("error", _S, False, "why it could not be normalised"),
                    _f("payload", _S, False, "the frame exactly as received (rows not fitting a table: their repr)"),
                    *_INGEST,
                ]
            ),
            partition_by=("date",),
            key=(),
            description="frames and records that could not be normalised, kept verbatim",
        ),
    )
}

# The columns the bronze writer fills in itself: the partition date (of ts, else receipt_ts) and
# the commit's (writer_id, batch_id).
WRITER_FILLED: tuple[str, ...] = ("date", "writer_id", "batch_id")

# A bronze row as its producers hand it to the writer (the stream callbacks, the archive importer):
# the table's columns in schema order, less WRITER_FILLED; timestamps as float epoch seconds.
# The one definition of that layout (crypto_lakehouse.ingest.rows builds and converts rows with it).
ROW_LAYOUT: dict[str, tuple[str, ...]] = {
    name: tuple(n for n in spec.schema.names if n not in WRITER_FILLED) for name, spec in BRONZE.items()
}

# The layout columns holding prices and sizes as plain decimal text: a producer may hand them as
# the Decimal (or float) cryptofeed parsed, and the conversion writes them out
# (crypto_lakehouse.ingest.rows.decimal_text), so the stream's hot path never formats a number.
DECIMAL_TEXT: dict[str, frozenset[str]] = {
    "bronze.trades": frozenset({"price", "amount"}),
    "bronze.book": frozenset({"price", "size"}),
    "bronze.ticker": frozenset({"bid", "bid_size", "ask", "ask_size"}),
    "bronze.funding": frozenset({"mark_price", "index_price", "rate", "predicted_rate"}),
    "bronze.liquidations": frozenset({"quantity", "price"}),
    "bronze.candles": frozenset({"open", "high", "low", "close", "volume"}),
    "bronze.open_interest": frozenset({"open_interest"}),
    "bronze.index": frozenset({"price"}),
    "bronze.l3_book": frozenset({"price", "size"}),
    "bronze.dead_letter": frozenset(),
}
assert DECIMAL_TEXT.keys() == BRONZE.keys() and all(
    c <= set(ROW_LAYOUT[t]) and all(BRONZE[t].schema.field(n).type == pa.string() for n in c)
    for t, c in DECIMAL_TEXT.items()
), "DECIMAL_TEXT: string columns of each bronze table's layout"

# Not a writer-buffered table (not in BRONZE): the ledger of streaming sessions, appended by
# crypto_lakehouse.ingest.sessions. Bronze layer for its short log retention (a heartbeat commit
# every 30 s per writer).
SESSIONS = TableSpec(
    name="bronze.sessions",
    schema=pa.schema(
        [
            _f("exchange", _S, False, "cryptofeed exchange id"),
            _f("writer_id", _S, False, "the streaming writer"),
            _f("session_id", _S, False, "one run of that writer (a process start)"),
            _f("event", _S, False, "start (before connecting), alive (heartbeat) or end (clean stop)"),
            _f("at", UTC_US, False, "when, UTC (this host's clock)"),
            _f("symbols", pa.list_(_S), False, "symbols subscribed"),
            _f("channels", pa.list_(_S), False, "channels subscribed"),
            _f("reason", _S, True, "end: why the session ended"),
            _f("rest_url", _S, True, "the REST base it streamed from (a loopback exchange); null: the exchange's own"),
        ]
    ),
    partition_by=(),
    key=("session_id", "exchange", "event", "at"),
    description=("streaming sessions: what each writer covered and when; time no session covered is a gap in silver"),
)

_F = pa.float64()
_SOURCE = _f("source", _S, False, "stream, backfill or archive")


def _silver(kind: str, fields: list[pa.Field[pa.DataType]], key: tuple[str, ...], description: str) -> TableSpec:
    return TableSpec(
        name=f"silver.{kind}",
        schema=pa.schema([*_WHERE, *_WHEN, *fields, _SOURCE]),
        partition_by=_PARTITIONS,
        key=key,
        description=description,
    )


SILVER: dict[str, TableSpec] = {
    t.name: t
    for t in (
        _silver(
            "trades",
            [
                _f(
                    "id",
                    pa.int64(),
                    True,
                    "the venue's trade id as an integer; null where it is none (UUIDs, no id: see trade_id)",
                ),
                _f("side", _S, False, "taker side: buy or sell"),
                _f("price", _F, False, "> 0"),
                _f("amount", _F, False, "base quantity, > 0"),
                _f("trade_id", _S, True, "the venue's trade id as sent (null: it sends none, or an older row)"),
                _f(
                    "trade_key",
                    _S,
                    True,
                    "dedup key: the id (an integer's text) or, without ids, row:<hash of the bronze row> "
                    "(null: a row written before this column, read as id)",
                ),
            ],
            ("exchange", "symbol", "trade_key"),
            "validated, deduplicated, gap-filled trades of every venue (docs/venues.md: kinds of trade id)",
        ),
        _silver(
            "book",
            [
                _f("sequence", pa.int64(), True, "exchange update id"),
                _f("snapshot", pa.bool_(), False, "true: a snapshot level; false: a delta"),
                _f("side", _S, False, "bid or ask"),
                _f("price", _F, False, "> 0"),
                _f("size", _F, False, ">= 0; 0 removes the level"),
            ],
            ("exchange", "symbol", "sequence", "snapshot", "side", "price"),
            "validated, deduplicated L2 book snapshots and deltas",
        ),
        _silver(
            "ticker",
            [
                _f("sequence", pa.int64(), True),
                _f("bid", _F, False),
                _f("bid_size", _F, True),
                _f("ask", _F, False, "> bid (a crossed quote is quarantined)"),
                _f("ask_size", _F, True),
            ],
            ("exchange", "symbol", "sequence", "ts"),
            "validated, deduplicated best bid/ask",
        ),
        _silver(
            "funding",
            [
                _f("mark_price", _F, True),
                _f("index_price", _F, True),
                _f("rate", _F, True, "funding rate (stream: current estimate; backfill: the settled rate)"),
                _f("predicted_rate", _F, True),
                _f("next_funding_time", UTC_US, True),
            ],
            ("exchange", "symbol", "ts"),
            "mark price and funding rate updates; backfilled rows are settlements",
        ),
        _silver(
            "liquidations",
            [
                _f("id", _S, True),
                _f("side", _S, False),
                _f("quantity", _F, False),
                _f("price", _F, False),
                _f("status", _S, True),
            ],
            ("exchange", "symbol", "ts", "side", "price", "quantity"),
            "validated, deduplicated liquidations",
        ),
        _silver(
            "candles",
            [
                _f("interval", _S, False),
                _f("start", UTC_US, False),
                _f("stop", UTC_US, False),
                _f("trades", pa.int64(), True, "null for backfilled candles (REST omits it)"),
                _f("open", _F, False),
                _f("high", _F, False),
                _f("low", _F, False),
                _f("close", _F, False),
                _f("volume", _F, False),
            ],
            ("exchange", "symbol", "interval", "start"),
            "the exchange's own final (closed) candles; updates of open candles are superseded",
        ),
        TableSpec(
            name="silver.quarantine",
            schema=pa.schema(
                [
                    _f("table", _S, False, "silver table the row was meant for"),
                    _f("rule", _S, False, "the first validation rule it failed"),
                    _f("exchange", _S, True),
                    _f("symbol", _S, True),
                    _f("raw", _S, False, "the bronze row, as JSON"),
                    _f("row_hash", pa.int64(), False, "hash of raw (keeps reprocessing idempotent)"),
                    _f("detected_at", UTC_US, False),
                ]
            ),
            partition_by=("table",),
            key=("table", "row_hash"),
            description="rows that failed validation, with the rule, never silently dropped",
        ),
        TableSpec(
            name="silver.gaps",
            schema=pa.schema(
                [
                    _f("exchange", _S, False),
                    _f("symbol", _S, False),
                    _f("table", _S, False, "silver.trades, silver.book, silver.candles or silver.funding"),
                    _f("interval", _S, True, "candles: the interval"),
                    _f("first_id", pa.int64(), True, "trades: first missing id; book: first missing sequence"),
                    _f("last_id", pa.int64(), True, "trades: last missing id; book: last missing sequence"),
                    _f("start", UTC_US, True, "first missing time (inclusive)"),
                    _f("end", UTC_US, True, "end of the missing time range (exclusive)"),
                    _f("detected_at", UTC_US, False),
                    _f("status", _S, False, "open, filled or unfillable (the venue cannot backfill it: not retried)"),
                    _f("reason", _S, True, "the cause; why it is still open or unfillable, or how it was filled"),
                    _f("attempts", pa.int64(), False, "backfill attempts so far"),
                    _f("rows_filled", pa.int64(), False),
                    _f("filled_at", UTC_US, True),
                    _f(
                        "check",
                        _S,
                        True,
                        "the check that found it: trade_ids:contiguous, book_sequence:per_update|per_range, "
                        "coverage:sessions, candles:interval, funding:silence (null: recorded before this column)",
                    ),
                ]
            ),
            partition_by=(),
            key=("exchange", "symbol", "table", "interval", "first_id", "start"),
            description="missing ranges found by promote-silver, and what backfill did about them",
        ),
        TableSpec(
            name="silver.dq_report",
            schema=pa.schema(
                [
                    _f("run_id", _S, False),
                    _f("run_at", UTC_US, False),
                    _f("table", _S, False),
                    _f("exchange", _S, True),
                    _f("symbol", _S, True),
                    _f(
                        "metric",
                        _S,
                        False,
                        "rows_in, rows_out, duplicates, quarantined:<rule>, gaps_found, ..., check:<check>",
                    ),
                    _f("value", pa.int64(), False, "the count; check:<check>: gaps it finds in silver now"),
                    _f("detail", _S, True, "check:<check>: how it checked, or why it was skipped"),
                ]
            ),
            partition_by=(),
            key=("run_id", "table", "exchange", "symbol", "metric"),
            description="data-quality report of every promote-silver run (long format)",
        ),
    )
}

GOLD: dict[str, TableSpec] = {
    t.name: t
    for t in (
        TableSpec(
            name="gold.ohlcv",
            schema=pa.schema(
                [
                    _f("source", _S, False, "trades: built from silver.trades; exchange: the exchange's own candles"),
                    _f("interval", _S, False, "bar length, e.g. 1m, 4h, 3m"),
                    _f("exchange", _S, False),
                    _f("symbol", _S, False),
                    _f("window_start", UTC_US, False, "bar open time (UTC), inclusive"),
                    _f("open", _F, False, "first trade by exchange time, ties by trade id"),
                    _f("high", _F, False),
                    _f("low", _F, False),
                    _f("close", _F, False, "last trade by exchange time, ties by trade id"),
                    _f("volume", _F, False, "base volume"),
                    _f("quote_volume", _F, True, "sum(price * amount)"),
                    _f("trades", pa.int64(), True, "number of trades"),
                    _f("buy_volume", _F, True, "taker-buy base volume"),
                    _f("sell_volume", _F, True, "taker-sell base volume"),
                    _f("vwap", _F, True, "quote_volume / volume"),
                ]
            ),
            partition_by=("source", "interval", "exchange", "symbol"),
            key=("source", "interval", "exchange", "symbol", "window_start"),
            description="OHLCV bars at every configured interval; windows without trades are absent",
        ),
        TableSpec(
            name="gold.funding",
            schema=pa.schema(
                [
                    _f("exchange", _S, False),
                    _f("symbol", _S, False),
                    _f("funding_time", UTC_US, False, "settlement time"),
                    _f("rate", _F, False, "funding rate of that settlement"),
                    _f("mark_price", _F, True, "mark price at (or just before) the settlement"),
                    _f("source", _S, False, "settlement (exchange history) or stream (last estimate before it)"),
                    _f("rate_avg_1d", _F, False, "mean rate of the last 3 settlements (8 h apart)"),
                    _f("rate_avg_7d", _F, False, "mean rate of the last 21 settlements"),
                    _f("annualized_rate", _F, False, "rate * 3 * 365"),
                ]
            ),
            partition_by=(),
            key=("exchange", "symbol", "funding_time"),
            description="funding per settlement with rolling averages",
        ),
        TableSpec(
            name="gold.info_bars",
            schema=pa.schema(
                [
                    _f("kind", _S, False, "tick (N trades), volume (base volume) or dollar (quote volume)"),
                    _f("threshold", _F, False, "what closes a bar: trades, base or quote volume (gold.bars settings)"),
                    _f("exchange", _S, False),
                    _f("symbol", _S, False),
                    _f("date", pa.date32(), False, "UTC day of the bar's trades: bars restart at 00:00 UTC"),
                    _f("bar", pa.int64(), False, "the bar's number in its day, from 0"),
                    _f(
                        "complete",
                        pa.bool_(),
                        False,
                        "true: it reached the threshold; false: the day's last bar, short of it "
                        "(replaced as trades come; a past day's stays so)",
                    ),
                    _f("first_trade_ts", UTC_US, False, "exchange time of its first trade (bar open)"),
                    _f("last_trade_ts", UTC_US, False, "exchange time of its last trade (bar close)"),
                    _f("first_trade_id", pa.int64(), True, "silver id of its first trade (null: none)"),
                    _f("last_trade_id", pa.int64(), True, "silver id of its last trade (null: none)"),
                    _f("open", _F, False, "first trade by (ts, id)"),
                    _f("high", _F, False),
                    _f("low", _F, False),
                    _f("close", _F, False, "last trade by (ts, id)"),
                    _f("volume", _F, False, "base volume, added in trade order"),
                    _f("quote_volume", _F, False, "sum(price * amount), added in trade order"),
                    _f("vwap", _F, False, "quote_volume / volume"),
                    _f("buy_volume", _F, False, "taker-buy base volume"),
                    _f("sell_volume", _F, False, "taker-sell base volume"),
                    _f("trades", pa.int64(), False, "number of trades"),
                ]
            ),
            partition_by=("kind", "exchange", "symbol", "date"),
            key=("kind", "exchange", "symbol", "date", "bar"),
            description=(
                "tick, volume and dollar bars per (exchange, symbol) from silver.trades, restarting at each "
                "UTC midnight; a bar closes at the trade that reaches its threshold (docs/gold.md)"
            ),
        ),
        TableSpec(
            name="gold.completeness",
            schema=pa.schema(
                [
                    _f("exchange", _S, False),
                    _f("symbol", _S, False),
                    _f("channel", _S, False, "the silver table's kind: trades, book, ticker, funding, ..."),
                    _f("date", pa.date32(), False, "the UTC day"),
                    _f("rows", pa.int64(), False, "rows silver holds for the day"),
                    _f("quarantined", pa.int64(), False, "rows of the day silver.quarantine holds (failed validation)"),
                    _f("day_seconds", _F, False, "seconds of the day passed when computed (86400 once it is over)"),
                    _f(
                        "covered_seconds",
                        _F,
                        True,
                        "of those, seconds a writer session streamed the channel, a backfill filled or an archive "
                        "imported; null: no session ever streamed it (nothing says what time is expected)",
                    ),
                    _f("ids_expected", pa.int64(), True, "trades of contiguous-id venues: ids the day should hold"),
                    _f("ids_present", pa.int64(), True, "distinct ids the day holds (null: ids not contiguous)"),
                    _f("sequence_breaks", pa.int64(), False, "book: sequence breaks found (silver.gaps) that day"),
                    _f("gaps_open", pa.int64(), False, "gaps overlapping the day not filled yet"),
                    _f("gaps_filled", pa.int64(), False),
                    _f("gaps_unfillable", pa.int64(), False, "gaps no venue REST can fill"),
                    _f("score", _F, False, "DQ score in [0, 1] (docs/quality.md): 1 only for a complete day"),
                    _f(
                        "complete",
                        pa.bool_(),
                        False,
                        "score = 1, the day is over and its time known covered (covered_seconds)",
                    ),
                    _f("updated_at", UTC_US, False, "when this row was computed"),
                ]
            ),
            partition_by=(),
            key=("exchange", "symbol", "channel", "date"),
            description="completeness ledger: per stream and UTC day, what is there, what is missing, one score",
        ),
        TableSpec(
            name="gold.anomalies",
            schema=pa.schema(
                [
                    _f("ts", UTC_US, False, "when the check could first be made: the end of the 1 m bar"),
                    _f("window_start", UTC_US, False, "the 1 m bar's open time"),
                    _f("date", pa.date32(), False, "UTC date of window_start"),
                    _f("asset", _S, False, "base asset and quote group the venues are compared by, e.g. BTC-USD"),
                    _f("exchange", _S, False),
                    _f("symbol", _S, False),
                    _f("check", _S, False, "divergence, price_spike or volume_spike"),
                    _f("value", _F, False, "divergence: bps from the median; spikes: robust deviations"),
                    _f("threshold", _F, False, "the configured threshold value went beyond"),
                    _f("detail", _S, True, "the numbers behind value"),
                ]
            ),
            partition_by=(),
            key=("check", "exchange", "symbol", "window_start"),
            description="cross-venue divergences and price/volume spikes of 1 m bars; silver keeps every row",
        ),
        TableSpec(
            name="gold.book_snapshots",
            schema=pa.schema(
                [
                    _f("interval", _S, False, "snapshot interval, e.g. 1s"),
                    _f("exchange", _S, False),
                    _f("symbol", _S, False),
                    _f("date", pa.date32(), False, "UTC date of window_start"),
                    _f("window_start", UTC_US, False, "the book as it stood at window_start + interval (exclusive)"),
                    _f("ts", UTC_US, False, "time of the last update applied (the book's as-of time)"),
                    _f("sequence", pa.int64(), True, "exchange sequence of that update"),
                    _f("updates", pa.int64(), False, "book updates applied in the window (0: forward-filled)"),
                    _f("valid", pa.bool_(), False, "false: the book cannot be trusted (see reason)"),
                    _f(
                        "reason",
                        _S,
                        True,
                        "why not valid: no_snapshot, sequence_break, unsequenced or crossed (null when valid)",
                    ),
                    _f("bid_prices", pa.list_(_F), False, "best first; up to depth levels"),
                    _f("bid_sizes", pa.list_(_F), False, "size at each of bid_prices"),
                    _f("ask_prices", pa.list_(_F), False, "best first; up to depth levels"),
                    _f("ask_sizes", pa.list_(_F), False, "size at each of ask_prices"),
                ]
            ),
            partition_by=("interval", "exchange", "symbol", "date"),
            key=("interval", "exchange", "symbol", "window_start"),
            description=(
                "top-N L2 book at the end of each interval, rebuilt from silver.book; "
                "only intervals where the book changed within the depth unless forward-filled"
            ),
        ),
        TableSpec(
            name="gold.quotes",
            schema=pa.schema(
                [
                    _f("interval", _S, False, "tick: every change of the best levels; else the interval, e.g. 1s"),
                    _f("source", _S, False, "book (rebuilt from silver.book) or ticker (silver.ticker)"),
                    _f("exchange", _S, False),
                    _f("symbol", _S, False),
                    _f(
                        "date",
                        pa.date32(),
                        False,
                        "UTC day of the book (a day's last interval ends at the next midnight)",
                    ),
                    _f(
                        "ts",
                        UTC_US,
                        False,
                        "tick: time of the change; else the interval's end (the quote as of just before it)",
                    ),
                    _f("as_of", UTC_US, False, "time of the update the quote comes from"),
                    _f("sequence", pa.int64(), True, "exchange sequence of that update"),
                    _f("bid", _F, True, "best bid (null: that side is empty)"),
                    _f("bid_size", _F, True),
                    _f("ask", _F, True, "best ask (null: that side is empty)"),
                    _f("ask_size", _F, True),
                    _f("mid", _F, True, "(bid + ask) / 2"),
                    _f("spread_bps", _F, True, "(ask - bid) / mid * 10^4"),
                    _f("micro_price", _F, True, "(bid * ask_size + ask * bid_size) / (bid_size + ask_size)"),
                    _f("valid", pa.bool_(), False, "false: from a book that cannot be trusted (gold.book_snapshots)"),
                ]
            ),
            partition_by=("interval", "exchange", "symbol", "date"),
            key=("interval", "source", "exchange", "symbol", "ts", "sequence"),
            description="best bid/ask at every change and at each interval, with mid, spread and micro-price",
        ),
        TableSpec(
            name="gold.microstructure",
            schema=pa.schema(
                [
                    _f("interval", _S, False, "statistics interval, e.g. 1m"),
                    _f("exchange", _S, False),
                    _f("symbol", _S, False),
                    _f("date", pa.date32(), False, "UTC date of window_start"),
                    _f("window_start", UTC_US, False, "interval start, inclusive"),
                    _f("twa_spread_bps", _F, True, "time-weighted mean of the quoted spread (bps) over the interval"),
                    _f("depth_bid_10bps", _F, True, "bid size priced within 10 bps of the mid at the interval's end"),
                    _f("depth_ask_10bps", _F, True, "ask size priced within 10 bps of the mid at the interval's end"),
                    _f("depth_bid_50bps", _F, True, "bid size priced within 50 bps of the mid at the interval's end"),
                    _f("depth_ask_50bps", _F, True, "ask size priced within 50 bps of the mid at the interval's end"),
                    _f("ofi", _F, True, "order-flow imbalance (Cont, Kukanov & Stoikov 2014), base units"),
                    _f("realized_variance", _F, True, "sum of squared log changes of the mid"),
                    _f("quote_updates", pa.int64(), False, "changes of the best levels in the interval"),
                    _f("trade_imbalance", _F, True, "(buy - sell) / (buy + sell) taker volume (null: no trade)"),
                    _f("trades", pa.int64(), False, "trades in the interval"),
                    _f("valid", pa.bool_(), False, "false: the book was not valid all through the interval"),
                ]
            ),
            partition_by=("interval", "exchange", "symbol", "date"),
            key=("interval", "exchange", "symbol", "window_start"),
            description="microstructure statistics per interval from the rebuilt book and the trades (docs/gold.md)",
        ),
    )
}

META: dict[str, TableSpec] = {
    "meta.archive_manifest": TableSpec(
        name="meta.archive_manifest",
        schema=pa.schema(
            [
                _f("file", _S, False, "archive path below the base URL"),
                _f("url", _S, False),
                _f("checksum", _S, False, "sha256 from the .CHECKSUM file, verified before import"),
                _f("table", _S, False, "bronze table the rows went to"),
                _f("rows", pa.int64(), False),
                _f("imported_at", UTC_US, False),
            ]
        ),
        partition_by=(),
        key=("file",),
        description="every imported Binance public-data archive (re-runs skip files with the same checksum)",
    ),
    "meta.tags": TableSpec(
        name="meta.tags",
        schema=pa.schema(
            [
                _f("name", _S, False, "tag name, e.g. backtest-2026-11"),
                _f("table", _S, False, "table the tag pins"),
                _f("version", pa.int64(), False, "Delta version of that table"),
                _f("created_at", UTC_US, False),
                _f("note", _S, True),
            ]
        ),
        partition_by=(),
        key=("name", "table"),
        description="named versions pinned for reproducible reads (Lakehouse.tag)",
    ),
    "meta.api_keys": TableSpec(
        name="meta.api_keys",
        schema=pa.schema(
            [
                _f("id", _S, False, "public key id (the key's second part: lhk_<id>_<secret>)"),
                _f("role", _S, False, "reader, operator or admin"),
                _f("hash", _S, False, "argon2id hash of the whole key, salted (PHC string); never the key"),
                _f("created_at", UTC_US, False),
                _f("revoked_at", UTC_US, True, "when revoked; null = valid"),
                _f("note", _S, True, "who or what the key is for"),
            ]
        ),
        partition_by=(),
        key=("id",),
        description="API keys of the query service (lakehouse keys); not visible to SQL over HTTP",
    ),
    "meta.audit": TableSpec(
        name="meta.audit",
        schema=pa.schema(
            [
                _f("at", UTC_US, False, "when the request arrived"),
                _f("key_id", _S, True, "API key id; null = no or unknown key"),
                _f("role", _S, True),
                _f("method", _S, False),
                _f("route", _S, False, "route template, e.g. /tables/{name}"),
                _f("sql_hash", _S, True, "sha256 of the SQL text (first 16 hex digits); the text is never kept"),
                _f("rows", pa.int64(), True, "rows returned"),
                _f("bytes", pa.int64(), True, "response bytes"),
                _f("duration_ms", pa.float64(), False),
                _f("status", pa.int32(), False, "HTTP status"),
                _f("client", _S, True, "client address"),
                _f("date", pa.date32(), False, "UTC date of at (partition: retention drops whole days)"),
            ]
        ),
        partition_by=("date",),
        key=(),
        description="every request to the query service (lakehouse audit); not visible to SQL over HTTP",
    ),
}

TABLES: dict[str, TableSpec] = {**BRONZE, SESSIONS.name: SESSIONS, **SILVER, **GOLD, **META}

# the exchange-time column reads filter on (start/end) and replay orders by
TIME_COLUMN: dict[str, str] = {
    **{name: "ts" for name in (*BRONZE, *SILVER)},
    "bronze.dead_letter": "received_at",
    "bronze.sessions": "at",
    "silver.quarantine": "detected_at",
    "silver.gaps": "detected_at",
    "silver.dq_report": "run_at",
    "gold.ohlcv": "window_start",
    "gold.funding": "funding_time",
    "gold.info_bars": "last_trade_ts",  # a bar is known when its last trade is
    "gold.completeness": "updated_at",
    "gold.anomalies": "ts",
    "gold.book_snapshots": "window_start",
    "gold.quotes": "ts",
    "gold.microstructure": "window_start",
    "meta.tags": "created_at",
    "meta.archive_manifest": "imported_at",
    "meta.api_keys": "created_at",
    "meta.audit": "at",
}


def table_spec(name: str) -> TableSpec:
    """The spec of ``layer.kind``; a clear error naming the known tables otherwise."""
    try:
        return TABLES[name]
    except KeyError:
        raise _unknown(name) from None


def table_name(name: str) -> TableName:
    """``name`` (a string from a user: CLI, config, replay's short names) as a :data:`TableName`,
    checked like :func:`table_spec`: :class:`UnknownTable` naming the known tables otherwise."""
    if _is_table_name(name):
        return name
    raise _unknown(name)


def _is_table_name(name: str) -> TypeIs[TableName]:
    return name in TABLES


def _unknown(name: str) -> UnknownTable:
    return UnknownTable(f"unknown table {name!r}; known tables: {', '.join(sorted(TABLES))}")


def markdown() -> str:
    """Every table's columns as Markdown (docs/tables.md is this text; a test keeps them equal)."""
    lines = ["# Tables", "", "Generated from `crypto_lakehouse/schemas.py` (`python -m crypto_lakehouse.schemas`).", ""]
    for spec in TABLES.values():
        lines += [f"## `{spec.name}`", "", spec.description + ".", ""]
        lines += [f"Partitioned by `{', '.join(spec.partition_by)}`." if spec.partition_by else "Not partitioned."]
        if spec.key:
            lines += [f"Natural key: `{', '.join(spec.key)}`."]
        lines += ["", "| column | type | null | meaning |", "| --- | --- | --- | --- |"]
        for f in spec.schema:
            doc = (f.metadata or {}).get(b"doc", b"").decode()
            lines.append(f"| `{f.name}` | {f.type} | {'yes' if f.nullable else 'no'} | {doc} |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown(), end="")
