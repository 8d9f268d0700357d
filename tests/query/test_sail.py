"""The `sql` extra: Sail (a Spark Connect server in Rust) reads the lakehouse's Delta tables with
Spark's API, and agrees with Polars (docs/reading.md, "Distributed SQL: Sail").

A small lake is built with the real jobs (bronze trades of two symbols in two commits, promote
silver after each, then gold), a Sail server runs in this process on a free port, and the thin
PySpark client (no JVM) reads it through ``format("delta")``, ``versionAsOf`` and Spark SQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl
import pytest

from crypto_lakehouse import jobs
from crypto_lakehouse.config import load_settings
from crypto_lakehouse.storage import Catalog
from tests.transform.helpers import write_bronze

pytestmark = pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas:FutureWarning")

T0 = datetime(2026, 11, 20, 12, tzinfo=UTC)
REL = 1e-12  # Sail was seen 1 ulp off the stored double (gold vwap)


def _trades(ids: range, symbol: str) -> list[dict]:
    return [
        {
            "exchange": "BINANCE",
            "symbol": symbol,
            "ts": T0 + timedelta(seconds=i),
            "receipt_ts": T0 + timedelta(seconds=i, milliseconds=5),
            "id": str(i),
            "side": "buy" if i % 2 else "sell",
            "price": f"{100 + i % 7}.{i % 10}",
            "amount": f"0.{i % 9 + 1}5",
        }
        for i in ids
    ]


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A lake built by the jobs; the silver version after the first promote and its row count."""
    root = tmp_path_factory.mktemp("sail-lake")
    settings = load_settings(root=str(root), silver={"backfill": False})
    catalog = Catalog(root)
    write_bronze(catalog, "bronze.trades", _trades(range(1, 101), "BTC-USDT") + _trades(range(1, 41), "ETH-USDT"))
    jobs.promote_silver(settings)
    first = catalog.open("silver.trades")
    first_version, first_rows = first.version(), pl.read_delta(catalog.uri("silver.trades")).height
    write_bronze(catalog, "bronze.trades", _trades(range(101, 301), "BTC-USDT"))
    jobs.promote_silver(settings)
    jobs.promote_gold(settings)
    return {"catalog": catalog, "first_version": first_version, "first_rows": first_rows}


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    from pysail.spark import SparkConnectServer
    from pyspark.sql import SparkSession

    server = SparkConnectServer(ip="127.0.0.1", port=0)
    server.start(background=True)
    try:
        address = server.listening_address
        assert address is not None
        host, port = address
        session = SparkSession.builder.remote(f"sc://{host}:{port}").getOrCreate()
        try:
            yield session
        finally:
            session.stop()
    finally:
        server.stop()


def test_silver_trades_through_format_delta_equal_polars(lake: dict[str, Any], spark: Any) -> None:
    uri = lake["catalog"].uri("silver.trades")
    expected = pl.read_delta(uri).group_by("symbol").agg(pl.len().alias("n"), pl.col("amount").sum().alias("amount"))
    df = spark.read.format("delta").load(uri)
    assert df.count() == expected["n"].sum() == 340
    got = {r["symbol"]: (r["n"], r["amount"]) for r in df.groupBy("symbol").agg({"*": "count", "amount": "sum"})
           .withColumnsRenamed({"count(1)": "n", "sum(amount)": "amount"}).collect()}  # fmt: skip
    assert set(got) == set(expected["symbol"])
    for row in expected.iter_rows(named=True):
        n, amount = got[row["symbol"]]
        assert n == row["n"]
        assert float(amount) == pytest.approx(float(row["amount"]), rel=REL)


def test_spark_sql_over_gold_ohlcv_equals_polars(lake: dict[str, Any], spark: Any) -> None:
    uri = lake["catalog"].uri("gold.ohlcv")
    spark.read.format("delta").load(uri).createOrReplaceTempView("ohlcv")
    got = spark.sql(
        "select symbol, `interval`, count(*) as n, sum(volume) as volume, max(high) as high, avg(vwap) as vwap "
        "from ohlcv group by symbol, `interval` order by symbol, `interval`"
    ).collect()
    expected = (
        pl.read_delta(uri)
        .group_by("symbol", "interval")
        .agg(pl.len().alias("n"), pl.col("volume").sum(), pl.col("high").max(), pl.col("vwap").mean())
        .sort("symbol", "interval")
    )
    assert expected.height > 0
    assert [(r["symbol"], r["interval"], r["n"]) for r in got] == list(
        zip(expected["symbol"], expected["interval"], expected["n"], strict=True)
    )
    for r, e in zip(got, expected.iter_rows(named=True), strict=True):
        for col in ("volume", "high", "vwap"):
            assert float(r[col]) == pytest.approx(float(e[col]), rel=REL), (r, col)


def test_version_as_of_reads_the_earlier_silver_version(lake: dict[str, Any], spark: Any) -> None:
    uri = lake["catalog"].uri("silver.trades")
    old = spark.read.format("delta").option("versionAsOf", lake["first_version"]).load(uri)
    assert old.count() == lake["first_rows"] == 140
    assert spark.read.format("delta").load(uri).count() == 340
