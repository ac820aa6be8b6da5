"""OTLP in over gRPC and HTTP (SDK exporters, raw protobuf/JSON, a real collector) → REST out."""

from __future__ import annotations

import gzip
import json
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf import json_format
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HttpExporter
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricExporter, PeriodicExportingMetricReader
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource

from tests.conftest import RunningService
from tests.otlpdata import DECODE, PREFILL, counter, gauge, now_ns, otlp_stub, request

TTFT_BOUNDS = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0]


def push_with_sdk(exporter: MetricExporter, deployment: str, pod: str) -> None:
    """Record vLLM-shaped instruments with the OTel SDK and flush them once through ``exporter``."""
    resource = Resource.create(
        {"k8s.deployment.name": deployment, "k8s.pod.name": pod, "k8s.namespace.name": "llm-d", "service.name": "vllm"}
    )
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    view = View(
        instrument_name="vllm.time_to_first_token_seconds",
        aggregation=ExplicitBucketHistogramAggregation(TTFT_BOUNDS),
    )
    provider = MeterProvider(resource=resource, metric_readers=[reader], views=[view])
    meter = provider.get_meter("vllm")
    meter.create_gauge("vllm.num_requests_waiting").set(7, {"model_name": "opt"})
    meter.create_up_down_counter("vllm.num_requests_running").add(-2, {"model_name": "opt"})
    success = meter.create_counter("vllm.request_success")
    success.add(3, {"finished_reason": "stop"})
    success.add(2, {"finished_reason": "length"})
    ttft = meter.create_histogram("vllm.time_to_first_token_seconds", unit="s")
    for v in (0.003, 0.03, 0.3, 3.0):
        ttft.record(v)
    provider.shutdown()  # collects and exports exactly once


def data(svc: RunningService) -> dict[str, list[dict[str, Any]]]:
    reply = httpx.get(svc.http + "/memstore/data")
    reply.raise_for_status()
    result: dict[str, list[dict[str, Any]]] = reply.json()
    return result


def query(svc: RunningService, q: str, op: str = "last_one", **extra: str) -> dict[str, Any]:
    reply = httpx.post(svc.http + "/memstore/query", json={"query": q, "operationOverTime": op, **extra})
    result: dict[str, Any] = reply.json()
    return result


@pytest.mark.parametrize("transport", ["grpc", "http"])
def test_sdk_exporter_metrics_arrive_value_by_value(service: RunningService, transport: str) -> None:
    if transport == "grpc":
        exporter: MetricExporter = GrpcExporter(endpoint=f"127.0.0.1:{service.ports.otlp}", insecure=True)
    else:
        exporter = HttpExporter(endpoint=f"{service.http}/v1/metrics")
    push_with_sdk(exporter, DECODE, "decode-0")

    names = httpx.get(service.http + "/memstore/names").json()
    assert {
        "vllm.num_requests_waiting",
        "vllm.num_requests_running",
        "vllm.request_success",
        "vllm.time_to_first_token_seconds_bucket",
        "vllm.time_to_first_token_seconds_count",
        "vllm.time_to_first_token_seconds_sum",
    } <= set(names)
    stored = data(service)
    (waiting,) = stored["vllm.num_requests_waiting"]
    instance = waiting["labels"].pop("instance")  # the SDK's service.instance.id, promoted
    assert instance
    # the SDK's telemetry.sdk.* attributes are not promoted: the resource hash keeps sources apart
    identity = waiting["labels"]["resource_hash"]
    assert re.fullmatch("[0-9a-f]{16}", identity)
    assert all(s["labels"]["resource_hash"] == identity for series in stored.values() for s in series)
    del waiting["labels"]["resource_hash"]
    assert waiting["labels"] == {
        "deployment": DECODE,
        "pod": "decode-0",
        "namespace": "llm-d",
        "job": "vllm",
        "model_name": "opt",
    }
    assert [p["value"] for p in waiting["data"]] == [7]
    assert waiting["aggregatesOverTime"]["last_one"] == 7
    running = stored["vllm.num_requests_running"][0]
    assert running["data"][0]["value"] == -2  # negative gauge-like values are kept
    by_reason = {s["labels"]["finished_reason"]: s["data"][0]["value"] for s in stored["vllm.request_success"]}
    assert by_reason == {"stop": 3, "length": 2}
    buckets = {s["labels"]["le"]: s["data"][0]["value"] for s in stored["vllm.time_to_first_token_seconds_bucket"]}
    assert buckets["0.005"] == 1 and buckets["0.04"] == 2 and buckets["0.5"] == 3 and buckets["+Inf"] == 4
    assert stored["vllm.time_to_first_token_seconds_count"][0]["data"][0]["value"] == 4
    assert stored["vllm.time_to_first_token_seconds_sum"][0]["data"][0]["value"] == pytest.approx(3.333)
    # the Go reference's escaped name form finds the dotted name
    assert query(service, f"vllm_num_requests_waiting{{deployment={DECODE}}}")["value"] == 7


