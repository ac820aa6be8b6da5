"""What one role's vLLM pods exported, as arrays over a grid of instants.

Only what vLLM itself exports (pd-serving-facts.md §5) is read, selected by the promoted
``deployment`` label:

* gauges ``vllm:num_requests_running``, ``vllm:num_requests_waiting``,
  ``vllm:kv_cache_usage_perc`` (older name ``vllm:gpu_cache_usage_perc``);
* counters ``vllm:prompt_tokens_total``, ``vllm:generation_tokens_total``,
  ``vllm:request_success_total``, ``vllm:prefix_cache_queries_total`` and
  ``vllm:prefix_cache_hits_total`` (older names ``vllm:gpu_prefix_cache_*``; optional);
* histograms ``vllm:time_to_first_token_seconds``, ``vllm:inter_token_latency_seconds``
  (older name ``vllm:time_per_output_token_seconds``), ``vllm:request_queue_time_seconds``;
  of ``vllm:request_prompt_tokens`` and ``vllm:request_generation_tokens`` (each finished
  request's lengths; optional) only ``_sum`` and ``_count``.

A pod counts as exporting at an instant when its ``num_requests_running`` gauge has a sample
no older than :data:`FRESH_MS` that is not a staleness marker (a removed pod's collector sends
one marker per series, so it stops counting at once). Rates and latencies are taken over
``(t − window, t]`` from counter increases, summed over every pod that exported in the window,
including pods that went away in it: their work was done.

Cost: the SLO is a p90, and "p90 ≤ target" is "at most 10 % of the observations above the
target", which two buckets (those around the target) and the count answer; so of each
histogram only those, ``_sum`` and ``_count`` are read, not its ~20 buckets. All counters go
into one :class:`~scaler.planner.series.Block` and all gauges into another: two concatenations
and four ``searchsorted`` calls per decision, whatever the number of pods and instants.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from scaler.planner.selection import Rows, Taken, take
from scaler.planner.series import Block, increase
from scaler.series import FloatArray, Int64Array
from scaler.store import Store

FRESH_MS = 15_000
"""A gauge sample older than this no longer shows a live pod (3 × the collectors' 5 s scrape)."""


@dataclass(frozen=True)
class Latency:
    """One latency histogram over each window: observations, their sum, and the share of them
    above each limit asked for (linear inside the bucket that holds the limit, as
    ``histogram_quantile`` interpolates)."""

    counts: FloatArray
    sums: FloatArray
    above: dict[float, FloatArray]

    def share_above(self, limit: float) -> FloatArray:
        """Per instant, the share of observations above ``limit`` (NaN: none observed)."""
        return self.above[limit]

    def mean(self) -> FloatArray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.counts > 0, self.sums / self.counts, np.nan)


@dataclass(frozen=True)
class Signals:
    """One deployment's exported state at each instant of ``times`` (milliseconds)."""

    times: Int64Array
    window_ms: int
    """Window of the rates."""
    latency_window_ms: int
    """Window of the latency distributions."""
    pods: FloatArray
    """Pods exporting at the instant."""
    running: FloatArray
    waiting: FloatArray
    queued_pods: FloatArray
    """Pods exporting at the instant with at least one request waiting: a fleet is at its
    capacity only when every pod is. Requests queue on the pod they were routed to, so after
    pods join, the old pods' queue alone can outnumber the pods while the new pods idle."""
    kv_usage: FloatArray
    """Mean KV-cache usage (0..1) over the exporting pods; NaN when none reports it."""
    in_flight: FloatArray
    """Requests llm-d's EPP has in flight on the pods (NaN without an EPP reporting them)."""
    prompt_rate: FloatArray
    """Prompt tokens/s finished over the window (prefill work done)."""
    generation_rate: FloatArray
    request_rate: FloatArray
    uncached_share: FloatArray
    """Share of the prompt tokens looked up in the prefix cache over the window that were not
    found there (the work prefill still does); NaN where none were looked up, or the pods do
    not export the prefix-cache counters."""
    mean_prompt: FloatArray
    """Mean prompt length of the requests that finished over the long window (NaN: none
    finished); see :func:`_mean_length`."""
    mean_output: FloatArray
    """Mean output length of the requests that finished over the long window. Over a short
    window it would be noisy (long outputs finish few at a time) and biased towards the short
    ones right after a rise (they finish first)."""
    ttft: Latency
    itl: Latency
    queue: Latency
    series: int
    """Series read (a cost figure for the explanation)."""

    @property
    def size(self) -> int:
        return len(self.times)


