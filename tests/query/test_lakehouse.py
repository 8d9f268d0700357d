"""The Lakehouse read API: scans, SQL, time travel with clear errors, tags that stay
byte-identical, and event-ordered replay."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest

from crypto_lakehouse import Lakehouse, LakehouseError
from crypto_lakehouse.errors import InvalidArgument
from crypto_lakehouse.schemas import BRONZE, SILVER, table_spec
from crypto_lakehouse.storage import Catalog
from crypto_lakehouse.transform.gold import build_gold

T0 = datetime(2026, 11, 20, tzinfo=UTC)


def _trades(first_id: int, n: int, start: datetime, symbols=("BTC-USDT-PERP", "ETH-USDT-PERP")) -> pl.DataFrame:
    rows = []
    for k in range(n):
        for j, sym in enumerate(symbols):
            ts = start + timedelta(milliseconds=250 * k)
            rows.append(
                {
                    "exchange": "BINANCE_FUTURES",
                    "symbol": sym,
                    "id": first_id + k + j * 10_000_000,
                    "ts": ts,
                    "receipt_ts": ts,
                    "side": "buy" if k % 2 else "sell",
                    "price": 100.0 + j * 10 + (k % 7) * 0.5,
                    "amount": 0.001 * (1 + k % 5),
                    "source": "stream",
                }
            )
    df = pl.DataFrame(rows).with_columns(pl.col("ts", "receipt_ts").dt.cast_time_unit("us").dt.convert_time_zone("UTC"))
    text_id = pl.col("id").cast(pl.String)
    return df.with_columns(pl.col("ts").dt.date().alias("date"), text_id.alias("trade_id"), text_id.alias("trade_key"))


def _append(catalog: Catalog, df: pl.DataFrame) -> None:
    spec = SILVER["silver.trades"]
    catalog.append("silver.trades", df.select(spec.schema.names).to_arrow().cast(spec.schema))


@pytest.fixture
def lake(tmp_path: Path) -> Lakehouse:
    catalog = Catalog(tmp_path)
    _append(catalog, _trades(1, 2_400, T0))  # 10 minutes, 2 symbols
    build_gold(catalog, intervals=[timedelta(minutes=1), timedelta(minutes=5)])
    return Lakehouse(tmp_path)


def test_scan_filters_by_symbol_time_and_columns(lake: Lakehouse) -> None:
    df = lake.scan(
        "silver.trades",
        symbols=["ETH-USDT-PERP"],
        start=T0 + timedelta(minutes=2),
        end="2026-11-20T00:03:00Z",
        columns=["symbol", "ts", "price"],
    ).collect()
    assert df.columns == ["symbol", "ts", "price"]
    assert set(df["symbol"]) == {"ETH-USDT-PERP"} and df.height == 240
    assert df["ts"].min() == T0 + timedelta(minutes=2) and df["ts"].max() < T0 + timedelta(minutes=3)
    assert isinstance(lake.read("gold.ohlcv", exchange="binance_futures").to_pandas().shape, tuple)
    with pytest.raises(LakehouseError, match="unknown table"):
        lake.scan("silver.trade")
    with pytest.raises(LakehouseError, match="no column"):
        lake.scan("silver.trades", columns=["nope"])


def test_sql_sees_every_table_and_bad_sql_is_a_clear_error(lake: Lakehouse) -> None:
    got = lake.sql("select symbol, count(*) as n, max(price) as hi from silver.trades group by 1 order by 1")
    expected = (
        lake.read("silver.trades")
        .group_by("symbol")
        .agg(pl.len().alias("n"), pl.col("price").max().alias("hi"))
        .sort("symbol")
    )
    assert got["n"].to_list() == expected["n"].to_list() and got["hi"].to_list() == expected["hi"].to_list()
    bars = lake.sql("select count(*) as n from gold.ohlcv where interval = '1m'")
    assert bars["n"][0] == 20  # 10 minutes x 2 symbols
    with pytest.raises(LakehouseError, match="(?i)parser error|syntax"):
        lake.sql("selec * from silver.trades")
    with pytest.raises(LakehouseError, match="(?i)does not exist|not found"):
        lake.sql("select * from silver.nothing")


def test_time_travel_by_version_time_and_clear_errors(lake: Lakehouse) -> None:
    before = lake.read("silver.trades").height
    t_between = datetime.now(UTC)
    time.sleep(0.05)
    _append(lake.catalog, _trades(100_000, 10, T0 + timedelta(hours=1)))
    assert lake.read("silver.trades").height == before + 20
    assert lake.read("silver.trades", as_of=0).height == before
    assert lake.read("silver.trades", as_of=t_between).height == before
    assert lake.read("silver.trades", as_of=t_between.isoformat()).height == before
    assert lake.sql("select count(*) as n from silver.trades", as_of=0)["n"][0] == before
    with pytest.raises(LakehouseError, match="version 7 does not exist"):
        lake.read("silver.trades", as_of=7)
    with pytest.raises(LakehouseError, match="did not exist at"):
        lake.read("silver.trades", as_of=datetime(2020, 1, 1, tzinfo=UTC))
    with pytest.raises(LakehouseError, match="neither a time nor a tag"):
        lake.read("silver.trades", as_of="no-such-tag")
    assert lake.history("silver.trades")["version"].to_list() == [1, 0]


def test_a_tag_reads_byte_identical_after_appends_and_promotions(lake: Lakehouse) -> None:
    lake.tag("bt-1", note="backtest baseline")
    pinned_trades = lake.read("silver.trades", as_of="bt-1").sort("symbol", "id")
    pinned_bars = lake.read("gold.ohlcv", as_of="bt-1").sort("interval", "symbol", "window_start")
    pinned_sql = lake.sql("select * from gold.ohlcv order by interval, symbol, window_start", as_of="bt-1")
    # later: more trades (a late one into an old window, and new ones), gold rebuilt
    _append(lake.catalog, _trades(50_000, 600, T0 + timedelta(minutes=5)))
    build_gold(lake.catalog, intervals=[timedelta(minutes=1), timedelta(minutes=5)])
    assert lake.read("silver.trades").height > pinned_trades.height
    again_trades = lake.read("silver.trades", as_of="bt-1").sort("symbol", "id")
    again_bars = lake.read("gold.ohlcv", as_of="bt-1").sort("interval", "symbol", "window_start")
    assert again_trades.equals(pinned_trades) and again_bars.equals(pinned_bars)
    assert lake.sql("select * from gold.ohlcv order by interval, symbol, window_start", as_of="bt-1").equals(pinned_sql)
    assert not lake.read("gold.ohlcv").sort("interval", "symbol", "window_start").equals(pinned_bars)
    assert set(lake.tags()["table"]) == {"silver.trades", "gold.ohlcv"}
    with pytest.raises(LakehouseError, match="exists already"):
        lake.tag("bt-1")
    lake.untag("bt-1")
    assert lake.tags().is_empty()
    with pytest.raises(LakehouseError, match="no tag"):
        lake.untag("bt-1")


def test_replay_merges_tables_in_exchange_time_order_in_bounded_chunks(lake: Lakehouse) -> None:
    start, end = T0 + timedelta(minutes=1), T0 + timedelta(minutes=4)
    batches = list(
        lake.replay_batches(
            ["silver.trades", "gold.ohlcv"],
            start=start,
            end=end,
            symbols=["BTC-USDT-PERP", "ETH-USDT-PERP"],
            chunk=timedelta(seconds=30),
        )
    )
    assert all(isinstance(b, pa.RecordBatch) for b in batches) and len(batches) >= 6  # one chunk at a time
    events = pl.from_arrow(pa.Table.from_batches(batches))
    assert events.height == 2 * 720 + 2 * 3  # 3 minutes of trades for 2 symbols + their 1m bars (no 5m bar starts)
    keys = events.select("event_ts", (pl.col("table") == "gold.ohlcv").cast(pl.Int8).alias("rank"), "symbol", "id")
    assert keys.equals(keys.sort("event_ts", "rank", "symbol", "id", nulls_last=True))  # the documented tie-break
    first = next(lake.replay(["trades"], start=start, end=end))
    assert first["table"] == "silver.trades" and first["event_ts"] == start and first["symbol"] == "BTC-USDT-PERP"


def test_query_cli_formats_and_errors(lake: Lakehouse, tmp_path: Path) -> None:
    root = lake.catalog.root
    cli = [sys.executable, "-m", "crypto_lakehouse.cli"]
    res = subprocess.run(
        [*cli, "query", "select count(*) as n from silver.trades", "--format", "json", "--root", root],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)[0]["n"] == 4_800
    out = tmp_path / "bars.parquet"
    res = subprocess.run(
        [*cli, "query", "select * from gold.ohlcv", "--format", "parquet", "--output", str(out), "--root", root],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0 and pl.read_parquet(out).height == 24
    bad = subprocess.run([*cli, "query", "selec 1", "--root", root], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "Parser Error" in bad.stderr and "Traceback" not in bad.stderr
    tagged = subprocess.run([*cli, "tag", "create", "v1", "--root", root], capture_output=True, text=True, timeout=60)
    assert tagged.returncode == 0, tagged.stderr
    listed = subprocess.run([*cli, "tag", "list", "--root", root], capture_output=True, text=True, timeout=60)
    assert "v1" in listed.stdout
    for cmd, needle in ((["tables"], "silver.trades"), (["history", "silver.trades"], "WRITE")):
        res = subprocess.run([*cli, *cmd, "--root", root], capture_output=True, text=True, timeout=60)
        assert res.returncode == 0 and needle in res.stdout, res.stderr


def test_a_default_tag_leaves_bronze_out_and_a_named_one_pins_it(lake: Lakehouse) -> None:
    lake.catalog.append("bronze.trades", BRONZE["bronze.trades"].schema.empty_table())
    lake.tag("all")  # a bronze tag would stop bronze's log clean-up: only when asked for
    assert set(lake.tags()["table"]) == {"silver.trades", "gold.ohlcv"}
    lake.tag("raw", tables=["bronze.trades"])
    assert lake.tags().filter(pl.col("name") == "raw")["table"].to_list() == ["bronze.trades"]


def test_a_tag_cannot_be_named_like_a_time_or_a_version_and_an_existing_one_wins(lake: Lakehouse) -> None:
    """as_of takes a version, a time or a tag name: a tag named like a date was accepted and then
    read as that time (another version). Such names are refused; a tag made before the rule
    (written to meta.tags directly here) still resolves as the tag, in reads and in SQL."""
    for name in ("2026-11-24", "2026-11-24T10:00:00Z", "20261124", "2026-W47", "12", "-3"):
        with pytest.raises(LakehouseError, match="reads as a (time|version)"):
            lake.tag(name)
    assert lake.tags().is_empty()
    lake.tag("bt-2026-11-24")  # a date inside a name is fine
    assert lake.read("silver.trades", as_of="bt-2026-11-24").height == 4_800
    # a legacy date-like tag pinning version 0, then a later append: the tag wins over the time
    spec = table_spec("meta.tags")
    legacy = {"name": "2099-01-01", "table": "silver.trades", "version": 0, "created_at": datetime.now(UTC)}
    lake.catalog.append("meta.tags", pa.Table.from_pylist([{**legacy, "note": None}], schema=spec.schema))
    _append(lake.catalog, _trades(100_000, 10, T0 + timedelta(hours=1)))
    assert lake.read("silver.trades").height == 4_820
    assert lake.read("silver.trades", as_of="2099-01-01").height == 4_800  # the tag, not "the latest at 2099"
    assert lake.sql("select count(*) as n from silver.trades", as_of="2099-01-01")["n"][0] == 4_800
    assert lake.read("silver.trades", as_of="2099-01-02").height == 4_820  # no such tag: a time


def test_sql_time_travel_resolves_only_the_tables_the_query_reads(tmp_path: Path) -> None:
    """sql(as_of=<time>) resolved every table: once a younger table existed (gold, meta.tags) or
    bronze had cleaned up its log (6 h retention), every query at an earlier time failed. Now
    only the tables the query references are resolved; a referenced table that did not exist
    then, or whose log of then is gone, is a clear error naming it."""
    catalog = Catalog(tmp_path)
    bronze = BRONZE["bronze.trades"].schema
    for _ in range(2):  # bronze is older than the time asked for ...
        catalog.append("bronze.trades", bronze.empty_table())
    _append(catalog, _trades(1, 100, T0))  # silver v0
    time.sleep(0.05)
    then = datetime.now(UTC)
    time.sleep(0.05)
    _append(catalog, _trades(1_000, 100, T0 + timedelta(hours=1)))  # silver v1
    build_gold(catalog, intervals=[timedelta(minutes=1)])  # gold and meta.tags are younger
    lh = Lakehouse(tmp_path)
    lh.tag("later")
    for _ in range(2):  # ... and its log from before that time is cleaned up, as bronze's 6 h retention does
        catalog.append("bronze.trades", bronze.empty_table())
    catalog.open("bronze.trades").create_checkpoint()
    for v in range(3):
        (tmp_path / "bronze" / "trades" / "_delta_log" / f"{v:020d}.json").unlink()

    assert lh.sql("select count(*) as n from silver.trades", as_of=then)["n"][0] == 200
    assert lh.sql("select count(*) as n from silver.trades", as_of=0)["n"][0] == 200
    # references in any form DuckDB accepts; names inside strings and comments are not references
    query = """with t as (select * from "silver"."trades") -- not gold.ohlcv
               select count(*) as n from t join SILVER . TRADES s using (id, symbol) where 'gold.ohlcv' <> ''"""
    assert lh.sql(query, as_of=then)["n"][0] == 200
    with pytest.raises(LakehouseError, match=r"gold\.ohlcv did not exist at"):
        lh.sql("select * from silver.trades join gold.ohlcv using (symbol)", as_of=then)
    with pytest.raises(LakehouseError, match=r"bronze\.trades .*log.*cleaned up"):
        lh.sql("select count(*) from bronze.trades", as_of=then)
    with pytest.raises(LakehouseError, match=r"tag 'later' does not pin bronze\.trades"):
        lh.sql("select count(*) from bronze.trades", as_of="later")
    assert lh.sql("select count(*) as n from gold.ohlcv", as_of="later")["n"][0] > 0


def test_replay_emits_a_bar_at_its_window_end_after_every_trade_inside_it(lake: Lakehouse) -> None:
    """A bar's high and close are known only once its window has closed: replay emitted gold.ohlcv
    bars at window_start, so a backtest saw them before the trades that made them. A bar's event
    time is window_start + interval, for the order and for replay's start/end."""
    start, end = T0, T0 + timedelta(minutes=10, milliseconds=1)  # the bars ending at 10:00 too
    events = pl.from_arrow(
        pa.Table.from_batches(
            lake.replay_batches(["gold.ohlcv", "silver.trades"], start=start, end=end, chunk=timedelta(seconds=45))
        )
    ).with_row_index("pos")
    bars = events.filter(pl.col("table") == "gold.ohlcv")
    trades = events.filter(pl.col("table") == "silver.trades")
    assert bars.height == 2 * (10 + 2) and trades.height == 4_800  # every 1m and 5m bar, every trade
    length = pl.col("interval").replace_strict({"1m": timedelta(minutes=1), "5m": timedelta(minutes=5)})
    assert bars.filter(pl.col("event_ts") != pl.col("window_start") + length).is_empty()
    # each bar after every trade inside its window (same symbol), and before every later trade
    last_inside = (
        bars.select("pos", "symbol", "window_start", (pl.col("window_start") + length).alias("window_end"))
        .join(trades.select("symbol", "ts", pl.col("pos").alias("trade_pos")), on="symbol")
        .filter((pl.col("ts") >= pl.col("window_start")) & (pl.col("ts") < pl.col("window_end")))
        .group_by("pos")
        .agg(pl.col("trade_pos").max(), pl.len().alias("n"))
    )
    assert last_inside.height == bars.height and (last_inside["n"] > 0).all()
    assert (last_inside["trade_pos"] < last_inside["pos"]).all()
    # start/end select bars by their end: [1m, 4m) holds the 1m bars that end at 1m, 2m and 3m
    window = pl.from_arrow(
        pa.Table.from_batches(
            lake.replay_batches(["gold.ohlcv"], start=T0 + timedelta(minutes=1), end=T0 + timedelta(minutes=4))
        )
    )
    assert sorted(set(window["window_start"])) == [T0, T0 + timedelta(minutes=1), T0 + timedelta(minutes=2)]
    assert set(window["interval"]) == {"1m"}


