"""The live buffer: a running writer serves its not-yet-committed rows on a loopback HTTP
endpoint, so readers can union them with Delta (``Lakehouse.scan(..., live=True)``).

Discovery: the writer publishes ``<spool_dir>/live/<writer_id>.json`` (its URL and pid) while it
runs and removes it on exit; readers look there (the spool directory is local to the host, as is
the endpoint). ``GET /live/<table>`` answers an Arrow IPC stream in the bronze table's schema.
The registry and the reading side are :mod:`crypto_lakehouse.storage.live` (reads need no ingest).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.ipc as ipc
from aiohttp import web

from crypto_lakehouse.ingest.writer import BronzeWriter
from crypto_lakehouse.schemas import BRONZE
from crypto_lakehouse.storage.live import registry_entry

__all__ = ["LiveServer"]


class LiveServer:
    """Serves ``writer``'s live buffer on ``127.0.0.1:port`` (0: a free port)."""

    def __init__(self, writer: BronzeWriter, *, spool_dir: str | Path, host: str = "127.0.0.1", port: int = 0):
        self.writer = writer
        self.host, self.port = host, port
        self.registry = registry_entry(spool_dir, writer.writer_id)
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> LiveServer:
        app = web.Application()
        app.router.add_get("/live/{table}", self._table)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()
        self.url = f"http://{self.host}:{self._runner.addresses[0][1]}"
        self.registry.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.registry.with_suffix(".tmp")
        tmp.write_text(json.dumps({"url": self.url, "pid": os.getpid(), "writer_id": self.writer.writer_id}))
        os.replace(tmp, self.registry)
        return self

    async def stop(self) -> None:
        self.registry.unlink(missing_ok=True)
        if self._runner is not None:
            await self._runner.cleanup()

    async def _table(self, request: web.Request) -> web.Response:
        table = request.match_info["table"]
        if table not in BRONZE:
            return web.json_response({"error": f"no live buffer for {table}"}, status=404)
        data = self.writer.live_arrow(table)
        sink = pa.BufferOutputStream()
        with ipc.new_stream(sink, data.schema) as w:
            w.write_table(data)
        return web.Response(body=sink.getvalue().to_pybytes(), content_type="application/vnd.apache.arrow.stream")
