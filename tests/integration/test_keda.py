"""A KEDA-like client suite over real gRPC: every RPC, every metadata key, every error code."""

from __future__ import annotations

import asyncio
import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from scaler._gen import externalscaler_pb2 as pb
from scaler._gen import externalscaler_pb2_grpc as pb_grpc
from tests.conftest import RunningService
from tests.otlpdata import DECODE, PREFILL, counter, gauge, now_ns, otlp_stub, request


class Keda:
    """What KEDA's external scaler client does, with a ScaledObject name/namespace."""

    def __init__(self, svc: RunningService | int) -> None:
        port = svc if isinstance(svc, int) else svc.ports.keda
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        self.stub = pb_grpc.ExternalScalerStub(self.channel)

    def ref(self, **metadata: str) -> pb.ScaledObjectRef:
        return pb.ScaledObjectRef(name="pd-decode", namespace="llm-d", scalerMetadata=metadata)

    def spec(self, **metadata: str) -> pb.MetricSpec:
        (spec,) = self.stub.GetMetricSpec(self.ref(**metadata)).metricSpecs
        return spec

    def metrics(self, metric_name: str = "s0-x", **metadata: str) -> pb.MetricValue:
        reply = self.stub.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=self.ref(**metadata), metricName=metric_name))
        (value,) = reply.metricValues
        return value

    def active(self, **metadata: str) -> bool:
        return bool(self.stub.IsActive(self.ref(**metadata)).result)


class Pusher:
    def __init__(self, svc: RunningService) -> None:
        self.stub = otlp_stub(svc.ports.otlp)

    def waiting(self, deployment: str, pod: str, value: float, t_ns: int | None = None) -> None:
        self.stub.Export(request(deployment, pod, gauge("vllm:num_requests_waiting", value, t_ns or now_ns())))


WAITING_DECODE = f"vllm:num_requests_waiting{{deployment={DECODE}}}"


def test_get_metric_spec_reads_metadata_only(keda: Keda) -> None:
    spec = keda.spec(metricQuery="vllm:nothing_stored_yet", targetValue="2.5", metricName="Decode Waiting!")
    assert (spec.metricName, spec.targetSizeFloat, spec.targetSize) == ("decode-waiting", 2.5, 3)
    # PromQL: the name is derived from the query
    derived = keda.spec(query=f'vllm:num_requests_waiting{{deployment="{PREFILL}"}}', threshold="4")
    assert derived.metricName.startswith("vllm-num-requests-waiting-deployment-pd-llm-d-modelse")
    assert len(derived.metricName) == 63  # truncated with a hash suffix, so two long queries differ
    waiting_decode = f'vllm:num_requests_waiting{{deployment="{DECODE}"}}'
    assert derived.metricName != keda.spec(query=waiting_decode, threshold="4").metricName
    assert keda.spec(query="vllm:num_requests_waiting", threshold="4").metricName == "vllm-num-requests-waiting"
    long = keda.spec(query="sum(" + "x" * 200 + ")", targetValue="1")
    assert len(long.metricName) <= 63
    # compat form: kedify/otel-add-on's <namespace>-<name> of the ScaledObject (scaler/handlers.go)
    assert keda.spec(metricQuery=WAITING_DECODE, threshold="4").metricName == "llm-d-pd-decode"
    assert keda.spec(metricQuery="vllm:num_requests_waiting", threshold="4").metricName == "llm-d-pd-decode"


def test_get_metrics_and_is_active_with_clamps_and_activation(keda: Keda, pusher: Pusher) -> None:
    pusher.waiting(DECODE, "d0", 3.2)
    pusher.waiting(DECODE, "d1", 1.8)
    pusher.waiting(PREFILL, "p0", 100)
    value = keda.metrics("s0-decode-waiting", metricQuery=WAITING_DECODE, targetValue="1")
    assert (value.metricName, value.metricValueFloat, value.metricValue) == ("s0-decode-waiting", 5.0, 5)
    clamped = keda.metrics(metricQuery=WAITING_DECODE, targetValue="1", clampMax="2", clampMin="1")
    assert (clamped.metricValueFloat, clamped.metricValue) == (2.0, 2)
    floored = keda.metrics(metricQuery=WAITING_DECODE, targetValue="1", clampMin="9.5")
    assert (floored.metricValueFloat, floored.metricValue) == (9.5, 10)
    # activation is decided on the unclamped value: 5 > 4 even though GetMetrics says 2
    assert keda.active(metricQuery=WAITING_DECODE, targetValue="1", clampMax="2", activationThreshold="4")
    assert not keda.active(metricQuery=WAITING_DECODE, targetValue="1", activationThreshold="5")
    assert keda.active(metricQuery=WAITING_DECODE, targetValue="1", activationTargetValue="4.9")
    assert keda.active(metricQuery=WAITING_DECODE, targetValue="1")  # default activation 0