def test_a_file_url_root_reads_like_its_path(lake: Lakehouse, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``Lakehouse("file:///abs")`` is ``Lakehouse("/abs")``: scans (a reused table sees later
    commits), SQL, time travel, tags and replay; nothing under the working directory."""
    monkeypatch.chdir(tmp_path)
    url = Lakehouse(f"file://{lake.catalog.root}")
    assert url.catalog.root == lake.catalog.root
    assert url.read("silver.trades").height == 4_800
    _append(lake.catalog, _trades(100_000, 10, T0 + timedelta(hours=1)))
    assert url.read("silver.trades").height == 4_820  # the reused table saw the new commit
    assert url.sql("select count(*) as n from silver.trades", as_of=0)["n"][0] == 4_800
    url.tag("via-url")
    assert lake.read("silver.trades", as_of="via-url").height == 4_820
    assert sum(b.num_rows for b in url.replay_batches(["gold.ohlcv"], start=T0, end=T0 + timedelta(hours=1))) == 24
    assert not any(p.name.startswith("file:") for p in tmp_path.iterdir())


def test_replay_emits_a_monthly_exchange_candle_at_its_calendar_month_end(tmp_path: Path) -> None:
    """Gold keeps the exchanges' monthly candles (interval 1M): replay failed on them ("not a
    fixed length"); a month's bar is known when its calendar month ends (31 or 28 days on)."""
    catalog = Catalog(tmp_path)
    spec = table_spec("gold.ohlcv")
    months = [datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC)]
    bars = pl.DataFrame(
        {
            "source": "exchange",
            "interval": "1M",
            "exchange": "BINANCE",
            "symbol": "BTC-USDT",
            "window_start": months,
            "open": [1.0, 2.0, 3.0],
            "high": [1.0, 2.0, 3.0],
            "low": [1.0, 2.0, 3.0],
            "close": [1.0, 2.0, 3.0],
            "volume": [1.0, 2.0, 3.0],
        }
    ).with_columns(pl.col("window_start").dt.cast_time_unit("us"))
    for name in spec.schema.names:
        if name not in bars.columns:
            bars = bars.with_columns(pl.lit(None).alias(name))
    catalog.append("gold.ohlcv", bars.select(spec.schema.names).to_arrow().cast(spec.schema))
    lake = Lakehouse(tmp_path)
    out = pl.from_arrow(
        pa.Table.from_batches(
            lake.replay_batches(
                ["gold.ohlcv"], start=datetime(2026, 2, 1, tzinfo=UTC), end=datetime(2026, 4, 1, tzinfo=UTC)
            )
        )
    )
    # January ends Feb 1 and February ends Mar 1 (28 days); March ends Apr 1, outside [start, end)
    assert out["window_start"].to_list() == months[:2]
    assert out["event_ts"].to_list() == [months[1], months[2]]


