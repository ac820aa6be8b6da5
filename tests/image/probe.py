"""Probe a running keda-otel-scaler (the container image) end to end from outside.

Run by ``scripts/image.sh test`` against the container; not collected by pytest. It pushes
one OTLP gauge over gRPC and one over OTLP/HTTP (protobuf, gzip), each from a different
``k8s.deployment.name``, then reads them back through the REST memstore API and through
the KEDA external scaler (GetMetricSpec, IsActive, GetMetrics), and checks both gRPC
health services. Every check prints one line; the first mismatch ends the probe with exit
status 1 and a message saying what was expected and what came back.

    python tests/image/probe.py --http-port 9090 --otlp-port 4317 --keda-port 4318 --metrics-port 8080
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import secrets
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any, cast

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from scaler._gen import externalscaler_pb2 as pb
from scaler._gen import externalscaler_pb2_grpc

# A fresh namespace and deployment names per run, so the probe can run again against the
# same server and still expect exactly its own samples.
RUN = secrets.token_hex(3)
METRIC = "vllm:num_requests_waiting"
NAMESPACE = f"probe-{RUN}"
GRPC_DEPLOYMENT, GRPC_VALUE = f"probe-via-grpc-{RUN}", 7.0
HTTP_DEPLOYMENT, HTTP_VALUE = f"probe-via-http-{RUN}", 3.5
TIMEOUT = 10.0


class ProbeError(Exception):
    """A check failed; the message says what was expected and what came back."""


def check(what: str, ok: bool, detail: str) -> None:
    if not ok:
        raise ProbeError(f"{what}: {detail}")
    print(f"ok   {what}")


def same(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


def export_request(deployment: str, value: float) -> metrics_service_pb2.ExportMetricsServiceRequest:
    """One gauge point, now, from a pod of ``deployment`` (promoted to the label ``deployment``)."""
    point = metrics_pb2.NumberDataPoint(
        time_unix_nano=time.time_ns(),
        as_double=value,
        attributes=[KeyValue(key="model_name", value=AnyValue(string_value="probe-model"))],
    )
    metric = metrics_pb2.Metric(name=METRIC, gauge=metrics_pb2.Gauge(data_points=[point]))
    attrs = {"k8s.deployment.name": deployment, "k8s.namespace.name": NAMESPACE, "k8s.pod.name": f"{deployment}-0"}
    resource = Resource(attributes=[KeyValue(key=k, value=AnyValue(string_value=v)) for k, v in attrs.items()])
    return metrics_service_pb2.ExportMetricsServiceRequest(
        resource_metrics=[
            metrics_pb2.ResourceMetrics(resource=resource, scope_metrics=[metrics_pb2.ScopeMetrics(metrics=[metric])])
        ]
    )


def http(method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError as exc:
        raise ProbeError(f"{method} {url}: cannot connect: {exc}") from exc


def http_json(method: str, url: str, payload: dict[str, Any] | None = None) -> tuple[int, Any]:
    body = json.dumps(payload).encode() if payload is not None else None
    status, raw = http(method, url, body, {"Content-Type": "application/json"} if body else None)
    try:
        return status, json.loads(raw)
    except ValueError as exc:
        raise ProbeError(f"{method} {url}: HTTP {status}, not JSON: {raw[:200]!r}") from exc


def probe_health(base: str, otlp: grpc.Channel, keda: grpc.Channel, args: argparse.Namespace) -> None:
    for path in ("/healthz", "/readyz"):
        status, _ = http("GET", base + path)
        check(f"GET {path} is 200", status == 200, f"HTTP {status}")
    for name, channel in (("OTLP", otlp), ("KEDA", keda)):
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=TIMEOUT)
        check(
            f"gRPC health on the {name} port is SERVING",
            reply.status == health_pb2.HealthCheckResponse.SERVING,
            f"status {reply.status}",
        )
    status, info = http_json("GET", base + "/info")
    got = info.get("ports") if isinstance(info, dict) else None
    if args.published:  # mapped ports: /info shows the container's side of the mapping
        ok = isinstance(got, dict) and sorted(got) == ["http", "keda", "metrics", "otlp"]
        check("GET /info reports four bound ports", status == 200 and ok, f"HTTP {status}, ports {got}")
    else:
        want = {"otlp": args.otlp_port, "keda": args.keda_port, "http": args.http_port, "metrics": args.metrics_port}
        detail = f"HTTP {status}, ports {got}, want {want}"
        check("GET /info reports the bound ports", status == 200 and got == want, detail)
        scrape, text = http("GET", f"http://{args.host}:{args.metrics_port}/metrics")
        names = "keda_otel_scaler_runtime_info" in text.decode() and "store_series" in text.decode()
        check(
            "GET /metrics on the internal-metrics port has kedify's names and ours",
            scrape == 200 and names,
            f"HTTP {scrape}",
        )
    ingest = info.get("ingest") if isinstance(info, dict) else None
    check("GET /info reports the native ingest path", ingest == {"path": "native"}, f"ingest {ingest}")


def push(base: str, otlp: grpc.Channel) -> None:
    # The generated stub is untyped (no .pyi); give mypy --strict a typed handle on it.
    make_stub = cast(Callable[[grpc.Channel], Any], metrics_service_pb2_grpc.MetricsServiceStub)
    stub = make_stub(otlp)
    reply = stub.Export(export_request(GRPC_DEPLOYMENT, GRPC_VALUE), timeout=TIMEOUT)
    rejected = reply.partial_success.rejected_data_points
    check("OTLP/gRPC Export accepted the point", rejected == 0, f"{rejected} rejected: {reply.partial_success}")

    body = gzip.compress(export_request(HTTP_DEPLOYMENT, HTTP_VALUE).SerializeToString())
    headers = {"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"}
    status, raw = http("POST", base + "/v1/metrics", body, headers)
    check("OTLP/HTTP POST /v1/metrics (protobuf, gzip) is 200", status == 200, f"HTTP {status}: {raw[:200]!r}")
    answer = metrics_service_pb2.ExportMetricsServiceResponse.FromString(raw)
    rejected = answer.partial_success.rejected_data_points
    check("OTLP/HTTP accepted the point", rejected == 0, f"{rejected} rejected: {answer.partial_success}")


def read_rest(base: str) -> None:
    status, data = http_json("GET", base + "/memstore/data")
    check("GET /memstore/data is 200", status == 200, f"HTTP {status}: {data}")
    series = data.get(METRIC, []) if isinstance(data, dict) else []
    by_deployment = {s.get("labels", {}).get("deployment"): s for s in series}
    for deployment, value in ((GRPC_DEPLOYMENT, GRPC_VALUE), (HTTP_DEPLOYMENT, HTTP_VALUE)):
        s = by_deployment.get(deployment)
        check(f"/memstore/data has {METRIC}{{deployment={deployment}}}", s is not None, f"series: {series}")
        assert s is not None
        labels = s["labels"]
        check(
            f"  its labels are promoted and kept (deployment={deployment})",
            labels.get("namespace") == NAMESPACE and labels.get("model_name") == "probe-model",
            f"labels {labels}",
        )
        points = [p["value"] for p in s.get("data", [])]
        check(f"  its samples are [{value:g}]", points == [value], f"samples {points}")

    queries: list[tuple[str, float]] = [
        (f"{METRIC}{{deployment={GRPC_DEPLOYMENT}}}", GRPC_VALUE),
        (f'{METRIC}{{deployment="{HTTP_DEPLOYMENT}"}}', HTTP_VALUE),
        (f"sum({METRIC}{{namespace={NAMESPACE}}})", GRPC_VALUE + HTTP_VALUE),
    ]
    for q, want in queries:
        status, reply = http_json("POST", base + "/memstore/query", {"operationOverTime": "last_one", "query": q})
        ok = status == 200 and reply.get("ok") is True and not reply.get("error") and same(reply.get("value"), want)
        check(f"POST /memstore/query {q} = {want:g}", ok, f"HTTP {status}: {reply}")
    q = f"{METRIC}{{deployment=no-such-deployment}}"
    status, reply = http_json("POST", base + "/memstore/query", {"operationOverTime": "last_one", "query": q})
    ok = status == 200 and reply.get("error") == "Metric not found" and reply.get("value") == -1
    check("POST /memstore/query of a missing series answers 'Metric not found', -1", ok, f"HTTP {status}: {reply}")


def read_keda(keda: grpc.Channel) -> None:
    stub = externalscaler_pb2_grpc.ExternalScalerStub(keda)
    cases: list[tuple[str, float]] = [
        (f"{METRIC}{{deployment={GRPC_DEPLOYMENT}}}", GRPC_VALUE),
        (f"{METRIC}{{deployment={HTTP_DEPLOYMENT}}}", HTTP_VALUE),
        (f"sum({METRIC}{{namespace={NAMESPACE}}})", GRPC_VALUE + HTTP_VALUE),
    ]
    for q, want in cases:
        ref = pb.ScaledObjectRef(name="probe", namespace="probe", scalerMetadata={"metricQuery": q, "targetValue": "1"})
        spec = stub.GetMetricSpec(ref, timeout=TIMEOUT)
        check(
            f"KEDA GetMetricSpec({q}) has targetSizeFloat 1",
            len(spec.metricSpecs) == 1 and same(spec.metricSpecs[0].targetSizeFloat, 1.0),
            f"{spec}",
        )
        metric_name = spec.metricSpecs[0].metricName
        active = stub.IsActive(ref, timeout=TIMEOUT)
        check(f"KEDA IsActive({q}) is true", active.result, f"{active}")
        reply = stub.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=ref, metricName=metric_name), timeout=TIMEOUT)
        got = reply.metricValues[0].metricValueFloat if reply.metricValues else None
        check(
            f"KEDA GetMetrics({q}) = {want:g}",
            got is not None and same(got, want),
            f"metricValues {list(reply.metricValues)}",
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1", help="address the container listens on")
    parser.add_argument("--http-port", type=int, required=True, help="REST_API_PORT")
    parser.add_argument("--otlp-port", type=int, required=True, help="OTLP_RECEIVER_PORT")
    parser.add_argument("--keda-port", type=int, required=True, help="KEDA_EXTERNAL_SCALER_PORT")
    parser.add_argument("--metrics-port", type=int, default=8080, help="INTERNAL_METRICS_PORT")
    parser.add_argument(
        "--published",
        action="store_true",
        help="the ports are published container ports (docker run -p): don't expect /info to show them",
    )
    args = parser.parse_args(argv)

    base = f"http://{args.host}:{args.http_port}"
    steps: list[tuple[str, Callable[[], None]]] = []
    with (
        grpc.insecure_channel(f"{args.host}:{args.otlp_port}") as otlp,
        grpc.insecure_channel(f"{args.host}:{args.keda_port}") as keda,
    ):
        steps = [
            ("health", lambda: probe_health(base, otlp, keda, args)),
            ("push", lambda: push(base, otlp)),
            ("REST", lambda: read_rest(base)),
            ("KEDA", lambda: read_keda(keda)),
        ]
        for name, step in steps:
            try:
                step()
            except ProbeError as exc:
                print(f"FAIL [{name}] {exc}", file=sys.stderr)
                return 1
            except grpc.RpcError as exc:
                why = f"{exc.code()} {exc.details()}" if isinstance(exc, grpc.Call) else repr(exc)
                print(f"FAIL [{name}] gRPC call failed: {why}", file=sys.stderr)
                return 1
    print(f"probe passed: {len(steps)} groups of checks against {base}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
