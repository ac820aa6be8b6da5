"""The bench's pre-serialized fleet: placeholders patched to the values a round should carry."""

from __future__ import annotations

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.metrics.v1 import metrics_pb2 as m

from bench import workload


def _points(data: bytes) -> tuple[list[m.HistogramDataPoint], list[m.NumberDataPoint]]:
    request = ExportMetricsServiceRequest.FromString(data)
    metrics = [x for rm in request.resource_metrics for sm in rm.scope_metrics for x in sm.metrics]
    histograms = [p for x in metrics if x.HasField("histogram") for p in x.histogram.data_points]
    counters = [p for x in metrics if x.HasField("sum") for p in x.sum.data_points]
    return histograms, counters


@pytest.mark.parametrize("shape", [workload.DEFAULT, workload.VLLM16], ids=["default", "vllm16"])
def test_grown_rounds_grow_every_bucket_with_the_counters(shape: workload.Shape) -> None:
    payload = workload.payloads(2 * shape.series_per_pod, shape=shape)[1]
    base = workload.base_counts(payload.pod, len(shape.bounds) + 1)
    previous: list[int] | None = None
    for r in range(3):
        counter = workload.counter_value(r)
        histograms, counters = _points(payload.grown(1_000 + r, counter))
        assert len(histograms) == shape.histogram_count
        expected = [int(b * counter / workload.COUNTER_STEP) for b in base]
        for point in histograms:
            assert list(point.bucket_counts) == expected
            assert point.count == sum(expected)
            assert point.sum == pytest.approx(0.25 * sum(expected))
            assert point.time_unix_nano == 1_000 + r
        assert {p.as_double for p in counters} == {counter}
        if previous is not None:
            assert all(now > before for now, before in zip(expected, previous, strict=True))
        previous = expected


def test_render_keeps_the_histograms_fixed_and_patches_time_and_counters() -> None:
    payload = workload.payloads(80)[0]
    histograms, counters = _points(payload.render(42, 1_050.0))
    base = workload.base_counts(payload.pod, len(workload.HISTOGRAM_BOUNDS) + 1)
    assert [list(p.bucket_counts) for p in histograms] == [base]
    assert {p.as_double for p in counters} == {1_050.0}
    assert {p.time_unix_nano for p in histograms} | {p.time_unix_nano for p in counters} == {42}
    # grown and render differ only in the histograms' counts and sums
    assert _points(payload.grown(42, 1_050.0))[1] == counters