def test_symbols_and_exchanges_are_normalised_and_unknown_ones_are_errors_naming_what_exists(
    lake: Lakehouse,
) -> None:
    exact = lake.read("silver.trades", symbols=["BTC-USDT-PERP"])
    assert exact.height == 2_400
    # the form a user types is the stored one
    assert lake.read("silver.trades", symbols=[" btc-usdt-perp"], exchange="binance_futures").equals(exact)
    assert lake.read("silver.trades", symbols="btc-usdt-perp").equals(exact)  # one symbol, not its letters
    with pytest.raises(InvalidArgument, match="silver.trades holds no symbol BTCUSDT; symbols there: BTC-USDT-PERP, E"):
        lake.read("silver.trades", symbols=["BTCUSDT"])
    with pytest.raises(InvalidArgument, match="holds no exchange BINANCE; exchanges there: BINANCE_FUTURES"):
        lake.scan("silver.trades", exchange="binance")
    # gold is partitioned by symbol too
    with pytest.raises(InvalidArgument, match="gold.ohlcv holds no symbol SOL-USDT-PERP"):
        lake.read("gold.ohlcv", symbols=["SOL-USDT-PERP"])


def test_an_end_before_its_start_is_an_error_on_every_read(lake: Lakehouse) -> None:
    later, earlier = T0 + timedelta(minutes=5), T0
    for call in (
        lambda: lake.read("silver.trades", start=later, end=earlier),
        lambda: lake.scan("silver.trades", start="2026-11-20T00:05:00Z", end="2026-11-20"),
        lambda: next(iter(lake.replay(["trades"], start=later, end=earlier))),
    ):
        with pytest.raises(InvalidArgument, match="is not after start"):
            call()
    with pytest.raises(InvalidArgument, match="start 'soon' is not a time"):
        lake.read("silver.trades", start="soon")


