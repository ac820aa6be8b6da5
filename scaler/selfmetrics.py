"""The service's own metrics, exposed on ``GET /metrics`` in Prometheus text format (on the HTTP
port and on the internal-metrics port).

One registry per running service (never the global default), so tests and embedded
instances do not share counters. Beside ours, :class:`KedifyMetrics` keeps kedify/otel-add-on's
``keda_otel_scaler_*`` metrics under its names and labels, so its scrape configs, dashboards
and alerts keep working.
"""

from __future__ import annotations

import contextlib
import math
import platform
import sys
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.exposition import generate_latest

from scaler import __version__
from scaler.model import escape_name
from scaler.trigger import Query, Reading, State

_LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5)


class SelfMetrics:
    """Counters, gauges and histograms of the running service."""

    def __init__(self, series_count: Callable[[], int], metric_names: Callable[[], Iterable[str]] = tuple) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        ProcessCollector(registry=r)  # process_* (CPU, memory, file descriptors), as Go's client has
        self.kedify = KedifyMetrics(metric_names)
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
        self.streams_refused = Counter(
            "keda_streams_refused",
            "StreamIsActive streams refused with RESOURCE_EXHAUSTED, by reason (max_streams: MAX_STREAMS are open).",
            ["reason"],
            registry=r,
        )
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
        return generate_latest(self.registry) + self.kedify.render()


_KEDIFY = "keda_otel_scaler_"
_KEDIFY_CAP = 4096
"""Most label sets kept per kedify gauge (the least recently set goes first): a client that
queries ever new label values through REST cannot grow the scrape without bound."""
_GOARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64", "i386": "386", "i686": "386"}


def go_labels(labels: Iterable[tuple[str, str]]) -> str:
    """A compat query's labels as kedify/otel-add-on prints them (Go's ``fmt.Sprint`` of a map:
    ``map[a:1 b:2]``, keys sorted)."""
    return "map[" + " ".join(f"{k}:{v}" for k, v in sorted(labels)) + "]"


def runtime_info(retention_seconds: float, ports: Mapping[str, int]) -> dict[str, str]:
    """kedify/otel-add-on's runtime-info labels (also its ``GET /info`` body): a flat map of strings.
    ``goVersion`` keeps its name and carries the Python version."""
    machine = platform.machine().lower()
    return {
        "version": __version__,
        "goVersion": "python" + platform.python_version(),
        "arch": _GOARCH.get(machine, machine or "unknown"),
        "os": {"win32": "windows", "cygwin": "windows"}.get(sys.platform, sys.platform),
        "gitSha": "unknown",
        "retentionSeconds": str(math.floor(retention_seconds)),
        "scalerPort": str(ports["keda"]),
        "otlpPort": str(ports["otlp"]),
        "internalMetricsPort": str(ports["metrics"]),
        "restApiPort": str(ports["http"]),
    }


class KedifyMetrics:
    """kedify/otel-add-on's self-metrics (its ``metric/internal_metrics.go``): names, label names
    and meaning kept. ``name`` is the escaped metric name; counters of names no longer in the
    store are dropped at the next scrape, so their memory is bounded by the store's."""

    def __init__(self, metric_names: Callable[[], Iterable[str]]) -> None:
        self.metric_names = metric_names
        self.value: OrderedDict[tuple[str, ...], float] = OrderedDict()
        self.clamped: OrderedDict[tuple[str, ...], float] = OrderedDict()
        self.written: dict[str, float] = {}
        self.read: dict[str, float] = {}
        self.info: dict[str, str] = {}
        self._prune_at = _KEDIFY_CAP
        """Drop the counters of names the store no longer holds when they outgrow this (also
        without scrapes), then set it to twice what is left."""

    def wrote(self, counts: Mapping[str, int]) -> None:
        """Samples stored, by metric name."""
        for name, n in counts.items():
            key = escape_name(name)
            self.written[key] = self.written.get(key, 0.0) + n
        if len(self.written) > self._prune_at:
            self._prune()

    def observed(self, name: str, labels: str, op: str, aggregation: str, value: float) -> None:
        """A compat query was read (found or not): ``metric_points_read`` and ``metric_value``."""
        key = escape_name(name)
        self.read[key] = self.read.get(key, 0.0) + 1
        _put(self.value, (key, labels, op, aggregation), value)
        if len(self.read) > self._prune_at:
            self._prune()

    def _prune(self) -> None:
        live = {escape_name(n) for n in self.metric_names()}
        for counts in (self.written, self.read):
            for gone in [n for n in counts if n not in live]:
                del counts[gone]
        self._prune_at = max(_KEDIFY_CAP, 2 * max(len(self.written), len(self.read)))

    def read_compat(self, q: Query, reading: Reading) -> None:
        """A compat query was evaluated: count the read and keep its value (-1 when nothing is
        found, as kedify's store answers); other queries and readings count nothing there."""
        compat = q.compat
        if compat is None or reading.state not in (State.VALUE, State.NOT_FOUND):
            return
        value = reading.raw if reading.raw is not None else -1.0
        self.observed(compat.name, go_labels(compat.labels), q.operation, compat.aggregation, value)

    def answered(self, name: str, labels: str, op: str, aggregation: str, so: tuple[str, str], value: float) -> None:
        """GetMetrics answered a compat trigger of ScaledObject ``so`` (name, namespace) with ``value``."""
        _put(self.clamped, (escape_name(name), labels, op, aggregation, *so), value)

    def render(self) -> bytes:
        self._prune()
        out: list[str] = []
        _family(
            out,
            "metric_value",
            "gauge",
            "Last value of the metric that was read by the scaler.",
            ("name", "labels", "timeOp", "aggregation"),
            self.value.items(),
        )
        _family(
            out,
            "metric_value_clamped",
            "gauge",
            "Last value of the metric that was read by the scaler within clampMin and clampMax bounds",
            ("name", "labels", "timeOp", "aggregation", "scaledObject", "namespace"),
            self.clamped.items(),
        )
        _family(
            out,
            "metric_points_written",
            "counter",
            "Number of successful writes to the in-memory metric store.",
            ("name",),
            (((k,), v) for k, v in sorted(self.written.items())),
        )
        _family(
            out,
            "metric_points_read",
            "counter",
            "Number of successful reads from the in-memory metric store.",
            ("name",),
            (((k,), v) for k, v in sorted(self.read.items())),
        )
        if self.info:
            _family(
                out,
                "runtime_info",
                "gauge",
                "KEDA OTel scaler runtime info.",
                tuple(self.info),
                [(tuple(self.info.values()), 1.0)],
            )
        return "".join(out).encode()


def _put(gauge: OrderedDict[tuple[str, ...], float], key: tuple[str, ...], value: float) -> None:
    gauge[key] = value
    gauge.move_to_end(key)
    if len(gauge) > _KEDIFY_CAP:
        gauge.popitem(last=False)


def _family(
    out: list[str],
    name: str,
    kind: str,
    doc: str,
    label_names: tuple[str, ...],
    samples: Iterable[tuple[tuple[str, ...], float]],
) -> None:
    full = _KEDIFY + name
    out.append(f"# HELP {full} {doc}\n# TYPE {full} {kind}\n")
    for values, value in samples:
        pairs = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(zip(label_names, values, strict=True)))
        out.append(f"{full}{{{pairs}}} {_number(value)}\n")


def _number(value: float) -> str:
    """A sample value as Prometheus' text format spells it (``1``, ``0.5``, ``NaN``, ``+Inf``)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
