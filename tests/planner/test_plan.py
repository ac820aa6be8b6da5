"""The decision: need, pending replicas, hysteresis, missing data; hand-computed."""

from __future__ import annotations

import math

import pytest

from scaler.planner import parse_spec, plan
from scaler.planner.plan import Plan
from tests.planner.fleet import Fleet, Load

# a decode replica generates 5000 tokens/s (direct hint) and starts within 60 s
PROFILE = "{base: opt125m-l4, decode_tokens_per_second: 5000, startup_seconds: 60}"


def _plan(fleet: Fleet, profile: str = PROFILE) -> Plan:
    spec = parse_spec(
        {
            "planner": "decode",
            "deployment": fleet.deployment,
            "ttftTarget": "1s",
            "itlTarget": "50ms",
            "profile": profile,
        }
    )
    result = plan(fleet.store, spec, fleet.now_ms)
    assert result is not None
    return result


def _busy(running: float, waiting: float = 0.0) -> Load:
    # each sequence gets 50 tokens/s and makes 500 tokens: running/10 requests finish per second
    return Load(running=running, waiting=waiting, generation_tokens=50 * running, requests=running / 10, itl=0.02)


def test_the_need_is_the_demand_over_the_capacity_per_replica() -> None:
    fleet = Fleet("dec")
    fleet.add("a", "b")
    fleet.run(120, _busy(90))
    result = _plan(fleet)
    assert (result.need, result.desired, result.pending, result.capacity) == (2, 2, 0, 5000)


def test_while_asked_for_replicas_start_the_growing_queue_is_not_asked_for_again() -> None:
    fleet = Fleet("dec")
    fleet.add("a", "b")
    fleet.run(120, _busy(100))
    assert _plan(fleet).desired == 2
    # arrivals double: both pods stay at 100 running and the queue grows by 10/s per pod
    for second in range(1, 61):
        fleet.run(1, _busy(100, waiting=10 * second))
    result = _plan(fleet)
    # demand = 10000 tokens/s served + the queue's growth 20/s × 500 tokens = 20000 → 4 replicas;
    # the 1200 waiting requests are a backlog the 2 pending replicas will drain, not a reason for
    # more (had nothing been pending: 1200 × 500 tokens over the 60-s start-up = 2 replicas more)
    assert (result.demand, result.desired, result.pending, result.pods) == (20_000, 4, 2, 2)
    assert result.backlog == 600_000


def test_asked_for_replicas_that_never_come_stay_pending_and_the_queue_is_not_piled_on() -> None:
    fleet = Fleet("dec")
    fleet.add("a", "b")
    fleet.run(120, _busy(100))
    for second in range(1, 181):  # the extra pods never come (e.g. maxReplicaCount is 2)
        fleet.run(1, _busy(100, waiting=10 * second))
    result = _plan(fleet)
    assert (result.desired, result.pending) == (4, 2)
    # once they come, the queue (3600 requests × 500 tokens, drained over the 60-s start-up
    # interval: 30000 tokens/s) is asked for on top of the demand (served + the queue's growth)
    fleet.add("c", "d")
    fleet.run(5, _busy(100, waiting=900))
    result = _plan(fleet)
    assert result.pending == 0
    assert result.backlog == pytest.approx(3600 * 500, rel=0.05)
    assert result.desired == result.need == math.ceil((result.forecast + result.backlog / 60) / 5000)
    assert result.desired == 10


def test_scale_down_waits_one_startup_interval_and_needs_the_hysteresis_band() -> None:
    fleet = Fleet("dec")
    fleet.add("a", "b", "c", "d")
    fleet.run(120, _busy(95))  # 19000 tokens/s → 4 replicas
    assert _plan(fleet).desired == 4
    fleet.run(30, _busy(68))  # 13600: 3 replicas would do, but 13600/(3 × 4500) > 1: inside the band
    assert _plan(fleet).desired == 4
    fleet.run(30, _busy(60))  # 12000 fits 3 replicas at 90 %: recommended 3, held for 60 s
    result = _plan(fleet)
    assert (result.recommendation, result.desired) == (3, 4)
    fleet.run(65, _busy(60))
    assert _plan(fleet).desired == 3


def test_a_deployment_without_exporting_pods_is_not_found_and_missing_latency_raises_nothing() -> None:
    fleet = Fleet("dec")
    spec = parse_spec({"planner": "decode", "deployment": "dec", "ttftTarget": "1s", "itlTarget": "50ms"})
    assert plan(fleet.store, spec, fleet.now_ms) is None
    fleet.add("a")
    fleet.run(60, Load(running=40))  # gauges only: no counters grow, no latency observed
    result = plan(fleet.store, spec, fleet.now_ms)
    assert result is not None
    assert (result.desired, result.correction) == (1, 1.0)
    fleet.remove("a")
    fleet.run(1, Load())
    assert plan(fleet.store, spec, fleet.now_ms) is None