def test_gold_bars_is_one_row_per_window_where_gold_ohlcv_also_holds_the_exchanges_candles(lake: Lakehouse) -> None:
    """A query of gold.ohlcv that forgets `source` counts each window twice once the exchange's
    own candles are in; gold.bars is the trade-built bars alone, without the column."""
    ours = lake.read("gold.ohlcv", symbols=["BTC-USDT-PERP"]).filter(pl.col("interval") == "1m")
    theirs = ours.with_columns(pl.lit("exchange").alias("source"))
    spec = table_spec("gold.ohlcv")
    lake.catalog.append("gold.ohlcv", theirs.select(spec.schema.names).to_arrow().cast(spec.schema))
    q = "select count(*) as n from {} where interval = '1m' and symbol = 'BTC-USDT-PERP'"
    assert lake.sql(q.format("gold.ohlcv"))["n"][0] == 20  # both sources: each window twice
    assert lake.sql(q.format("gold.bars"))["n"][0] == 10
    bars = lake.sql("select * from gold.bars where interval = '1m' order by symbol, window_start")
    assert "source" not in bars.columns and bars.height == 20
    joined = lake.sql("select count(*) as n from gold.bars b join silver.trades t on t.symbol = b.symbol limit 1")
    assert joined["n"][0] > 0  # a view and a table in one query


