"""No query holds up the others: a heavy PromQL query runs in slices on the event loop, so
KEDA's GetMetrics on another trigger keeps answering while it runs, and the query still
times out with Prometheus' error. Real servers, real gRPC and HTTP clients."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import httpx

from scaler.model import make_labels
from tests.conftest import RunningService
from tests.integration.test_keda import Keda

SERIES = 40_000
HEAVY = 'quantile_over_time(0.5, {__name__=~"heavy_.*"}[5m:1s])'
LOAD_TIMEOUT_S = 120.0
"""The 320k-sample fill is a hang guard's business only: on a 2-core machine running a lab run
beside the suite it took over 10 s."""


def _load(svc: RunningService) -> None:
    assert svc.service is not None
    store = svc.service.store
    now = store.now_ms()
    samples = [
        (make_labels(f"heavy_{i % 10}", {"pod": f"p{i}"}), now - k * 15_000, float(i + k), False)
        for i in range(SERIES)
        for k in range(8)
    ]
    samples.append((make_labels("vllm:num_requests_waiting", {"deployment": "other"}), now, 7.0, False))
    assert store.append(samples).rejected_total == 0


def test_get_metrics_answers_while_a_heavy_query_runs_and_the_query_times_out(
    service_factory: Callable[..., RunningService],
) -> None:
    svc = service_factory(query_timeout_seconds=60.0)
    svc.call(lambda: _load(svc), timeout=LOAD_TIMEOUT_S)
    keda = Keda(svc)
    outcome: dict[str, object] = {}

    def heavy() -> None:
        outcome["started"] = time.monotonic()
        reply = httpx.get(f"{svc.http}/api/v1/query", params={"query": HEAVY, "timeout": "4s"}, timeout=120)
        outcome["ended"] = time.monotonic()
        outcome["status"] = reply.status_code
        outcome["body"] = reply.json()

    worker = threading.Thread(target=heavy)
    worker.start()
    while "started" not in outcome:
        time.sleep(0.001)
    answered: list[tuple[float, float]] = []
    while worker.is_alive():
        value = keda.metrics(query='sum(vllm:num_requests_waiting{deployment="other"})', targetValue="1")
        assert value.metricValueFloat == 7.0
        answered.append((time.monotonic(), value.metricValueFloat))
    worker.join()
    assert outcome["status"] == 503, outcome
    assert outcome["body"] == {
        "status": "error",
        "errorType": "timeout",
        "error": "query timed out in expression evaluation",
    }
    during = [t for t, _ in answered if t < float(outcome["ended"])]  # type: ignore[arg-type]
    assert len(during) >= 20, f"only {len(during)} GetMetrics answers while the heavy query ran"


def test_a_query_past_the_sample_limit_gets_prometheus_error(
    service_factory: Callable[..., RunningService],
) -> None:
    svc = service_factory(query_max_samples=1000)
    svc.call(lambda: _load(svc), timeout=LOAD_TIMEOUT_S)
    reply = httpx.get(f"{svc.http}/api/v1/query", params={"query": 'count({__name__=~"heavy_1"})'}, timeout=60)
    assert reply.status_code == 422
    assert reply.json() == {
        "status": "error",
        "errorType": "execution",
        "error": "query processing would load too many samples into memory in query execution",
    }
    small = httpx.get(f"{svc.http}/api/v1/query", params={"query": 'heavy_1{pod="p1"}'}, timeout=60)
    assert small.status_code == 200 and len(small.json()["data"]["result"]) == 1


def test_large_results_are_rendered_in_slices_and_whole(service_factory: Callable[..., RunningService]) -> None:
    svc = service_factory()
    svc.call(lambda: _load(svc), timeout=LOAD_TIMEOUT_S)
    body = httpx.get(f"{svc.http}/api/v1/query", params={"query": "heavy_1 * 2"}, timeout=60).json()
    result = body["data"]["result"]
    assert body["data"]["resultType"] == "vector" and len(result) == SERIES // 10
    assert {r["metric"]["pod"] for r in result} == {f"p{i}" for i in range(1, SERIES, 10)}
    assert all(float(r["value"][1]) == 2 * int(r["metric"]["pod"][1:]) for r in result)
