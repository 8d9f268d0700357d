"""The live-buffer registry, the part readers and writers share: a running writer publishes
``<spool_dir>/live/<writer_id>.json`` (its URL, pid and id) while it serves its not-yet-committed
rows (``crypto_lakehouse.ingest.live.LiveServer``); readers find the writers there and ask each
``GET <url>/live/<table>`` for an Arrow IPC stream in the bronze table's schema.

It lives in storage, beside the rest of a root's local state (:mod:`~crypto_lakehouse.storage.state`),
so that reads (``Lakehouse.scan(..., live=True)``) need nothing from ingest.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from pathlib import Path

import pyarrow as pa
import pyarrow.ipc as ipc

__all__ = ["fetch_live", "registry_entry"]

LOG = logging.getLogger(__name__)


def registry_entry(spool_dir: str | Path, writer_id: str) -> Path:
    """Where the writer ``writer_id`` publishes its live endpoint under ``spool_dir``."""
    return Path(spool_dir) / "live" / f"{writer_id.replace('/', '_')}.json"


def fetch_live(spool_dir: str | Path, table: str, *, timeout: float = 5.0) -> list[pa.Table]:
    """Live rows of ``table`` from every writer registered under ``spool_dir``; writers that do
    not answer (stopped, killed) are skipped, so reads fall back to Delta alone."""
    out = []
    for entry in sorted((Path(spool_dir) / "live").glob("*.json")):
        try:
            url = json.loads(entry.read_text())["url"]
            with urllib.request.urlopen(f"{url}/live/{table}", timeout=timeout) as r:
                out.append(ipc.open_stream(r.read()).read_all())
        except (OSError, ValueError, KeyError, urllib.error.URLError) as exc:
            LOG.debug("live buffer at %s not available: %s", entry, exc)
    return out
