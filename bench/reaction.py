"""Figure 4, reaction: from the OTLP Export that flips a trigger to (a) the ``StreamIsActive``
message at a subscribed client and (b) ``GetMetrics`` returning the new value, while a separate
process ingests 10k series every 5 s (:mod:`bench.background`). Baseline: a plain gRPC round trip
(``grpc.health`` Check) measured under the same load.
"""

from __future__ import annotations

import json
import queue
import random
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import grpc
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2 as m
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from bench.latency import metrics_request
from bench.server import GRPC_OPTIONS, HEALTH_PATH, ServerProcess, otlp_export
from bench.stats import Latency, time_calls
from scaler._gen import externalscaler_pb2 as pb
from scaler._gen import externalscaler_pb2_grpc as pb_grpc

FLIP_DEPLOYMENT = "flip-llm-d-modelservice-prefill"
FLIP_METADATA = {
    "metricQuery": f"sum(vllm:num_requests_waiting{{deployment={FLIP_DEPLOYMENT}}})",
    "targetValue": "5",
    "activationThreshold": "5",
}
HIGH, LOW = 10.0, 0.0


def flip_request(value: float) -> bytes:
    """A one-pod Export of ``vllm:num_requests_waiting`` = ``value`` stamped now."""
    kv = [
        KeyValue(key="k8s.deployment.name", value=AnyValue(string_value=FLIP_DEPLOYMENT)),
        KeyValue(key="k8s.pod.name", value=AnyValue(string_value=f"{FLIP_DEPLOYMENT}-0")),
        KeyValue(key="k8s.namespace.name", value=AnyValue(string_value="llm-d")),
    ]
    point = m.NumberDataPoint(time_unix_nano=time.time_ns(), as_double=value)
    metric = m.Metric(name="vllm:num_requests_waiting", gauge=m.Gauge(data_points=[point]))
    rm = m.ResourceMetrics(resource=Resource(attributes=kv), scope_metrics=[m.ScopeMetrics(metrics=[metric])])
    return ExportMetricsServiceRequest(resource_metrics=[rm]).SerializeToString()


@dataclass(frozen=True)
class Reaction:
    stream: Latency
    get_metrics: Latency
    baseline: Latency
    export_rtt: Latency
    background: dict[str, float]
    missed: int


def _reader(stream: Iterator[pb.IsActiveResponse], inbox: queue.Queue[tuple[float, bool]]) -> None:
    try:
        for message in stream:
            inbox.put((time.perf_counter(), message.result))
    except grpc.RpcError:
        pass


def measure(server: ServerProcess, flips: int, background_series: int) -> Reaction:
    otlp = grpc.insecure_channel(f"127.0.0.1:{server.otlp}", options=GRPC_OPTIONS)
    keda = grpc.insecure_channel(f"127.0.0.1:{server.keda}", options=GRPC_OPTIONS)
    export = otlp_export(otlp)
    stub = pb_grpc.ExternalScalerStub(keda)
    health: grpc.UnaryUnaryMultiCallable[bytes, bytes] = keda.unary_unary(HEALTH_PATH)
    get_request = metrics_request("flip", FLIP_METADATA)
    export(flip_request(LOW), timeout=10)
    ref = pb.ScaledObjectRef(name="bench-flip", namespace="bench", scalerMetadata=FLIP_METADATA)
    stream = stub.StreamIsActive(ref)
    inbox: queue.Queue[tuple[float, bool]] = queue.Queue()
    threading.Thread(target=_reader, args=(stream, inbox), daemon=True).start()
    first = inbox.get(timeout=10)
    if first[1]:
        raise RuntimeError("flip trigger should start inactive")
    duration = 15.0 + flips * 0.15
    bg = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.background",
            "--port",
            str(server.otlp),
            "--series",
            str(background_series),
            "--duration",
            str(duration),
        ],
        stdout=subprocess.PIPE,
    )
    try:
        time.sleep(6.0)  # a full scrape interval of background load before measuring
        to_stream: list[float] = []
        to_value: list[float] = []
        rtts: list[float] = []
        baseline: list[float] = []
        missed = 0
        rng = random.Random(8)
        for i in range(flips):
            baseline += time_calls(lambda: health(b""), 3, warmup=0)
            time.sleep(rng.uniform(0.02, 0.08))
            value = HIGH if i % 2 == 0 else LOW
            body = flip_request(value)
            start = time.perf_counter()
            export(body, timeout=10)
            rtts.append(time.perf_counter() - start)
            while stub.GetMetrics(get_request).metricValues[0].metricValueFloat != value:
                pass
            to_value.append(time.perf_counter() - start)
            try:
                arrived, active = inbox.get(timeout=5)
            except queue.Empty:
                missed += 1
                continue
            if active != (value == HIGH):
                raise RuntimeError("StreamIsActive sent an unexpected state")
            to_stream.append(arrived - start)
        bg.terminate()
        out, _ = bg.communicate(timeout=60)
        background = json.loads(out.decode().strip().splitlines()[-1]) if out.strip() else {}
    finally:
        if bg.poll() is None:
            bg.kill()
            bg.wait()
        stream.cancel()
        otlp.close()
        keda.close()
    return Reaction(
        Latency.of(to_stream), Latency.of(to_value), Latency.of(baseline), Latency.of(rtts), background, missed
    )