def test_operation_and_window_keys(keda: Keda, pusher: Pusher) -> None:
    t = now_ns()
    for i, v in enumerate((1.0, 5.0, 3.0)):
        pusher.waiting(DECODE, "d0", v, t - (40 - i * 10) * 10**9)  # at -40 s, -30 s, -20 s
    q = {"metricQuery": WAITING_DECODE, "targetValue": "1"}
    assert keda.metrics(**q, operationOverTime="max").metricValueFloat == 5
    assert keda.metrics(**q, operationOverTime="min").metricValueFloat == 1
    assert keda.metrics(**q, operationOverTime="count").metricValueFloat == 3
    assert keda.metrics(**q, operationOverTime="avg").metricValueFloat == 3
    assert keda.metrics(**q, operationOverTime="sum").metricValueFloat == 9
    assert keda.metrics(**q, operationOverTime="last_one").metricValueFloat == 3
    assert keda.metrics(**q, operationOverTime="count", window="35s").metricValueFloat == 2
    assert keda.metrics(**q, operationOverTime="max", window="35s").metricValueFloat == 5
    assert keda.metrics(**q, operationOverTime="max", window="25s").metricValueFloat == 3
    assert keda.metrics(**q, operationOverTime="max", window="15s").metricValueFloat == 0  # not found → default 0


def test_promql_trigger_sum_rate(keda: Keda, service: RunningService) -> None:
    stub = otlp_stub(service.ports.otlp)
    # every 10 s from -55 s to -5 s: +1000 tokens on p0, +3000 on p1 → 400 tokens/s fleet-wide; the
    # 5 s gaps at both ends of the 1 m window are under 1.1 intervals, so rate extrapolates exactly
    t = now_ns() - 55 * 10**9
    for i in range(6):
        ts = t + i * 10 * 10**9
        stub.Export(request(PREFILL, "p0", counter("vllm:prompt_tokens_total", 5000 + 1000 * i, ts)))
        stub.Export(request(PREFILL, "p1", counter("vllm:prompt_tokens_total", 9000 + 3000 * i, ts)))
        stub.Export(request(DECODE, "d0", counter("vllm:prompt_tokens_total", 77777 * (i + 1), ts)))
    value = keda.metrics(query=f'sum(rate(vllm:prompt_tokens_total{{deployment="{PREFILL}"}}[1m]))', targetValue="100")
    assert value.metricValueFloat == pytest.approx(400.0)
    assert value.metricValue == math.ceil(value.metricValueFloat)
    wide = {"query": "rate(vllm:prompt_tokens_total[1m])", "targetValue": "1"}
    with pytest.raises(grpc.RpcError) as err:
        keda.metrics(**wide)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "3 series" in str(err.value.details())
    assert keda.metrics(**wide, aggregate="max").metricValueFloat == pytest.approx(7777.7, rel=1e-3)


def test_two_triggers_of_one_scaled_object_get_their_own_values(keda: Keda, pusher: Pusher) -> None:
    pusher.waiting(PREFILL, "p0", 11)
    pusher.waiting(DECODE, "d0", 2)
    prefill = keda.metrics(
        "s0-prefill", metricQuery=f"vllm:num_requests_waiting{{deployment={PREFILL}}}", targetValue="1"
    )
    decode = keda.metrics("s1-decode", metricQuery=WAITING_DECODE, targetValue="1")
    assert (prefill.metricName, prefill.metricValueFloat) == ("s0-prefill", 11)
    assert (decode.metricName, decode.metricValueFloat) == ("s1-decode", 2)


