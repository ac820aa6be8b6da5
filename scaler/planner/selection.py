"""Which series one planner decision reads, selected by the promoted ``deployment`` label and
copied (:func:`take`): the only part of a decision that touches the store, so it runs on the event
loop; the rest (:func:`scaler.planner.signals.compute`) works on the copies.

What is read (pd-serving-facts.md §5) is listed in :mod:`scaler.planner.signals`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from scaler.model import METRIC_NAME, Matcher, MatchOp
from scaler.planner.series import Copy
from scaler.query.histogram import parse_go_float
from scaler.series import FloatArray
from scaler.store import Series, Store

RUNNING = ("vllm:num_requests_running",)
WAITING = ("vllm:num_requests_waiting",)
KV_USAGE = ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc")
PROMPT_TOKENS = ("vllm:prompt_tokens_total",)
GENERATION_TOKENS = ("vllm:generation_tokens_total",)
REQUESTS = ("vllm:request_success_total",)
PREFIX_QUERIES = ("vllm:prefix_cache_queries_total", "vllm:gpu_prefix_cache_queries_total")
PREFIX_HITS = ("vllm:prefix_cache_hits_total", "vllm:gpu_prefix_cache_hits_total")
TTFT = ("vllm:time_to_first_token_seconds",)
ITL = ("vllm:inter_token_latency_seconds", "vllm:time_per_output_token_seconds")
QUEUE = ("vllm:request_queue_time_seconds",)
PROMPT_LENGTHS = ("vllm:request_prompt_tokens",)
OUTPUT_LENGTHS = ("vllm:request_generation_tokens",)
"""Per finished request, its prompt and its output length (of each histogram only ``_sum`` and
``_count`` are read: the mean lengths of the requests that finished)."""
EPP_IN_FLIGHT = "llm_d_epp_inflight_requests"
"""llm-d's endpoint picker, inflight-load-producer: requests routed to an endpoint and not yet
released (on a P/D pool a request counts on its decode endpoint from admission to the end of
its stream, so also while it waits for, or sits in, a prefill pod)."""

METRIC_NAMES = frozenset(
    [*RUNNING, *WAITING, *KV_USAGE, *PROMPT_TOKENS, *GENERATION_TOKENS, *REQUESTS, *PREFIX_QUERIES, *PREFIX_HITS]
    + [EPP_IN_FLIGHT]
    + [name + suffix for name in (*TTFT, *ITL, *QUEUE) for suffix in ("_bucket", "_sum", "_count")]
    + [name + suffix for name in (*PROMPT_LENGTHS, *OUTPUT_LENGTHS) for suffix in ("_sum", "_count")]
)
"""Every metric the planner reads (new samples of these may change its answer)."""


def watched(deployment: str) -> list[tuple[Matcher, ...]]:
    """The selectors of what the planner reads for ``deployment`` (as :class:`_Reader` selects
    it): its pods' series by name and ``deployment`` label, the EPP's by name."""
    own = sorted(METRIC_NAMES - {EPP_IN_FLIGHT})
    deployment_is = Matcher.of("deployment", MatchOp.EQ, deployment)
    out = [(Matcher.of(METRIC_NAME, MatchOp.EQ, name), deployment_is) for name in own]
    return [*out, (Matcher.of(METRIC_NAME, MatchOp.EQ, EPP_IN_FLIGHT),)]


class Rows:
    """Series gathered for one Block, with a row index per named part."""

    def __init__(self) -> None:
        self.series: list[Series | Copy] = []
        self.parts: dict[str, list[int]] = {}

    def copied(self, since_ms: int) -> Rows:
        """The same rows over copies of the series' samples at or after ``since_ms``
        (:class:`~scaler.planner.series.Copy`)."""
        out = Rows()
        out.series = [Copy.of(s, since_ms) if isinstance(s, Series) else s for s in self.series]
        out.parts = self.parts
        return out

    def add(self, part: str, found: Iterable[Series | Copy]) -> None:
        rows = self.parts.setdefault(part, [])
        for s in found:
            rows.append(len(self.series))
            self.series.append(s)

    def sum(self, matrix: FloatArray, part: str, width: int) -> FloatArray:
        rows = self.parts.get(part, [])
        if not rows:
            return np.zeros(width)
        return np.asarray(np.nansum(matrix[rows], axis=0), dtype=np.float64)


class _Reader:
    def __init__(self, store: Store, deployment: str) -> None:
        self.store = store
        self.deployment = deployment

    def select(self, names: Sequence[str], suffix: str = "") -> list[Series]:
        for name in names:
            found = self.store.select(
                [
                    Matcher.of(METRIC_NAME, MatchOp.EQ, name + suffix),
                    Matcher.of("deployment", MatchOp.EQ, self.deployment),
                ]
            )
            if found:
                return found
        return []

    def histogram(self, rows: Rows, key: str, names: Sequence[str], limits: Sequence[float]) -> bool:
        """Add to ``rows`` the buckets around each limit, +Inf (the count) and the sum of the
        first of ``names`` exported; False when none is (or it has no +Inf bucket)."""
        for name in names:
            buckets = self.select((name,), "_bucket")
            if buckets:
                break
        else:
            return False
        by_le: dict[str, list[Series]] = {}
        for s in buckets:
            by_le.setdefault(s.label("le"), []).append(s)
        by_bound: dict[float, list[Series]] = {}
        for le, group in by_le.items():
            bound = parse_go_float(le)
            if bound is not None and not math.isnan(bound):
                by_bound.setdefault(bound, []).extend(group)
        if math.inf not in by_bound or len(by_bound) < 2:
            return False
        finite = sorted(b for b in by_bound if math.isfinite(b))
        needed = {math.inf}
        for limit in limits:
            b = int(np.searchsorted(finite, limit, side="left"))
            needed |= {finite[min(b, len(finite) - 1)]} | ({finite[b - 1]} if b > 0 else set())
        for bound in sorted(needed):
            rows.add(f"{key}:{bound!r}", by_bound[bound])
        rows.add(f"{key}:sum", self.select((name,), "_sum"))
        return True


@dataclass(frozen=True)
class Taken:
    """The series one decision reads, selected and copied (:func:`take`): what :func:`compute`
    needs, and nothing of the store."""

    gauges: Rows
    counters: Rows
    histograms: dict[str, bool]
    """Whether each latency histogram (ttft, itl, queue) is exported."""
    limits: dict[str, tuple[float, ...]]
    """Each histogram's limits, whose share of observations above is computed."""