def _latency(rows: Rows, grown: FloatArray, key: str, limits: Sequence[float], width: int, found: bool) -> Latency:
    counts = rows.sum(grown, f"{key}:{math.inf!r}", width)
    sums = rows.sum(grown, f"{key}:sum", width)
    above: dict[float, FloatArray] = {}
    for limit in limits:
        if not found:
            above[limit] = np.full(width, np.nan)
            continue
        above[limit] = _share_above(rows, grown, key, limit, counts, width)
    return Latency(counts, sums, above)


def _share_above(rows: Rows, grown: FloatArray, key: str, limit: float, counts: FloatArray, width: int) -> FloatArray:
    bounds = sorted(float(p.split(":", 1)[1]) for p in rows.parts if p.startswith(key + ":") and p != f"{key}:sum")
    finite = [b for b in bounds if math.isfinite(b)]
    below_bounds = [b for b in finite if b < limit]
    at_or_above = [b for b in finite if b >= limit]
    lo_bound = below_bounds[-1] if below_bounds else 0.0
    lo = rows.sum(grown, f"{key}:{lo_bound!r}", width) if below_bounds else np.zeros(width)
    if at_or_above:
        hi_bound = at_or_above[0]
        hi = rows.sum(grown, f"{key}:{hi_bound!r}", width)
        # a limit inside the first bucket is taken at its bound, the finest the histogram
        # tells: what falls there is mostly at 0 (a queue time), and interpolating from 0 would
        # put a share of it over any limit (vLLM's queue-time buckets start at 0.3 s)
        weight = 1.0 if hi_bound == lo_bound or not below_bounds else (limit - lo_bound) / (hi_bound - lo_bound)
        below = lo + (hi - lo) * weight
    else:
        below = lo
    # cumulative counts: a bucket never holds fewer than the one below it (Prometheus' fix)
    below = np.minimum(below, counts)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = 1.0 - below / counts
    return np.where(counts > 0, np.clip(share, 0.0, 1.0), np.nan)


def read(
    store: Store,
    deployment: str,
    times: Int64Array,
    window_ms: int,
    latency_window_ms: int | None = None,
    long_window_ms: int | None = None,
    ttft_limits: Sequence[float] = (),
    itl_limits: Sequence[float] = (),
    queue_limits: Sequence[float] = (),
) -> Signals:
    """The signals of ``deployment`` at each instant of ``times``: rates over ``window_ms``,
    latencies over ``latency_window_ms``, mean lengths over
    ``long_window_ms`` (both default to ``window_ms``), each latency histogram with its share
    of observations above the given limits (:func:`take`, then :func:`compute`), from the
    samples inside the store's retention now."""
    taken = take(store, deployment, store.cutoff_ms(), ttft_limits, itl_limits, queue_limits)
    return compute(taken, times, window_ms, latency_window_ms, long_window_ms)


def compute(
    taken: Taken,
    times: Int64Array,
    window_ms: int,
    latency_window_ms: int | None = None,
    long_window_ms: int | None = None,
) -> Signals:
    """The signals of the series ``taken`` at each instant of ``times`` (see :func:`read`)."""
    latency_window_ms = latency_window_ms or window_ms
    long_window_ms = long_window_ms or window_ms
    width = len(times)
    gauges, counters, histograms, limits = taken.gauges, taken.counters, taken.histograms, taken.limits
    gauge_block = Block.of(gauges.series)
    values = gauge_block.at(times, FRESH_MS)
    counter_block = Block.of(counters.series, drop_stale=True)
    grown = np.nan_to_num(increase(counter_block, times, window_ms))
    if latency_window_ms == window_ms:
        latency_grown = grown
    else:
        latency_grown = np.nan_to_num(increase(counter_block, times, latency_window_ms))
    long_grown = np.nan_to_num(increase(counter_block, times, long_window_ms))
    seconds = window_ms / 1000.0
    kv_rows = gauges.parts["kv"]
    kv_reporting = (~np.isnan(values[kv_rows])).sum(axis=0) if kv_rows else np.zeros(width)
    with np.errstate(invalid="ignore", divide="ignore"):
        kv_usage = np.where(kv_reporting > 0, gauges.sum(values, "kv", width) / kv_reporting, np.nan)
    return Signals(
        times=times,
        window_ms=window_ms,
        latency_window_ms=latency_window_ms,
        pods=_pods(gauge_block, values, gauges.parts["running"], width),
        running=gauges.sum(values, "running", width),
        waiting=gauges.sum(values, "waiting", width),
        queued_pods=_queued_pods(gauge_block, values, gauges.parts["waiting"], width),
        kv_usage=kv_usage,
        in_flight=_in_flight(gauge_block, values, gauges.parts["epp"], width),
        prompt_rate=counters.sum(grown, "prompt", width) / seconds,
        generation_rate=counters.sum(grown, "generation", width) / seconds,
        request_rate=counters.sum(grown, "requests", width) / seconds,
        uncached_share=_uncached(counters, grown, width),
        mean_prompt=_mean_length(counters, long_grown, "prompt_lengths", "prompt", width),
        mean_output=_mean_length(counters, long_grown, "output_lengths", "generation", width),
        ttft=_latency(counters, latency_grown, "ttft", limits["ttft"], width, histograms["ttft"]),
        itl=_latency(counters, latency_grown, "itl", limits["itl"], width, histograms["itl"]),
        queue=_latency(counters, latency_grown, "queue", limits["queue"], width, histograms["queue"]),
        series=len(gauges.series) + len(counters.series),
    )


