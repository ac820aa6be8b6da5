"""Figure 2, query latency: KEDA ``GetMetrics`` for a compat and a PromQL trigger selecting ~50
series of a 100k-series store.

Three views of the same calls: end to end over gRPC on loopback (baseline: a ``grpc.health``
Check round trip in the same run), server side from the ``keda_request_duration_seconds``
histogram (coarse buckets), and the engine alone in-process (trigger lookup + evaluation).
"""

from __future__ import annotations

import gc
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import grpc

from bench import workload
from bench.server import GRPC_OPTIONS, HEALTH_PATH, ServerProcess
from bench.stats import Latency, time_calls
from scaler._gen import externalscaler_pb2 as pb
from scaler._gen import externalscaler_pb2_grpc as pb_grpc

SELECTED = workload.deployment_name(0)
"""The deployment the queries select (50 pods)."""


def triggers(deployment: str = SELECTED) -> dict[str, dict[str, str]]:
    """KEDA trigger metadata of the two benchmark queries."""
    return {
        "compat": {
            "metricQuery": f"sum(vllm:num_requests_waiting{{deployment={deployment}}})",
            "targetValue": "5",
        },
        "promql": {
            "query": f'sum(rate(vllm:prompt_tokens_total{{deployment="{deployment}"}}[1m]))',
            "targetValue": "5",
        },
    }


def promql_forms(deployment: str = SELECTED) -> dict[str, str]:
    """The same two queries as PromQL, for the Prometheus HTTP API of both servers."""
    return {
        "compat": f'sum(vllm:num_requests_waiting{{deployment="{deployment}"}})',
        "promql": f'sum(rate(vllm:prompt_tokens_total{{deployment="{deployment}"}}[1m]))',
    }


def metrics_request(name: str, metadata: Mapping[str, str]) -> pb.GetMetricsRequest:
    ref = pb.ScaledObjectRef(name=f"bench-{name}", namespace="bench", scalerMetadata=dict(metadata))
    return pb.GetMetricsRequest(scaledObjectRef=ref, metricName=f"bench-{name}")


@dataclass(frozen=True)
class GrpcLatency:
    health: Latency
    queries: dict[str, Latency]
    values: dict[str, float]
    server_side: dict[str, tuple[float, float]]
    """Per query: (p50, p99) in ms from the server's histogram."""


def measure_grpc(server: ServerProcess, n: int, queries: Mapping[str, Mapping[str, str]] | None = None) -> GrpcLatency:
    """GetMetrics of each trigger (by default :func:`triggers`) and health Checks in between."""
    channel = grpc.insecure_channel(f"127.0.0.1:{server.keda}", options=GRPC_OPTIONS)
    try:
        health: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(HEALTH_PATH)
        stub = pb_grpc.ExternalScalerStub(channel)
        latencies: dict[str, Latency] = {}
        values: dict[str, float] = {}
        server_side: dict[str, tuple[float, float]] = {}
        health_times: list[float] = []
        for name, metadata in (triggers() if queries is None else queries).items():
            request = metrics_request(name, metadata)
            values[name] = stub.GetMetrics(request).metricValues[0].metricValueFloat
            health_times += time_calls(lambda: health(b""), n // 2)
            before = _histogram(server)
            latencies[name] = Latency.of(time_calls(lambda r=request: stub.GetMetrics(r), n))  # type: ignore[misc]
            after = _histogram(server)
            delta = {le: after[le] - before.get(le, 0.0) for le in after}
            server_side[name] = (_quantile(delta, 0.5) * 1000, _quantile(delta, 0.99) * 1000)
        return GrpcLatency(Latency.of(health_times), latencies, values, server_side)
    finally:
        channel.close()


def _histogram(server: ServerProcess) -> dict[float, float]:
    """Cumulative bucket counts of ``keda_request_duration_seconds{method="GetMetrics"}``."""
    out: dict[float, float] = {}
    for key, value in server.metrics().items():
        if key.startswith("keda_request_duration_seconds_bucket{") and 'method="GetMetrics"' in key:
            le = key.split('le="', 1)[1].split('"', 1)[0]
            out[math.inf if le == "+Inf" else float(le)] = value
    return out


def _quantile(buckets: Mapping[float, float], q: float) -> float:
    """``histogram_quantile`` over cumulative buckets (linear interpolation inside a bucket)."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return math.nan
    rank = q * buckets[bounds[-1]]
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower
            return lower + (bound - lower) * (rank - below) / max(count - below, 1e-12)
        lower, below = bound, count
    return lower


@dataclass(frozen=True)
class EngineLatency:
    series: int
    fill_seconds: float
    queries: dict[str, Latency]
    without_gc: dict[str, Latency]
    """The same calls with the cyclic GC paused: what the engine costs without GC pauses."""
    selected: dict[str, int]


def measure_engine(pods: Sequence[workload.PodPayload], n: int) -> EngineLatency:
    """Trigger lookup + evaluation in-process on a store holding every pod's series (24 samples
    for the selected deployment's pods, one for the others: the query reads only the former)."""
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

    from scaler import otlp, query
    from scaler.config import Settings, StoreLimits
    from scaler.store import Store
    from scaler.trigger import TriggerCache, read

    store = Store(StoreLimits(max_series=2_000_000))
    settings = Settings()
    promotions = settings.otlp.promotions
    t_end_ns = time.time_ns()
    selected = [p for p in pods if p.pod.deployment == SELECTED]
    start = time.perf_counter()

    def ingest(payload: workload.PodPayload, round_index: int) -> None:
        request = ExportMetricsServiceRequest()
        request.ParseFromString(
            payload.grown(t_end_ns - (23 - round_index) * 5_000_000_000, workload.counter_value(round_index))
        )
        store.append(otlp.translate(request, promotions, 0).samples)

    for r in range(23):
        for payload in selected:
            ingest(payload, r)
    for payload in pods:
        ingest(payload, 23)
    fill = time.perf_counter() - start
    engine = query.Engine(store)
    cache = TriggerCache(settings.triggers, settings.store.retention_seconds)
    t_ms = t_end_ns // 1_000_000
    out: dict[str, Latency] = {}
    no_gc: dict[str, Latency] = {}
    matched: dict[str, int] = {}
    for name, metadata in triggers().items():

        def call(m: Mapping[str, str] = metadata) -> float | None:
            return read(cache.get(m), engine, t_ms, warming=False).number

        out[name] = Latency.of(time_calls(call, n))
        gc.disable()
        try:
            no_gc[name] = Latency.of(time_calls(call, n))
        finally:
            gc.enable()
    for name, expr in promql_forms().items():
        inner = expr.split("(", 1)[1].rsplit(")", 1)[0]
        result = engine.instant(query.parse_promql(inner), t_ms)
        matched[name] = len(result.samples) if isinstance(result, query.Vector) else 1
    return EngineLatency(store.series_count, fill, out, no_gc, matched)
