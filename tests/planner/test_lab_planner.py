"""The planner recipe in the evaluation lab: on a short load step it beats the shipped
threshold recipe on both axes (SLO windows met and GPU-hours), with fewer scale events."""

from __future__ import annotations

from pathlib import Path

import pytest

from scaler.lab import runner
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
