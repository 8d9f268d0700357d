"""Maintenance: compaction, checkpoints, vacuum and retention that never lose data and never
break a tag (tagged versions keep their files and their log entries)."""

from crypto_lakehouse.maintenance.tasks import MaintenanceReport, checkpoint, compact, retention, vacuum

__all__ = ["MaintenanceReport", "checkpoint", "compact", "retention", "vacuum"]
