"""``Lakehouse.to_dask``: the rows and types of ``scan`` for the same arguments (time windows across
a day boundary, symbols, exchange, columns, as_of a version, a time or a tag), only the files that
can hold them read, on S3 too, and on a cluster of worker processes."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import polars as pl
import pytest

from crypto_lakehouse import Lakehouse, LakehouseError
from crypto_lakehouse.config import load_settings
from crypto_lakehouse.errors import InvalidArgument, TagNotFound, VersionNotFound
from crypto_lakehouse.schemas import table_spec
from crypto_lakehouse.storage import Catalog
from crypto_lakehouse.transform.gold import build_gold
from tests.query.test_lakehouse import _append, _trades
from tests.storage.test_s3 import s3_options  # noqa: F401 - the moto S3 server fixture

MIDNIGHT = datetime(2026, 11, 21, tzinfo=UTC)
T0 = MIDNIGHT - timedelta(minutes=5)  # trades from 23:55 to 00:05: two date partitions
SYMBOLS = ("BTC-USDT-PERP", "ETH-USDT-PERP", "SOL-USDT-PERP")


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> tuple[Lakehouse, datetime]:
    """silver.trades of 3 symbols over midnight in 3 commits (the first two tagged ``bt-1``),
    gold.ohlcv built from them; returns the lakehouse and a time between commits 0 and 1."""
    root = tmp_path_factory.mktemp("lake")
    catalog = Catalog(root)
    _append(catalog, _trades(1, 1_200, T0, symbols=SYMBOLS))  # v0: 23:55-00:00
    time.sleep(0.05)
    between = datetime.now(UTC)
    time.sleep(0.05)
    _append(catalog, _trades(1_201, 1_200, MIDNIGHT, symbols=SYMBOLS))  # v1: 00:00-00:05
    lh = Lakehouse(root)
    lh.tag("bt-1", tables=["silver.trades"])
    _append(catalog, _trades(5_000, 40, T0 + timedelta(minutes=2), symbols=SYMBOLS[:2]))  # v2: late rows, day 1
    build_gold(catalog, intervals=[timedelta(minutes=1)])
    return lh, between


def _as_scan(lh: Lakehouse, table: str, **args: Any) -> Any:
    """``lh.to_dask(table, **args)``, checked against ``scan`` with the same arguments: computed,
    it holds the same rows (any order) and columns in the same order, each a ``pd.ArrowDtype`` of
    the column's type in schemas.py (polars reads them back as the types scan gives)."""
    ddf = lh.to_dask(table, **args)
    expected = lh.scan(table, **args).collect()
    types = {f.name: f.type for f in table_spec(table).schema}
    assert [d.pyarrow_dtype for d in ddf.dtypes] == [types[c] for c in expected.columns]
    df = ddf.compute()
    assert all(isinstance(d, pd.ArrowDtype) for d in df.dtypes)
    got = pl.from_pandas(df)
    assert got.columns == expected.columns and got.schema == expected.schema
    assert got.height == expected.height
    assert got.sort(got.columns).equals(expected.sort(expected.columns))
    return ddf


CASES: dict[str, dict[str, Any]] = {
    "everything": {},
    "window over midnight": {"start": "2026-11-20T23:58:00Z", "end": MIDNIGHT + timedelta(minutes=2)},
    "symbols, any case": {"symbols": ["eth-usdt-perp", "SOL-USDT-PERP"], "exchange": "binance_futures"},
    "one symbol, a window and columns": {
        "symbols": ["BTC-USDT-PERP"],
        "start": T0 + timedelta(minutes=1),
        "end": "2026-11-21T00:01:30Z",
        "columns": ["ts", "symbol", "id", "price", "date"],
    },
    "as_of a version": {"as_of": 0},
    "as_of a tag, a window": {"as_of": "bt-1", "start": MIDNIGHT - timedelta(seconds=30)},
    "nothing selected": {"start": MIDNIGHT + timedelta(hours=1)},
}


@pytest.mark.parametrize("args", CASES.values(), ids=CASES.keys())
def test_to_dask_holds_the_rows_and_types_of_scan(lake: tuple[Lakehouse, datetime], args: dict[str, Any]) -> None:
    lh, _ = lake
    _as_scan(lh, "silver.trades", **args)


def test_to_dask_as_of_a_time_and_gold(lake: tuple[Lakehouse, datetime]) -> None:
    lh, between = lake
    assert len(_as_scan(lh, "silver.trades", as_of=between)) == 1_200 * 3
    window = {"start": MIDNIGHT - timedelta(minutes=2), "end": MIDNIGHT + timedelta(minutes=1)}
    _as_scan(lh, "gold.ohlcv", symbols=["SOL-USDT-PERP"], **window)


