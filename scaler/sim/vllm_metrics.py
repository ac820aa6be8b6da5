"""One simulated pod's vLLM metrics, kept in a ``prometheus_client`` registry as vLLM does.

Names, types, labels and histogram buckets are vLLM v1's (``vllm/v1/metrics/loggers.py``;
see pd-serving-facts.md §5): gauges ``vllm:num_requests_running``,
``vllm:num_requests_waiting``, ``vllm:kv_cache_usage_perc``; counters (exposed with
``_total``) ``vllm:request_success{finished_reason}``, ``vllm:prompt_tokens``,
``vllm:generation_tokens``, ``vllm:prefix_cache_queries`` and ``vllm:prefix_cache_hits`` (in
tokens, counted when a request is scheduled); histograms ``vllm:time_to_first_token_seconds``,
``vllm:inter_token_latency_seconds``, ``vllm:e2e_request_latency_seconds``,
``vllm:request_queue_time_seconds``, and the lengths of each finished request,
``vllm:request_prompt_tokens`` and ``vllm:request_generation_tokens`` (1-2-5 buckets up to
``max_model_len``, as vLLM's ``build_1_2_5_buckets``). Exactly the set the repository's collectors keep
(``manifests/collectors``, ``filter/vllm-scaling``).

The metrics are small custom registry collectors without locks or label look-ups (a
simulated pod is only ever touched by one thread), and the histograms have
``observe(value, count)``: a decode step yields one inter-token latency per running
sequence, and observing them one by one, or through ``prometheus_client``'s locked
children, would cost the simulator more CPU than everything else (measured with py-spy).
The exposition is identical.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Sequence

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

# vLLM v1 bucket boundaries.
# fmt: off
TTFT_BUCKETS = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
)
ITL_BUCKETS = (
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0,
)
REQUEST_LATENCY_BUCKETS = (
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0,
    480.0, 960.0, 1920.0, 7680.0,
)
# fmt: on


def token_buckets(max_model_len: int) -> tuple[int, ...]:
    """vLLM's ``build_1_2_5_buckets(max_model_len)``: 1, 2, 5, 10, 20, 50, … up to the limit."""
    out: list[int] = []
    exponent = 1
    while True:
        for mantissa in (1, 2, 5):
            value = mantissa * exponent
            if value > max_model_len:
                return tuple(out)
            out.append(value)
        exponent *= 10


LABEL_NAMES = ("model_name", "engine")


class WeightedHistogram:
    """A one-child Prometheus histogram with ``observe(value, count)``; a registry collector."""

    def __init__(
        self, name: str, doc: str, buckets: Sequence[float], labels: Sequence[str], registry: CollectorRegistry
    ) -> None:
        self.name = name
        self.documentation = doc
        self.bounds = tuple(float(b) for b in buckets)
        self.labels = list(labels)
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0
        registry.register(self)

    def observe(self, value: float, count: int = 1) -> None:
        if count <= 0:
            return
        self.counts[bisect.bisect_left(self.bounds, value)] += count
        self.sum += value * count

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=list(LABEL_NAMES))
        cumulative, buckets = 0, []
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            cumulative += count
            buckets.append(("+Inf" if bound == float("inf") else repr(float(bound)), float(cumulative)))
        family.add_metric(self.labels, buckets, self.sum)
        yield family

    def describe(self) -> list[Metric]:
        return []


