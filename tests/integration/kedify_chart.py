"""Run ``keda-otel-scaler`` as kedify/otel-add-on's Helm chart would run the image, and probe it from
outside: ``python -m tests.integration.kedify_chart SCENARIO.json`` prints what it saw as JSON.

The scenario gives the container ``args`` and ``env`` (the chart's rendering, see
``test_kedify_chart.py``), the ports to talk to, and the test certificates. The probe does what
a cluster does: the chart's probes (``GET /info`` on the REST port), a collector's OTLP export
(with a client certificate when the chart gives the receiver a CA), KEDA's external-scaler
calls (plaintext when ``KEDA_TLS_ENABLED`` is false), a Prometheus scrape of the internal-metrics
port, then SIGTERM. ``test_kedify_chart.py`` runs it in a private network namespace when it can
(``unshare -rn``), so the chart's fixed ports and its bind-all address are used as they are.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any, cast

import grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.metrics.v1 import metrics_pb2 as m
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from scaler import config
from scaler._gen import externalscaler_pb2 as pb
from scaler._gen import externalscaler_pb2_grpc as pb_grpc
from tests.otlpdata import gauge, kv

# What helmchart/otel-add-on v0.1.4 renders for its default values (the sources are cited in
# test_kedify_chart.py): the container args, which replace the image's CMD, and its env.
ARGS_DEFAULT = ["--zap-log-level=info", "--zap-stacktrace-level=error"]
ARGS_DEBUG = ["--zap-log-level=debug", "--zap-stacktrace-level=error"]
ENV_DEFAULT = {
    # Ports
    "OTLP_RECEIVER_PORT": "4317",
    "KEDA_EXTERNAL_SCALER_PORT": "4318",
    "INTERNAL_METRICS_PORT": "8080",
    "REST_API_PORT": "9090",
    # Metric Store
    "METRIC_STORE_RETENTION_SECONDS": "120",
    "METRIC_STORE_LAZY_SERIES": "false",
    "METRIC_STORE_LAZY_AGGREGATES": "false",
    "METRIC_STORE_ERROR_IF_NOT_FOUND": "false",
    "METRIC_STORE_VALUE_IF_NOT_FOUND": "0",
    "IS_ACTIVE_POLLING_INTERVAL_MS": "500",
    # TLS OTLP
    "OTLP_TLS_CA_FILE": "",
    "OTLP_TLS_CERT_FILE": "",
    "OTLP_TLS_KEY_FILE": "",
    "OTLP_CERTIFICATE_RELOAD_INTERVAL": "5m",
    # TLS KEDA
    "KEDA_TLS_ENABLED": "false",
    "KEDA_TLS_CERT_FILE": "",
    "KEDA_TLS_KEY_FILE": "",
}

QUERY = "vllm:num_requests_waiting{model_name=opt}"
REF = pb.ScaledObjectRef(
    name="decode", namespace="llm-d", scalerMetadata={"metricQuery": QUERY, "targetValue": "4", "clampMax": "100"}
)
OWN_VARIABLES = {s.env for s in config.SETTINGS} | {a.env for a in config.ACCEPTED}


def loopback_up() -> None:
    """Bring ``lo`` up in a fresh network namespace (``SIOCSIFFLAGS``; no ``ip`` binary needed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH22x", b"lo", 0)
        flags = struct.unpack("16sH22x", fcntl.ioctl(sock, 0x8913, request))[1]  # SIOCGIFFLAGS
        fcntl.ioctl(sock, 0x8914, struct.pack("16sH22x", b"lo", flags | 0x1))  # SIOCSIFFLAGS, IFF_UP


def http_get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            return int(reply.status), reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def start(scenario: dict[str, Any], log: Path) -> subprocess.Popen[bytes]:
    """The container: our entry point with the chart's args, the image's environment (nothing of
    ours set) with the chart's env laid over it."""
    entry = Path(sys.executable).with_name("keda-otel-scaler")
    command = [str(entry)] if entry.exists() else [sys.executable, "-m", "scaler"]
    base = {k: v for k, v in os.environ.items() if k not in OWN_VARIABLES}
    with log.open("wb") as out:
        return subprocess.Popen(
            [*command, *scenario["args"]], env={**base, **scenario["env"]}, stdout=out, stderr=subprocess.STDOUT
        )


def wait_ready(process: subprocess.Popen[bytes], info_url: str, timeout: float = 60.0) -> dict[str, Any]:
    """As the chart's readiness probe: ``GET /info`` answers 200."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the scaler exited with code {process.returncode}")
        with contextlib.suppress(OSError):
            status, body = http_get(info_url)
            if status == 200:
                info: dict[str, Any] = json.loads(body)
                return info
        time.sleep(0.05)
    raise RuntimeError("GET /info did not answer 200 in time")


def otlp_channel(scenario: dict[str, Any]) -> grpc.Channel:
    target = f"127.0.0.1:{scenario['ports']['otlp']}"
    tls = scenario.get("tls")
    if not tls:
        return grpc.insecure_channel(target)
    creds = grpc.ssl_channel_credentials(
        root_certificates=Path(tls["ca"]).read_bytes(),
        private_key=Path(tls["client_key"]).read_bytes(),
        certificate_chain=Path(tls["client_cert"]).read_bytes(),
    )
    return grpc.secure_channel(target, creds, options=[("grpc.ssl_target_name_override", "localhost")])


def push(channel: grpc.Channel) -> int:
    """Two collectors' exports from two nodes that differ only in ``host.name``."""
    rms = []
    for host, value in (("node-a", 3.0), ("node-b", 5.0)):
        resource = Resource(attributes=[kv("host.name", host), kv("service.name", "vllm")])
        metric = gauge("vllm:num_requests_waiting", value, time.time_ns(), model_name="opt")
        rms.append(m.ResourceMetrics(resource=resource, scope_metrics=[m.ScopeMetrics(metrics=[metric])]))
    stub = cast(Any, metrics_service_pb2_grpc).MetricsServiceStub(channel)
    reply = stub.Export(ExportMetricsServiceRequest(resource_metrics=rms), timeout=10)
    return int(reply.partial_success.rejected_data_points)


def stream_messages(keda: pb_grpc.ExternalScalerStub, seconds: float) -> list[bool]:
    """StreamIsActive for ``seconds``: the messages KEDA would get."""
    call = keda.StreamIsActive(REF)
    got: list[bool] = []

    def read() -> None:
        with contextlib.suppress(grpc.RpcError):
            for message in call:
                got.append(message.result)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    time.sleep(seconds)
    call.cancel()
    reader.join(5)
    return got


def probe(scenario: dict[str, Any], log: Path) -> dict[str, Any]:
    ports = scenario["ports"]
    process = start(scenario, log)
    seen: dict[str, Any] = {}
    try:
        seen["info"] = wait_ready(process, f"http://127.0.0.1:{ports['http']}/info")
        with otlp_channel(scenario) as otlp:
            seen["rejected"] = push(otlp)
        with grpc.insecure_channel(f"127.0.0.1:{ports['keda']}") as channel:  # KEDA's side: TLS off
            keda = pb_grpc.ExternalScalerStub(channel)
            (spec,) = keda.GetMetricSpec(REF, timeout=10).metricSpecs
            (value,) = keda.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=REF), timeout=10).metricValues
            seen["spec"] = {"name": spec.metricName, "target": spec.targetSizeFloat}
            seen["value"] = value.metricValueFloat
            seen["active"] = keda.IsActive(REF, timeout=10).result
            seen["stream"] = stream_messages(keda, 1.3)
        seen["data"] = json.loads(http_get(f"http://127.0.0.1:{ports['http']}/memstore/data")[1])
        seen["scrape"] = http_get(f"http://127.0.0.1:{ports['metrics']}/metrics")
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            seen["exit"] = process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            seen["exit"] = process.wait()
    return seen


def main(argv: list[str]) -> int:
    scenario = json.loads(Path(argv[0]).read_text())
    if scenario.get("netns"):
        loopback_up()
    log = Path(scenario["log"])
    try:
        seen = probe(scenario, log)
    except Exception as exc:  # the test shows it with the scaler's log
        seen = {"error": f"{type(exc).__name__}: {exc}"}
    seen["log"] = log.read_text(errors="replace")
    print(json.dumps(seen))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