def _seed_walkthrough(svc: RunningService) -> None:
    """Three exports 5 s apart of vLLM counters for a prefill and a decode pod."""
    stub = otlp_stub(svc.ports.otlp)
    base = now_ns() - 10_000_000_000
    for i in range(3):
        t = base + i * 5_000_000_000
        for deployment, pod, per_step in ((PREFILL, "prefill-0", 2.0), (DECODE, "decode-0", 10.0)):
            stub.Export(
                request(
                    deployment,
                    pod,
                    counter("vllm:request_success_total", 100 + per_step * i, t, finished_reason="stop"),
                    gauge("vllm:num_requests_waiting", float(i), t, model_name="facebook/opt-125m"),
                )
            )


def test_seed_walkthrough_count_and_rate(service: RunningService) -> None:
    _seed_walkthrough(service)
    count = query(service, f"vllm:request_success_total{{deployment={DECODE}}}", "count")
    assert count == {"ok": True, "operation": "query", "error": "", "value": 3}
    # rate = per-second increase with Prometheus' extrapolation: samples span 10 s of a 12 s window,
    # both gaps are shorter than 1.1 sample intervals, so the increase extrapolates to the window:
    # 10 per 5 s = 2/s
    decode_rate = query(service, f"vllm:request_success_total{{deployment={DECODE}}}", "rate", window="12s")
    prefill_rate = query(service, f'vllm:request_success_total{{deployment="{PREFILL}"}}', "rate", window="12s")
    assert decode_rate["value"] == pytest.approx(2.0)
    assert prefill_rate["value"] == pytest.approx(0.4)
    assert query(service, f"max(vllm:num_requests_waiting{{deployment={DECODE}}})", "max")["value"] == 2
    assert query(service, f"vllm:num_requests_waiting{{deployment={DECODE}}}", "min")["value"] == 0
    assert query(service, f"vllm:num_requests_waiting{{deployment={DECODE}}}", "avg")["value"] == 1
    assert query(service, "count(vllm:num_requests_waiting)")["value"] == 2
    assert query(service, "vllm:num_requests_waiting")["value"] == 4  # sum over both pods' last values


def test_missing_label_and_unknown_metric_are_not_found(service: RunningService) -> None:
    _seed_walkthrough(service)
    not_found = {"ok": True, "operation": "query", "error": "Metric not found", "value": -1}
    assert query(service, "vllm:num_requests_waiting{no_such_label=x}") == not_found
    assert query(service, "vllm:does_not_exist") == not_found


def test_malformed_queries_are_400_with_a_message(service: RunningService) -> None:
    for body, fragment in (
        ({"query": "sum(vllm:x", "operationOverTime": "count"}, ""),
        ({"query": "vllm:x", "operationOverTime": "median"}, "median"),
        ({"query": "vllm:x", "operationOverTime": "count", "window": "10m"}, "retention"),
        ({"operationOverTime": "count"}, "query"),
        ({"query": 5}, "query"),
    ):
        reply = httpx.post(service.http + "/memstore/query", json=body)
        assert reply.status_code == 400, body
        assert fragment in reply.json()["error"]


def test_http_protobuf_gzip_chunked_and_json(service: RunningService) -> None:
    t = now_ns()
    body = request(PREFILL, "prefill-0", gauge("vllm:num_requests_waiting", 5.0, t)).SerializeToString()

    def chunks() -> Any:
        data = gzip.compress(body)
        for i in range(0, len(data), 7):
            yield data[i : i + 7]

    reply = httpx.post(
        service.http + "/v1/metrics",
        content=chunks(),
        headers={"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"},
    )
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "application/x-protobuf"
    parsed = metrics_service_pb2.ExportMetricsServiceResponse.FromString(reply.content)
    assert parsed.partial_success.rejected_data_points == 0

    as_json = json_format.MessageToDict(request(DECODE, "decode-0", counter("vllm:prompt_tokens_total", 1234, t)))
    as_json["resourceMetrics"][0]["scopeMetrics"][0]["metrics"][0]["sum"]["dataPoints"][0]["exemplars"] = [
        {
            "timeUnixNano": str(t),
            "asDouble": 1.0,
            "traceId": "5b8efff798038103d269b633813fc60c",
            "spanId": "eee19b7ec3c1b174",
        }
    ]
    as_json["unknownFutureField"] = {"x": 1}
    reply = httpx.post(
        service.http + "/v1/metrics", content=json.dumps(as_json), headers={"Content-Type": "application/json"}
    )
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"] == "application/json"
    assert query(service, f"vllm:prompt_tokens_total{{deployment={DECODE}}}")["value"] == 1234
    assert query(service, f"vllm:num_requests_waiting{{deployment={PREFILL}}}")["value"] == 5


