"""``GET /api/v1/scaledobjects`` on a real server: a KEDA-like client over real gRPC and OTLP
exporters (gRPC and HTTP) feed it; the service's clock is injected so an hour can pass."""

from __future__ import annotations

import asyncio
import math
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import grpc
import httpx
import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from scaler import receiver, sources
from scaler.config import OtlpSettings, StoreLimits
from scaler.selfmetrics import SelfMetrics
from scaler.status import Registry
from scaler.store import Store
from scaler.trigger import KEDA_VALUE_LIMIT, Reading, State
from tests.conftest import ManualClock, RunningService
from tests.integration.test_keda import Keda
from tests.otlpdata import DECODE, PREFILL, counter, gauge, otlp_stub, request

WAITING = f"sum(vllm:num_requests_waiting{{deployment={DECODE}}})"
DECODE_WAITING = {"metricQuery": WAITING, "window": "30s", "targetValue": "2", "metricName": "decode-waiting"}


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def svc(service_factory: Callable[..., RunningService], clock: ManualClock) -> RunningService:
    return service_factory(clock=clock)


def status(svc: RunningService, **params: str) -> dict[str, Any]:
    reply = httpx.get(svc.http + "/api/v1/scaledobjects", params=params)
    assert reply.status_code == 200, reply.text
    body: dict[str, Any] = reply.json()
    return body


def one_trigger(body: Mapping[str, Any], name: str = "pd-decode") -> dict[str, Any]:
    (so,) = [so for so in body["scaledObjects"] if so["name"] == name]
    (trigger,) = so["triggers"]
    return dict(trigger)


def refused(call: Callable[[], object], code: grpc.StatusCode) -> str:
    """The details of the error ``call`` is answered with, which must have ``code``."""
    with pytest.raises(grpc.RpcError) as caught:
        call()
    assert caught.value.code() == code
    return str(caught.value.details())


def push_waiting(svc: RunningService, clock: ManualClock, pod: str, value: float, deployment: str = DECODE) -> None:
    otlp_stub(svc.ports.otlp).Export(request(deployment, pod, gauge("vllm:num_requests_waiting", value, clock.ns)))


def test_a_keda_client_s_calls_show_value_target_replicas_activity_and_series(
    svc: RunningService, clock: ManualClock
) -> None:
    push_waiting(svc, clock, "decode-a", 3)
    clock.now += 2
    push_waiting(svc, clock, "decode-b", 4)
    keda = Keda(svc)
    assert keda.spec(**DECODE_WAITING).targetSizeFloat == 2
    assert keda.metrics("decode-waiting", **DECODE_WAITING).metricValueFloat == 7
    assert keda.active(**DECODE_WAITING)

    body = status(svc)
    assert body["now"] == clock.now and body["retentionSeconds"] == 120 and body["warmupRemainingSeconds"] == 0
    (so,) = body["scaledObjects"]
    assert (so["namespace"], so["name"], so["replicas"], so["replicasFrom"]) == (
        "llm-d",
        "pd-decode",
        4,
        "decode-waiting",
    )
    assert so["active"] and not so["erroring"]
    trigger = one_trigger(body)
    assert trigger["kind"] == "query" and trigger["metricName"] == "decode-waiting"
    assert f'last_over_time(vllm:num_requests_waiting{{deployment="{DECODE}"}}[30s])' in trigger["query"]
    assert (trigger["value"], trigger["queryValue"], trigger["target"], trigger["replicas"]) == (7, 7, 2, 4)
    assert (trigger["state"], trigger["active"], trigger["erroring"], trigger["warmingUp"]) == (
        "value",
        True,
        False,
        False,
    )
    assert trigger["reason"] == "7 against target 2 asks for 4 replicas (AverageValue); active (7 > activation 0)"
    assert {m: c["count"] for m, c in trigger["rpcs"].items()} == {"GetMetricSpec": 1, "GetMetrics": 1, "IsActive": 1}
    assert all(c["last"] == clock.now for c in trigger["rpcs"].values())
    assert trigger["errors"] == {"count": 0, "byCode": {}, "last": None}
    assert trigger["series"] == {
        "count": 2,
        "pods": ["decode-a", "decode-b"],
        "podCount": 2,
        "newestSampleAgeSeconds": 0.0,
        "oldestSampleAgeSeconds": 2.0,
    }
    assert "history" not in trigger

    sources = {s["pod"]: s for s in body["sources"]}
    assert set(sources) == {"decode-a", "decode-b"}
    assert sources["decode-a"]["lastExportAgeSeconds"] == 2 and sources["decode-b"]["lastExportAgeSeconds"] == 0
    assert all(s["deployment"] == DECODE and s["namespace"] == "llm-d" for s in sources.values())
    assert all(
        (s["series"], s["exports"], s["rejectedPoints"], s["sharedRejectedPoints"]) == (1, 1, 0, 0)
        for s in sources.values()
    )


