"""The decision: need, pending replicas, hysteresis, missing data; hand-computed."""

from __future__ import annotations

import math

import pytest

from scaler.planner import parse_spec, plan
from scaler.planner.plan import Plan
from tests.planner.fleet import Fleet, Load

# a decode replica serves 100 sequences (direct hint) and starts within 60 s
PROFILE = "{base: opt125m-l4, decode_sequences: 100, startup_seconds: 60}"


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
    # 10 requests/s per pod: by Little's law each sequence holds its slot running/10 s
    return Load(running=running, waiting=waiting, generation_tokens=50 * running, requests=running / 10, itl=0.02)


def test_the_need_is_the_demand_over_the_capacity_per_replica() -> None:
    fleet = Fleet("dec")
    fleet.add("a", "b")
    fleet.run(120, _busy(90))
    result = _plan(fleet)
    assert (result.need, result.desired, result.pending, result.capacity) == (2, 2, 0, 100)


def test_while_asked_for_replicas_start_the_growing_queue_is_not_asked_for_again() -> None:
    fleet = Fleet("dec")
    fleet.add("a", "b")
    fleet.run(120, _busy(100))
    assert _plan(fleet).desired == 2
    # arrivals double: both pods stay at 100 running and the queue grows by 10/s per pod
    for second in range(1, 61):
        fleet.run(1, _busy(100, waiting=10 * second))
    result = _plan(fleet)
    # demand = running 200 + queue growth 20/s × 10 s per sequence = 400 → 4 replicas; the
    # 1200 waiting sequences are a backlog the 2 pending replicas will drain, not a reason for more
    assert (result.demand, result.desired, result.pending, result.pods) == (400, 4, 2, 2)
    # had nothing been pending, draining it over one start-up interval would need 1200 × 10 / 60 = 200 more
    assert result.backlog == 12_000


def test_asked_for_replicas_that_never_come_stay_pending_and_the_queue_is_not_piled_on() -> None:
    fleet = Fleet("dec")
    fleet.add("a", "b")
    fleet.run(120, _busy(100))
    for second in range(1, 181):  # the extra pods never come (e.g. maxReplicaCount is 2)
        fleet.run(1, _busy(100, waiting=10 * second))
    result = _plan(fleet)
    assert (result.desired, result.pending) == (4, 2)
    # once they come, the queue (3600 sequences of ~10 s each, drained over the 60-s start-up
    # interval: ~600) is asked for on top of the demand (400 running + the queue's growth)
    fleet.add("c", "d")
    fleet.run(5, _busy(100, waiting=900))
    result = _plan(fleet)
    assert result.pending == 0
    assert result.backlog == pytest.approx(36_000, rel=0.05)
    assert result.demand == pytest.approx(400 + (3600 - 3100) / 30 * 10, rel=0.05)
    assert result.desired == result.need == math.ceil((result.forecast + result.backlog / 60) / 100) == 12


def test_scale_down_waits_one_startup_interval_and_needs_the_hysteresis_band() -> None:
    fleet = Fleet("dec")
    fleet.add("a", "b", "c", "d")
    fleet.run(120, _busy(95))  # 380 sequences → 4 replicas
    assert _plan(fleet).desired == 4
    fleet.run(30, _busy(68))  # 272: 3 replicas would do, but 272/(3 × 90) > 1: inside the band
    assert _plan(fleet).desired == 4
    fleet.run(30, _busy(60))  # 240 fits 3 replicas at 90 %: recommended 3, held for 60 s
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
