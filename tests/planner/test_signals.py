"""Signals of a deployment over the grid, checked by hand and against the PromQL engine."""

from __future__ import annotations

import math

import numpy as np
import pytest

from scaler import query
from scaler.planner.signals import read
from scaler.series import Int64Array
from tests.planner.fleet import Fleet, Load


def _at(fleet: Fleet, *offsets_s: int) -> Int64Array:
    return np.array([fleet.now_ms - o * 1000 for o in offsets_s], dtype=np.int64)


def test_pods_count_while_they_export_and_stop_at_their_staleness_marker() -> None:
    fleet = Fleet("dec")
    fleet.add("a", "b")
    fleet.run(20, Load(running=3))
    fleet.add("c")
    fleet.run(10, Load(running=3))
    fleet.remove("b")
    fleet.run(1, Load(running=3))
    signals = read(fleet.store, "dec", _at(fleet, 25, 5, 0), 30_000)
    assert signals.pods.tolist() == [2.0, 3.0, 2.0]
    assert signals.running.tolist() == [6.0, 9.0, 6.0]


def test_a_pod_that_stops_exporting_without_a_marker_stops_counting_after_15_s() -> None:
    fleet = Fleet("dec")
    fleet.add("a", "b")
    fleet.run(5, Load(running=1))
    fleet.pods.pop("b")  # crashed: no marker
    fleet.run(20, Load(running=1))
    signals = read(fleet.store, "dec", _at(fleet, 10, 0), 30_000)
    assert signals.pods.tolist() == [2.0, 1.0]


def test_rates_and_latency_agree_with_promql_over_the_same_window() -> None:
    fleet = Fleet("pre")
    fleet.add("a", "b", "c")
    loads = {
        "a": Load(prompt_tokens=3000, requests=3, ttft=0.3, waiting=2),
        "b": Load(prompt_tokens=1000, requests=1, ttft=0.9, waiting=0),
        "c": Load(prompt_tokens=2000, requests=2, ttft=0.07, waiting=1),
    }
    fleet.run(90, loads)
    limits = (0.04, 0.5, 0.75, 1.0, 5.0)
    signals = read(fleet.store, "pre", _at(fleet, 0), 30_000, ttft_limits=limits)
    engine = query.Engine(fleet.store)

    def promql(text: str) -> float:
        result = engine.instant(text, fleet.now_ms)
        assert isinstance(result, query.Vector) and len(result.samples) == 1, result
        return result.samples[0].value

    sel = '{deployment="pre"}'
    assert signals.prompt_rate[0] == pytest.approx(promql(f"sum(rate(vllm:prompt_tokens_total{sel}[30s]))"))
    assert signals.prompt_rate[0] == pytest.approx(6000.0)
    assert signals.request_rate[0] == pytest.approx(6.0)
    assert signals.waiting[0] == 3.0
    assert signals.queued_pods[0] == 2.0  # a and c; b has none waiting
    count = f"sum(rate(vllm:time_to_first_token_seconds_count{sel}[30s]))"
    for limit in limits:  # bucket bounds: the share above is exact
        below = promql(f'sum(rate(vllm:time_to_first_token_seconds_bucket{{deployment="pre",le="{limit!r}"}}[30s]))')
        assert signals.ttft.share_above(limit)[0] == pytest.approx(1 - below / promql(count))
    mean = promql(f"sum(rate(vllm:time_to_first_token_seconds_sum{sel}[30s])) / {count}")
    assert signals.ttft.mean()[0] == pytest.approx(mean)


def test_uncached_share_is_one_minus_the_prefix_cache_hit_rate_as_promql_computes_it() -> None:
    fleet = Fleet("pre")
    fleet.add("a", "b")
    loads = {
        "a": Load(prompt_tokens=4000, requests=1, cached_tokens=3600),
        "b": Load(prompt_tokens=1000, requests=1, cached_tokens=400),
    }
    fleet.run(60, loads)
    signals = read(fleet.store, "pre", _at(fleet, 0), 30_000)
    hits = query.Engine(fleet.store).instant(
        'sum(rate(vllm:prefix_cache_hits_total{deployment="pre"}[30s]))'
        ' / sum(rate(vllm:prefix_cache_queries_total{deployment="pre"}[30s]))',
        fleet.now_ms,
    )
    assert isinstance(hits, query.Vector) and len(hits.samples) == 1
    assert signals.uncached_share[0] == pytest.approx(1 - hits.samples[0].value)
    assert signals.uncached_share[0] == pytest.approx(1 - 4000 / 5000)