def test_not_found_per_trigger_and_global(keda: Keda, service_factory: Any) -> None:
    q = {"metricQuery": "vllm:absent", "targetValue": "1"}
    assert keda.metrics(**q).metricValueFloat == 0
    assert keda.metrics(**q, valueIfNotFound="3.5").metricValueFloat == 3.5
    assert not keda.active(**q)
    assert keda.active(**q, valueIfNotFound="1")
    for call in (lambda: keda.metrics(**q, errIfNotFound="true"), lambda: keda.active(**q, errIfNotFound="true")):
        with pytest.raises(grpc.RpcError) as err:
            call()
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
        assert "vllm:absent" in str(err.value.details())

    strict = Keda(service_factory(error_if_not_found=True, value_if_not_found=7))
    with pytest.raises(grpc.RpcError) as err:
        strict.metrics(**q)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert strict.metrics(**q, errIfNotFound="false").metricValueFloat == 7


@pytest.mark.parametrize(
    ("metadata", "key"),
    [
        ({"metricQuery": "x"}, "targetValue"),
        ({"metricQuery": "x", "targetValue": "abc"}, "targetValue"),
        ({"metricQuery": "x", "targetValue": "0"}, "targetValue"),
        ({"metricQuery": "x", "threshold": "-1"}, "threshold"),
        ({"targetValue": "1"}, "metricQuery"),
        ({"metricQuery": "x", "query": "x", "targetValue": "1"}, "query"),
        ({"metricQuery": "sum(x", "targetValue": "1"}, "metricQuery"),
        ({"query": "sum(x", "targetValue": "1"}, "query"),
        ({"metricQuery": "x", "operationOverTime": "median", "targetValue": "1"}, "operationOverTime"),
        ({"metricQuery": "x", "window": "1h", "targetValue": "1"}, "window"),
        ({"metricQuery": "x", "window": "soon", "targetValue": "1"}, "window"),
        ({"query": "x", "window": "30s", "targetValue": "1"}, "window"),
        ({"metricQuery": "x", "targetValue": "1", "activationThreshold": "high"}, "activationThreshold"),
        ({"metricQuery": "x", "targetValue": "1", "clampMin": "5", "clampMax": "1"}, "clampMin"),
        ({"metricQuery": "x", "targetValue": "1", "clampMax": "inf"}, "clampMax"),
        ({"metricQuery": "x", "targetValue": "1", "valueIfNotFound": "none"}, "valueIfNotFound"),
        ({"metricQuery": "x", "targetValue": "1", "errIfNotFound": "maybe"}, "errIfNotFound"),
        ({"query": "x", "targetValue": "1", "aggregate": "median"}, "aggregate"),
    ],
)
def test_bad_metadata_is_invalid_argument_naming_the_key(keda: Keda, metadata: dict[str, str], key: str) -> None:
    for call in (lambda: keda.spec(**metadata), lambda: keda.metrics(**metadata), lambda: keda.active(**metadata)):
        with pytest.raises(grpc.RpcError) as err:
            call()
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert f"'{key}'" in str(err.value.details()), err.value.details()
        assert "llm-d/pd-decode" in str(err.value.details())


def test_keda_own_keys_are_ignored(keda: Keda, pusher: Pusher) -> None:
    pusher.waiting(DECODE, "d0", 4)
    value = keda.metrics(
        metricQuery=WAITING_DECODE,
        targetValue="1",
        scalerAddress="keda-otel-scaler.keda.svc:4318",
        enableTLS="false",
        unsafeSsl="false",
    )
    assert value.metricValueFloat == 4


def _stream(keda: Keda, **metadata: str) -> tuple[Any, list[tuple[float, bool]], threading.Event]:
    call = keda.stub.StreamIsActive(keda.ref(**metadata))
    received: list[tuple[float, bool]] = []
    first = threading.Event()

    def reader() -> None:
        try:
            for message in call:
                received.append((time.monotonic(), message.result))
                first.set()
        except grpc.RpcError:
            pass

    threading.Thread(target=reader, daemon=True).start()
    return call, received, first


