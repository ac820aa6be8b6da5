"""Whole lab runs: the real scaler in virtual time, fixed fleets, the oracle; determinism."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from scaler.lab import policies, runner
from scaler.sim.scenario import Role
from tests.lab.helpers import CHAT, load, recipe, short_step

VOLATILE = ("wall_seconds", "cpu_seconds")


def _figures(result: runner.RunResult) -> dict[str, object]:
    return {k: v for k, v in result.to_json().items() if k not in VOLATILE}


@pytest.mark.timeout(120)
def test_runs_are_deterministic_per_seed(tmp_path: Path) -> None:
    scenario = load(tmp_path)
    shipped = recipe("shipped")
    first = runner.simulate(scenario, shipped, seed=3)
    again = runner.simulate(scenario, shipped, seed=3)
    other = runner.simulate(scenario, shipped, seed=4)
    assert first.ok and first.requests > 5000
    assert _figures(first) == _figures(again)
    assert _figures(first) != _figures(other)
    assert first.scale_events_decode >= 1 and first.max_replicas["decode"] >= 2  # it scaled for the step
    windows = math.ceil(scenario.duration / 30)
    assert first.missed_windows and all(t % 30 == 0 and 0 <= t < scenario.duration for t in first.missed_windows)
    assert len(first.missed_windows) == round((1 - first.window_attainment) * windows)


@pytest.mark.timeout(120)
def test_the_oracle_never_costs_more_than_all_pods_all_the_time(tmp_path: Path) -> None:
    scenario = load(tmp_path)
    peak = runner.simulate(scenario, recipe("static-peak"), seed=1)
    oracle = runner.simulate(scenario, recipe("oracle"), seed=1)
    assert peak.replicas == {"prefill": 2, "decode": 3} and peak.scale_events == 0
    assert oracle.gpu_hours <= peak.gpu_hours
    assert oracle.over_provisioned_gpu_hours <= 0.01 * oracle.gpu_hours + 1e-9
    assert peak.meets_slo and oracle.meets_slo


def test_the_oracle_without_foresight_is_the_oracles_schedule_one_start_up_late(tmp_path: Path) -> None:
    # ahead(t) is the most needed in [t, t + lead], behind(t) in [t - lead, t]: the same window, later
    scenario = load(tmp_path)
    ahead = policies.oracle_schedule(scenario, 1)
    behind = policies.oracle_schedule(scenario, 1, foresight=False)
    lead = math.ceil(scenario.profile.startup_seconds[1] * scenario.time_scale)
    for role in policies.ROLES:
        for t in range(lead, int(scenario.duration) + 1):
            assert behind.at(role, t) == ahead.at(role, t - lead), (role, t)
    assert len(behind.steps["decode"]) > 1  # the step moves decode


@pytest.mark.timeout(120)
def test_the_oracle_without_foresight_sizes_the_same_costs_no_more_and_misses_the_rise(tmp_path: Path) -> None:
    scenario = load(tmp_path)
    oracle = runner.simulate(scenario, recipe("oracle"), seed=1)
    reactive = runner.simulate(scenario, recipe("oracle-reactive"), seed=1)
    assert reactive.max_replicas == oracle.max_replicas  # the same sizing,
    assert reactive.gpu_hours <= oracle.gpu_hours  # ordered later (the run ends as long after the step)
    assert reactive.window_attainment < oracle.window_attainment  # so the pods serve the step late


@pytest.mark.timeout(120)
def test_the_oracle_without_foresight_starts_from_the_initial_fleet(tmp_path: Path) -> None:
    # the load is high from the first second: the oracle's pods are up before it, the reactive
    # oracle's are ordered at 0 s and serve one start-up later
    scenario = load(tmp_path, short_step(phases=[{"name": "high", "seconds": 240, "rate": 80, **CHAT}]))
    ahead = policies.oracle_schedule(scenario, 1)
    assert ahead.at("decode", 0.0) >= 2 and scenario.initial_decode == 1
    late = ahead.starting_at({"prefill": 1, "decode": 1})
    assert late.at("decode", 0.0) == ahead.at("decode", 0.0)
    assert (0.0, "decode", ahead.at("decode", 0.0)) in late.changes()
    oracle = runner.simulate(scenario, recipe("oracle"), seed=1)
    reactive = runner.simulate(scenario, recipe("oracle-reactive"), seed=1)
    assert reactive.scale_events_decode == oracle.scale_events_decode + 1
    assert reactive.window_attainment < oracle.window_attainment


@pytest.mark.timeout(240)
def test_static_best_meets_the_slo_and_cannot_lose_a_pod(tmp_path: Path) -> None:
    scenario = load(tmp_path)
    best = runner.simulate(scenario, recipe("static-best"), seed=2)
    assert best.meets_slo and best.ttft_attainment >= 0.9 and best.itl_attainment >= 0.9
    p, d = best.replicas["prefill"], best.replicas["decode"]
    tried = {(t["prefill"], t["decode"]): t["meets_slo"] for t in best.search}
    assert tried[(p, d)]
    for smaller in ((p - 1, d), (p, d - 1)):  # one pod less of either role misses (or is below the limits)
        if smaller[0] >= 1 and smaller[1] >= 1:
            meets = tried.get(smaller)
            if meets is None:
                counts: dict[Role, int] = {"prefill": smaller[0], "decode": smaller[1]}
                meets = runner.simulate(scenario, recipe("static-best"), seed=2, counts=counts).meets_slo
            assert not meets, smaller
    peak = runner.simulate(scenario, recipe("static-peak"), seed=2)
    assert best.gpu_hours <= peak.gpu_hours
