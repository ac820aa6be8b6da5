"""Per-pod ``prometheus_client`` registries → OTLP, as a collector sidecar would push them.

The conversion follows the OpenTelemetry collector's Prometheus receiver (what the
repository's ``manifests/collectors`` run next to each vLLM pod):

* a gauge family → OTLP Gauge; a counter family → a cumulative, monotonic Sum named with
  its ``_total`` suffix (``trim_metric_suffixes`` is off by default), start time from the
  ``_created`` sample;
* a histogram family's ``_bucket``/``_count``/``_sum`` samples → one cumulative OTLP
  Histogram point named without suffix, ``explicit_bounds`` without ``+Inf``;
* resource attributes: ``service.name`` (the scrape job), ``service.instance.id`` (the
  target), and the Kubernetes identity the sidecar adds (``k8s.deployment.name``,
  ``k8s.pod.name``, ``k8s.namespace.name``), which the scaler promotes to labels;
* when a pod disappears, each of its series is sent once more as a point flagged
  ``NO_RECORDED_VALUE`` — the OTLP form of a Prometheus staleness marker.

The EPP's metrics (:func:`epp_to_metrics`) are scraped the same way from its ``/metrics``:
llm-d-router's in-flight load gauges and its per-endpoint queue sizes, with their names and
labels (``llm_d_epp_inflight_tokens{endpoint_name, namespace, producer_name}``, what llm-d's
token-aware autoscaling recipe queries; ``llm_d_epp_per_endpoint_queue_size{name,
model_server_endpoint}``). A deleted endpoint's series disappear from ``/metrics``, so the
collector sends each of them once as a staleness marker.

The OTel SDK's instruments cannot be used: they reject ``:`` in names (pd-serving-facts §4.5).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

import grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from prometheus_client import CollectorRegistry
from prometheus_client.samples import Sample

from scaler.sim.vllm_metrics import LABEL_NAMES, VllmMetrics, WeightedHistogram

logger = logging.getLogger(__name__)

NO_RECORDED_VALUE = metrics_pb2.DataPointFlags.DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK
CUMULATIVE = metrics_pb2.AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE
SCOPE = InstrumentationScope(
    name="github.com/open-telemetry/opentelemetry-collector-contrib/receiver/prometheusreceiver", version="0.139.0"
)

LabelKey = tuple[tuple[str, str], ...]


def _attributes(labels: Mapping[str, str]) -> list[KeyValue]:
    return [KeyValue(key=k, value=AnyValue(string_value=v)) for k, v in sorted(labels.items())]


def _key(labels: Mapping[str, str], drop: str = "") -> LabelKey:
    return tuple(sorted((k, v) for k, v in labels.items() if k != drop))


def _number(
    labels: Mapping[str, str], value: float, time_ns: int, start_ns: int, flags: int
) -> metrics_pb2.NumberDataPoint:
    point = metrics_pb2.NumberDataPoint(
        attributes=_attributes(labels), time_unix_nano=time_ns, start_time_unix_nano=start_ns, flags=flags
    )
    if not flags:
        point.as_double = value
    return point


def registry_to_metrics(
    registry: CollectorRegistry, time_ns: int, default_start_ns: int, stale: bool = False, use_created: bool = False
) -> list[metrics_pb2.Metric]:
    """Convert one scrape of ``registry``; with ``stale`` every point is a staleness marker.

    Cumulative points start at ``default_start_ns`` (the pod's start: the simulations run on
    their own clocks), or at the family's ``_created`` sample with ``use_created``.
    """
    flags = NO_RECORDED_VALUE if stale else 0
    out: list[metrics_pb2.Metric] = []
    for family in registry.collect():
        created: dict[LabelKey, int] = {}
        for s in family.samples:
            if use_created and s.name.endswith("_created"):
                created[_key(s.labels)] = int(s.value * 1e9)
        if family.type == "gauge":
            points = [_number(s.labels, s.value, time_ns, 0, flags) for s in family.samples]
            out.append(
                metrics_pb2.Metric(
                    name=family.name, description=family.documentation, gauge=metrics_pb2.Gauge(data_points=points)
                )
            )
        elif family.type == "counter":
            points = [
                _number(s.labels, s.value, time_ns, created.get(_key(s.labels), default_start_ns), flags)
                for s in family.samples
                if s.name.endswith("_total")
            ]
            out.append(
                metrics_pb2.Metric(
                    name=family.name + "_total",
                    description=family.documentation,
                    sum=metrics_pb2.Sum(data_points=points, aggregation_temporality=CUMULATIVE, is_monotonic=True),
                )
            )
        elif family.type == "histogram":
            out.append(
                _histogram(family.name, family.documentation, family.samples, created, time_ns, default_start_ns, flags)
            )
    return out


def vllm_to_metrics(metrics: VllmMetrics, time_ns: int, start_ns: int, stale: bool = False) -> list[metrics_pb2.Metric]:
    """:func:`registry_to_metrics` of a simulated pod's registry, built from its families
    directly (no exposition samples in between: the simulator scrapes every pod every few
    seconds). ``tests/sim/test_otlp_export.py`` checks that both give the same messages."""
    flags = NO_RECORDED_VALUE if stale else 0
    out: list[metrics_pb2.Metric] = []
    for family in metrics.families:
        if isinstance(family, WeightedHistogram):
            labels = dict(zip(LABEL_NAMES, family.labels, strict=True))
            point = metrics_pb2.HistogramDataPoint(
                attributes=_attributes(labels),
                time_unix_nano=time_ns,
                flags=flags,
                start_time_unix_nano=start_ns,
                explicit_bounds=family.bounds,
            )
            if not flags:
                point.bucket_counts.extend(family.counts)
                point.count = sum(family.counts)
                point.sum = family.sum
            histogram = metrics_pb2.Histogram(data_points=[point], aggregation_temporality=CUMULATIVE)
            out.append(metrics_pb2.Metric(name=family.name, description=family.documentation, histogram=histogram))
            continue
        points = [
            _number(dict(zip(family.label_names, labels, strict=True)), child.value, time_ns,
                    start_ns if family.kind == "counter" else 0, flags)
            for labels, child in family.children.items()
        ]  # fmt: skip
        if family.kind == "gauge":
            out.append(
                metrics_pb2.Metric(
                    name=family.name, description=family.documentation, gauge=metrics_pb2.Gauge(data_points=points)
                )
            )
        else:
            total = metrics_pb2.Sum(data_points=points, aggregation_temporality=CUMULATIVE, is_monotonic=True)
            out.append(metrics_pb2.Metric(name=family.name + "_total", description=family.documentation, sum=total))
    return out


def _histogram(
    name: str,
    doc: str,
    samples: Iterable[Sample],
    created: Mapping[LabelKey, int],
    time_ns: int,
    start_ns: int,
    flags: int,
) -> metrics_pb2.Metric:
    buckets: dict[LabelKey, list[tuple[float, float]]] = {}
    counts: dict[LabelKey, float] = {}
    sums: dict[LabelKey, float] = {}
    for s in samples:
        key = _key(s.labels, drop="le")
        if s.name == name + "_bucket":
            buckets.setdefault(key, []).append((float(s.labels["le"]), s.value))
        elif s.name == name + "_count":
            counts[key] = s.value
        elif s.name == name + "_sum":
            sums[key] = s.value
    points = []
    for key, cumulative in buckets.items():
        cumulative.sort()
        bounds = [b for b, _ in cumulative if b != float("inf")]
        per_bucket, previous = [], 0.0
        for _, c in cumulative:
            per_bucket.append(int(c - previous))
            previous = c
        point = metrics_pb2.HistogramDataPoint(
            attributes=_attributes(dict(key)),
            time_unix_nano=time_ns,
            flags=flags,
            start_time_unix_nano=created.get(key, start_ns),
            explicit_bounds=bounds,
        )
        if not flags:
            point.bucket_counts.extend(per_bucket)
            point.count = int(counts.get(key, previous))
            point.sum = sums.get(key, 0.0)
        points.append(point)
    return metrics_pb2.Metric(
        name=name,
        description=doc,
        histogram=metrics_pb2.Histogram(data_points=points, aggregation_temporality=CUMULATIVE),
    )


def resource_metrics(resource: Mapping[str, str], metrics: list[metrics_pb2.Metric]) -> metrics_pb2.ResourceMetrics:
    return metrics_pb2.ResourceMetrics(
        resource=Resource(attributes=_attributes(resource)),
        scope_metrics=[metrics_pb2.ScopeMetrics(scope=SCOPE, metrics=metrics)],
    )


def pod_resource(pod_name: str, deployment: str, namespace: str, role: str) -> dict[str, str]:
    """The resource a sidecar collector in this pod would attach (see manifests/collectors)."""
    port = "8200" if role == "decode" else "8000"  # vLLM's port per role in llm-d-modelservice
    return {
        "service.name": f"vllm-{role}",
        "service.instance.id": f"localhost:{port}",
        "server.address": "localhost",
        "server.port": port,
        "url.scheme": "http",
        "k8s.deployment.name": deployment,
        "k8s.pod.name": pod_name,
        "k8s.namespace.name": namespace,
    }


EPP_INFLIGHT_TOKENS = "llm_d_epp_inflight_tokens"
EPP_INFLIGHT_REQUESTS = "llm_d_epp_inflight_requests"
EPP_QUEUE_SIZE = "llm_d_epp_per_endpoint_queue_size"


class InFlight(Protocol):
    @property
    def requests(self) -> Mapping[str, int]: ...
    @property
    def tokens(self) -> Mapping[str, int]: ...


def _gauge(name: str, doc: str, points: list[metrics_pb2.NumberDataPoint]) -> metrics_pb2.Metric:
    return metrics_pb2.Metric(name=name, description=doc, gauge=metrics_pb2.Gauge(data_points=points))


def epp_to_metrics(
    load: InFlight,
    queues: Mapping[str, int],
    namespace: str,
    pool: str,
    time_ns: int,
    gone: Sequence[str] = (),
    producer: str = "inflight-load-producer",
) -> list[metrics_pb2.Metric]:
    """One scrape of the EPP's ``/metrics`` (the gauges autoscaling recipes read)."""
    tokens, requests, queue = [], [], []
    for pod in sorted(load.tokens):
        labels = {"endpoint_name": pod, "namespace": namespace, "producer_name": producer}
        tokens.append(_number(labels, float(load.tokens[pod]), time_ns, 0, 0))
        requests.append(_number(labels, float(load.requests.get(pod, 0)), time_ns, 0, 0))
    for pod in sorted(queues):
        queue.append(_number({"name": pool, "model_server_endpoint": pod}, float(queues[pod]), time_ns, 0, 0))
    for pod in gone:  # a deleted endpoint's series vanish from /metrics: one staleness marker each
        labels = {"endpoint_name": pod, "namespace": namespace, "producer_name": producer}
        tokens.append(_number(labels, 0.0, time_ns, 0, NO_RECORDED_VALUE))
        requests.append(_number(labels, 0.0, time_ns, 0, NO_RECORDED_VALUE))
        queue.append(_number({"name": pool, "model_server_endpoint": pod}, 0.0, time_ns, 0, NO_RECORDED_VALUE))
    return [
        _gauge(
            EPP_INFLIGHT_TOKENS,
            "[ALPHA] Current number of in-flight tokens per endpoint (uncached prompt tokens, "
            "optionally plus estimated output), as tracked by the in-flight load producer.",
            tokens,
        ),
        _gauge(
            EPP_INFLIGHT_REQUESTS,
            "[ALPHA] Current number of in-flight requests per endpoint, as tracked by the in-flight load producer.",
            requests,
        ),
        _gauge(
            EPP_QUEUE_SIZE,
            "[ALPHA] The total number of requests pending in the model server queue for each underlying endpoint.",
            queue,
        ),
    ]