@pytest.mark.parametrize("exported", [True, False], ids=["length histograms", "counters only"])
def test_mean_lengths_are_those_of_the_requests_that_finished(exported: bool) -> None:
    # a minute in which the requests in flight grow: each second 1000 tokens are generated and
    # half a request finishes, having had a 300-token prompt and a 1000-token answer (the other
    # tokens belong to requests still running). The counters alone read two thousand.
    fleet = Fleet("dec")
    fleet.add("a", "b")
    lengths = (300.0, 1000.0) if exported else None
    fleet.run(60, Load(running=40, prompt_tokens=600, generation_tokens=1000, requests=0.5, lengths=lengths))
    signals = read(fleet.store, "dec", _at(fleet, 0), 30_000, long_window_ms=60_000)
    if not exported:
        assert signals.mean_output[0] == pytest.approx(2000.0) and signals.mean_prompt[0] == pytest.approx(1200.0)
        return
    assert signals.mean_output[0] == pytest.approx(1000.0) and signals.mean_prompt[0] == pytest.approx(300.0)
    engine = query.Engine(fleet.store)
    ratio = engine.instant(
        'sum(rate(vllm:request_generation_tokens_sum{deployment="dec"}[1m]))'
        ' / sum(rate(vllm:request_generation_tokens_count{deployment="dec"}[1m]))',
        fleet.now_ms,
    )
    assert isinstance(ratio, query.Vector) and ratio.samples[0].value == pytest.approx(signals.mean_output[0])


def test_uncached_share_is_unknown_without_the_prefix_cache_counters_or_lookups() -> None:
    fleet = Fleet("pre")
    fleet.add("a")
    fleet.run(60, Load(prompt_tokens=1000, requests=1))
    assert math.isnan(read(fleet.store, "pre", _at(fleet, 0), 30_000).uncached_share[0])
    fleet.run(60, Load(cached_tokens=0))  # exported, but nothing looked up in the window
    assert math.isnan(read(fleet.store, "pre", _at(fleet, 0), 30_000).uncached_share[0])


def test_share_above_interpolates_inside_the_bucket_like_histogram_quantile() -> None:
    fleet = Fleet("pre")
    fleet.add("a")
    limits = (0.375, 0.5, 0.75, 2.5, 3000.0)
    fleet.run(40, Load(requests=8, ttft=0.3))  # every TTFT in the bucket 0.25..0.5
    signals = read(fleet.store, "pre", _at(fleet, 0), 30_000, ttft_limits=limits)
    assert signals.ttft.share_above(0.5)[0] == 0.0
    assert signals.ttft.share_above(0.375)[0] == pytest.approx(0.5)  # half-way through 0.25..0.5
    fleet.pods["a"].ttft.observe(0.9, 60)  # 60 slow requests within the last window
    fleet.run(1, Load(requests=0))
    signals = read(fleet.store, "pre", _at(fleet, 0), 30_000, ttft_limits=limits)
    assert signals.ttft.share_above(0.75)[0] == pytest.approx(60 / (8 * 29 + 60))
    assert signals.ttft.share_above(2.5)[0] == 0.0
    assert signals.ttft.share_above(3000.0)[0] == 0.0  # past the last bound: only +Inf is above
    assert math.isnan(read(fleet.store, "nobody", _at(fleet, 0), 30_000, ttft_limits=(1.0,)).ttft.share_above(1.0)[0])


def test_a_limit_inside_the_first_bucket_is_taken_at_its_bound() -> None:
    # vLLM's queue-time buckets start at 0.3 s: requests that did not wait (0 s) all fall into
    # the first bucket, and none of them is over a 0.25-s limit (interpolating from 0 would put
    # 1 - 0.25/0.3 of them over it)
    fleet = Fleet("dec")
    fleet.add("a")
    fleet.run(40, Load(requests=8, queue=0.0))
    signals = read(fleet.store, "dec", _at(fleet, 0), 30_000, queue_limits=(0.25,))
    assert signals.queue.share_above(0.25)[0] == 0.0
    fleet.pods["a"].queue.observe(0.4, 60)  # 60 requests waited 0.4 s within the last window
    fleet.run(1, Load(requests=0))
    signals = read(fleet.store, "dec", _at(fleet, 0), 30_000, queue_limits=(0.25,))
    assert signals.queue.share_above(0.25)[0] == pytest.approx(60 / (8 * 29 + 60))
