"""What one role's vLLM pods exported, as arrays over a grid of instants.

Only what vLLM itself exports (pd-serving-facts.md §5) is read, selected by the promoted
``deployment`` label:

* gauges ``vllm:num_requests_running``, ``vllm:num_requests_waiting``,
  ``vllm:kv_cache_usage_perc`` (older name ``vllm:gpu_cache_usage_perc``);
* counters ``vllm:prompt_tokens_total``, ``vllm:generation_tokens_total``,
  ``vllm:request_success_total``;
* histograms ``vllm:time_to_first_token_seconds``, ``vllm:inter_token_latency_seconds``
  (older name ``vllm:time_per_output_token_seconds``), ``vllm:request_queue_time_seconds``.

A pod counts as exporting at an instant when its ``num_requests_running`` gauge has a sample
no older than :data:`FRESH_MS` that is not a staleness marker (a removed pod's collector sends
one marker per series, so it stops counting at once). Rates and latency distributions are taken
over ``(t − window, t]`` from counter increases, summed over every pod that exported in the
window, including pods that went away in it: their work was done.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from scaler.model import METRIC_NAME, Matcher, MatchOp
from scaler.planner.series import Block, increase
from scaler.query.histogram import parse_go_float
from scaler.series import FloatArray, Int64Array
from scaler.store import Series, Store

FRESH_MS = 15_000
"""A gauge sample older than this no longer shows a live pod (3 × the collectors' 5 s scrape)."""

RUNNING = ("vllm:num_requests_running",)
WAITING = ("vllm:num_requests_waiting",)
KV_USAGE = ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc")
PROMPT_TOKENS = ("vllm:prompt_tokens_total",)
GENERATION_TOKENS = ("vllm:generation_tokens_total",)
REQUESTS = ("vllm:request_success_total",)
TTFT = ("vllm:time_to_first_token_seconds",)
ITL = ("vllm:inter_token_latency_seconds", "vllm:time_per_output_token_seconds")
QUEUE = ("vllm:request_queue_time_seconds",)


@dataclass(frozen=True)
class Latency:
    """A latency histogram's observations in each window: ``buckets[b, i]`` is the cumulative
    count of bound ``bounds[b]`` (the last bound is +Inf) for instant ``i``."""

    bounds: tuple[float, ...]
    buckets: FloatArray
    sums: FloatArray

    @staticmethod
    def empty(n: int) -> Latency:
        return Latency((), np.zeros((0, n)), np.zeros(n))

    @property
    def counts(self) -> FloatArray:
        if not self.bounds:
            return np.zeros(self.sums.shape)
        return np.asarray(self.buckets[-1], dtype=np.float64)

    def quantile(self, q: float) -> FloatArray:
        """Prometheus' ``histogram_quantile`` per instant (NaN: no observations): linear
        interpolation inside the bucket holding rank ``q × count``, from 0 in the first bucket,
        the highest finite bound when the rank falls into +Inf."""
        total = self.counts
        out = np.full(total.shape, np.nan)
        if len(self.bounds) < 2:
            return out
        bounds = np.array(self.bounds)
        rank = q * total
        b = np.argmax(self.buckets >= rank[None, :], axis=0)
        cols = np.arange(len(total))
        hi_count = self.buckets[b, cols]
        lo_count = np.where(b > 0, self.buckets[np.maximum(b - 1, 0), cols], 0.0)
        lo_bound = np.where(b > 0, bounds[np.maximum(b - 1, 0)], 0.0)
        hi_bound = bounds[b]
        with np.errstate(invalid="ignore", divide="ignore"):
            inside = lo_bound + (hi_bound - lo_bound) * (rank - lo_count) / (hi_count - lo_count)
        value = np.where(b == len(bounds) - 1, bounds[-2], np.where(hi_count > lo_count, inside, hi_bound))
        value = np.where((b == 0) & (bounds[0] <= 0), bounds[0], value)
        return np.where(total > 0, value, out)

    def share_above(self, limit: float) -> FloatArray:
        """Per instant, the share of observations above ``limit`` (NaN: no observations),
        interpolated linearly inside the bucket that holds ``limit``, as ``histogram_quantile``."""
        out = np.full(self.sums.shape, np.nan)
        if len(self.bounds) < 2:
            return out
        bounds = np.array(self.bounds)
        b = int(np.searchsorted(bounds, limit, side="left"))
        total = self.buckets[-1]
        if b >= len(bounds) - 1:  # at or beyond the last finite bound: only +Inf is above
            below = self.buckets[len(bounds) - 2]
        else:
            lo_bound = bounds[b - 1] if b > 0 else 0.0
            lo = self.buckets[b - 1] if b > 0 else np.zeros(total.shape)
            hi = self.buckets[b]
            frac = 1.0 if bounds[b] == lo_bound else (limit - lo_bound) / (bounds[b] - lo_bound)
            below = lo + (hi - lo) * frac
        with np.errstate(invalid="ignore", divide="ignore"):
            share = 1.0 - below / total
        return np.where(total > 0, np.clip(share, 0.0, 1.0), out)

    def mean(self) -> FloatArray:
        counts = self.counts
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(counts > 0, self.sums / counts, np.nan)


@dataclass(frozen=True)
class Signals:
    """One deployment's exported state at each instant of ``times`` (milliseconds)."""

    times: Int64Array
    window_ms: int
    pods: FloatArray
    """Pods exporting at the instant."""
    running: FloatArray
    waiting: FloatArray
    kv_usage: FloatArray
    """Mean KV-cache usage (0..1) over the exporting pods; NaN when none reports it."""
    prompt_rate: FloatArray
    """Prompt tokens/s finished over the window (prefill work done)."""
    generation_rate: FloatArray
    request_rate: FloatArray
    ttft: Latency
    itl: Latency
    queue: Latency
    series: int
    """Series read (a cost figure for the explanation)."""

    @property
    def size(self) -> int:
        return len(self.times)


class Reader:
    """Selects one deployment's series once and evaluates them at any instants."""

    def __init__(self, store: Store, deployment: str) -> None:
        self.store = store
        self.deployment = deployment
        self.series_read = 0

    def _series(self, names: Sequence[str], suffix: str = "") -> list[Series]:
        for name in names:
            found = self.store.select(
                [
                    Matcher.of(METRIC_NAME, MatchOp.EQ, name + suffix),
                    Matcher.of("deployment", MatchOp.EQ, self.deployment),
                ]
            )
            if found:
                self.series_read += len(found)
                return list(found)
        return []

    def block(self, names: Sequence[str], suffix: str = "", drop_stale: bool = False) -> Block:
        return Block.of(self._series(names, suffix), drop_stale)

    def gauge_sum(self, names: Sequence[str], times: Int64Array) -> tuple[FloatArray, FloatArray]:
        """Fleet sum of a gauge and the number of series reporting it, per instant."""
        values = self.block(names).at(times, FRESH_MS)
        reporting = (~np.isnan(values)).sum(axis=0).astype(np.float64)
        return np.asarray(np.nansum(values, axis=0), dtype=np.float64), reporting

    def pods(self, times: Int64Array) -> FloatArray:
        block = self.block(RUNNING)
        values = block.at(times, FRESH_MS)
        if block.size == 0:
            return np.zeros(len(times))
        names = [labels.get("pod") or labels.get("instance") or str(i) for i, labels in enumerate(block.labels)]
        _, pod_index = np.unique(np.array(names), return_inverse=True)
        alive = ~np.isnan(values)
        per_pod = np.zeros((int(pod_index.max()) + 1, len(times)), dtype=bool)
        np.logical_or.at(per_pod, pod_index, alive)
        return np.asarray(per_pod.sum(axis=0), dtype=np.float64)

    def rate(self, names: Sequence[str], times: Int64Array, window_ms: int) -> FloatArray:
        block = self.block(names, drop_stale=True)
        if block.size == 0:
            return np.zeros(len(times))
        return np.asarray(np.nansum(increase(block, times, window_ms), axis=0) / (window_ms / 1000.0), dtype=np.float64)

    def latency(self, names: Sequence[str], times: Int64Array, window_ms: int) -> Latency:
        for name in names:
            buckets = self.block((name,), "_bucket", drop_stale=True)
            if buckets.size:
                break
        else:
            return Latency.empty(len(times))
        grown = np.nan_to_num(increase(buckets, times, window_ms))
        bounds: dict[float, FloatArray] = {}
        for labels, row in zip(buckets.labels, grown, strict=True):
            bound = parse_go_float(labels.get("le", ""))
            if bound is None or math.isnan(bound):
                continue
            bounds[bound] = bounds[bound] + row if bound in bounds else row.copy()
        if math.inf not in bounds or len(bounds) < 2:
            return Latency.empty(len(times))
        ordered = sorted(bounds)
        matrix = np.maximum.accumulate(np.array([bounds[b] for b in ordered]), axis=0)
        sums_block = self.block((name,), "_sum", drop_stale=True)
        sums = np.nansum(increase(sums_block, times, window_ms), axis=0) if sums_block.size else np.zeros(len(times))
        return Latency(tuple(ordered), matrix, sums)


def read(store: Store, deployment: str, times: Int64Array, window_ms: int) -> Signals:
    """The signals of ``deployment`` at each instant of ``times``."""
    reader = Reader(store, deployment)
    running, _ = reader.gauge_sum(RUNNING, times)
    waiting, _ = reader.gauge_sum(WAITING, times)
    kv_sum, kv_reporting = reader.gauge_sum(KV_USAGE, times)
    with np.errstate(invalid="ignore", divide="ignore"):
        kv_usage = np.where(kv_reporting > 0, kv_sum / kv_reporting, np.nan)
    return Signals(
        times=times,
        window_ms=window_ms,
        pods=reader.pods(times),
        running=running,
        waiting=waiting,
        kv_usage=kv_usage,
        prompt_rate=reader.rate(PROMPT_TOKENS, times, window_ms),
        generation_rate=reader.rate(GENERATION_TOKENS, times, window_ms),
        request_rate=reader.rate(REQUESTS, times, window_ms),
        ttft=reader.latency(TTFT, times, window_ms),
        itl=reader.latency(ITL, times, window_ms),
        queue=reader.latency(QUEUE, times, window_ms),
        series=reader.series_read,
    )
