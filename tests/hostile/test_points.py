"""Hostile data points in well-formed requests: non-finite values, oversized and too many labels,
timestamps out of range, empty requests (cases 4, 5, 6, 7 and 8 of issue 9).

Points the limits turn away are answered with ``partial_success`` (the number of samples and the
reason) and counted by reason; points the server can keep are stored and served as strict JSON."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.metrics.v1 import metrics_pb2 as m
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from scaler.model import RejectReason
from tests.hostile.support import (
    JSON,
    RETENTION_SECONDS,
    Counters,
    Hostile,
    export_over,
    strict_json,
)
from tests.otlpdata import counter, gauge, histogram, kv, now_ns, request

pytestmark = pytest.mark.timeout(60)

TRANSPORTS = ["grpc", "http"]
PROMOTED = 3
"""Resource attributes that ``tests.otlpdata.request`` sets and the server promotes to labels
(deployment, pod, namespace)."""


@pytest.fixture(scope="module")
def hostile() -> Iterator[Hostile]:
    with Hostile.running() as running:
        yield running


class Deltas:
    """Counter changes around one request."""

    def __init__(self, before: Counters, after: Counters) -> None:
        self.before, self.after = before, after

    def __call__(self, name: str, **labels: str) -> float:
        return self.after.value(name, **labels) - self.before.value(name, **labels)


def exchange(
    hostile: Hostile, transport: str, req: ExportMetricsServiceRequest
) -> tuple[ExportMetricsServiceResponse, Deltas]:
    before = hostile.counters()
    reply = export_over(hostile, transport, req)
    return reply, Deltas(before, hostile.counters())


def assert_all_rejected(
    reply: ExportMetricsServiceResponse, delta: Deltas, transport: str, reason: str, samples: int
) -> None:
    """Every sample refused for ``reason``: partial success with the count, counted, nothing stored."""
    assert reply.partial_success.rejected_data_points == samples, reply
    assert reason in reply.partial_success.error_message, reply.partial_success.error_message
    assert delta("otlp_points_rejected_total", transport=transport, reason=reason) == samples
    assert delta("otlp_points_rejected_total", transport=transport) == samples
    assert delta("otlp_points_received_total", transport=transport) == 0
    assert delta("otlp_requests_total", transport=transport, outcome="partial") == 1
    assert delta("store_series") == 0


def assert_all_accepted(reply: ExportMetricsServiceResponse, delta: Deltas, transport: str, samples: int) -> None:
    assert reply.partial_success.rejected_data_points == 0, reply
    assert reply.partial_success.error_message == "", reply
    assert delta("otlp_points_received_total", transport=transport) == samples
    assert delta("otlp_points_rejected_total", transport=transport) == 0
    assert delta("otlp_requests_total", transport=transport, outcome="ok") == 1


def stored_values(hostile: Hostile, name: str) -> list[Any]:
    """The sample values of every series named ``name`` in ``/memstore/data`` (the retention window)."""
    reply = hostile.http.get("/memstore/data", params={"name": name})
    assert reply.status_code == 200, reply.text
    return [p["value"] for s in strict_json(reply.text).get(name, []) for p in s["data"]]


# ---------------------------------------------------------------------------------- case 4

NONFINITE = {"nan": math.nan, "pinf": math.inf, "ninf": -math.inf}
SPELLED = {"nan": "NaN", "pinf": "+Inf", "ninf": "-Inf"}


@pytest.mark.parametrize("transport", ["grpc", "http", "http-json"])
@pytest.mark.parametrize("kind", ["gauge", "counter"])
def test_nan_and_infinities_are_stored_and_served_as_strict_json(hostile: Hostile, transport: str, kind: str) -> None:
    name = f"hostile_nonfinite_{kind}_{transport.replace('-', '_')}"
    build = gauge if kind == "gauge" else counter
    t = now_ns()
    req = request("hostile-nonfinite", "pod-0", *[build(name, v, t, v=label) for label, v in NONFINITE.items()])
    before = hostile.counters()
    if transport == "http-json":
        posted = hostile.post_otlp(json.dumps(json_format.MessageToDict(req)).encode(), JSON)
        assert posted.status_code == 200, posted.text
        assert strict_json(posted.text).get("partialSuccess", {}).get("rejectedDataPoints", 0) in (0, "0")
        delta = Deltas(before, hostile.counters())
        assert delta("otlp_points_received_total", transport="http") == 3
        assert delta("otlp_points_rejected_total", transport="http") == 0
    else:
        exported, delta = exchange(hostile, transport, req)
        assert_all_accepted(exported, delta, transport, 3)

    data = hostile.http.get("/memstore/data", params={"name": name})
    assert data.status_code == 200
    stored = strict_json(data.text)[name]
    assert {s["labels"]["v"]: [p["value"] for p in s["data"]] for s in stored} == {k: [v] for k, v in SPELLED.items()}
    for s in stored:
        assert s["aggregatesOverTime"]["last_one"] == SPELLED[s["labels"]["v"]]

    prom = hostile.http.get("/api/v1/query", params={"query": f'{{__name__="{name}"}}'})
    assert prom.status_code == 200
    result = strict_json(prom.text)["data"]["result"]
    assert {r["metric"]["v"]: r["value"][1] for r in result} == SPELLED

    now = time.time()
    span = hostile.http.get(
        "/api/v1/query_range",
        params={"query": f'{{__name__="{name}"}}', "start": now - 30, "end": now, "step": 10},
    )
    assert span.status_code == 200
    for r in strict_json(span.text)["data"]["result"]:
        assert {v for _, v in r["values"]} == {SPELLED[r["metric"]["v"]]}

    for label, spelled in SPELLED.items():
        compat = hostile.http.post("/memstore/query", json={"query": f'{name}{{v="{label}"}}'})
        assert compat.status_code == 200
        value = strict_json(compat.text)["value"]
        if label != "nan":  # a NaN result reads as "not found" (scaler/trigger/readings.py), by design
            assert value == spelled


def test_a_series_holding_both_infinities_is_served_with_its_aggregates(hostile: Hostile) -> None:
    # the memstore's "rate" aggregate (kedify's) summed +Inf and -Inf with math.fsum, which raises:
    # /memstore/data answered 500 for the whole metric (found by a 5-minute fuzz run of PromQL)
    name = "hostile_both_infinities"
    t = now_ns()
    for i, value in enumerate((math.inf, -math.inf, 1.0)):
        req = request("hostile-nonfinite", "pod-0", gauge(name, value, t - (3 - i) * 10**9))
        reply, delta = exchange(hostile, "grpc", req)
        assert_all_accepted(reply, delta, "grpc", 1)
    data = hostile.http.get("/memstore/data", params={"name": name})
    assert data.status_code == 200, data.text
    (series,) = strict_json(data.text)[name]
    assert [p["value"] for p in series["data"]] == ["+Inf", "-Inf", 1.0]
    aggregates = series["aggregatesOverTime"]
    assert aggregates["rate"] == "NaN" and aggregates["count"] == 3
    assert (aggregates["min"], aggregates["max"], aggregates["last_one"]) == ("-Inf", "+Inf", 1.0)


# ---------------------------------------------------------------------------------- case 5


def limit_cases() -> dict[str, tuple[Callable[[str], ExportMetricsServiceRequest], str]]:
    t = now_ns()

    def with_attribute(key: str, value: str) -> Callable[[str], ExportMetricsServiceRequest]:
        def build(name: str) -> ExportMetricsServiceRequest:
            return request(
                "hostile-limits",
                "pod-0",
                gauge(name, 1.0, t, **{key: value}),
                histogram(name + "_seconds", [1.0, 2.0], [1, 1, 1], 4.5, t, **{key: value}),
            )

        return build

    def with_pod(pod: str) -> Callable[[str], ExportMetricsServiceRequest]:
        def build(name: str) -> ExportMetricsServiceRequest:
            return request(
                "hostile-limits",
                pod,
                gauge(name, 1.0, t),
                histogram(name + "_seconds", [1.0, 2.0], [1, 1, 1], 4.5, t),
            )

        return build

    return {
        "value-10000": (with_attribute("long", "v" * 10_000), RejectReason.LABEL_VALUE_TOO_LONG.value),
        "name-300": (with_attribute("n" * 300, "v"), RejectReason.LABEL_NAME_TOO_LONG.value),
        "promoted-value-10000": (with_pod("p" * 10_000), RejectReason.LABEL_VALUE_TOO_LONG.value),
    }


LIMITS = limit_cases()
SAMPLES_PER_LIMIT_CASE = 1 + 3 + 2
"""The gauge's sample, the histogram's three buckets (1, 2, +Inf), its _count and its _sum."""


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("case", sorted(LIMITS))
def test_oversized_label_is_rejected_per_sample(hostile: Hostile, transport: str, case: str) -> None:
    build, reason = LIMITS[case]
    name = f"hostile_limit_{case.replace('-', '_')}_{transport}"
    reply, delta = exchange(hostile, transport, build(name))
    assert_all_rejected(reply, delta, transport, reason, SAMPLES_PER_LIMIT_CASE)
    assert not [n for n in hostile.names() if n.startswith(name)]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_labels_at_the_length_limits_are_accepted(hostile: Hostile, transport: str) -> None:
    """Control: a 256-character name and a 2048-character value are allowed (INTERFACE §2)."""
    name = f"hostile_limit_exact_{transport}"
    req = request("hostile-limits", "pod-0", gauge(name, 5.0, now_ns(), **{"n" * 256: "v" * 2048}))
    reply, delta = exchange(hostile, transport, req)
    assert_all_accepted(reply, delta, transport, 1)
    assert hostile.query_value(name) == 5.0


# ---------------------------------------------------------------------------------- case 6


def labelled(name: str, count: int) -> ExportMetricsServiceRequest:
    """A gauge point with ``count`` attributes (plus the promoted resource labels)."""
    point = m.NumberDataPoint(
        time_unix_nano=now_ns(), as_double=2.0, attributes=[kv(f"label_{i:04d}", f"value_{i}") for i in range(count)]
    )
    return request("hostile-labels", "pod-0", m.Metric(name=name, gauge=m.Gauge(data_points=[point])))


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("count", [1000, 64 - PROMOTED + 1])
def test_too_many_labels_are_rejected(hostile: Hostile, transport: str, count: int) -> None:
    name = f"hostile_labels_{count}_{transport}"
    reply, delta = exchange(hostile, transport, labelled(name, count))
    assert_all_rejected(reply, delta, transport, RejectReason.TOO_MANY_LABELS.value, 1)
    assert name not in hostile.names()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_labels_at_the_count_limit_are_accepted(hostile: Hostile, transport: str) -> None:
    """Control: 64 labels after promotion are allowed."""
    name = f"hostile_labels_exact_{transport}"
    reply, delta = exchange(hostile, transport, labelled(name, 64 - PROMOTED))
    assert_all_accepted(reply, delta, transport, 1)
    assert hostile.query_value(name) == 2.0


# ---------------------------------------------------------------------------------- case 7

SECOND = 1_000_000_000
TOO_OLD = RejectReason.TOO_OLD.value
TOO_NEW = RejectReason.TOO_FAR_IN_FUTURE.value
TIMESTAMPS: dict[str, tuple[Callable[[], int], str | None]] = {
    # OTLP: time_unix_nano 0 means "unknown"; the receiver stamps such a point with its own clock
    "zero": (lambda: 0, None),
    "one-second": (lambda: SECOND, TOO_OLD),
    "retention-plus-1s-ago": (lambda: now_ns() - (RETENTION_SECONDS + 1) * SECOND, TOO_OLD),
    "one-day-ahead": (lambda: now_ns() + 86_400 * SECOND, TOO_NEW),
    "max-uint64": (lambda: 2**64 - 1, TOO_NEW),
    "int64-overflow": (lambda: 2**63, TOO_NEW),
    "now": (now_ns, None),
    "retention-minus-30s-ago": (lambda: now_ns() - (RETENTION_SECONDS - 30) * SECOND, None),
    "skew-minus-60s-ahead": (lambda: now_ns() + (300 - 60) * SECOND, None),
}


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("case", list(TIMESTAMPS))
def test_timestamps_out_of_range_are_rejected(hostile: Hostile, transport: str, case: str) -> None:
    stamp, reason = TIMESTAMPS[case]
    name = f"hostile_ts_{case.replace('-', '_')}_{transport}"
    req = request("hostile-ts", "pod-0", gauge(name, 9.0, stamp()), counter(name + "_total", 10.0, stamp()))
    reply, delta = exchange(hostile, transport, req)
    if reason is None:
        assert_all_accepted(reply, delta, transport, 2)
        assert delta("store_series") == 2
        if not case.startswith("skew"):  # a sample from the future is not visible before its time
            # (an unknown timestamp is stored at the receiver's clock, so it reads back like "now")
            assert stored_values(hostile, name) == [9.0]
            assert stored_values(hostile, name + "_total") == [10.0]
    else:
        assert_all_rejected(reply, delta, transport, reason, 2)
        assert name not in hostile.names()


# ---------------------------------------------------------------------------------- case 8


def _empty_requests() -> dict[str, ExportMetricsServiceRequest]:
    resource = Resource(attributes=[kv("k8s.pod.name", "hostile-empty")])
    return {
        "zero-length": ExportMetricsServiceRequest(),
        "empty-resource-metrics": ExportMetricsServiceRequest(resource_metrics=[m.ResourceMetrics()]),
        "resource-without-scope-metrics": ExportMetricsServiceRequest(
            resource_metrics=[m.ResourceMetrics(resource=resource)]
        ),
        "scope-without-metrics": ExportMetricsServiceRequest(
            resource_metrics=[m.ResourceMetrics(resource=resource, scope_metrics=[m.ScopeMetrics()])]
        ),
        "metric-without-data": request("hostile-empty", "pod-0", m.Metric(name="hostile_empty_no_data")),
        "gauge-without-points": request(
            "hostile-empty", "pod-0", m.Metric(name="hostile_empty_gauge", gauge=m.Gauge())
        ),
        "histogram-without-points": request(
            "hostile-empty", "pod-0", m.Metric(name="hostile_empty_histogram", histogram=m.Histogram())
        ),
    }


EMPTY = _empty_requests()


@pytest.mark.parametrize("transport", ["grpc", "http", "http-json"])
@pytest.mark.parametrize("case", list(EMPTY))
def test_empty_requests_succeed_and_store_nothing(hostile: Hostile, transport: str, case: str) -> None:
    req = EMPTY[case]
    names = hostile.names()
    before = hostile.counters()
    if transport == "http-json":
        body = json.dumps(json_format.MessageToDict(req)).encode()
        if case == "zero-length":
            assert body == b"{}"
        reply = hostile.post_otlp(body, JSON)
        assert reply.status_code == 200, reply.text
        answer: dict[str, Any] = strict_json(reply.text)
        assert answer.get("partialSuccess", {}).get("rejectedDataPoints", 0) in (0, "0"), answer
        assert not answer.get("partialSuccess", {}).get("errorMessage"), answer
        delta = Deltas(before, hostile.counters())
        wire = "http"
    else:
        body = req.SerializeToString()
        if case == "zero-length":
            assert body == b""
        answer_pb, delta = exchange(hostile, transport, req)
        assert not answer_pb.HasField("partial_success") or answer_pb.partial_success.rejected_data_points == 0
        assert answer_pb.partial_success.error_message == ""
        wire = transport
    assert delta("otlp_requests_total", transport=wire, outcome="ok") == 1
    assert delta("otlp_points_received_total", transport=wire) == 0
    assert delta("otlp_points_rejected_total", transport=wire) == 0
    assert delta("store_series") == 0
    assert hostile.names() == names