def test_version_is_the_latest_commit_and_none_before_the_table_exists(tmp_path: Path) -> None:
    lh = Lakehouse(tmp_path)
    assert lh.version("silver.trades") is None
    _append(lh.catalog, _trades(1, 10, T0))
    first = lh.version("silver.trades")
    assert first is not None and lh.history("silver.trades")["version"][0] == first
    _append(Catalog(tmp_path), _trades(11, 10, T0))  # committed by another writer: seen on the next ask
    assert lh.version("silver.trades") == first + 1


def test_reading_as_of_many_versions_keeps_only_the_last_ones_loaded(tmp_path: Path) -> None:
    """A long-running reader (the query service) asked as of ever new versions keeps a bounded
    number of them loaded (each holds its table's file list: old code kept every one), and a
    version it let go still reads right when asked again."""
    from crypto_lakehouse.query import lakehouse as module

    lh = Lakehouse(tmp_path)
    for k in range(module._PINNED_KEPT + 8):
        _append(lh.catalog, _trades(1 + 10 * k, 10, T0, symbols=("BTC-USDT-PERP",)))
    for version in range(module._PINNED_KEPT + 8):
        assert lh.read("silver.trades", as_of=version).height == 10 * (version + 1)
    assert len(lh._pinned) == module._PINNED_KEPT
    assert lh.read("silver.trades", as_of=0).height == 10  # evicted, loaded again
    assert lh.read("silver.trades").height == 10 * (module._PINNED_KEPT + 8)
