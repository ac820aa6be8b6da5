"""Scenario files and the arrival process."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
import yaml

from scaler.sim import scenario
from scaler.sim.scenario import Dist, Phase, ScenarioError
from scaler.sim.workload import Workload
from tests.sim.helpers import scenario as small_scenario


def test_the_default_scenario_is_about_three_minutes_in_three_phases() -> None:
    s = scenario.load(None)
    assert 150 <= s.duration <= 200
    assert [p.prompt for p in s.phases] == ["repeated", "unique", "unique"]
    assert s.profile.name == "opt125m-l4" and s.profile.max_num_seqs == 256
    assert 0 < s.time_scale < 1


def test_duration_rescales_phases_and_timers() -> None:
    s = scenario.load(None)
    short = s.with_duration(s.duration / 4)
    assert short.duration == pytest.approx(s.duration / 4)
    assert [p.seconds for p in short.phases] == pytest.approx([p.seconds / 4 for p in s.phases])
    assert short.time_scale == pytest.approx(s.time_scale / 4)
    assert short.phase_at(short.phases[0].seconds + 0.1)[0] == 1


def _write(tmp_path: Path, data: dict[str, Any]) -> str:
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_errors_name_the_key(tmp_path: Path) -> None:
    data = yaml.safe_load(Path(scenario.__file__).with_name("scenarios").joinpath("pd-default.yaml").read_text())
    bad = dict(data, phases=[dict(data["phases"][0], rate=-1)])
    with pytest.raises(ScenarioError, match=r"phases\[0\]\.rate"):
        scenario.load(_write(tmp_path, bad))
    bad = dict(data, phases=[dict(data["phases"][0], osl={"dist": "zipf"})])
    with pytest.raises(ScenarioError, match=r"phases\[0\]\.osl\.dist"):
        scenario.load(_write(tmp_path, bad))
    bad = {k: v for k, v in data.items() if k != "slo"}
    with pytest.raises(ScenarioError, match="missing key 'slo'"):
        scenario.load(_write(tmp_path, bad))
    with pytest.raises(ScenarioError, match="cannot read scenario"):
        scenario.load(str(tmp_path / "nope.yaml"))
    ok = dict(data, keda=dict(data["keda"], manifests="mine"))
    assert scenario.load(_write(tmp_path, ok)).manifests == str(tmp_path / "mine")


def test_arrivals_are_poisson_at_the_phase_rate_and_deterministic() -> None:
    s = small_scenario(
        phases=(
            Phase("a", 100, 20, "repeated", Dist("fixed", 512), Dist("uniform", 10, 20)),
            Phase("b", 100, 5, "unique", Dist("uniform", 1500, 1900), Dist("fixed", 400), shared_prefix_tokens=64),
        )
    )
    reqs = Workload(s, random.Random(7)).arrivals(200)
    again = Workload(s, random.Random(7)).arrivals(200)
    assert [r.arrival for r in reqs] == [r.arrival for r in again]
    a = [r for r in reqs if r.phase == 0]
    b = [r for r in reqs if r.phase == 1]
    assert 1800 < len(a) < 2200 and 400 < len(b) < 600
    assert {r.segments for r in a} == {(("phase0/repeated", 512),)}
    assert len({r.segments for r in b}) == len(b)
    assert all(r.segments[0] == ("phase1/system", 64) for r in b)
    assert all(r.isl + r.osl <= s.profile.max_model_len for r in reqs)


def test_ramps_climb_from_the_previous_rate() -> None:
    phases = (
        Phase("a", 10, 0, "unique", Dist("fixed", 10), Dist("fixed", 1)),
        Phase("b", 100, 50, "unique", Dist("fixed", 10), Dist("fixed", 1), ramp_seconds=50),
    )
    w = Workload(small_scenario(phases=phases), random.Random(1))
    assert (w.rate(5), w.rate(10), w.rate(35), w.rate(70)) == (0, 0, 25, 50)
    reqs = w.arrivals(110)
    early = sum(1 for r in reqs if r.arrival < 35)
    late = sum(1 for r in reqs if 60 <= r.arrival < 85)
    assert 0 < early < late
