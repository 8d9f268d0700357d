"""Prefect flow ``archive-import``: Binance public-data archives into bronze, failures as an artifact."""

from __future__ import annotations

from typing import Any, TypedDict

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact

from crypto_lakehouse import jobs
from crypto_lakehouse.config import load_settings
from crypto_lakehouse.ingest.archive import ImportResult
from crypto_lakehouse.jobs._prefect import PrefectTasks, dask_task_runner


class ArchiveFlowResult(TypedDict):
    imported: dict[str, int]  # file -> rows
    skipped: list[str]  # already imported with the same checksum


@flow(name="archive-import")
def archive_import_flow(
    market: str,
    kind: str,
    symbols: list[str],
    start: str,
    end: str,
    base_url: str = "https://data.binance.vision",
    config: str | None = None,
    root: str | None = None,
    workers: int = 4,
    cache_dir: str = "./lakehouse_archive_cache",
) -> ArchiveFlowResult:
    """Import the archives of ``symbols`` from ``start`` to ``end`` (dates, inclusive). With
    ``scale.runner`` set, each file is a Prefect task on prefect-dask's ``DaskTaskRunner``
    (subflow ``archive-import-files``) and each bronze table is committed once."""
    settings = load_settings(config, root=root)
    args: dict[str, Any] = {"market": market, "kind": kind, "symbols": symbols, "start": start, "end": end}
    runner = dask_task_runner(settings.scale)
    if runner is None:
        r = jobs.archive_import(settings, **args, base_url=base_url, workers=workers, cache_dir=cache_dir)
    else:
        r = _files.with_options(task_runner=runner)(args, base_url, config, root, cache_dir)
    rows = [{"file": f, "status": "imported", "detail": str(n)} for f, n in r.imported.items()]
    rows += [{"file": f, "status": "skipped", "detail": "same checksum"} for f in r.skipped]
    rows += [{"file": f, "status": "FAILED", "detail": e} for f, e in r.failed.items()]
    create_table_artifact(
        key="archive-import",
        table=rows or [{"note": "no files"}],
        description=f"{len(r.imported)} imported, {len(r.skipped)} skipped, {len(r.failed)} failed",
    )
    get_run_logger().info(
        "archive import: %d imported, %d skipped, %d failed", len(r.imported), len(r.skipped), len(r.failed)
    )
    if r.failed:
        raise RuntimeError(f"{len(r.failed)} archive(s) failed: {sorted(r.failed)}")
    return {"imported": r.imported, "skipped": r.skipped}


@flow(name="archive-import-files")
def _files(args: dict[str, Any], base_url: str, config: str | None, root: str | None, cache_dir: str) -> ImportResult:
    """Each file as a task on the flow's Dask task runner; each bronze table committed once."""
    settings = load_settings(config, root=root)
    return jobs.archive_import(settings, **args, base_url=base_url, cache_dir=cache_dir, runner=PrefectTasks())
