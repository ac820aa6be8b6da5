"""A synthetic vLLM deployment that writes what its pods would export into a real Store.

Each pod keeps vLLM's series (names, ``_total`` counters, ``_bucket``/``_sum``/``_count``
histograms with vLLM's bucket bounds, the promoted ``deployment``/``pod`` labels) and exports
them once per simulated second, into the fleet's own store and, as OTLP requests shaped like a
collector's (:meth:`Fleet.run`'s ``sink``), to anything else. Loads are given per pod and per
second, so the figures a test expects can be computed by hand.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

from scaler.config import StoreLimits
from scaler.model import STALE_NAN, LabelPairs, Sample, make_labels
from scaler.sim.vllm_metrics import ITL_BUCKETS, REQUEST_LATENCY_BUCKETS, TTFT_BUCKETS
from scaler.store import Store
from tests import otlpdata

T0 = 1_800_000_000.0

Sink = Callable[[ExportMetricsServiceRequest], None]
"""Where a pod's OTLP request goes (e.g. a real server's MetricsService/Export)."""


class Clock:
    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@dataclass
class Histogram:
    bounds: tuple[float, ...]
    counts: list[float] = field(default_factory=list)
    total: float = 0.0

    def __post_init__(self) -> None:
        self.counts = [0.0] * (len(self.bounds) + 1)

    def observe(self, value: float, n: float) -> None:
        for i, bound in enumerate((*self.bounds, float("inf"))):
            if value <= bound:
                self.counts[i] += n
        self.total += value * n


@dataclass
class Load:
    """What one pod does during one second."""

    running: float = 0.0
    waiting: float = 0.0
    kv: float = 0.0
    prompt_tokens: float = 0.0
    generation_tokens: float = 0.0
    requests: float = 0.0
    ttft: float = 0.05
    itl: float = 0.02
    queue: float = 0.0
    cached_tokens: float | None = None
    """Of ``prompt_tokens``, those found in the prefix cache; None: the pod does not export the
    prefix-cache counters (an older vLLM, or a collector that drops them)."""
    lengths: tuple[float, float] | None = None
    """The prompt and output lengths of each of the ``requests`` that finished, observed in
    ``vllm:request_prompt_tokens`` / ``vllm:request_generation_tokens``; None: the pod does not
    export those histograms (a collector that drops them)."""


@dataclass
class Pod:
    name: str
    prompt: float = 0.0
    generation: float = 0.0
    requests: float = 0.0
    prefix: tuple[float, float] | None = None
    """Prefix-cache queries and hits so far (tokens), once the pod exports them."""
    lengths: tuple[float, float, float] | None = None
    """Requests finished, their prompt and their output tokens so far, once the pod exports the
    length histograms (``_sum`` and ``_count`` only: nothing reads their buckets)."""
    ttft: Histogram = field(default_factory=lambda: Histogram(TTFT_BUCKETS))
    itl: Histogram = field(default_factory=lambda: Histogram(ITL_BUCKETS))
    queue: Histogram = field(default_factory=lambda: Histogram(REQUEST_LATENCY_BUCKETS))


class Fleet:
    def __init__(self, deployment: str, retention_seconds: float = 600.0, clock: Clock | None = None) -> None:
        self.deployment = deployment
        self.clock = clock or Clock()
        self.store = Store(StoreLimits(retention_seconds=retention_seconds), self.clock)
        self.pods: dict[str, Pod] = {}

    @property
    def now_ms(self) -> int:
        return self.store.now_ms()

    def labels(self, name: str, pod: str, **extra: str) -> LabelPairs:
        return make_labels(name, {"deployment": self.deployment, "pod": pod, "namespace": "llm-d", **extra})

    def add(self, *names: str) -> None:
        for name in names:
            self.pods[name] = Pod(name)

    def remove(self, name: str) -> None:
        """The pod goes away: its collector sends one staleness marker per series."""
        pod = self.pods.pop(name)
        ts = self.now_ms
        self.store.append([(labels, ts, STALE_NAN, False) for labels, _, _, _ in self._samples(pod, Load(), ts)])

    def run(
        self,
        seconds: int,
        load: Load | dict[str, Load],
        sink: Callable[[ExportMetricsServiceRequest], None] | None = None,
    ) -> None:
        """Advance ``seconds`` one second at a time; every pod exports at the end of each (also
        to ``sink`` as one OTLP request per pod)."""
        for _ in range(seconds):
            self.clock.t += 1.0
            ts = self.now_ms
            samples: list[Sample] = []
            for pod in self.pods.values():
                one = load[pod.name] if isinstance(load, dict) else load
                pod.prompt += one.prompt_tokens
                pod.generation += one.generation_tokens
                pod.requests += one.requests
                if one.cached_tokens is not None:
                    queries, hits = pod.prefix or (0.0, 0.0)
                    pod.prefix = (queries + one.prompt_tokens, hits + one.cached_tokens)
                if one.lengths is not None:
                    count, prompts, outputs = pod.lengths or (0.0, 0.0, 0.0)
                    isl, osl = one.lengths
                    pod.lengths = (count + one.requests, prompts + isl * one.requests, outputs + osl * one.requests)
                pod.ttft.observe(one.ttft, one.requests)
                pod.itl.observe(one.itl, one.generation_tokens)
                pod.queue.observe(one.queue, one.requests)
                samples += self._samples(pod, one, ts)
                if sink is not None:
                    sink(self._otlp(pod, one, ts * 1_000_000))
            result = self.store.append(samples)
            assert result.rejected_total == 0, result

    def _otlp(self, pod: Pod, load: Load, t_ns: int) -> ExportMetricsServiceRequest:
        metrics = [
            otlpdata.gauge("vllm:num_requests_running", load.running, t_ns),
            otlpdata.gauge("vllm:num_requests_waiting", load.waiting, t_ns),
            otlpdata.gauge("vllm:kv_cache_usage_perc", load.kv, t_ns),
            otlpdata.counter("vllm:prompt_tokens_total", pod.prompt, t_ns),
            otlpdata.counter("vllm:generation_tokens_total", pod.generation, t_ns),
            otlpdata.counter("vllm:request_success_total", pod.requests, t_ns, finished_reason="stop"),
        ]
        if pod.prefix is not None:
            metrics.append(otlpdata.counter("vllm:prefix_cache_queries_total", pod.prefix[0], t_ns))
            metrics.append(otlpdata.counter("vllm:prefix_cache_hits_total", pod.prefix[1], t_ns))
        if pod.lengths is not None:
            count, prompts, outputs = pod.lengths
            for name, total in (("vllm:request_prompt_tokens", prompts), ("vllm:request_generation_tokens", outputs)):
                metrics.append(otlpdata.histogram(name, [], [int(count)], total, t_ns))
        for name, hist in (
            ("vllm:time_to_first_token_seconds", pod.ttft),
            ("vllm:inter_token_latency_seconds", pod.itl),
            ("vllm:request_queue_time_seconds", pod.queue),
        ):
            per_bucket = [int(c - p) for c, p in zip(hist.counts, [0.0, *hist.counts[:-1]], strict=True)]
            metrics.append(otlpdata.histogram(name, list(hist.bounds), per_bucket, hist.total, t_ns))
        return otlpdata.request(self.deployment, pod.name, *metrics)

    def _samples(self, pod: Pod, load: Load, ts: int) -> list[Sample]:
        out: list[Sample] = [
            (self.labels("vllm:num_requests_running", pod.name), ts, load.running, False),
            (self.labels("vllm:num_requests_waiting", pod.name), ts, load.waiting, False),
            (self.labels("vllm:kv_cache_usage_perc", pod.name), ts, load.kv, False),
            (self.labels("vllm:prompt_tokens_total", pod.name), ts, pod.prompt, False),
            (self.labels("vllm:generation_tokens_total", pod.name), ts, pod.generation, False),
            (self.labels("vllm:request_success_total", pod.name, finished_reason="stop"), ts, pod.requests, False),
        ]
        if pod.prefix is not None:
            out.append((self.labels("vllm:prefix_cache_queries_total", pod.name), ts, pod.prefix[0], False))
            out.append((self.labels("vllm:prefix_cache_hits_total", pod.name), ts, pod.prefix[1], False))
        if pod.lengths is not None:
            count, prompts, outputs = pod.lengths
            for name, total in (("vllm:request_prompt_tokens", prompts), ("vllm:request_generation_tokens", outputs)):
                out.append((self.labels(name + "_count", pod.name), ts, count, False))
                out.append((self.labels(name + "_sum", pod.name), ts, total, False))
        for name, hist in (
            ("vllm:time_to_first_token_seconds", pod.ttft),
            ("vllm:inter_token_latency_seconds", pod.itl),
            ("vllm:request_queue_time_seconds", pod.queue),
        ):
            for bound, count in zip((*hist.bounds, float("inf")), hist.counts, strict=True):
                le = "+Inf" if bound == float("inf") else repr(float(bound))
                out.append((self.labels(name + "_bucket", pod.name, le=le), ts, count, False))
            out.append((self.labels(name + "_count", pod.name), ts, hist.counts[-1], False))
            out.append((self.labels(name + "_sum", pod.name), ts, hist.total, False))
        return out
