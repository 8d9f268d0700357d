"""Archive import fanned out (a file a task): the same bronze as the import in one process, one
commit per bronze table, and a file imported once when imports race."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from crypto_lakehouse import jobs, load_settings
from crypto_lakehouse.ingest.archive import archive_files, import_archives
from crypto_lakehouse.storage import Catalog
from tests.ingest.test_archive import _agg_csv, _path, _publish, server  # noqa: F401 - the site fixture

DAYS = ("2024-01-01", "2024-01-02", "2024-01-03")


def _bronze(root: Path) -> pl.DataFrame:
    df = pl.read_delta(str(root / "bronze" / "trades")).drop("receipt_ts")  # (an import's is when it ran)
    return df.sort(df.columns)


def _site(site: Path) -> None:
    from datetime import date

    for i, day in enumerate(DAYS):
        _publish(site, _path(day), _agg_csv(1_000 * i, 300, date.fromisoformat(day), header=i == 0, micros=False))


def _import(root: Path, base: str, runner: jobs.Runner | None) -> Any:
    settings = load_settings(root=str(root))
    return jobs.archive_import(
        settings, market="um", kind="aggTrades", symbols=["BTCUSDT"], start=DAYS[0], end=DAYS[-1],
        base_url=base, cache_dir=root.parent / f"cache-{root.name}", runner=runner,
    )  # fmt: skip


def test_a_fanned_import_on_a_local_cluster_equals_the_import_in_one_process(server, tmp_path: Path) -> None:  # noqa: F811
    site, base = server
    _site(site)
    alone = _import(tmp_path / "alone", base, None)
    with jobs.dask_runner(workers=2) as cluster:
        fanned = _import(tmp_path / "fanned", base, cluster)
        assert fanned.imported == alone.imported and len(fanned.imported) == 3 and fanned.ok
        assert _bronze(tmp_path / "fanned").equals(_bronze(tmp_path / "alone"))
        log = sorted((tmp_path / "fanned" / "bronze" / "trades" / "_delta_log").glob("*.json"))
        assert len(log) == 2  # created empty before the fan-out, then one commit of the three files
        commit = [json.loads(x) for x in log[-1].read_text().splitlines()]
        assert {a["txn"]["appId"] for a in commit if "txn" in a} == {f"archive:{_path(d)}" for d in DAYS}
        again = _import(tmp_path / "fanned", base, cluster)  # the manifest says: nothing to do
    assert sorted(again.skipped) == sorted(_path(d) for d in DAYS) and not again.imported
    assert _bronze(tmp_path / "fanned").equals(_bronze(tmp_path / "alone"))


class _RacedByAnImport(jobs.InProcess):
    """Once the files are staged, an import in one process of the same archives commits first."""

    def __init__(self, root: Path, base: str) -> None:
        self.root, self.base = root, base

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any], /) -> list[Any]:
        done = super().map(fn, items)
        first, last = date.fromisoformat(DAYS[0]), date.fromisoformat(DAYS[-1])
        files = archive_files(market="um", kind="aggTrades", symbols=["BTCUSDT"], start=first, end=last)
        import_archives(
            Catalog(self.root), files, base_url=self.base, cache_dir=self.root.parent / "c2", progress=False
        )
        return done


def test_a_fanned_import_racing_an_import_in_one_process_imports_each_file_once(server, tmp_path: Path) -> None:  # noqa: F811
    site, base = server
    _site(site)
    _import(tmp_path / "alone", base, None)
    root = tmp_path / "raced"
    result = _import(root, base, _RacedByAnImport(root, base))
    assert result.ok and len(result.imported) == 3
    assert _bronze(root).equals(_bronze(tmp_path / "alone"))  # each trade once
    assert Catalog(root).frame("meta.archive_manifest").height == 3


@pytest.mark.parametrize("bad", ["checksum"])
def test_a_bad_file_is_reported_and_the_others_are_committed(server, tmp_path: Path, bad: str) -> None:  # noqa: F811
    from datetime import date

    site, base = server
    _site(site)
    _publish(
        site,
        _path(DAYS[1]),
        _agg_csv(5, 10, date.fromisoformat(DAYS[1]), header=False, micros=False),
        checksum=b"0" * 64,
    )
    result = _import(tmp_path / "lake", base, jobs.InProcess())
    assert sorted(result.imported) == [_path(DAYS[0]), _path(DAYS[2])]
    assert list(result.failed) == [_path(DAYS[1])] and "checksum mismatch" in result.failed[_path(DAYS[1])]
    assert _bronze(tmp_path / "lake").height == 600


class _AllAtOnce(jobs.InProcess):
    """Every task at the same moment, each on its own thread (as workers of a cluster run them)."""

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any], /) -> list[Any]:
        start = threading.Barrier(len(items))

        def run(item: Any) -> Any:
            start.wait()
            return fn(item)

        with ThreadPoolExecutor(len(items)) as pool:
            return list(pool.map(run, items))


def test_tasks_running_at_once_on_a_new_lake_give_one_commit_of_every_file(server, tmp_path: Path) -> None:  # noqa: F811
    site, base = server
    _site(site)
    root = tmp_path / "lake"
    result = _import(root, base, _AllAtOnce())
    assert result.ok and len(result.imported) == 3
    log = sorted((root / "bronze" / "trades" / "_delta_log").glob("*.json"))
    assert len(log) == 2  # the empty table, then the three files in one commit (no creator's race left behind)
    assert Catalog(root).frame("bronze.trades").height == 900
