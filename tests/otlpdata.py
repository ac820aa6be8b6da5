"""Builders for OTLP requests shaped like vLLM metrics after a collector's Prometheus receiver."""

from __future__ import annotations

import time
from typing import Any, cast

import grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2 as m
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

PREFILL = "pd-llm-d-modelservice-prefill"
DECODE = "pd-llm-d-modelservice-decode"


def kv(key: str, value: str) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(string_value=value))


def now_ns() -> int:
    return time.time_ns()


def gauge(name: str, value: float, t_ns: int, **attrs: str) -> m.Metric:
    point = m.NumberDataPoint(time_unix_nano=t_ns, as_double=value, attributes=[kv(k, v) for k, v in attrs.items()])
    return m.Metric(name=name, gauge=m.Gauge(data_points=[point]))


def counter(name: str, value: float, t_ns: int, **attrs: str) -> m.Metric:
    point = m.NumberDataPoint(time_unix_nano=t_ns, as_double=value, attributes=[kv(k, v) for k, v in attrs.items()])
    return m.Metric(
        name=name,
        sum=m.Sum(aggregation_temporality=m.AGGREGATION_TEMPORALITY_CUMULATIVE, is_monotonic=True, data_points=[point]),
    )


def histogram(name: str, bounds: list[float], counts: list[int], total: float, t_ns: int, **attrs: str) -> m.Metric:
    point = m.HistogramDataPoint(
        time_unix_nano=t_ns,
        count=sum(counts),
        sum=total,
        explicit_bounds=bounds,
        bucket_counts=counts,
        attributes=[kv(k, v) for k, v in attrs.items()],
    )
    return m.Metric(
        name=name,
        histogram=m.Histogram(aggregation_temporality=m.AGGREGATION_TEMPORALITY_CUMULATIVE, data_points=[point]),
    )


def request(deployment: str, pod: str, *metrics: m.Metric, namespace: str = "llm-d") -> ExportMetricsServiceRequest:
    resource = Resource(
        attributes=[
            kv("k8s.deployment.name", deployment),
            kv("k8s.pod.name", pod),
            kv("k8s.namespace.name", namespace),
        ]
    )
    return ExportMetricsServiceRequest(
        resource_metrics=[m.ResourceMetrics(resource=resource, scope_metrics=[m.ScopeMetrics(metrics=list(metrics))])]
    )


def otlp_stub(port: int, credentials: grpc.ChannelCredentials | None = None) -> Any:
    """A MetricsService stub on 127.0.0.1/localhost:``port`` (the OTLP stubs are untyped)."""
    if credentials is None:
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    else:
        channel = grpc.secure_channel(f"localhost:{port}", credentials)
    return cast(Any, metrics_service_pb2_grpc).MetricsServiceStub(channel)