def epp_resource(deployment: str, namespace: str) -> dict[str, str]:
    """The resource of the collector that scrapes the EPP (one replica, as llm-d requires)."""
    return {
        "service.name": deployment,
        "service.instance.id": f"{deployment}:9090",
        "k8s.deployment.name": deployment,
        "k8s.pod.name": f"{deployment}-5c9f7b6d48-q7x2m",
        "k8s.namespace.name": namespace,
    }


class OtlpPusher:
    """OTLP/gRPC ``MetricsService/Export`` client (plain gRPC, like the collectors' exporter).

    ``export`` hands the request to a background task and returns at once, so a slow or
    restarting scaler never holds up the simulation; while one export is in flight the
    next batch waits for it rather than piling up requests.
    """

    def __init__(self, target: str, timeout: float = 5.0) -> None:
        self.channel = grpc.aio.insecure_channel(target)
        self.stub: Any = metrics_service_pb2_grpc.MetricsServiceStub(self.channel)  # type: ignore[no-untyped-call]
        self.timeout = timeout
        self.sent = 0
        self.failed = 0
        self._pending: list[metrics_pb2.ResourceMetrics] = []
        self._task: asyncio.Task[None] | None = None

    async def push(self, resources: list[metrics_pb2.ResourceMetrics]) -> None:
        if not resources:
            return
        request = metrics_service_pb2.ExportMetricsServiceRequest(resource_metrics=resources)
        try:
            await self.stub.Export(request, timeout=self.timeout)
            self.sent += 1
        except grpc.aio.AioRpcError as exc:
            self.failed += 1
            logger.warning("OTLP export failed: %s %s", exc.code().name, exc.details())

    async def export(self, resources: list[metrics_pb2.ResourceMetrics]) -> None:
        self._pending.extend(resources)
        if self._task is None or self._task.done():
            batch, self._pending = self._pending, []
            self._task = asyncio.create_task(self.push(batch))

    async def close(self) -> None:
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
        if self._pending:
            await self.push(self._pending)
            self._pending = []
        await self.channel.close()