class Value:
    """One gauge or counter child: a plain float."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def set(self, value: float) -> None:
        self.value = float(value)

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount


class _Family:
    """A gauge or counter family (a registry collector) with fixed label values per child."""

    def __init__(self, kind: str, name: str, doc: str, label_names: Sequence[str], registry: CollectorRegistry) -> None:
        self.kind = kind
        self.name = name
        self.documentation = doc
        self.label_names = list(label_names)
        self.children: dict[tuple[str, ...], Value] = {}
        registry.register(self)

    def child(self, *labels: str) -> Value:
        return self.children.setdefault(labels, Value())

    def collect(self) -> Iterator[Metric]:
        family: Metric
        if self.kind == "gauge":
            family = GaugeMetricFamily(self.name, self.documentation, labels=self.label_names)
        else:
            family = CounterMetricFamily(self.name, self.documentation, labels=self.label_names)
        for labels, value in self.children.items():
            family.add_metric(list(labels), value.value)
        yield family

    def describe(self) -> list[Metric]:
        return []


class VllmMetrics:
    """The metrics of one vLLM engine (``engine="0"``), in their own registry."""

    def __init__(self, model_name: str, max_model_len: int) -> None:
        self.registry = r = CollectorRegistry(auto_describe=False)
        labels = (model_name, "0")
        running = _Family(
            "gauge", "vllm:num_requests_running", "Number of requests in model execution batches.", LABEL_NAMES, r
        )
        waiting = _Family(
            "gauge", "vllm:num_requests_waiting", "Number of requests waiting to be processed.", LABEL_NAMES, r
        )
        kv = _Family("gauge", "vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", LABEL_NAMES, r)
        success = _Family(
            "counter", "vllm:request_success", "Count of successfully processed requests.",
            (*LABEL_NAMES, "finished_reason"), r,
        )  # fmt: skip
        prompt = _Family("counter", "vllm:prompt_tokens", "Number of prefill tokens processed.", LABEL_NAMES, r)
        generation = _Family(
            "counter", "vllm:generation_tokens", "Number of generation tokens processed.", LABEL_NAMES, r
        )
        self.running, self.waiting, self.kv_usage = running.child(*labels), waiting.child(*labels), kv.child(*labels)
        self._success = {reason: success.child(*labels, reason) for reason in ("stop", "length", "abort")}
        self.prompt_tokens = prompt.child(*labels)
        queries = _Family(
            "counter", "vllm:prefix_cache_queries", "Prefix cache queries, in terms of number of queried tokens.",
            LABEL_NAMES, r,
        )  # fmt: skip
        hits = _Family(
            "counter", "vllm:prefix_cache_hits", "Prefix cache hits, in terms of number of cached tokens.",
            LABEL_NAMES, r,
        )  # fmt: skip
        self._prefix_queries, self._prefix_hits = queries.child(*labels), hits.child(*labels)
        self.generation_tokens = generation.child(*labels)
        self.ttft = WeightedHistogram(
            "vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.", TTFT_BUCKETS, labels, r
        )
        self.itl = WeightedHistogram(
            "vllm:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.", ITL_BUCKETS, labels, r
        )
        self.e2e = WeightedHistogram(
            "vllm:e2e_request_latency_seconds",
            "Histogram of e2e request latency in seconds.",
            REQUEST_LATENCY_BUCKETS,
            labels,
            r,
        )
        self.queue = WeightedHistogram(
            "vllm:request_queue_time_seconds",
            "Histogram of time spent in WAITING phase for request.",
            REQUEST_LATENCY_BUCKETS,
            labels,
            r,
        )
        lengths = token_buckets(max_model_len)
        self.request_prompt = WeightedHistogram(
            "vllm:request_prompt_tokens", "Number of prefill tokens processed.", lengths, labels, r
        )
        self.request_generation = WeightedHistogram(
            "vllm:request_generation_tokens", "Number of generation tokens processed.", lengths, labels, r
        )
        self.families: tuple[_Family | WeightedHistogram, ...] = (
            running, waiting, kv, success, prompt, generation, queries, hits, self.ttft, self.itl, self.e2e,
            self.queue, self.request_prompt, self.request_generation,
        )  # fmt: skip
        """Every family, in the order the registry exposes them."""

    def success(self, reason: str, prompt_tokens: int, generation_tokens: int) -> None:
        """A request finished (``reason``: stop, length or abort), with its prompt and the
        tokens it generated: vLLM counts it and observes both lengths, whatever the reason."""
        self._success[reason].value += 1.0
        self.request_prompt.observe(prompt_tokens)
        self.request_generation.observe(generation_tokens)

    def prefix_lookup(self, queried: int, to_compute: int) -> None:
        """A request scheduled: its ``queried`` tokens looked up in the prefix cache, all but
        ``to_compute`` found there (vLLM counts both in tokens, for every request it schedules)."""
        self._prefix_queries.value += queried
        self._prefix_hits.value += queried - to_compute
