"""Prefect flow ``archive-import``: Binance public-data archives into bronze, failures as an artifact."""

from __future__ import annotations

from typing import TypedDict

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact

from crypto_lakehouse import jobs
from crypto_lakehouse.config import load_settings


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
    """Import the archives of ``symbols`` from ``start`` to ``end`` (dates, inclusive)."""
    r = jobs.archive_import(
        load_settings(config, root=root),
        market=market,
        kind=kind,
        symbols=symbols,
        start=start,
        end=end,
        base_url=base_url,
        workers=workers,
        cache_dir=cache_dir,
    )
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