def take(
    store: Store,
    deployment: str,
    since_ms: int,
    ttft_limits: Sequence[float] = (),
    itl_limits: Sequence[float] = (),
    queue_limits: Sequence[float] = (),
) -> Taken:
    """Select ``deployment``'s series (of each histogram only the buckets around its limits)
    and copy their samples at or after ``since_ms`` (the retention's cut-off): a few
    milliseconds for tens of pods, on the event loop; the rest (:func:`compute`) needs nothing
    of the store and may run in another thread."""
    reader = _Reader(store, deployment)
    gauges = Rows()
    running_series = reader.select(RUNNING)
    gauges.add("running", running_series)
    gauges.add("waiting", reader.select(WAITING))
    gauges.add("kv", reader.select(KV_USAGE))
    gauges.add("epp", _epp_series(store, running_series))
    counters = Rows()
    counters.add("prompt", reader.select(PROMPT_TOKENS))
    counters.add("generation", reader.select(GENERATION_TOKENS))
    counters.add("requests", reader.select(REQUESTS))
    counters.add("prefix_queries", reader.select(PREFIX_QUERIES))
    counters.add("prefix_hits", reader.select(PREFIX_HITS))
    for key, names in (("prompt_lengths", PROMPT_LENGTHS), ("output_lengths", OUTPUT_LENGTHS)):
        counters.add(f"{key}:sum", reader.select(names, "_sum"))
        counters.add(f"{key}:count", reader.select(names, "_count"))
    limits = {"ttft": tuple(ttft_limits), "itl": tuple(itl_limits), "queue": tuple(queue_limits)}
    histograms = {
        key: reader.histogram(counters, key, names, limits[key])
        for key, names in (("ttft", TTFT), ("itl", ITL), ("queue", QUEUE))
    }
    return Taken(gauges.copied(since_ms), counters.copied(since_ms), histograms, limits)


def _epp_series(store: Store, running: Sequence[Series]) -> list[Series]:
    """The EPP's in-flight series of this deployment's pods (``endpoint_name`` is the pod name,
    ``namespace`` its namespace; the EPP's own resource labels say nothing about the pods)."""
    pods = {(s.label("pod"), s.label("namespace")) for s in running if s.label("pod")}
    if not pods:
        return []
    candidates = store.select([Matcher.of(METRIC_NAME, MatchOp.EQ, EPP_IN_FLIGHT)])
    return [s for s in candidates if (s.label("endpoint_name"), s.label("namespace")) in pods]