def test_stream_is_active_pushes_flips_within_milliseconds(keda: Keda, pusher: Pusher) -> None:
    call, received, first = _stream(keda, metricQuery=WAITING_DECODE, targetValue="1", activationThreshold="5")
    assert first.wait(5)
    assert [r for _, r in received] == [False]  # nothing stored yet → inactive

    latencies = []
    for value, expected in ((9, True), (1, False), (12, True)):
        count = len(received)
        sent = time.monotonic()
        pusher.waiting(DECODE, "d0", value)
        deadline = sent + 1.0
        while len(received) == count and time.monotonic() < deadline:
            time.sleep(0.001)
        assert len(received) == count + 1, f"no flip pushed within 1 s for value {value}"
        assert received[-1][1] is expected
        latencies.append(received[-1][0] - sent)
        time.sleep(0.01)  # let the next push use a fresh timestamp
    # steady state: data that does not change the decision sends nothing
    count = len(received)
    for value in (13, 20, 30):
        pusher.waiting(DECODE, "d0", value)
        time.sleep(0.01)
    time.sleep(0.3)
    assert len(received) == count
    call.cancel()
    print(f"StreamIsActive push latency: max {max(latencies) * 1000:.1f} ms")
    assert max(latencies) < 0.5


def test_stream_open_close_cycles_free_their_resources(keda: Keda, service: RunningService) -> None:
    def tasks() -> int:
        import asyncio

        return len(asyncio.all_tasks(service.loop))

    assert service.service is not None
    store = service.service.store
    baseline_tasks = service.call(tasks)
    baseline_listeners = service.call(lambda: len(store._listeners))
    for _ in range(1000):
        call = keda.stub.StreamIsActive(keda.ref(metricQuery=WAITING_DECODE, targetValue="1"))
        next(call)
        call.cancel()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if service.call(tasks) <= baseline_tasks and service.call(lambda: len(store._listeners)) == baseline_listeners:
            break
        time.sleep(0.1)
    assert service.call(tasks) <= baseline_tasks
    assert service.call(lambda: len(store._listeners)) == baseline_listeners
    assert "keda_streams_open 0.0" in httpx.get(service.http + "/metrics").text
    hub = service.service.streams
    assert service.call(lambda: (hub.open_streams, hub._keyed, len(store.watched))) == (0, {}, 0)


def test_a_stream_past_max_streams_is_refused_with_the_reason_and_counted(service_factory: Any) -> None:
    svc = service_factory(max_streams=2)
    keda = Keda(svc)
    open_calls = [keda.stub.StreamIsActive(keda.ref(metricQuery=WAITING_DECODE, targetValue="1")) for _ in range(2)]
    assert [next(call).result for call in open_calls] == [False, False]
    refused = keda.stub.StreamIsActive(keda.ref(metricQuery=WAITING_DECODE, targetValue="1"))
    with pytest.raises(grpc.RpcError) as exc:
        next(refused)
    assert exc.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    details = exc.value.details() or ""
    assert "2 StreamIsActive streams are open" in details
    assert "MAX_STREAMS=2" in details
    metrics = httpx.get(svc.http + "/metrics").text
    assert 'keda_streams_refused_total{reason="max_streams"} 1.0' in metrics
    assert 'keda_errors_total{code="RESOURCE_EXHAUSTED",method="StreamIsActive"} 1.0' in metrics
    open_calls[0].cancel()
    deadline = time.monotonic() + 10
    while svc.call(lambda: svc.service.streams.open_streams) > 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    again = keda.stub.StreamIsActive(keda.ref(metricQuery=WAITING_DECODE, targetValue="1"))
    assert next(again).result is False  # the freed slot serves a new stream
    again.cancel()
    open_calls[1].cancel()