def test_the_value_history_follows_the_readings(svc: RunningService, clock: ManualClock) -> None:
    keda = Keda(svc)
    start = clock.now
    for step, value in enumerate((1, 5, 9, 2)):
        push_waiting(svc, clock, "decode-a", value)
        assert keda.metrics(**DECODE_WAITING).metricValueFloat == value
        clock.now += 3
        del step
    clock.now -= 3
    trigger = one_trigger(status(svc, history="true"))
    assert trigger["history"] == [[start + 3 * i, v] for i, v in enumerate((1, 5, 9, 2))]
    assert trigger["value"] == 2 and trigger["replicas"] == 1
    clock.now += 200  # the earlier points leave the retention (120 s); the entry stays an hour
    trigger = one_trigger(status(svc, history="true"))
    assert trigger["history"] == [] and trigger["value"] == 2


def test_errors_are_counted_with_the_last_one_and_cleared_by_data(svc: RunningService, clock: ManualClock) -> None:
    keda = Keda(svc)
    strict = {**DECODE_WAITING, "errIfNotFound": "true"}
    details = refused(lambda: keda.metrics(**strict), grpc.StatusCode.NOT_FOUND)
    trigger = one_trigger(status(svc))
    assert trigger["erroring"] and trigger["state"] == "not_found" and trigger["value"] is None
    assert trigger["errors"]["count"] == 1 and trigger["errors"]["byCode"] == {"NOT_FOUND": 1}
    last = trigger["errors"]["last"]
    assert (last["at"], last["method"], last["code"]) == (clock.now, "GetMetrics", "NOT_FOUND")
    assert last["message"] == details
    assert trigger["reason"].startswith("KEDA gets NOT_FOUND: no series matches")
    assert trigger["series"]["count"] == 0 and status(svc)["scaledObjects"][0]["erroring"]

    clock.now += 5
    push_waiting(svc, clock, "decode-a", 6)
    assert keda.metrics(**strict).metricValueFloat == 6
    trigger = one_trigger(status(svc))
    assert not trigger["erroring"] and trigger["value"] == 6 and trigger["errors"]["count"] == 1
    assert trigger["errors"]["last"]["at"] == clock.now - 5


def test_refused_metadata_is_shown_until_the_scaled_object_is_fixed(svc: RunningService, clock: ManualClock) -> None:
    keda = Keda(svc)
    refused(lambda: keda.spec(**{**DECODE_WAITING, "window": "10m"}), grpc.StatusCode.INVALID_ARGUMENT)
    trigger = one_trigger(status(svc))
    assert (trigger["kind"], trigger["state"], trigger["erroring"], trigger["target"]) == (
        "invalid",
        "refused",
        True,
        None,
    )
    assert trigger["message"] == "metadata key 'window': 10m is longer than the retention (120s)"
    assert trigger["reason"] == f"KEDA gets INVALID_ARGUMENT: the trigger's {trigger['message']}; fix the ScaledObject"
    assert trigger["errors"]["byCode"] == {"INVALID_ARGUMENT": 1} and trigger["rpcs"]["GetMetricSpec"]["count"] == 1

    push_waiting(svc, clock, "decode-a", 1)
    keda.metrics(**DECODE_WAITING)
    trigger = one_trigger(status(svc))  # the same entry (same ScaledObject and metric name), now answering
    assert (trigger["kind"], trigger["state"], trigger["erroring"], trigger["value"]) == ("query", "value", False, 1)
    assert trigger["rpcs"]["GetMetricSpec"]["count"] == 1 and trigger["rpcs"]["GetMetrics"]["count"] == 1


