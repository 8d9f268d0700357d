"""Prefect flow ``ingest``: the streaming writer. ``duration_s=None`` runs until the run is
cancelled (SIGTERM flushes every buffer first); a number makes the bounded variant."""

from __future__ import annotations

import asyncio
import signal

from prefect import flow, get_run_logger

from crypto_lakehouse.config import load_settings
from crypto_lakehouse.ingest import BronzeWriter
from crypto_lakehouse.ingest.stream import stream_targets, stream_to_bronze


@flow(name="ingest")
def ingest_flow(
    duration_s: float | None = None,
    endpoints: list[str] | None = None,
    exchanges: list[str] | None = None,
    symbols: list[str] | None = None,
    channels: list[str] | None = None,
    config: str | None = None,
    root: str | None = None,
) -> dict:
    s = load_settings(config, root=root)
    targets = stream_targets(s, exchanges=exchanges, symbols=symbols, channels=channels, endpoints=endpoints)
    writer = BronzeWriter.from_settings(s)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, stop.set)
            except (RuntimeError, ValueError):  # not the main thread: Prefect's cancellation applies
                break
        if duration_s is not None:
            loop.call_later(duration_s, stop.set)
        await stream_to_bronze(targets, writer, stop=stop, live_port=s.writer.live_port)

    asyncio.run(run())
    summary = writer.summary()
    get_run_logger().info("ingest: %s", {t: v["rows_committed"] for t, v in summary.items()})
    return summary
