"""A full store asks exporters to come back later, and the OpenTelemetry SDK's exporters do:
gRPC RESOURCE_EXHAUSTED with RetryInfo, HTTP 429 with Retry-After; the retry lands once
there is room. Partly-stored requests get partial_success instead (a retry would add delta
sums twice)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import grpc
import httpx
import pytest
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HttpExporter
from opentelemetry.sdk.metrics.export import MetricExporter

from scaler import receiver
from tests.conftest import RunningService
from tests.hostile.support import Counters
from tests.integration.test_ingest import push_with_sdk
from tests.otlpdata import DECODE, PREFILL, gauge, now_ns, otlp_stub, request

TOKEN = "t0ken-for-the-reset"


def fill(svc: RunningService, limit: int) -> None:
    stub = otlp_stub(svc.ports.otlp)
    for i in range(limit):
        stub.Export(request(PREFILL, f"p{i}", gauge("vllm:num_requests_waiting", 1.0, now_ns())))
    assert svc.call(lambda: svc.service.store.series_count if svc.service else 0) == limit


def throttled(svc: RunningService, transport: str) -> float:
    return Counters(httpx.get(f"{svc.http}/metrics").text).value(
        "otlp_requests_total", outcome="throttled", transport=transport
    )


@pytest.mark.parametrize("transport", ["grpc", "http"])
def test_sdk_exporters_back_off_on_a_full_store_and_their_retry_lands(
    service_factory: Callable[..., RunningService], monkeypatch: pytest.MonkeyPatch, transport: str
) -> None:
    monkeypatch.setattr(receiver, "RETRY_AFTER_SECONDS", 1)  # the hint the exporters must honour
    svc = service_factory(max_series=30, admin_token=TOKEN)  # the SDK push makes 23 series
    fill(svc, 30)
    if transport == "grpc":
        exporter: MetricExporter = GrpcExporter(endpoint=f"127.0.0.1:{svc.ports.otlp}", insecure=True)
    else:
        exporter = HttpExporter(endpoint=f"{svc.http}/v1/metrics")
    pushed = threading.Thread(target=push_with_sdk, args=(exporter, DECODE, "decode-0"))
    started = time.monotonic()
    pushed.start()
    while throttled(svc, transport) < 1:
        assert time.monotonic() - started < 10, "the first export was not throttled"
        time.sleep(0.05)
    reset = httpx.post(f"{svc.http}/memstore/reset", headers={"Authorization": f"Bearer {TOKEN}"})
    assert reset.status_code == 200
    pushed.join(timeout=30)
    assert not pushed.is_alive()
    waited = time.monotonic() - started
    assert waited >= 0.8  # it waited for the hint (1 s with the SDK's jitter), not its own 1 s+ backoff
    names = httpx.get(f"{svc.http}/memstore/names").json()
    assert "vllm.num_requests_waiting" in names and "vllm.time_to_first_token_seconds_bucket" in names
    assert throttled(svc, transport) == 1


def test_grpc_full_store_status_carries_retry_info(service_factory: Callable[..., RunningService]) -> None:
    svc = service_factory(max_series=2)
    fill(svc, 2)
    with pytest.raises(grpc.RpcError) as err:
        otlp_stub(svc.ports.otlp).Export(request(DECODE, "d9", gauge("vllm:num_requests_waiting", 1.0, now_ns())))
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "MAX_SERIES" in (err.value.details() or "")
    trailers = {item.key: item.value for item in err.value.trailing_metadata() or ()}
    status = status_pb2.Status.FromString(bytes(trailers["grpc-status-details-bin"]))
    info = error_details_pb2.RetryInfo()
    assert status.code == 8 and status.details[0].Unpack(info)
    assert info.retry_delay.seconds == receiver.RETRY_AFTER_SECONDS
    assert error_details_pb2.RetryInfo.FromString(bytes(trailers["google.rpc.retryinfo-bin"])) == info


def test_http_full_store_is_429_with_retry_after_and_a_partly_stored_request_is_partial_success(
    service_factory: Callable[..., RunningService],
) -> None:
    svc = service_factory(max_series=2)
    fill(svc, 1)
    both = request(DECODE, "d9", gauge("vllm:num_requests_waiting", 1.0, now_ns()), gauge("vllm:other", 1.0, now_ns()))
    reply = httpx.post(
        f"{svc.http}/v1/metrics", content=both.SerializeToString(), headers={"content-type": "application/x-protobuf"}
    )
    assert reply.status_code == 200  # one of two new series fits: stored, the other rejected
    assert b"series_limit" in reply.content
    late = request(DECODE, "d10", gauge("vllm:num_requests_waiting", 1.0, now_ns()))
    reply = httpx.post(
        f"{svc.http}/v1/metrics", content=late.SerializeToString(), headers={"content-type": "application/json"}
    )
    assert reply.status_code == 400  # protobuf bytes declared as JSON
    reply = httpx.post(
        f"{svc.http}/v1/metrics", content=late.SerializeToString(), headers={"content-type": "application/x-protobuf"}
    )
    assert reply.status_code == 429
    assert reply.headers["retry-after"] == str(receiver.RETRY_AFTER_SECONDS)
    status = status_pb2.Status.FromString(reply.content)
    assert status.code == 8 and "MAX_SERIES" in status.message
    # samples of series the store already has are still accepted while it is full
    stub = otlp_stub(svc.ports.otlp)
    assert not stub.Export(request(PREFILL, "p0", gauge("vllm:num_requests_waiting", 2.0, now_ns()))).HasField(
        "partial_success"
    )
