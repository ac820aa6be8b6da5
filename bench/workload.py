"""A vLLM-like fleet as pre-serialized OTLP requests, so the benchmark client is never the bottleneck.

Each pod exports 40 series, as a collector's Prometheus receiver would send a vLLM ``/metrics`` page:

* 4 gauges: ``vllm:num_requests_running``, ``vllm:num_requests_waiting``, ``vllm:kv_cache_usage_perc``,
  ``vllm:gpu_cache_usage_perc``;
* 12 counters: ``vllm:request_success_total{finished_reason=stop|length|abort|error}`` and eight token /
  cache / preemption counters;
* 1 histogram (22 buckets incl. ``+Inf`` → 24 series): ``vllm:time_to_first_token_seconds`` on prefill
  pods, ``vllm:inter_token_latency_seconds`` on decode pods.

Resource attributes are what a collector attaches (``k8s.deployment.name``, ``k8s.pod.name``,
``k8s.namespace.name``, ``service.name``, ``service.instance.id``, …); data points carry vLLM's
``model_name`` and ``engine``. Pods are grouped 50 to a deployment, alternating prefill/decode,
so ``{deployment="…"}`` on a one-series-per-pod metric selects 50 series.

A pod's request is serialized once with placeholder bytes for the timestamp (``fixed64``) and for
the counter value (``double``); :meth:`PodPayload.render` patches them with ``bytes.replace``, the
histograms staying fixed (what the ingest loads send). :meth:`PodPayload.grown` also grows every
histogram bucket with the counters, from their placeholders (what a store filled to be queried
holds: a rate of its buckets is a number, and a quantile of it is not NaN).
Serialized ``ExportMetricsServiceRequest`` messages concatenate into one valid request (repeated
field), which is how :func:`batch` builds a collector-style batch of several pods.

:data:`VLLM16` is the fuller shape of issue 20's ingest figure: the same gauges and counters plus
vLLM's 14 latency and token histograms with 16 buckets each (268 series, 30 data points per pod).
"""

from __future__ import annotations

import itertools
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2 as m
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

SERIES_PER_POD = 40
PODS_PER_DEPLOYMENT = 50
NAMESPACE = "llm-d"
HISTOGRAM_BOUNDS = [
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75,
    1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0,
]  # fmt: skip
"""21 explicit bounds → 22 buckets with ``+Inf`` → 24 series with ``_count`` and ``_sum``."""

GAUGES = (
    "vllm:num_requests_running",
    "vllm:num_requests_waiting",
    "vllm:kv_cache_usage_perc",
    "vllm:gpu_cache_usage_perc",
)
COUNTERS = (
    "vllm:prompt_tokens_total",
    "vllm:generation_tokens_total",
    "vllm:num_preemptions_total",
    "vllm:prefix_cache_queries_total",
    "vllm:prefix_cache_hits_total",
    "vllm:external_prefix_cache_queries_total",
    "vllm:external_prefix_cache_hits_total",
    "vllm:corrupted_requests_total",
)
FINISHED_REASONS = ("stop", "length", "abort", "error")
VLLM_HISTOGRAMS = (
    "vllm:time_to_first_token_seconds",
    "vllm:inter_token_latency_seconds",
    "vllm:request_time_per_output_token_seconds",
    "vllm:e2e_request_latency_seconds",
    "vllm:request_queue_time_seconds",
    "vllm:request_inference_time_seconds",
    "vllm:request_prefill_time_seconds",
    "vllm:request_decode_time_seconds",
    "vllm:request_prompt_tokens",
    "vllm:request_generation_tokens",
    "vllm:request_max_num_generation_tokens",
    "vllm:request_params_max_tokens",
    "vllm:request_params_n",
    "vllm:iteration_tokens_total",
)
BOUNDS_16 = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 40.0]
"""15 explicit bounds → 16 buckets with ``+Inf``."""


@dataclass(frozen=True)
class Shape:
    """What one pod exports: the gauges and counters above plus these histograms."""

    name: str
    bounds: list[float] = field(default_factory=lambda: HISTOGRAM_BOUNDS)
    histograms: tuple[str, ...] = ()
    """Histogram names; empty: one, TTFT on prefill pods and ITL on decode pods."""

    @property
    def histogram_count(self) -> int:
        return len(self.histograms) or 1

    @property
    def series_per_pod(self) -> int:
        return len(GAUGES) + len(FINISHED_REASONS) + len(COUNTERS) + self.histogram_count * (len(self.bounds) + 3)

    @property
    def points_per_pod(self) -> int:
        return len(GAUGES) + len(FINISHED_REASONS) + len(COUNTERS) + self.histogram_count


