"""Prometheus metrics of one service (its own registry: two apps in a process never mix)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["Metrics"]

# query latency buckets, seconds: a one-symbol-hour read is ~10 ms, an aggregation ~1 s
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


@dataclass
class Metrics:
    """The service's metrics; the per-venue gauges are set at each scrape (``GET /metrics``)."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.requests = Counter(
            "lakehouse_api_requests", "HTTP requests by route and status", ["method", "route", "status"], registry=r
        )
        self.latency = Histogram(
            "lakehouse_api_query_seconds",
            "POST /query/sql latency, streaming included, by format and status",
            ["format", "status"],
            buckets=_BUCKETS,
            registry=r,
        )
        self.rejected = Counter(
            "lakehouse_api_rejected_requests",
            "requests refused, by reason (auth, forbidden, sql, busy, timeout, rows, bytes, memory, ...)",
            ["reason"],
            registry=r,
        )
        self.rows = Counter("lakehouse_api_result_rows", "rows returned by queries", registry=r)
        self.lag = Gauge(
            "lakehouse_ingest_lag_seconds",
            "seconds since each venue's writer was last heard of (bronze.sessions)",
            ["exchange"],
            registry=r,
        )
        self.ingest_rows = Gauge(
            "lakehouse_ingest_rows_per_second",
            "bronze.trades rows per second over the venue's last 5 minutes of commits",
            ["exchange"],
            registry=r,
        )
        self.open_gaps = Gauge("lakehouse_open_gaps", "silver.gaps rows with status open", ["exchange"], registry=r)
