"""The maintenance jobs: which steps an action plans (per table, with which horizon), and
`maintain` running several actions over a small lake."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from pathlib import Path

import polars as pl
import pytest

from crypto_lakehouse import LakehouseError, jobs, load_settings
from crypto_lakehouse.config import MaintenanceSettings
from crypto_lakehouse.ingest import BronzeWriter
from crypto_lakehouse.storage import Catalog

KEEP = MaintenanceSettings.model_validate(
    {"vacuum_horizon": "2h", "data_retention": {"bronze": "30d", "silver": None, "gold": "1d"}}
)


def test_vacuum_steps_carry_each_layers_horizon() -> None:
    settings = MaintenanceSettings.model_validate({"vacuum_horizon": {"bronze": "1h", "silver": "7d", "gold": "3d"}})
    steps = jobs.maintenance_steps("vacuum", ["bronze.trades", "silver.trades", "gold.ohlcv"], settings=settings)
    assert [(s.table, s.horizon) for s in steps] == [
        ("bronze.trades", timedelta(hours=1)),
        ("silver.trades", timedelta(days=7)),
        ("gold.ohlcv", timedelta(days=3)),
    ]
    assert {s.action for s in steps} == {"vacuum"}


def test_retention_steps_skip_layers_kept_forever_and_tables_not_partitioned_by_date() -> None:
    tables = ["bronze.trades", "silver.trades", "bronze.dead_letter", "bronze.sessions", "gold.ohlcv"]
    steps = jobs.maintenance_steps("retention", tables, settings=KEEP)
    assert [(s.table, s.horizon) for s in steps] == [
        ("bronze.trades", timedelta(days=30)),
        ("bronze.dead_letter", timedelta(days=30)),
    ]  # silver keeps everything; bronze.sessions and gold.ohlcv have no date partition


def test_only_compaction_steps_carry_z_order_columns() -> None:
    compact = jobs.maintenance_steps("compact", ["bronze.trades"], settings=KEEP, z_order=["symbol", "ts"])
    checkpoint = jobs.maintenance_steps("checkpoint", ["bronze.trades"], settings=KEEP, z_order=["symbol"])
    assert compact == [jobs.MaintenanceStep("compact", "bronze.trades", None, ("symbol", "ts"))]
    assert checkpoint == [jobs.MaintenanceStep("checkpoint", "bronze.trades")]


def test_unknown_actions_and_tables_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown maintenance action"):
        jobs.maintenance_steps("optimize", ["bronze.trades"], settings=KEEP)  # type: ignore[arg-type]  # the point
    with pytest.raises(LakehouseError, match="unknown table 'bronze.nope'"):
        jobs.maintenance_steps("retention", ["bronze.nope"], settings=KEEP)


def _bronze(root: Path, batches: int) -> None:
    now = time.time()

    async def write() -> None:
        w = BronzeWriter(Catalog(root), writer_id="w", spool_dir=root / "spool")
        await w.start()
        for b in range(batches):
            w.add_many(
                "bronze.trades",
                [("BINANCE", "BTC-USDT", now - 5, now, str(10 * b + i), "buy", "100", "1", None) for i in range(3)],
            )
            await w.flush()

    asyncio.run(write())


def test_plan_defaults_to_every_existing_data_table_and_maintain_runs_actions_in_turn(tmp_path: Path) -> None:
    root = tmp_path / "lake"
    _bronze(root, batches=3)
    settings = load_settings(root=str(root))
    jobs.create_tag(settings, name="t", tables=["bronze.trades"])  # meta.tags now exists: never maintained
    catalog = Catalog.from_settings(settings)
    plan = jobs.plan_maintenance(catalog, "vacuum", settings=settings.maintenance)
    assert plan == [jobs.MaintenanceStep("vacuum", "bronze.trades", timedelta(hours=1))]

    reports = jobs.maintain(settings, actions=["compact", "checkpoint"])
    assert [(r.action, r.table) for r in reports] == [("compact", "bronze.trades"), ("checkpoint", "bronze.trades")]
    assert reports[0].files_after < reports[0].files_before
    assert "log kept for tagged versions" in reports[1].detail
    assert pl.read_delta(str(root / "bronze" / "trades")).height == 9  # nothing lost
