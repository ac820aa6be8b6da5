"""Performance regression guard: relative costs only, each against a baseline measured in the
same test on the same machine (no absolute timings), best of several repeats so a noisy, shared
machine does not fail it.

The limits are about twice the ratios measured when the guard was written (2-core AMD EPYC,
Python 3.11, protobuf upb). ``make bench`` has the full figures (bench/RESULTS.md).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

from bench import workload
from bench.stats import best_ratio
from scaler import otlp, query
from scaler.config import Settings, StoreLimits, TriggerDefaults
from scaler.model import METRIC_NAME, LabelPairs, Matcher
from scaler.store import Store
from scaler.trigger import TriggerCache, read

# the suite runs under coverage, whose line tracer slows our Python about twice as much as the
# protobuf decode the first ratio is measured against (3.4 alone, 6.1 traced: 7.2 and 7.4, over
# the limit, in two full-suite runs on a loaded machine); the guard measures the code, not the
# tracer, and every line it runs is covered by the unit tests too
pytestmark = pytest.mark.no_cover

SECOND_NS = 1_000_000_000
PROMOTIONS = Settings().otlp.promotions
SELECTED = workload.deployment_name(0)

# about twice the typical ratio at 01bd62a; under a 3× oversubscribed CPU the ratios rose by up
# to ~1.5× (the interleaved best-of repeats absorb most of the noise)
TRANSLATE_APPEND_VS_DECODE = 7.0  # typical 3.1
SELECT_VS_DICT_LOOKUPS = 13.0  # typical 6.1
EVALUATE_VS_SELECT = 12.0  # typical 6.0


def _ingest(store: Store, data: bytes) -> int:
    request = ExportMetricsServiceRequest()
    request.ParseFromString(data)
    return store.append(otlp.translate(request, PROMOTIONS, 0).samples).accepted


def _per_call_ratio(
    ours: Callable[[], object], our_calls: int, baseline: Callable[[], object], base_calls: int, repeats: int = 25
) -> float:
    """Per-call cost of ``ours`` over that of ``baseline``, best of interleaved repeats."""

    def loop(fn: Callable[[], object], calls: int) -> Callable[[], None]:
        def run() -> None:
            for _ in range(calls):
                fn()

        return run

    return best_ratio(loop(ours, our_calls), loop(baseline, base_calls), repeats) * base_calls / our_calls


def test_translate_and_append_stay_close_to_the_protobuf_decode_limit() -> None:
    """translate + append of a 2k-series payload vs ParseFromString + a minimal walk of it."""
    pods = workload.payloads(2_000)
    start_ns = time.time_ns() - 60 * SECOND_NS
    rounds = [workload.batch([p.render(start_ns + r * SECOND_NS, float(r)) for p in pods], 25) for r in range(16)]
    store = Store(StoreLimits(max_series=100_000))
    assert sum(_ingest(store, data) for data in rounds[0]) == 2_000  # creates the series
    pending = iter(rounds[1:])

    def ingest_next_round() -> None:
        for data in next(pending):
            _ingest(store, data)

    ratio = best_ratio(ingest_next_round, lambda: [workload.decode_walk(data) for data in rounds[1]], 15)
    assert store.series_count == 2_000
    assert ratio <= TRANSLATE_APPEND_VS_DECODE, f"translate+append is {ratio:.1f}× the decode limit"


@pytest.fixture(scope="module")
def store_20k() -> Store:
    """20k series; the 50 pods of SELECTED hold 13 samples 5 s apart, the rest one."""
    now = time.time()  # the store's clock stands still: a slow fill must not move the windows
    store = Store(StoreLimits(max_series=100_000), clock=lambda: now)
    pods = workload.payloads(20_000)
    end_ns = int(now * 1e9)
    for r in range(12):
        for p in pods[: workload.PODS_PER_DEPLOYMENT]:
            _ingest(store, p.render(end_ns - (12 - r) * 5 * SECOND_NS, workload.counter_value(r)))
    for p in pods:
        _ingest(store, p.render(end_ns, workload.counter_value(12)))
    assert store.series_count == 20_000
    return store


def _selection() -> list[Matcher]:
    return [Matcher.of(METRIC_NAME, "=", "vllm:num_requests_waiting"), Matcher.of("deployment", "=", SELECTED)]


def test_select_is_close_to_direct_lookups(store_20k: Store) -> None:
    """store.select of 50 of 20k series vs looking the same 50 label sets up in a dict."""
    matchers = _selection()
    selected = store_20k.select(matchers)
    assert len(selected) == workload.PODS_PER_DEPLOYMENT
    keys: list[LabelPairs] = [s.labels for s in selected]
    index = {s.labels: s for s in store_20k.series()}

    def lookups() -> None:
        for key in keys:
            index[key]

    ratio = _per_call_ratio(lambda: store_20k.select(matchers), 20, lookups, 200)
    assert ratio <= SELECT_VS_DICT_LOOKUPS, f"select is {ratio:.1f}× 50 dict lookups"


def test_trigger_evaluation_is_close_to_selection(store_20k: Store) -> None:
    """GetMetrics' work (cached trigger + evaluation) of sum(rate(x[1m])) over 50 series vs
    selecting those 50 series."""
    engine = query.Engine(store_20k)
    cache = TriggerCache(TriggerDefaults(), retention_seconds=120.0)
    metadata = {"query": f'sum(rate(vllm:prompt_tokens_total{{deployment="{SELECTED}"}}[1m]))', "targetValue": "1"}
    t_ms = store_20k.now_ms()
    value = read(cache.get(metadata), engine, t_ms, warming=False).number
    assert value == pytest.approx(10.0 * workload.PODS_PER_DEPLOYMENT)
    matchers = [Matcher.of(METRIC_NAME, "=", "vllm:prompt_tokens_total"), Matcher.of("deployment", "=", SELECTED)]
    ratio = _per_call_ratio(
        lambda: read(cache.get(metadata), engine, t_ms, warming=False), 20, lambda: store_20k.select(matchers), 20
    )
    assert ratio <= EVALUATE_VS_SELECT, f"evaluation is {ratio:.1f}× the selection alone"
