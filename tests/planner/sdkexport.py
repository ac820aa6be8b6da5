"""The fleet's OTLP requests sent through the OpenTelemetry SDK's own exporters.

A :class:`~tests.planner.fleet.Fleet` builds each pod's export as an OTLP request (timestamps
on its simulated clock); :func:`sdk_sink` hands the same points to an SDK ``MetricExporter``
(``OTLPMetricExporter`` over gRPC or HTTP), which encodes and sends them as in an instrumented
process. The SDK's meter would stamp points with the wall clock, so the points are built as the
SDK's reader would pass them, with the fleet's timestamps.
"""

from __future__ import annotations

from collections.abc import Callable

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2 as m
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Gauge,
    Histogram,
    HistogramDataPoint,
    Metric,
    MetricExporter,
    MetricExportResult,
    MetricsData,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope


def _attrs(pairs: list[KeyValue]) -> dict[str, str]:
    return {p.key: p.value.string_value for p in pairs}


def _number(point: m.NumberDataPoint) -> NumberDataPoint:
    value = point.as_double if point.HasField("as_double") else point.as_int
    return NumberDataPoint(_attrs(list(point.attributes)), point.start_time_unix_nano, point.time_unix_nano, value)


def _metric(metric: m.Metric) -> Metric:
    kind = metric.WhichOneof("data")
    data: Gauge | Sum | Histogram
    if kind == "gauge":
        data = Gauge([_number(p) for p in metric.gauge.data_points])
    elif kind == "sum":
        data = Sum(
            [_number(p) for p in metric.sum.data_points], AggregationTemporality.CUMULATIVE, metric.sum.is_monotonic
        )
    elif kind == "histogram":
        points = [
            HistogramDataPoint(
                _attrs(list(p.attributes)),
                p.start_time_unix_nano,
                p.time_unix_nano,
                p.count,
                p.sum,
                list(p.bucket_counts),
                list(p.explicit_bounds),
                min=0.0,
                max=0.0,
            )
            for p in metric.histogram.data_points
        ]
        data = Histogram(points, AggregationTemporality.CUMULATIVE)
    else:
        raise ValueError(f"{metric.name}: the fleet sends no {kind} metrics")
    return Metric(metric.name, metric.description, metric.unit, data)


def metrics_data(request: ExportMetricsServiceRequest) -> MetricsData:
    """The SDK's form of an OTLP request (gauges, cumulative sums and histograms)."""
    return MetricsData(
        [
            ResourceMetrics(
                Resource(_attrs(list(rm.resource.attributes))),
                [
                    ScopeMetrics(InstrumentationScope(sm.scope.name or "vllm"), [_metric(x) for x in sm.metrics], "")
                    for sm in rm.scope_metrics
                ],
                "",
            )
            for rm in request.resource_metrics
        ]
    )


def sdk_sink(exporter: MetricExporter) -> Callable[[ExportMetricsServiceRequest], None]:
    """A fleet sink that exports every request through ``exporter`` (a failed export fails)."""

    def export(request: ExportMetricsServiceRequest) -> None:
        result = exporter.export(metrics_data(request))
        assert result is MetricExportResult.SUCCESS, result

    return export
