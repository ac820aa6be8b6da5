"""Per-pod registries → OTLP as the collector's Prometheus receiver sends them, and what the scaler stores."""

from __future__ import annotations

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

from scaler import otlp
from scaler.config import DEFAULT_RESOURCE_LABELS, parse_resource_labels
from scaler.model import is_stale, metric_name
from scaler.sim.otlp_export import (
    NO_RECORDED_VALUE,
    pod_resource,
    registry_to_metrics,
    resource_metrics,
    vllm_to_metrics,
)
from scaler.sim.vllm_metrics import TTFT_BUCKETS, VllmMetrics

T_NS = 1_800_000_000_000_000_000
POD = "pd-llm-d-modelservice-decode-7d9f8c6b5d-xk2lp"


def pod_metrics() -> VllmMetrics:
    m = VllmMetrics("facebook/opt-125m", 2048)
    m.running.set(3)
    m.waiting.set(1)
    m.kv_usage.set(0.25)
    m.prompt_tokens.inc(512)
    m.success("stop", 512, 128)
    m.ttft.observe(0.03)
    m.ttft.observe(0.3, count=2)
    m.itl.observe(0.02, count=100)
    return m


def test_names_types_and_labels_are_vllms() -> None:
    metrics = {x.name: x for x in registry_to_metrics(pod_metrics().registry, T_NS, T_NS - 10**9)}
    assert set(metrics) == {
        "vllm:num_requests_running",
        "vllm:num_requests_waiting",
        "vllm:kv_cache_usage_perc",
        "vllm:request_success_total",
        "vllm:prompt_tokens_total",
        "vllm:generation_tokens_total",
        "vllm:prefix_cache_queries_total",
        "vllm:prefix_cache_hits_total",
        "vllm:time_to_first_token_seconds",
        "vllm:inter_token_latency_seconds",
        "vllm:e2e_request_latency_seconds",
        "vllm:request_queue_time_seconds",
        "vllm:request_prompt_tokens",
        "vllm:request_generation_tokens",
    }
    lengths = metrics["vllm:request_generation_tokens"].histogram.data_points[0]
    assert list(lengths.explicit_bounds) == [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000]  # 1-2-5 to 2048
    assert (lengths.count, lengths.sum) == (1, 128)
    assert metrics["vllm:request_prompt_tokens"].histogram.data_points[0].sum == 512
    running = metrics["vllm:num_requests_running"].gauge.data_points[0]
    assert running.as_double == 3 and {a.key: a.value.string_value for a in running.attributes} == {
        "engine": "0",
        "model_name": "facebook/opt-125m",
    }
    prompt = metrics["vllm:prompt_tokens_total"].sum
    assert prompt.is_monotonic and prompt.aggregation_temporality == 2  # cumulative
    assert prompt.data_points[0].as_double == 512 and prompt.data_points[0].start_time_unix_nano > 0
    reasons = {
        {a.key: a.value.string_value for a in p.attributes}["finished_reason"]: p.as_double
        for p in metrics["vllm:request_success_total"].sum.data_points
    }
    assert reasons == {"stop": 1.0, "length": 0.0, "abort": 0.0}
    ttft = metrics["vllm:time_to_first_token_seconds"].histogram.data_points[0]
    assert list(ttft.explicit_bounds) == list(TTFT_BUCKETS)
    assert len(ttft.bucket_counts) == len(TTFT_BUCKETS) + 1
    assert (ttft.count, round(ttft.sum, 6)) == (3, 0.63)
    assert ttft.bucket_counts[TTFT_BUCKETS.index(0.04)] == 1  # 0.03 falls in (0.02, 0.04]
    assert ttft.bucket_counts[TTFT_BUCKETS.index(0.5)] == 2


def test_the_scaler_stores_prometheus_style_series_with_promoted_labels() -> None:
    m = pod_metrics()
    resource = pod_resource(POD, "pd-llm-d-modelservice-decode", "llm-d", "decode")
    request = ExportMetricsServiceRequest(
        resource_metrics=[resource_metrics(resource, registry_to_metrics(m.registry, T_NS, T_NS))]
    )
    out = otlp.translate(request, parse_resource_labels(DEFAULT_RESOURCE_LABELS), 0)
    assert not out.rejected
    by_name: dict[str, list[dict[str, str]]] = {}
    for labels, _, _, _ in out.samples:
        by_name.setdefault(metric_name(labels), []).append(dict(labels))
    assert "vllm:time_to_first_token_seconds_bucket" in by_name
    assert "vllm:inter_token_latency_seconds_count" in by_name
    waiting = by_name["vllm:num_requests_waiting"][0]
    assert waiting["deployment"] == "pd-llm-d-modelservice-decode"
    assert waiting["pod"] == POD and waiting["namespace"] == "llm-d"
    assert waiting["job"] == "vllm-decode"


def test_a_removed_pod_sends_staleness_markers_once() -> None:
    stale = registry_to_metrics(pod_metrics().registry, T_NS, T_NS, stale=True)
    for metric in stale:
        kind = metric.WhichOneof("data")
        assert kind is not None
        points = getattr(metric, kind).data_points
        assert points and all(p.flags & NO_RECORDED_VALUE for p in points)
    request = ExportMetricsServiceRequest(resource_metrics=[resource_metrics({"k8s.pod.name": "p"}, stale)])
    out = otlp.translate(request, parse_resource_labels(DEFAULT_RESOURCE_LABELS), 0)
    assert out.samples and all(is_stale(value) for _, _, value, _ in out.samples)


def test_the_direct_conversion_sends_exactly_what_the_registry_conversion_does() -> None:
    m = pod_metrics()
    m.success("abort", 300, 0)
    m.itl.observe(0.3, count=7)
    for stale in (False, True):
        direct = vllm_to_metrics(m, T_NS, T_NS - 10**9, stale=stale)
        via_registry = registry_to_metrics(m.registry, T_NS, T_NS - 10**9, stale=stale)
        assert [x.SerializeToString() for x in direct] == [x.SerializeToString() for x in via_registry]