def test_the_warm_up_hold_is_shown_and_is_not_an_error(service_factory: Callable[..., RunningService]) -> None:
    svc = service_factory(warmup_seconds=60.0)
    keda = Keda(svc)
    with pytest.raises(grpc.RpcError) as caught:
        keda.metrics(**DECODE_WAITING)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    body = status(svc)
    assert 0 < body["warmupRemainingSeconds"] <= 60
    trigger = one_trigger(body)
    assert (trigger["state"], trigger["warmingUp"], trigger["erroring"]) == ("hold", True, False)
    assert trigger["errors"]["byCode"] == {"UNAVAILABLE": 1}  # KEDA did get an error (fallback counts it)
    assert trigger["reason"].startswith("warming up after a start with no data yet")


def test_clamps_fallbacks_and_inactivity_are_explained(svc: RunningService, clock: ManualClock) -> None:
    keda = Keda(svc)
    push_waiting(svc, clock, "decode-a", 9)
    keda.metrics(**DECODE_WAITING, clampMax="4", activationThreshold="10")
    keda.metrics(metricQuery="vllm:absent", targetValue="1", valueIfNotFound="3", metricName="absent")
    triggers = {t["metricName"]: t for t in status(svc)["scaledObjects"][0]["triggers"]}
    clamped, absent = triggers["decode-waiting"], triggers["absent"]
    assert (clamped["value"], clamped["queryValue"], clamped["replicas"], clamped["active"]) == (4, 9, 2, False)
    assert clamped["reason"].startswith("4 (clamped from 9) against target 2 asks for 2 replicas")
    assert "inactive (9 ≤ activation 10)" in clamped["reason"]
    assert (absent["state"], absent["value"], absent["queryValue"], absent["erroring"]) == ("fallback", 3, None, False)
    assert absent["reason"].startswith("no series matches 'sum(last_over_time(vllm:absent[2m]) and vllm:absent)'")
    assert "so it answers valueIfNotFound 3; 3 against target 1 asks for 3 replicas" in absent["reason"]


def test_a_stream_counts_once_and_its_readings_follow_the_data(svc: RunningService, clock: ManualClock) -> None:
    keda = Keda(svc)
    push_waiting(svc, clock, "decode-a", 1)
    call = keda.stub.StreamIsActive(keda.ref(**DECODE_WAITING, activationThreshold="5"))
    received: list[bool] = []
    flipped = threading.Event()

    def read() -> None:
        try:
            for message in call:
                received.append(message.result)
                if message.result:
                    flipped.set()
        except grpc.RpcError:
            pass  # cancelled at the end

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 10
        while one_trigger(status(svc)).get("value") != 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        clock.now += 1
        push_waiting(svc, clock, "decode-a", 8)
        assert flipped.wait(10) and received == [False, True]
        trigger = one_trigger(status(svc))
        assert trigger["rpcs"]["StreamIsActive"]["count"] == 1
        assert (trigger["value"], trigger["active"], trigger["readAt"]) == (8, True, clock.now)
    finally:
        call.cancel()
        reader.join(5)


def test_sources_count_exports_and_rejections_per_pod(svc: RunningService, clock: ManualClock) -> None:
    stub = otlp_stub(svc.ports.otlp)
    a = request(DECODE, "decode-a", gauge("vllm:num_requests_waiting", 1, clock.ns))
    b = request(PREFILL, "prefill-a", gauge("vllm:num_requests_waiting", 2, clock.ns), counter("vllm:x_total", 5, 1))
    assert stub.Export(b).partial_success.rejected_data_points == 1  # vllm:x_total at t=1 ns is too old
    both = ExportMetricsServiceRequest(resource_metrics=[*a.resource_metrics, *b.resource_metrics])
    assert stub.Export(both).partial_success.rejected_data_points == 1  # one request, two sources: shared
    resource = {"attributes": [{"key": "k8s.pod.name", "value": {"stringValue": "json"}}]}
    assert httpx.post(svc.http + "/v1/metrics", json={"resourceMetrics": [{"resource": resource}]}).status_code == 200
    sources = {s["pod"]: s for s in status(svc)["sources"]}
    assert set(sources) == {"decode-a", "prefill-a", "json"}
    decode, prefill, json_pod = sources["decode-a"], sources["prefill-a"], sources["json"]
    assert (decode["deployment"], decode["namespace"], decode["series"], decode["exports"]) == (DECODE, "llm-d", 1, 1)
    assert (decode["rejectedPoints"], decode["rejectedByReason"], decode["sharedRejectedPoints"]) == (0, {}, 1)
    assert (prefill["deployment"], prefill["series"], prefill["exports"]) == (PREFILL, 1, 2)
    assert (prefill["rejectedPoints"], prefill["rejectedByReason"], prefill["sharedRejectedPoints"]) == (
        1,
        {"too_old": 1},
        1,
    )
    assert (json_pod["namespace"], json_pod["deployment"], json_pod["exports"], json_pod["series"]) == ("", "", 1, 0)


