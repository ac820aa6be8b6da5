"""The service's own metrics, exposed on ``GET /metrics`` in Prometheus text format.

One registry per running service (never the global default), so tests and embedded
instances do not share counters.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest

_LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5)


class SelfMetrics:
    """Counters, gauges and histograms of the running service."""

    def __init__(self, series_count: Callable[[], int]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "otlp_requests",
            "OTLP export requests by transport and outcome.",
            ["transport", "outcome"],
            registry=r,
        )
        self.points_received = Counter(
            "otlp_points_received",
            "Samples accepted into the store (one OTLP histogram point yields several).",
            ["transport"],
            registry=r,
        )
        self.points_rejected = Counter(
            "otlp_points_rejected",
            "Samples or requests rejected, by reason.",
            ["transport", "reason"],
            registry=r,
        )
        self.series = Gauge("store_series", "Active series in the store.", registry=r)
        self.series.set_function(lambda: float(series_count()))
        self.queries = Counter(
            "queries", "Queries evaluated, by surface and outcome.", ["surface", "outcome"], registry=r
        )
        self.keda_latency = Histogram(
            "keda_request_duration_seconds",
            "Latency of KEDA external-scaler calls.",
            ["method"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.keda_errors = Counter(
            "keda_errors", "KEDA calls answered with an error, by gRPC code.", ["method", "code"], registry=r
        )
        self.trigger_value = Gauge(
            "keda_trigger_value",
            "Last value returned to KEDA per ScaledObject trigger.",
            ["namespace", "scaled_object", "metric"],
            registry=r,
        )
        self.trigger_target = Gauge(
            "keda_trigger_target",
            "targetValue per ScaledObject trigger, set with each value returned to KEDA.",
            ["namespace", "scaled_object", "metric"],
            registry=r,
        )
        self.trigger_active = Gauge(
            "keda_trigger_active",
            "Last activity decision per ScaledObject trigger (1 active, 0 inactive).",
            ["namespace", "scaled_object", "metric"],
            registry=r,
        )
        self.streams = Gauge("keda_streams_open", "Open StreamIsActive streams.", registry=r)
        self.http_rejected = Counter(
            "http_requests_rejected", "HTTP requests rejected, by path and reason.", ["path", "reason"], registry=r
        )

        self.http_internal_errors = Counter(
            "http_internal_errors", "HTTP requests that failed with an internal error (500).", registry=r
        )
        self.snapshot_writes = Counter(
            "snapshot_writes", "Store snapshots written, by outcome.", ["outcome"], registry=r
        )
        self.snapshot_loaded_series = Gauge(
            "snapshot_loaded_series", "Series restored from the snapshot at start.", registry=r
        )
        self.peer_fetches = Counter(
            "peer_fetches",
            "Snapshot fetches from peers at start (warm start), by outcome.",
            ["outcome"],
            registry=r,
        )
        self.peer_snapshot_requests = Counter(
            "peer_snapshot_requests",
            "GET /snapshot requests from peers, by outcome (refusals included).",
            ["outcome"],
            registry=r,
        )
        self.ready = Gauge("ready", "1 once the replica is warmed and Ready (see /readyz), else 0.", registry=r)

        self.status_evictions = Counter(
            "status_evictions",
            "Entries of the status registry evicted: not asked about (or not exporting) for an hour, or past "
            "the cap, by kind (trigger, source) and reason (idle, cap).",
            ["kind", "reason"],
            registry=r,
        )

    def status_evicted(self, kind: str, reason: str, key: tuple[str, str, str]) -> None:
        """Count an eviction from the status registry; an evicted trigger's gauges go with it, so
        ScaledObject names from clients cannot grow ``/metrics`` without bound either."""
        self.status_evictions.labels(kind, reason).inc()
        if kind == "trigger":
            for gauge in (self.trigger_value, self.trigger_target, self.trigger_active):
                with contextlib.suppress(KeyError):
                    gauge.remove(*key)

    def render(self) -> bytes:
        return generate_latest(self.registry)