def test_http_errors_and_partial_success(service_factory: Any) -> None:
    svc = service_factory(max_otlp_message_bytes=2048, max_future_skew_seconds=10)
    url = svc.http + "/v1/metrics"
    proto = {"Content-Type": "application/x-protobuf"}
    assert httpx.post(url, content=b"\xff\x00garbage", headers=proto).status_code == 400
    assert httpx.post(url, content=b"{}", headers={"Content-Type": "text/plain"}).status_code == 415
    assert httpx.post(url, content=b"{not json", headers={"Content-Type": "application/json"}).status_code == 400
    assert httpx.post(url, content=b"x" * 4096, headers=proto).status_code == 413
    bomb = gzip.compress(b"\x00" * 1_000_000)  # tiny on the wire, huge when inflated
    assert httpx.post(url, content=bomb, headers={**proto, "Content-Encoding": "gzip"}).status_code == 413
    assert httpx.post(url, content=b"abc", headers={**proto, "Content-Encoding": "gzip"}).status_code == 400
    assert httpx.post(url, content=b"", headers={**proto, "Content-Encoding": "br"}).status_code == 415

    t = now_ns()
    mixed = request(
        DECODE,
        "d",
        gauge("ok_metric", 1.0, t),
        gauge("from_the_future", 1.0, t + 3600 * 10**9),
        gauge("too_old", 1.0, t - 3600 * 10**9),
    )
    reply = httpx.post(url, content=mixed.SerializeToString(), headers=proto)
    assert reply.status_code == 200
    partial = metrics_service_pb2.ExportMetricsServiceResponse.FromString(reply.content).partial_success
    assert partial.rejected_data_points == 2
    assert "too_far_in_future" in partial.error_message and "too_old" in partial.error_message
    metrics = httpx.get(svc.http + "/metrics").text
    assert 'otlp_points_rejected_total{reason="too_old",transport="http"} 1.0' in metrics
    assert 'otlp_points_rejected_total{reason="too_large",transport="http"} 2.0' in metrics
    assert 'otlp_points_received_total{transport="http"} 1.0' in metrics


def test_grpc_partial_success_and_size_limit(service_factory: Any) -> None:
    svc = service_factory(max_otlp_message_bytes=4096, max_series=1)
    stub = otlp_stub(svc.ports.otlp)
    t = now_ns()
    reply = stub.Export(request(DECODE, "d", gauge("a", 1.0, t), gauge("b", 1.0, t)))
    assert reply.partial_success.rejected_data_points == 1
    assert "series_limit" in reply.partial_success.error_message
    big = request(DECODE, "d", *[gauge(f"m{i}", 1.0, t) for i in range(200)])
    with pytest.raises(grpc.RpcError) as err:
        stub.Export(big)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rotel() -> Path:
    import rotel

    return Path(rotel.__file__).parent / "rotel-agent"


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_through_a_real_collector(service: RunningService, protocol: str, tmp_path: Path) -> None:
    """SDK → rotel collector (gzip) → us, over gRPC and over HTTP."""
    agent = _rotel()
    assert agent.exists(), "rotel-agent binary missing from the rotel wheel"
    grpc_in, http_in = _free_port(), _free_port()
    endpoint = f"http://127.0.0.1:{service.ports.otlp}" if protocol == "grpc" else service.http
    log = (tmp_path / "rotel.log").open("w")
    proc = subprocess.Popen(
        [
            str(agent),
            "start",
            "--otlp-grpc-endpoint",
            f"127.0.0.1:{grpc_in}",
            "--otlp-http-endpoint",
            f"127.0.0.1:{http_in}",
            "--exporter",
            "otlp",
            "--otlp-exporter-endpoint",
            endpoint,
            "--otlp-exporter-protocol",
            protocol,
            "--otlp-exporter-compression",
            "gzip",
            "--batch-timeout",
            "100ms",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", grpc_in)) == 0:
                    break
            time.sleep(0.1)
        push_with_sdk(GrpcExporter(endpoint=f"127.0.0.1:{grpc_in}", insecure=True), PREFILL, "prefill-1")
        deadline = time.monotonic() + 20
        value: Any = None
        while time.monotonic() < deadline:
            value = query(service, f"vllm.num_requests_waiting{{deployment={PREFILL}}}").get("value")
            if value == 7:
                break
            time.sleep(0.2)
        assert value == 7, (tmp_path / "rotel.log").read_text()[-2000:]
        assert query(service, "vllm.time_to_first_token_seconds_count", "last_one")["value"] == 4
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


def test_python_m_scaler_help_and_version() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "scaler", "serve", "--help"], capture_output=True, text=True, check=True
    )
    for flag in ("--otlp-receiver-port", "--max-series", "--keda-tls-ca-file", "METRIC_STORE_RETENTION_SECONDS"):
        assert flag in out.stdout
    version = subprocess.run([sys.executable, "-m", "scaler", "--version"], capture_output=True, text=True, check=True)
    assert version.stdout.strip().startswith("keda-otel-scaler ")
