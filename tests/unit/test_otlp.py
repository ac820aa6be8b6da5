"""OTLP → samples: every point type, temporality, promotion, staleness, exponential buckets.

Every request a test builds also goes through the native ingest path afterwards, which must
store exactly what the reference path (``otlp.translate`` + ``Store.append``) stores.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2 as m
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from scaler import otlp
from scaler.config import Promotions, Settings, parse_resource_labels
from scaler.model import METRIC_NAME, is_stale
from tests.fuzz import common

PROMOTE = parse_resource_labels(
    "k8s.namespace.name=namespace,k8s.pod.name=pod,k8s.deployment.name=deployment,service.name=job"
)
T_NS = 1_800_000_000_000_000_000
T_MS = T_NS // 1_000_000
DEFAULT_RESOURCE: dict[str, object] = {"k8s.deployment.name": "decode", "k8s.pod.name": "d-1"}


def kv(key: str, value: object) -> KeyValue:
    if isinstance(value, bool):
        return KeyValue(key=key, value=AnyValue(bool_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    if isinstance(value, float):
        return KeyValue(key=key, value=AnyValue(double_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=str(value)))


BUILT: list[ExportMetricsServiceRequest] = []
"""The requests the running test built."""


@pytest.fixture(autouse=True)
def _native_path_agrees() -> Iterator[None]:
    BUILT.clear()
    yield
    for req in BUILT:
        common.compare_native(req.SerializeToString(), req, T_NS / 1e9, max_series=100_000, budget=2)


def request(*metrics: m.Metric, resource: dict[str, object] | None = None) -> ExportMetricsServiceRequest:
    attrs = [kv(k, v) for k, v in (DEFAULT_RESOURCE if resource is None else resource).items()]
    rm = m.ResourceMetrics(resource=Resource(attributes=attrs), scope_metrics=[m.ScopeMetrics(metrics=list(metrics))])
    built = ExportMetricsServiceRequest(resource_metrics=[rm])
    BUILT.append(built)
    return built


def as_dict(req: ExportMetricsServiceRequest) -> dict[tuple[tuple[str, str], ...], tuple[int, float, bool]]:
    out = otlp.translate(req, PROMOTE, now_ms=42)
    return {labels: (ts, value, delta) for labels, ts, value, delta in out.samples}


def lbl(name: str, **kv: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted({**kv, METRIC_NAME: name}.items()))


def test_gauge_int_and_double_with_promotion_and_point_attribute_precedence() -> None:
    g = m.Metric(
        name="vllm:num_requests_waiting",
        gauge=m.Gauge(
            data_points=[
                m.NumberDataPoint(time_unix_nano=T_NS, as_int=3, attributes=[kv("model_name", "opt")]),
                m.NumberDataPoint(time_unix_nano=T_NS, as_double=-0.5, attributes=[kv("deployment", "override")]),
            ]
        ),
    )
    got = as_dict(request(g))
    assert got[lbl("vllm:num_requests_waiting", deployment="decode", pod="d-1", model_name="opt")] == (T_MS, 3.0, False)
    assert got[lbl("vllm:num_requests_waiting", deployment="override", pod="d-1")] == (T_MS, -0.5, False)


def test_non_string_attributes_use_their_string_form() -> None:
    g = m.Metric(
        name="x",
        gauge=m.Gauge(
            data_points=[
                m.NumberDataPoint(
                    time_unix_nano=T_NS, as_int=1, attributes=[kv("i", 7), kv("b", True), kv("d", 0.5), kv("f", 2.0)]
                )
            ]
        ),
    )
    (labels,) = as_dict(request(g, resource={}))
    assert dict(labels) == {METRIC_NAME: "x", "i": "7", "b": "true", "d": "0.5", "f": "2"}


def test_cumulative_and_delta_sums() -> None:
    cumulative = m.Metric(
        name="vllm:prompt_tokens_total",
        sum=m.Sum(
            aggregation_temporality=m.AGGREGATION_TEMPORALITY_CUMULATIVE,
            is_monotonic=True,
            data_points=[m.NumberDataPoint(time_unix_nano=T_NS, as_double=100.0)],
        ),
    )
    delta = m.Metric(
        name="requests_total",
        sum=m.Sum(
            aggregation_temporality=m.AGGREGATION_TEMPORALITY_DELTA,
            is_monotonic=True,
            data_points=[m.NumberDataPoint(time_unix_nano=T_NS, as_int=4)],
        ),
    )
    got = as_dict(request(cumulative, delta, resource={}))
    assert got[lbl("vllm:prompt_tokens_total")] == (T_MS, 100.0, False)
    assert got[lbl("requests_total")] == (T_MS, 4.0, True)


def test_histogram_becomes_cumulative_buckets_count_and_sum() -> None:
    h = m.Metric(
        name="vllm:time_to_first_token_seconds",
        histogram=m.Histogram(
            aggregation_temporality=m.AGGREGATION_TEMPORALITY_CUMULATIVE,
            data_points=[
                m.HistogramDataPoint(
                    time_unix_nano=T_NS, count=6, sum=1.25, explicit_bounds=[0.1, 0.5, 1.0], bucket_counts=[1, 2, 3, 0]
                )
            ],
        ),
    )
    got = as_dict(request(h, resource={}))
    name = "vllm:time_to_first_token_seconds"
    assert {dict(k)["le"]: v[1] for k, v in got.items() if "le" in dict(k)} == {
        "0.1": 1.0,
        "0.5": 3.0,
        "1": 6.0,
        "+Inf": 6.0,
    }
    assert got[lbl(name + "_count")][1] == 6.0
    assert got[lbl(name + "_sum")][1] == 1.25


def test_histogram_with_inconsistent_buckets_is_rejected() -> None:
    h = m.Metric(
        name="bad",
        histogram=m.Histogram(
            data_points=[m.HistogramDataPoint(time_unix_nano=T_NS, count=1, explicit_bounds=[1.0], bucket_counts=[1])]
        ),
    )
    out = otlp.translate(request(h), PROMOTE, 0)
    assert out.samples == [] and sum(out.rejected.values()) == 1


def test_exponential_histogram_buckets() -> None:
    # scale 0: base 2. positive offset 0 → buckets (1,2], (2,4]; negative offset 0 → [-2,-1)
    p = m.ExponentialHistogramDataPoint(
        time_unix_nano=T_NS,
        count=8,
        sum=7.0,
        scale=0,
        zero_count=1,
        zero_threshold=0.0,
        positive=m.ExponentialHistogramDataPoint.Buckets(offset=0, bucket_counts=[3, 2]),
        negative=m.ExponentialHistogramDataPoint.Buckets(offset=0, bucket_counts=[2]),
    )
    buckets = otlp.exponential_buckets(p)
    assert buckets == [(-1.0, 2), (0.0, 1), (2.0, 3), (4.0, 2), (math.inf, 0)]
    metric = m.Metric(name="lat", exponential_histogram=m.ExponentialHistogram(data_points=[p]))
    got = as_dict(request(metric, resource={}))
    cumulative = {dict(k)["le"]: v[1] for k, v in got.items() if "le" in dict(k)}
    assert cumulative == {"-1": 2.0, "0": 3.0, "2": 6.0, "4": 8.0, "+Inf": 8.0}


def test_summary_becomes_quantiles_count_and_sum() -> None:
    s = m.Metric(
        name="rpc_latency",
        summary=m.Summary(
            data_points=[
                m.SummaryDataPoint(
                    time_unix_nano=T_NS,
                    count=10,
                    sum=5.0,
                    quantile_values=[
                        m.SummaryDataPoint.ValueAtQuantile(quantile=0.5, value=0.4),
                        m.SummaryDataPoint.ValueAtQuantile(quantile=0.99, value=0.9),
                    ],
                )
            ]
        ),
    )
    got = as_dict(request(s, resource={}))
    assert got[lbl("rpc_latency", quantile="0.5")][1] == 0.4
    assert got[lbl("rpc_latency", quantile="0.99")][1] == 0.9
    assert got[lbl("rpc_latency_count")][1] == 10.0
    assert got[lbl("rpc_latency_sum")][1] == 5.0


def test_no_recorded_value_points_become_staleness_markers() -> None:
    flag = m.DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK
    g = m.Metric(name="g", gauge=m.Gauge(data_points=[m.NumberDataPoint(time_unix_nano=T_NS, flags=flag)]))
    h = m.Metric(
        name="h",
        histogram=m.Histogram(
            aggregation_temporality=m.AGGREGATION_TEMPORALITY_DELTA,
            data_points=[
                m.HistogramDataPoint(time_unix_nano=T_NS, flags=flag, explicit_bounds=[1.0], bucket_counts=[0, 0])
            ],
        ),
    )
    got = as_dict(request(g, h, resource={}))
    assert got and all(is_stale(v) and not delta for _, v, delta in got.values())


def test_missing_timestamp_uses_receive_time_and_empty_name_is_rejected() -> None:
    g = m.Metric(name="g", gauge=m.Gauge(data_points=[m.NumberDataPoint(as_int=1)]))
    nameless = m.Metric(name="", gauge=m.Gauge(data_points=[m.NumberDataPoint(as_int=1)]))
    out = otlp.translate(request(g, nameless, resource={}), PROMOTE, now_ms=42)
    assert [(ts, v) for _, ts, v, _ in out.samples] == [(42, 1.0)]
    assert out.data_points == 2 and sum(out.rejected.values()) == 1


def test_format_float_matches_go() -> None:
    assert [otlp.format_float(x) for x in (1.0, 0.005, 2560.0, 1e-9, math.inf, 0.1 + 0.2)] == [
        "1",
        "0.005",
        "2560",
        "0.000000001",
        "+Inf",
        "0.30000000000000004",
    ]


def test_empty_attribute_values_are_dropped_like_prometheus() -> None:
    g = m.Metric(
        name="g",
        gauge=m.Gauge(data_points=[m.NumberDataPoint(time_unix_nano=T_NS, as_int=1, attributes=[kv("model", "")])]),
    )
    (labels,) = as_dict(request(g, resource={"k8s.pod.name": ""}))
    assert labels == lbl("g")


def test_translation_in_parts_splits_at_metric_boundaries_and_loses_nothing() -> None:
    metrics = [
        m.Metric(name=f"g{i}", gauge=m.Gauge(data_points=[m.NumberDataPoint(time_unix_nano=T_NS, as_int=i)]))
        for i in range(10)
    ]
    req = request(*metrics)
    whole = otlp.translate(req, PROMOTE, 0)
    parts = list(otlp.translate_in_parts(req, PROMOTE, 0, part_samples=3))
    assert [len(p.samples) for p in parts] == [3, 3, 3, 1]
    assert [s for p in parts for s in p.samples] == whole.samples
    assert sum(p.data_points for p in parts) == whole.data_points == 10


def _delta_histogram(bounds: list[float], counts: list[int]) -> m.Metric:
    point = m.HistogramDataPoint(
        time_unix_nano=T_NS, count=sum(counts), sum=1.0, explicit_bounds=bounds, bucket_counts=counts
    )
    return m.Metric(
        name="h", histogram=m.Histogram(aggregation_temporality=m.AGGREGATION_TEMPORALITY_DELTA, data_points=[point])
    )


def test_a_repeated_or_explicit_infinite_bound_gives_one_sample_per_bucket_series() -> None:
    """Two samples of one series at one timestamp would be added twice by a delta histogram."""
    out = otlp.translate(request(_delta_histogram([1.0, 1.0, math.inf], [1, 2, 3, 4])), PROMOTE, now_ms=42)
    buckets = [
        (dict(labels)["le"], value) for labels, _, value, _ in out.samples if dict(labels)[METRIC_NAME] == "h_bucket"
    ]
    assert buckets == [("1", 3.0), ("+Inf", 10.0)]
    assert len({labels for labels, *_ in out.samples}) == len(out.samples)


def test_an_attribute_without_a_key_is_not_a_label() -> None:
    point = m.NumberDataPoint(time_unix_nano=T_NS, as_double=1.0, attributes=[kv("", "x"), kv("ok", "y")])
    (labels,) = as_dict(request(m.Metric(name="g", gauge=m.Gauge(data_points=[point]))))
    assert "" not in dict(labels) and dict(labels)["ok"] == "y"


# ------------------------------------------------------------------ series identity

DEFAULT_PROMOTIONS = Settings().otlp.promotions
"""The shipped promotions: host.name (else pod) -> host.name, as kedify/otel-add-on, and the
resource hash under ``resource_hash``."""


def series_of(*resources: Mapping[str, object], point: Mapping[str, str] | None = None) -> list[dict[str, str]]:
    """The label sets (without ``__name__``) of one gauge point pushed from each resource."""
    rms = []
    for attrs in resources:
        metric = m.Metric(
            name="g",
            gauge=m.Gauge(
                data_points=[
                    m.NumberDataPoint(
                        time_unix_nano=T_NS, as_double=1.0, attributes=[kv(k, v) for k, v in (point or {}).items()]
                    )
                ]
            ),
        )
        resource = Resource(attributes=[kv(k, v) for k, v in attrs.items()])
        rms.append(m.ResourceMetrics(resource=resource, scope_metrics=[m.ScopeMetrics(metrics=[metric])]))
    req = ExportMetricsServiceRequest(resource_metrics=rms)
    BUILT.append(req)
    out = otlp.translate(req, DEFAULT_PROMOTIONS, now_ms=42)
    return [{k: v for k, v in labels if k != METRIC_NAME} for labels, *_ in out.samples]


def test_host_name_is_promoted_under_kedifys_label_name_else_the_resource_pod() -> None:
    a, b = series_of({"host.name": "node-a"}, {"host.name": "node-b"})
    assert (a, b) == ({"host.name": "node-a"}, {"host.name": "node-b"})  # two sources, two series
    (from_pod,) = series_of({"pod": "p-1"})
    assert from_pod == {"host.name": "p-1"}
    (both,) = series_of({"pod": "p-1", "host.name": "node-a"})  # host.name is listed first: it wins
    assert both["host.name"] == "node-a" and both["resource_hash"] == otlp.resource_hash(
        [("pod", "p-1"), ("host.name", "node-a")]
    )


def test_resources_that_differ_in_any_attribute_never_share_a_series() -> None:
    sidecar = {"k8s.pod.name": "decode-0", "k8s.container.name": "sidecar"}
    vllm = {"k8s.pod.name": "decode-0", "k8s.container.name": "vllm"}
    one, two = series_of(sidecar, vllm)
    assert one != two and one["pod"] == two["pod"] == "decode-0"
    assert one["resource_hash"] == otlp.resource_hash(sidecar.items())
    assert two["resource_hash"] == otlp.resource_hash(vllm.items())
    assert len(one["resource_hash"]) == 16 and int(one["resource_hash"], 16) >= 0


def test_no_hash_when_the_promoted_labels_carry_every_attribute() -> None:
    (labels,) = series_of({"k8s.pod.name": "decode-0", "k8s.namespace.name": "llm-d", "host.name": "n"})
    assert labels == {"pod": "decode-0", "namespace": "llm-d", "host.name": "n"}
    (bare,) = series_of({})
    assert bare == {}


def test_an_empty_attribute_or_an_overriding_point_attribute_keeps_resources_apart() -> None:
    empty, absent = series_of({"k8s.pod.name": "p", "host.name": ""}, {"k8s.pod.name": "p"})
    assert "resource_hash" in empty and absent == {"pod": "p"}
    # a point attribute `pod` hides the resources' pod names: the hash keeps them apart
    a, b = series_of({"k8s.pod.name": "p-1"}, {"k8s.pod.name": "p-2"}, point={"pod": "same"})
    assert a["pod"] == b["pod"] == "same" and a["resource_hash"] != b["resource_hash"]
    # the same value is no loss: no hash
    (same,) = series_of({"k8s.pod.name": "p-1"}, point={"pod": "p-1"})
    assert same == {"pod": "p-1"}


def test_the_hash_label_can_be_renamed_or_switched_off() -> None:
    resource = [kv("k8s.container.name", "vllm")]
    renamed = otlp.ResourceLabels.of(resource, Promotions({}, "source")).base([])
    assert renamed == [("source", otlp.resource_hash([("k8s.container.name", "vllm")]))]
    assert otlp.ResourceLabels.of(resource, Promotions({}, None)).base([]) == []