def test_only_the_files_that_can_hold_selected_rows_are_partitions(lake: tuple[Lakehouse, datetime]) -> None:
    lh, _ = lake
    dt = lh.catalog.open("silver.trades")
    files = len(dt.file_uris())
    assert lh.to_dask("silver.trades").npartitions == files
    btc = lh.to_dask("silver.trades", symbols=["BTC-USDT-PERP"])
    assert btc.npartitions == len(dt.file_uris(file_pruning_predicate=[("symbol", "=", "BTC-USDT-PERP")])) < files
    # a window inside the first day: the second day's files are not read
    day1 = lh.to_dask("silver.trades", start=T0, end=MIDNIGHT - timedelta(minutes=1))
    assert day1.npartitions == len(dt.file_uris(file_pruning_predicate=[("date", "=", "2026-11-20")])) < files
    # within a date, the files' min/max statistics prune: v2's late rows (23:57:00-23:57:10) are not in [23:55, 23:56)
    first_minute = lh.to_dask("silver.trades", start=T0, end=T0 + timedelta(minutes=1))
    by_stats = dt.file_uris(
        file_pruning_predicate=[("date", "=", "2026-11-20"), ("ts", "<", T0 + timedelta(minutes=1))]
    )
    assert first_minute.npartitions == len(by_stats) == 3 < day1.npartitions == 5
    # a column selection reaches the reads (dask's projection into from_map), rows unchanged
    assert lh.to_dask("silver.trades", symbols=["BTC-USDT-PERP"])["price"].sum().compute() == pytest.approx(
        lh.read("silver.trades", symbols=["BTC-USDT-PERP"])["price"].sum()
    )


def test_to_dask_refuses_what_scan_refuses(lake: tuple[Lakehouse, datetime]) -> None:
    lh, _ = lake
    bad: list[tuple[dict[str, Any], type[Exception], str]] = [
        ({"symbols": ["DOGE-USDT-PERP"]}, InvalidArgument, "holds no symbol DOGE-USDT-PERP"),
        ({"as_of": 9}, VersionNotFound, "version 9 does not exist"),
        ({"as_of": "no-such-tag"}, TagNotFound, "neither a time nor a tag"),
        ({"columns": ["nope"]}, LakehouseError, "no column"),
        ({"start": MIDNIGHT, "end": T0}, InvalidArgument, "the range is empty"),
    ]
    for args, error, message in bad:
        for read in (lh.scan, lh.to_dask):
            with pytest.raises(error, match=message):
                read("silver.trades", **args)


@pytest.fixture(scope="module")
def s3_lake(s3_options: dict[str, str]) -> Lakehouse:  # noqa: F811 - the fixture imported above
    """silver.trades of 3 symbols over midnight under an ``s3://`` root (moto's S3 server)."""
    root = "s3://lake/dask"
    _append(Catalog(root, storage_options=s3_options), _trades(1, 2_400, T0, symbols=SYMBOLS))
    return Lakehouse(config=load_settings().model_copy(update={"root": root, "storage_options": s3_options}))


S3_ARGS: dict[str, Any] = {"symbols": ["ETH-USDT-PERP"], "start": MIDNIGHT - timedelta(minutes=1)}


def test_to_dask_on_s3(s3_lake: Lakehouse) -> None:
    assert _as_scan(s3_lake, "silver.trades", **S3_ARGS).npartitions == 2  # ETH's two days


def test_to_dask_on_a_cluster_of_worker_processes(lake: tuple[Lakehouse, datetime], s3_lake: Lakehouse) -> None:
    """Partitions read in two worker processes, from local disk and from S3 (the storage options
    travel with the tasks), equal to scan."""
    from distributed import Client, LocalCluster

    lh, _ = lake
    args: dict[str, Any] = {"start": "2026-11-20T23:57:00Z", "symbols": ["BTC-USDT-PERP", "SOL-USDT-PERP"]}
    ddf = lh.to_dask("silver.trades", **args)
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster,
        Client(cluster) as client,
    ):
        workers = set(client.run(os.getpid).values())
        assert len(workers) == 2 and os.getpid() not in workers
        pids = ddf.map_partitions(lambda df: pd.DataFrame({"pid": [os.getpid()]}), meta={"pid": "int64"}).compute()
        assert set(pids["pid"]) <= workers  # every partition was read in a worker process
        ddf = _as_scan(lh, "silver.trades", **args)  # computed on the cluster
        per_symbol = ddf.groupby("symbol")["amount"].sum().compute()
        _as_scan(s3_lake, "silver.trades", **S3_ARGS)
    expected = lh.read("silver.trades", **args).group_by("symbol").agg(pl.col("amount").sum())
    assert dict(per_symbol.items()) == pytest.approx(dict(expected.iter_rows()))
