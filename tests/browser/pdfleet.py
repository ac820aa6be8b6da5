"""A prefill/decode fleet in fast-forward for the ``/ui`` tests: vLLM pods push their metrics
over OTLP/gRPC and a KEDA-like client polls the triggers of this repository's own ScaledObjects
(``manifests/keda``) over the external-scaler gRPC API, both on the service's injected clock, so
two minutes of a fleet take a few seconds and fill the retention the page draws.

Load (deterministic): prefill's queue and prompt-token rate rise to a peak and fall back; decode's
KV-cache usage and running batch follow them with a lag.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

from scaler._gen import externalscaler_pb2 as pb
from tests.conftest import ManualClock, RunningService
from tests.integration.test_keda import Keda
from tests.otlpdata import DECODE, PREFILL, counter, gauge, otlp_stub, request

MANIFESTS = Path(__file__).resolve().parents[2] / "manifests" / "keda"
POLL_SECONDS = 2.0
"""A KEDA-like poll (GetMetrics, then IsActive, as KEDA's metrics adapter does) per trigger."""


def scaled_objects() -> list[tuple[str, list[dict[str, str]]]]:
    """(name, trigger metadata) of the repository's prefill and decode ScaledObjects."""
    out = []
    for role in ("prefill", "decode"):
        doc = yaml.safe_load((MANIFESTS / f"scaledobject-{role}.yaml").read_text())
        triggers = [dict(t["metadata"]) for t in doc["spec"]["triggers"] if t["type"].startswith("external")]
        out.append((doc["metadata"]["name"], triggers))
    return out


def bump(t: float, centre: float, width: float) -> float:
    return math.exp(-(((t - centre) / width) ** 2))


@dataclass
class Fleet:
    svc: RunningService
    clock: ManualClock
    load: float = 1.0
    """A multiplier of the prefill queue the test can raise to see the page follow."""
    t: float = 0.0
    prompt_tokens: dict[str, float] = field(default_factory=dict)
    _since_poll: float = POLL_SECONDS

    def __post_init__(self) -> None:
        self.otlp: Any = otlp_stub(self.svc.ports.otlp)
        self.keda = Keda(self.svc)
        self.objects = scaled_objects()

    def run(self, seconds: float) -> None:
        """Advance ``seconds`` of fleet time: every pod exports once a second, KEDA polls."""
        for _ in range(int(seconds)):
            self.clock.advance(1.0)
            self.t += 1.0
            self._export()
            self._since_poll += 1.0
            if self._since_poll >= POLL_SECONDS:
                self._since_poll = 0.0
                self.poll()

    def poll(self) -> None:
        for name, triggers in self.objects:
            for metadata in triggers:
                ref = pb.ScaledObjectRef(name=name, namespace="llm-d", scalerMetadata=metadata)
                self.keda.stub.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=ref, metricName=metadata["metricName"]))
                self.keda.stub.IsActive(ref)

    def spec(self) -> None:
        """KEDA reads every trigger's spec when it creates the ScaledObject's HPA."""
        for name, triggers in self.objects:
            for metadata in triggers:
                self.keda.stub.GetMetricSpec(pb.ScaledObjectRef(name=name, namespace="llm-d", scalerMetadata=metadata))

    def _export(self) -> None:
        t, ns = self.t, self.clock.ns
        waiting = self.load * (1 + 13 * bump(t, 70, 25) + 0.8 * math.sin(t / 3))
        rate = 6000 + 42000 * bump(t, 75, 30)
        for i, pod in enumerate(("prefill-7d9f-0", "prefill-7d9f-1")):
            tokens = self.prompt_tokens[pod] = self.prompt_tokens.get(pod, 0.0) + rate / 2 * (1 + 0.1 * (i - 0.5))
            self._send(
                PREFILL,
                pod,
                gauge("vllm:num_requests_waiting", max(0.0, round(waiting / 2 + (i - 0.5))), ns),
                counter("vllm:prompt_tokens_total", tokens, ns),
            )
        decode_load = bump(t, 95, 35)
        for i, pod in enumerate(("decode-5c4b-0", "decode-5c4b-1", "decode-5c4b-2")):
            self._send(
                DECODE,
                pod,
                gauge("vllm:kv_cache_usage_perc", 0.28 + 0.45 * decode_load + 0.03 * math.sin(t / 5 + i), ns),
                gauge("vllm:num_requests_running", round(70 + 110 * decode_load + 6 * math.sin(t / 4 + i)), ns),
                gauge("vllm:num_requests_waiting", round(12 * decode_load), ns),
            )

    def _send(self, deployment: str, pod: str, *metrics: Any) -> None:
        message: ExportMetricsServiceRequest = request(deployment, pod, *metrics)
        self.otlp.Export(message)
