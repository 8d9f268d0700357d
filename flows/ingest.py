"""Prefect flow ``ingest``: the streaming writer. ``duration_s=None`` runs until the run is
cancelled (SIGTERM flushes every buffer first); a number makes the bounded variant."""

from __future__ import annotations

from prefect import flow, get_run_logger

from crypto_lakehouse import jobs
from crypto_lakehouse.config import load_settings


@flow(name="ingest")
def ingest_flow(
    duration_s: float | None = None,
    endpoints: list[str] | None = None,
    exchanges: list[str] | None = None,
    symbols: list[str] | None = None,
    channels: list[str] | None = None,
    shard: str | None = None,
    config: str | None = None,
    root: str | None = None,
    rest_endpoint: str | None = None,
    ca_file: str | None = None,
) -> dict[str, dict[str, int]]:
    """Stream ``exchanges`` into bronze; the options are those of ``lakehouse stream`` (``shard="I/N"``:
    one of N deployments that split the pairs, see docs/scaling.md)."""
    result = jobs.stream(
        load_settings(config, root=root),
        exchanges=exchanges,
        symbols=symbols,
        channels=channels,
        shard=shard,
        endpoints=endpoints,
        rest_endpoint=rest_endpoint,
        ca_file=ca_file,
        duration_s=duration_s,
    )
    if result.shard is not None and not result.subscribed:
        get_run_logger().warning(
            "shard %s has nothing to stream: no (exchange, symbol) pair hashes to it", result.shard
        )
    get_run_logger().info("ingest: %s", {t: v["rows_committed"] for t, v in result.tables.items()})
    return result.tables
