"""Maintenance: compaction, checkpoints, vacuum and retention that never lose data and never
break a tag (tagged versions keep their files and their log entries)."""

from crypto_lakehouse.maintenance.tasks import (
    CompactionBusy,
    MaintenanceReport,
    checkpoint,
    compact,
    retention,
    vacuum,
)

__all__ = ["CompactionBusy", "MaintenanceReport", "checkpoint", "compact", "retention", "vacuum"]
