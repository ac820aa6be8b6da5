"""The planner recipe in the evaluation lab: on a short load step it beats the shipped
threshold recipe on both axes (SLO windows met and GPU-hours), with fewer scale events, and
the lab's judge of the issue's goals says so from the same runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from scaler.lab import goals, recipes, runner
from scaler.sim import scenario as sc
from tests.lab.helpers import load, recipe


@pytest.mark.timeout(300)
def test_the_planner_beats_shipped_on_a_short_step(tmp_path: Path) -> None:
    scenario = load(tmp_path)  # 4 req/s, then 40 req/s for 5 minutes, on opt125m-l4
    planner = runner.simulate(scenario, recipe("planner"), seed=1)
    shipped = runner.simulate(scenario, recipe("shipped"), seed=1)
    assert planner.ok and shipped.ok, (planner.error, shipped.error)
    assert planner.window_attainment > shipped.window_attainment
    assert planner.gpu_hours < shipped.gpu_hours
    assert planner.scale_events < shipped.scale_events
    assert planner.failed == 0
    oracle = runner.simulate(scenario, recipe("oracle"), seed=1)
    (verdict,) = goals.judge([planner, shipped, oracle])
    pairs = {p.recipe: p for p in verdict.pairs}
    assert pairs["shipped"].dominates
    assert verdict.cost == planner.gpu_hours / oracle.gpu_hours
    halved = planner.scale_events <= shipped.scale_events / 2
    assert [(s.recipe, s.holds) for s in verdict.stability] == [("shipped", halved)]
    assert verdict.windows is not None and verdict.windows >= planner.window_attainment


def test_the_planner_recipe_takes_each_scenarios_slo_and_profile() -> None:
    planner = recipe("planner")
    for name, ttft, profile in (("prefill-heavy", "2s", "llama8b-h100"), ("step-up-down", "1s", "opt125m-l4")):
        scenario = sc.load(str(recipes.builtin_dir().parent / "scenarios" / f"{name}.yaml"))
        for so in planner.scaled_objects(scenario):
            metadata = so.triggers[0].metadata
            assert (metadata["ttftTarget"], metadata["itlTarget"], metadata["profile"]) == (ttft, "50ms", profile)