def _uncached(counters: Rows, grown: FloatArray, width: int) -> FloatArray:
    """1 − hits/queries of the prefix cache over each window (NaN: nothing looked up)."""
    hits = _ratio(counters.sum(grown, "prefix_hits", width), counters.sum(grown, "prefix_queries", width))
    return np.asarray(np.clip(1.0 - hits, 0.0, 1.0), dtype=np.float64)


def _mean_length(counters: Rows, grown: FloatArray, lengths: str, tokens: str, width: int) -> FloatArray:
    """The mean length of the requests that finished over each window: the length histogram's
    ``_sum`` over its ``_count`` (vLLM observes both lengths of every request as it finishes;
    llm-d's workload-variant-autoscaler reads them so). Where the pods do not export it, the
    token counter over the requests finished, which counts the tokens of requests still
    running too: while the requests in flight grow (a rise, a start), it overstates the mean
    (five-fold in a fleet's first minute of 1–4k-token answers, a quarter after a step up),
    while they shrink it understates it."""
    exact = _ratio(counters.sum(grown, f"{lengths}:sum", width), counters.sum(grown, f"{lengths}:count", width))
    fallback = _ratio(counters.sum(grown, tokens, width), counters.sum(grown, "requests", width))
    return np.asarray(np.where(np.isfinite(exact), exact, fallback), dtype=np.float64)


def _ratio(numerator: FloatArray, denominator: FloatArray) -> FloatArray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(np.where(denominator > 0, numerator / denominator, np.nan), dtype=np.float64)


def _in_flight(block: Block, values: FloatArray, rows: list[int], width: int) -> FloatArray:
    """Requests the EPP has in flight on the pods, per instant: the largest count of each pod
    over the EPP's producer instances, summed (NaN when the EPP reports none of them)."""
    if not rows:
        return np.full(width, np.nan)
    index = _numbered([block.label(r, "endpoint_name") for r in rows])
    per_pod = np.full((int(index.max()) + 1, width), np.nan)
    np.fmax.at(per_pod, index, values[rows])
    reported = ~np.isnan(per_pod).all(axis=0)
    return np.where(reported, np.nansum(per_pod, axis=0), np.nan)


def _pod_index(block: Block, rows: list[int]) -> Int64Array:
    """Each row's pod (``pod`` label, else ``instance``), numbered from 0."""
    return _numbered([block.label(r, "pod") or block.label(r, "instance") or str(r) for r in rows])


def _numbered(names: list[str]) -> Int64Array:
    """Each name's number among the distinct ``names`` (sorted), from 0."""
    _, index = np.unique(np.array(names), return_inverse=True)
    return np.asarray(index, dtype=np.int64)


def _queued_pods(block: Block, values: FloatArray, rows: list[int], width: int) -> FloatArray:
    """Distinct pods with a live waiting gauge of at least one request (summed over the pod's
    data-parallel ranks)."""
    if not rows:
        return np.zeros(width)
    pod_index = _pod_index(block, rows)
    per_pod = np.zeros((int(pod_index.max()) + 1, width))
    np.add.at(per_pod, pod_index, np.nan_to_num(values[rows]))
    return np.asarray((per_pod >= 1.0).sum(axis=0), dtype=np.float64)


def _pods(block: Block, values: FloatArray, rows: list[int], width: int) -> FloatArray:
    """Distinct pods (``pod`` label, else ``instance``) with a live running gauge (an engine
    per data-parallel rank exports its own series: they count once)."""
    if not rows:
        return np.zeros(width)
    pod_index = _pod_index(block, rows)
    alive = ~np.isnan(values[rows])
    per_pod = np.zeros((int(pod_index.max()) + 1, width), dtype=bool)
    np.logical_or.at(per_pod, pod_index, alive)
    return np.asarray(per_pod.sum(axis=0), dtype=np.float64)