def _sources_after(native: bool) -> list[tuple[Any, ...]]:
    now = 1_800_000_000.0
    store = Store(StoreLimits(max_series=3), clock=lambda: now)
    registry = Registry(lambda: now, 120.0)
    ingestor = receiver.Ingestor(store, OtlpSettings(), SelfMetrics(lambda: 0), native=native, registry=registry)
    assert ingestor.path == ("native" if native else "python")
    t = int(now * 1e9)
    d1 = request(DECODE, "d1", gauge("g", 1, t), gauge("h", 2, t))
    d2 = request(DECODE, "d2", gauge("g", 1, t), gauge("old", 1, 1))
    p1 = request(PREFILL, "p1", gauge("g", 3, t), namespace="other")
    shared = ExportMetricsServiceRequest(resource_metrics=[*d2.resource_metrics, *p1.resource_metrics])
    for message in (d1, d2, shared):
        asyncio.run(ingestor.ingest(message, "grpc", message.SerializeToString()))
    return [(s.pod, s.exports, dict(s.rejected), s.shared_rejected) for s in registry.sources()]


def test_both_ingest_paths_record_the_same_sources() -> None:
    expected = [("d1", 1, {}, 0), ("d2", 2, {"too_old": 1}, 2), ("p1", 1, {}, 2)]  # shared: too_old, series_limit
    assert _sources_after(native=True) == _sources_after(native=False) == expected


def field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field."""
    head, size = [number << 3 | 2], len(payload)
    while size >= 0x80:
        head.append(size & 0x7F | 0x80)
        size >>= 7
    return bytes([*head, size]) + payload


def test_resources_are_found_in_odd_wire_bytes_too() -> None:
    a = request(DECODE, "d1", gauge("g", 1, 1))
    b = request(DECODE, "d2", gauge("g", 2, 1))
    group = bytes([5 << 3 | 3, 8, 1, 5 << 3 | 4])  # an unknown top-level group, which protobuf accepts
    # a ResourceMetrics whose resource comes after its scope and in two parts (protobuf merges them)
    attributes = b.resource_metrics[0].resource.attributes
    first, rest = (Resource(attributes=part).SerializeToString() for part in (attributes[:1], attributes[1:]))
    scope = b.resource_metrics[0].scope_metrics[0].SerializeToString()
    odd = field(1, field(2, scope) + field(1, first) + field(1, rest))
    data = group + a.SerializeToString() + odd + bytes([7 << 3, 5])
    parsed = ExportMetricsServiceRequest.FromString(data)
    assert [sources.of_resource(rm.resource) for rm in parsed.resource_metrics] == [
        ("llm-d", DECODE, "d1"),
        ("llm-d", DECODE, "d2"),
    ]
    ingestor = receiver.Ingestor(Store(), OtlpSettings(), SelfMetrics(lambda: 0))
    assert ingestor._sources_in(data) == [("llm-d", DECODE, "d1"), ("llm-d", DECODE, "d2")]
    assert ingestor._sources_in(odd) == [("llm-d", DECODE, "d2")]
    assert ingestor._sources_in(b"") == [] and ingestor._sources_in(group) == []
    assert sources.resources_in(b"\x0a\x05abc") == []  # cut short: stored, not attributed
    assert sources.resources_in(b"\x0a\x05\x0a\x09abc") == []  # a field runs past its message


def test_filters_and_bad_parameters(svc: RunningService, clock: ManualClock) -> None:
    keda = Keda(svc)
    push_waiting(svc, clock, "decode-a", 1)
    keda.metrics(**DECODE_WAITING)
    other = keda.stub.GetMetrics
    ref = keda.ref(**DECODE_WAITING)
    ref.namespace, ref.name = "prod", "pd-other"
    from scaler._gen import externalscaler_pb2 as pb

    other(pb.GetMetricsRequest(scaledObjectRef=ref, metricName="decode-waiting"))
    assert [so["name"] for so in status(svc)["scaledObjects"]] == ["pd-decode", "pd-other"]
    assert [so["name"] for so in status(svc, namespace="prod")["scaledObjects"]] == ["pd-other"]
    assert status(svc, namespace="prod")["sources"] == []
    assert [so["name"] for so in status(svc, name="pd-decode")["scaledObjects"]] == ["pd-decode"]
    reply = httpx.get(svc.http + "/api/v1/scaledobjects", params={"history": "maybe"})
    assert reply.status_code == 400 and "history" in reply.json()["error"]


def test_an_idle_entry_leaves_after_an_hour_with_its_gauges(svc: RunningService, clock: ManualClock) -> None:
    keda = Keda(svc)
    push_waiting(svc, clock, "decode-a", 1)
    keda.metrics(**DECODE_WAITING)
    metrics = httpx.get(svc.http + "/metrics").text
    assert 'keda_trigger_value{metric="decode-waiting",namespace="llm-d",scaled_object="pd-decode"} 1.0' in metrics
    clock.now += 3599
    assert len(status(svc)["scaledObjects"]) == 1 and len(status(svc)["sources"]) == 1
    clock.now += 1
    body = status(svc)
    assert body["scaledObjects"] == [] and body["sources"] == []
    metrics = httpx.get(svc.http + "/metrics").text
    assert 'status_evictions_total{kind="trigger",reason="idle"} 1.0' in metrics
    assert 'status_evictions_total{kind="source",reason="idle"} 1.0' in metrics
    assert not re.search(r"^keda_trigger_(value|target)\{", metrics, re.M)


class PlannerTrigger:
    """A trigger kind with the planner's hook (branch planner): explain() gives its latest
    decision's internals; its kind is its class name without "Trigger"."""

    metric_name = "planner-decode"
    target = 1.0

    def metric_value(self, reading: Reading) -> float:
        assert reading.number is not None
        return reading.number

    def is_active(self, reading: Reading) -> bool:
        return self.metric_value(reading) > 0

    def explain(self) -> Mapping[str, object]:
        return {"desired": 3, "demand": 12.5, "capacity": 5.0, "pending": 1, "correction": math.nan}


