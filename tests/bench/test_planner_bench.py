"""bench/planner.py: the planner's decision-time figure reads the overlay's retention and
times decisions that agree whichever way they are taken."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import planner as planner_bench
from bench.report import Report
from tests.manifests.test_manifests import scaler_env


def test_the_figure_uses_the_retention_the_planner_overlay_sets() -> None:
    rendered = scaler_env("keda-planner/scaler")["METRIC_STORE_RETENTION_SECONDS"]
    assert planner_bench.overlay_retention_s() == float(rendered)


def test_an_overlay_without_the_retention_patch_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "kustomization.yaml"
    path.write_text("resources: [../../scaler]\npatches: []\n", encoding="utf-8")
    with pytest.raises(ValueError, match="no patch sets METRIC_STORE_RETENTION_SECONDS"):
        planner_bench.overlay_retention_s(path)


def test_each_call_is_timed_both_ways_on_a_store_of_one_retention() -> None:
    timing = planner_bench.measure(planner_bench.busy_fleet(pods=2, retention_s=120.0), calls=3)
    assert len(timing.take_ms) == len(timing.decide_ms) == len(timing.inline_ms) == 3
    assert (timing.take_ms > 0).all() and (timing.inline_ms > 0).all()
    # two pods each generating 6000 tokens/s need about two llama8b-h100 decode replicas
    assert timing.desired == 2
    report = Report(quick=True)
    planner_bench.phase(report, (2,), 2, retention_s=120.0)
    held, lag = report.rows
    assert held.figure.startswith("planner decision, 2 decode pods, 120-s retention")
    assert held.ratio is not None and held.ratio > 0
    assert lag.figure.startswith("planner decisions, 2 decode pods: event-loop lag")


def test_the_loop_lag_is_sampled_while_decisions_are_answered_both_ways() -> None:
    lag = planner_bench.loop_lag(planner_bench.busy_fleet(pods=2, retention_s=120.0), calls=2, rounds=2)
    # a 1-ms timer fires at least once per decision each way, and never early
    assert len(lag.inline_ms) >= 4 and len(lag.threaded_ms) >= 4
    assert (lag.inline_ms > -0.5).all() and (lag.threaded_ms > -0.5).all()