DEFAULT = Shape("40 series/pod (4 gauges, 12 counters, one 22-bucket histogram)")
VLLM16 = Shape("268 series/pod (4 gauges, 12 counters, 14 16-bucket histograms)", BOUNDS_16, VLLM_HISTOGRAMS)

TS_MARK = 0x1BADC0FFEE0DD00D
"""Placeholder ``time_unix_nano`` (fixed64), replaced per round."""
COUNTER_MARK = 987654321.123456
"""Placeholder counter value (double), replaced per round so counters increase."""
TS_BYTES = struct.pack("<Q", TS_MARK)
COUNTER_BYTES = struct.pack("<d", COUNTER_MARK)
BUCKET_MARK = 0x0DDBA11C0FFEE000
"""Placeholder of bucket ``i``'s count (fixed64): ``BUCKET_MARK + i``; ``+ COUNT_SLOT``: the point's count."""
COUNT_SLOT = 0xFF
SUM_MARK = 876543210.654321
"""Placeholder histogram sum (double)."""
_BUCKET_BYTES = [struct.pack("<Q", BUCKET_MARK + i) for i in range(64)]
_COUNT_BYTES = struct.pack("<Q", BUCKET_MARK + COUNT_SLOT)
_SUM_BYTES = struct.pack("<d", SUM_MARK)
COUNTER_STEP = 50.0
"""A counter grows by this per round (:func:`counter_value`); a histogram bucket by its base count."""
START_NS = 1_700_000_000_000_000_000
"""``start_time_unix_nano`` of every cumulative point (a fixed process start)."""


@dataclass(frozen=True)
class Pod:
    index: int
    deployment: str
    role: str
    name: str


def deployment_name(index: int, prefix: str = "m") -> str:
    role = "prefill" if index % 2 == 0 else "decode"
    return f"{prefix}{index // 2:02d}-llm-d-modelservice-{role}"