def test_a_trigger_that_explains_itself_shows_its_internals(svc: RunningService) -> None:
    assert svc.service is not None
    registry = svc.service.status
    svc.call(lambda: registry.read("llm-d", "pd-decode", PlannerTrigger(), Reading(State.VALUE, raw=3.0)))
    trigger = one_trigger(status(svc))
    assert (trigger["kind"], trigger["query"], trigger["series"]) == ("planner", None, None)
    assert trigger["planner"] == {"desired": 3, "demand": 12.5, "capacity": 5.0, "pending": 1, "correction": "NaN"}
    assert (trigger["value"], trigger["replicas"], trigger["activationThreshold"]) == (3, 3, None)
    assert trigger["reason"] == "3 against target 1 asks for 3 replicas (AverageValue); active (3 > activation 0)"


def test_non_finite_values_are_strings_as_elsewhere_in_the_api(svc: RunningService, clock: ManualClock) -> None:
    keda = Keda(svc)
    push_waiting(svc, clock, "decode-a", 0)
    query = f'1 / sum(vllm:num_requests_waiting{{deployment="{DECODE}"}})'
    assert keda.active(query=query, targetValue="1", metricName="inf")
    trigger = one_trigger(status(svc, history="true"))
    # KEDA gets the most it can carry (KEDA_VALUE_LIMIT), which asks for maxReplicaCount
    assert (trigger["queryValue"], trigger["value"]) == ("+Inf", KEDA_VALUE_LIMIT)
    assert trigger["replicas"] == KEDA_VALUE_LIMIT
    assert trigger["history"] == [[clock.now, KEDA_VALUE_LIMIT]]


@pytest.fixture
def page(svc: RunningService) -> Iterator[httpx.Response]:
    yield httpx.get(svc.http + "/ui")


def test_the_page_is_self_contained_and_locked_down(page: httpx.Response) -> None:
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert policy.startswith("default-src 'none'; script-src 'sha256-") and "connect-src 'self'" in policy
    assert "'unsafe-inline'" not in policy and page.headers["x-content-type-options"] == "nosniff"
    assert not re.findall(r"(?:src|href)=\"(?:https?:)?//", page.text)  # nothing from elsewhere
    for link in ("docs", "metrics", "info", "api/v1/scaledobjects"):  # relative: a path prefix keeps working
        assert f'href="{link}"' in page.text
    assert 'fetch("api/v1/scaledobjects?history=true"' in page.text