@pytest.mark.slow
def test_thousands_of_streams_opened_at_once_are_all_served(service: RunningService, pusher: Pusher) -> None:
    # gRPC core used to cancel, uncounted, new calls past ~1,000-3,000 waiting to be accepted
    # (issue 20: 1,804-1,850 of 2,000 streams served). Each stream selects its own deployment.
    streams = 4000
    pusher.waiting(DECODE, "d0", 7)

    async def open_all() -> list[bool]:
        channels = [grpc.aio.insecure_channel(f"127.0.0.1:{service.ports.keda}") for _ in range(2)]
        stubs = [pb_grpc.ExternalScalerStub(c) for c in channels]

        async def first(i: int) -> bool:
            deployment = DECODE if i == 0 else f"pd-{i}"
            ref = pb.ScaledObjectRef(
                name=f"so-{i}",
                namespace="llm-d",
                scalerMetadata={
                    "metricQuery": f"vllm:num_requests_waiting{{deployment={deployment}}}",
                    "targetValue": "1",
                },
            )
            call = stubs[i % 2].StreamIsActive(ref)
            message = await call.read()
            call.cancel()
            assert isinstance(message, pb.IsActiveResponse)
            return message.result

        try:
            return await asyncio.wait_for(asyncio.gather(*(first(i) for i in range(streams))), 120)
        finally:
            for channel in channels:
                await channel.close()

    results = asyncio.run(open_all())
    assert len(results) == streams
    assert results[0] is True and not any(results[1:])
    metrics = httpx.get(service.http + "/metrics").text
    assert "keda_errors_total" not in metrics.replace("# HELP keda_errors_total", "").replace(
        "# TYPE keda_errors_total", ""
    )


def test_stream_metric_spec_matches_get_metric_spec(keda: Keda) -> None:
    metadata = {"metricQuery": WAITING_DECODE, "targetValue": "3", "metricName": "decode-waiting"}
    call = keda.stub.StreamMetricSpec(keda.ref(**metadata))
    first = next(call)
    assert list(first.metricSpecs) == [keda.spec(**metadata)]
    call.cancel()


@pytest.mark.parametrize("port", ["otlp", "keda"])
def test_health_and_reflection_on_both_grpc_servers(service: RunningService, port: str) -> None:
    channel = grpc.insecure_channel(f"127.0.0.1:{getattr(service.ports, port)}")
    health = health_pb2_grpc.HealthStub(channel)
    assert health.Check(health_pb2.HealthCheckRequest(service="")).status == health_pb2.HealthCheckResponse.SERVING
    reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
    replies = reflection.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    services = {s.name for s in next(replies).list_services_response.service}
    expected = (
        "externalscaler.ExternalScaler" if port == "keda" else "opentelemetry.proto.collector.metrics.v1.MetricsService"
    )
    assert {expected, "grpc.health.v1.Health"} <= services


def test_concurrent_get_metrics_while_ingesting(keda: Keda, pusher: Pusher) -> None:
    pusher.waiting(PREFILL, "p0", 10)
    stop = threading.Event()

    def ingest() -> None:
        i = 0
        while not stop.is_set():
            pusher.waiting(DECODE, f"noise-{i % 50}", 1.0)  # other series keep arriving
            i += 1

    ingestor = threading.Thread(target=ingest, daemon=True)
    ingestor.start()
    query = {"metricQuery": f"vllm:num_requests_waiting{{deployment={PREFILL}}}", "targetValue": "1"}
    try:
        with ThreadPoolExecutor(50) as pool:
            values = list(pool.map(lambda _: keda.metrics(**query).metricValueFloat, range(500)))
    finally:
        stop.set()
        ingestor.join()
    assert values == [10.0] * 500


def test_self_metrics_report_trigger_values_latency_and_errors(
    keda: Keda, pusher: Pusher, service: RunningService
) -> None:
    pusher.waiting(DECODE, "d0", 6)
    keda.metrics(metricQuery=WAITING_DECODE, targetValue="1", metricName="decode-waiting")
    keda.active(metricQuery=WAITING_DECODE, targetValue="1", metricName="decode-waiting")
    with pytest.raises(grpc.RpcError):
        keda.metrics(metricQuery="x")
    text = httpx.get(service.http + "/metrics").text
    assert 'keda_trigger_value{metric="decode-waiting",namespace="llm-d",scaled_object="pd-decode"} 6.0' in text
    assert 'keda_trigger_active{metric="decode-waiting",namespace="llm-d",scaled_object="pd-decode"} 1.0' in text
    assert 'keda_trigger_target{metric="decode-waiting",namespace="llm-d",scaled_object="pd-decode"} 1.0' in text
    assert 'keda_request_duration_seconds_count{method="GetMetrics"} 2.0' in text
    assert 'keda_errors_total{code="INVALID_ARGUMENT",method="GetMetrics"} 1.0' in text
