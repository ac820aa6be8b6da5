"""The scaler's real core in-process: OTLP in, KEDA answers out, on an injected clock."""

from __future__ import annotations

import asyncio

import pytest
from opentelemetry.proto.metrics.v1 import metrics_pb2

from scaler._gen import externalscaler_pb2 as pb
from scaler.lab import vtime
from scaler.lab.inproc import EPOCH, InProcessScaler
from scaler.sim.keda_emulator import ScalerCallError
from scaler.sim.otlp_export import pod_resource, registry_to_metrics, resource_metrics
from scaler.sim.vllm_metrics import VllmMetrics

DEPLOYMENT = "pd-llm-d-modelservice-decode"


def _ref(**metadata: str) -> pb.ScaledObjectRef:
    return pb.ScaledObjectRef(name="pd-decode", namespace="llm-d", scalerMetadata=metadata)


def _scrape(pod: str, waiting: int, t: float) -> list[metrics_pb2.ResourceMetrics]:
    m = VllmMetrics("m", 2048)
    m.waiting.set(waiting)
    m.prompt_tokens.inc(1000 * t)
    metrics = registry_to_metrics(m.registry, int((EPOCH + t) * 1e9), int(EPOCH * 1e9))
    return [resource_metrics(pod_resource(pod, DEPLOYMENT, "llm-d", "decode"), metrics)]


def test_samples_reach_the_keda_answers_through_the_real_pipeline() -> None:
    async def main() -> tuple[float, float, bool]:
        loop = asyncio.get_running_loop()
        scaler = InProcessScaler(loop.time)
        for t in range(0, 75, 5):  # a full 1-minute window of 5-s scrapes
            await asyncio.sleep(t - loop.time())
            for pod, waiting in (("a", 3), ("b", 5)):
                await scaler.export(_scrape(f"{DEPLOYMENT}-{pod}", waiting, t))
        query = f'sum(vllm:num_requests_waiting{{deployment="{DEPLOYMENT}"}})'
        reply = await scaler.get_metrics(pb.GetMetricsRequest(scaledObjectRef=_ref(query=query, targetValue="4")))
        rate = f'sum(rate(vllm:prompt_tokens_total{{deployment="{DEPLOYMENT}"}}[1m]))'
        tokens = await scaler.get_metrics(pb.GetMetricsRequest(scaledObjectRef=_ref(query=rate, targetValue="1")))
        active = await scaler.is_active(_ref(query=query, targetValue="4"))
        return reply.metricValues[0].metricValueFloat, tokens.metricValues[0].metricValueFloat, active.result

    waiting, tokens, active = vtime.run(main)
    assert waiting == 8 and active
    assert tokens == pytest.approx(2000, rel=1e-6)  # two pods, 1000 prompt tokens/s each


def test_errors_come_back_as_grpc_status_codes_naming_the_key() -> None:
    async def main() -> list[str]:
        loop = asyncio.get_running_loop()
        scaler = InProcessScaler(loop.time)
        codes = []
        for metadata in ({"query": "sum(rate(x[1m]", "targetValue": "1"}, {"query": "up"}):
            try:
                await scaler.get_metric_spec(_ref(**metadata))
            except ScalerCallError as exc:
                codes.append(f"{exc.code} {exc.details}")
        missing = _ref(query="sum(nothing)", targetValue="1", errIfNotFound="true")
        for at in (10.0, 61.0):  # the warm-up (60 s) is counted on the injected clock
            await asyncio.sleep(at - loop.time())
            try:
                await scaler.get_metrics(pb.GetMetricsRequest(scaledObjectRef=missing))
            except ScalerCallError as exc:
                codes.append(exc.code)
        return codes

    bad_query, no_target, warming, not_found = vtime.run(main)
    assert bad_query.startswith("INVALID_ARGUMENT") and "'query'" in bad_query
    assert no_target.startswith("INVALID_ARGUMENT") and "'targetValue'" in no_target
    assert (warming, not_found) == ("UNAVAILABLE", "NOT_FOUND")