def fleet(series: int, prefix: str = "m") -> list[Pod]:
    """Pods for about ``series`` series (40 per pod); ``prefix`` keeps fleets apart."""
    pods = []
    for i in range(max(1, series // SERIES_PER_POD)):
        dep = i // PODS_PER_DEPLOYMENT
        name = deployment_name(dep, prefix)
        pods.append(Pod(i, name, "prefill" if dep % 2 == 0 else "decode", f"{name}-{i:05d}-x7k2q"))
    return pods


def kv(key: str, value: str) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(string_value=value))


def _number(value: float, attrs: list[KeyValue]) -> m.NumberDataPoint:
    return m.NumberDataPoint(start_time_unix_nano=START_NS, time_unix_nano=TS_MARK, as_double=value, attributes=attrs)


def point_attributes(pod: Pod) -> list[KeyValue]:
    """The data-point attributes every metric of ``pod`` carries."""
    return [kv("model_name", f"model-{pod.index // (2 * PODS_PER_DEPLOYMENT):02d}"), kv("engine", "0")]


def base_counts(pod: Pod, buckets: int) -> list[int]:
    """The pod's per-bucket counts: a bucket grows by this much per round."""
    return [1 + (i * 7 + pod.index) % 13 for i in range(buckets)]


def pod_histogram(
    pod: Pod, bounds: list[float], attrs: list[KeyValue], name: str = "", placeholders: bool = False
) -> m.Metric:
    """A histogram of the pod (default: TTFT for prefill, ITL for decode) with placeholder time;
    with ``placeholders``, placeholder counts and sum too (:class:`PodPayload`), else fixed ones."""
    counts = base_counts(pod, len(bounds) + 1)
    if placeholders:
        marks = [BUCKET_MARK + i for i in range(len(counts))]
        count, total = BUCKET_MARK + COUNT_SLOT, SUM_MARK
    else:
        marks, count, total = counts, sum(counts), 0.25 * sum(counts)
    point = m.HistogramDataPoint(
        start_time_unix_nano=START_NS,
        time_unix_nano=TS_MARK,
        count=count,
        sum=total,
        explicit_bounds=bounds,
        bucket_counts=marks,
        attributes=attrs,
    )
    if not name:
        name = "vllm:time_to_first_token_seconds" if pod.role == "prefill" else "vllm:inter_token_latency_seconds"
    histogram = m.Histogram(aggregation_temporality=m.AGGREGATION_TEMPORALITY_CUMULATIVE, data_points=[point])
    return m.Metric(name=name, histogram=histogram)


def pod_request(pod: Pod, shape: Shape = DEFAULT) -> ExportMetricsServiceRequest:
    """The pod's request with placeholder timestamps, counter values and histogram counts and sums."""
    point_attrs = point_attributes(pod)
    metrics: list[m.Metric] = []
    gauge_values = (float(pod.index % 5), float(pod.index % 7), 0.1 + (pod.index % 9) / 10, 0.1 + (pod.index % 9) / 10)
    for name, value in zip(GAUGES, gauge_values, strict=True):
        metrics.append(m.Metric(name=name, gauge=m.Gauge(data_points=[_number(value, point_attrs)])))
    cumulative = m.AGGREGATION_TEMPORALITY_CUMULATIVE
    success = [_number(COUNTER_MARK, [*point_attrs, kv("finished_reason", r)]) for r in FINISHED_REASONS]
    metrics.append(
        m.Metric(
            name="vllm:request_success_total",
            sum=m.Sum(aggregation_temporality=cumulative, is_monotonic=True, data_points=success),
        )
    )
    for name in COUNTERS:
        sums = m.Sum(
            aggregation_temporality=cumulative, is_monotonic=True, data_points=[_number(COUNTER_MARK, point_attrs)]
        )
        metrics.append(m.Metric(name=name, sum=sums))
    for name in shape.histograms or ("",):
        metrics.append(pod_histogram(pod, shape.bounds, point_attrs, name, placeholders=True))
    resource = Resource(
        attributes=[
            kv("service.name", "vllm"),
            kv("service.instance.id", f"{pod.name}:8200"),
            kv("server.address", pod.name),
            kv("server.port", "8200"),
            kv("url.scheme", "http"),
            kv("k8s.namespace.name", NAMESPACE),
            kv("k8s.pod.name", pod.name),
            kv("k8s.deployment.name", pod.deployment),
        ]
    )
    scope = InstrumentationScope(
        name="github.com/open-telemetry/opentelemetry-collector-contrib/receiver/prometheusreceiver", version="0.120.0"
    )
    return ExportMetricsServiceRequest(
        resource_metrics=[
            m.ResourceMetrics(resource=resource, scope_metrics=[m.ScopeMetrics(scope=scope, metrics=metrics)])
        ]
    )


POINTS_PER_POD = len(GAUGES) + len(FINISHED_REASONS) + len(COUNTERS) + 1
"""OTLP data points per pod (the histogram is one point)."""
COUNTER_POINTS_PER_POD = len(FINISHED_REASONS) + len(COUNTERS)


_TS, _COUNTER, _COUNT, _SUM = -1, -2, -3, -4
"""Slot kinds of a template besides bucket indices (>= 0)."""


@dataclass(frozen=True)
class PodPayload:
    """A pod's serialized request with patchable placeholders: :meth:`render` patches the time and
    the counters of a template whose histograms stay fixed (cheap: the load generators render
    while they send); :meth:`grown` also grows the histograms (for a store filled to be queried)."""

    pod: Pod
    template: bytes
    """The request with its histograms at their base counts (time and counters still placeholders)."""
    pieces: tuple[bytes, ...]
    """The request's bytes between placeholders: one more than ``slots``."""
    slots: tuple[int, ...]
    """What goes between ``pieces[i]`` and ``pieces[i + 1]``: a bucket index or a slot kind."""
    base: tuple[int, ...]
    """The pod's per-bucket growth (:func:`base_counts`)."""

    @staticmethod
    def of(pod: Pod, shape: Shape = DEFAULT) -> PodPayload:
        marked = pod_request(pod, shape).SerializeToString()
        buckets = len(shape.bounds) + 1
        marks = {TS_BYTES: _TS, COUNTER_BYTES: _COUNTER, _COUNT_BYTES: _COUNT, _SUM_BYTES: _SUM}
        marks.update({_BUCKET_BYTES[i]: i for i in range(buckets)})
        expected = {_TS: shape.points_per_pod, _COUNTER: COUNTER_POINTS_PER_POD}
        expected.update({kind: shape.histogram_count for kind in (_COUNT, _SUM, *range(buckets))})
        found = sorted((at, kind) for mark, kind in marks.items() for at in positions(marked, mark))
        counted = {kind: sum(1 for _, k in found if k == kind) for kind in expected}
        starts = [at for at, _ in found]
        if counted != expected or any(b < a + 8 for a, b in itertools.pairwise(starts)):
            raise AssertionError("placeholder bytes are not unique in the serialized pod request")
        cuts = [0, *(p for at in starts for p in (at, at + 8)), len(marked)]
        pieces = tuple(marked[cuts[i] : cuts[i + 1]] for i in range(0, len(cuts), 2))
        base = tuple(base_counts(pod, buckets))
        slots = tuple(kind for _, kind in found)
        # fixed64 and double are fixed-width: filling the placeholders is serializing those values
        fixed = _join(pieces, slots, {**_histogram_values(base, 1.0), _TS: TS_BYTES, _COUNTER: COUNTER_BYTES})
        return PodPayload(pod, fixed, pieces, slots, base)

    def render(self, t_ns: int, counter: float) -> bytes:
        """The request at ``t_ns`` with counters at ``counter`` and the histograms fixed."""
        return self.template.replace(TS_BYTES, struct.pack("<Q", t_ns)).replace(
            COUNTER_BYTES, struct.pack("<d", counter)
        )

    def grown(self, t_ns: int, counter: float) -> bytes:
        """:meth:`render`, and each histogram bucket at its base count × ``counter / COUNTER_STEP``:
        buckets grow with the counters, so a rate over the rounds is a number and a quantile of
        it is not NaN (~4× the cost of :meth:`render`)."""
        values = _histogram_values(self.base, counter / COUNTER_STEP)
        values[_TS] = struct.pack("<Q", t_ns)
        values[_COUNTER] = struct.pack("<d", counter)
        return _join(self.pieces, self.slots, values)


def _histogram_values(base: Sequence[int], factor: float) -> dict[int, bytes]:
    """The serialized bucket counts (``base × factor``), count and sum of a pod's histograms."""
    grown = [int(b * factor) for b in base]
    values = {i: struct.pack("<Q", v) for i, v in enumerate(grown)}
    values[_COUNT] = struct.pack("<Q", sum(grown))
    values[_SUM] = struct.pack("<d", 0.25 * sum(grown))
    return values


def _join(pieces: Sequence[bytes], slots: Sequence[int], values: dict[int, bytes]) -> bytes:
    out = [pieces[0]]
    for slot, piece in zip(slots, pieces[1:], strict=True):
        out.append(values[slot])
        out.append(piece)
    return b"".join(out)


def positions(data: bytes, mark: bytes) -> list[int]:
    """Where ``mark`` starts in ``data``, every occurrence."""
    out, at = [], data.find(mark)
    while at >= 0:
        out.append(at)
        at = data.find(mark, at + 1)
    return out


def payloads(series: int, prefix: str = "m", shape: Shape = DEFAULT) -> list[PodPayload]:
    pods = fleet(series * SERIES_PER_POD // shape.series_per_pod, prefix)
    return [PodPayload.of(pod, shape) for pod in pods]


def counter_value(round_index: int) -> float:
    """Counters grow by 50 per round (10/s at 5 s spacing)."""
    return 1000.0 + COUNTER_STEP * round_index


def render_round(pods: Sequence[PodPayload], t_ns: int, round_index: int, pods_per_request: int) -> list[bytes]:
    """One scrape of every pod at ``t_ns``, batched ``pods_per_request`` pods to a request."""
    counter = counter_value(round_index)
    rendered = [p.render(t_ns, counter) for p in pods]
    return batch(rendered, pods_per_request)


def batch(rendered: Sequence[bytes], pods_per_request: int) -> list[bytes]:
    """Concatenate serialized requests: a repeated field, so the result is one valid request."""
    return [b"".join(rendered[i : i + pods_per_request]) for i in range(0, len(rendered), pods_per_request)]


def decode_walk(data: bytes) -> int:
    """The "decode limit": parse and touch every attribute and value; returns the samples (a
    histogram point counts as its bucket series plus ``_count`` and ``_sum``, as the store does)."""
    request = ExportMetricsServiceRequest()
    request.ParseFromString(data)
    samples = 0
    touched = 0
    for rm in request.resource_metrics:
        for kv in rm.resource.attributes:
            touched += len(kv.key) + len(kv.value.string_value)
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                kind = metric.WhichOneof("data")
                touched += len(metric.name)
                if kind == "histogram":
                    for hp in metric.histogram.data_points:
                        for kv in hp.attributes:
                            touched += len(kv.key) + len(kv.value.string_value)
                        touched += hp.time_unix_nano + hp.count + int(hp.sum)
                        touched += sum(hp.bucket_counts) + len(hp.explicit_bounds)
                        samples += len(hp.bucket_counts) + 2
                elif kind in {"gauge", "sum"}:
                    points = metric.gauge.data_points if kind == "gauge" else metric.sum.data_points
                    for p in points:
                        for kv in p.attributes:
                            touched += len(kv.key) + len(kv.value.string_value)
                        touched += p.time_unix_nano + int(p.as_double)
                        samples += 1
    return samples if touched else 0
