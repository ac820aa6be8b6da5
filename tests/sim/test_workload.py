"""Arrival processes and request shapes: bursts, mixes, shared prefixes; strict scenario keys."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import yaml

from scaler.sim import scenario
from scaler.sim.phases import BurstState, Dist, Phase, RequestClass
from scaler.sim.scenario import ScenarioError
from scaler.sim.workload import Workload
from tests.sim.helpers import scenario as small_scenario

CHAT = (Dist("lognormal", 6.63, 0.99), Dist("lognormal", 5.02, 0.86))


def test_bursts_modulate_the_rate_along_one_realised_path_per_seed() -> None:
    burst = (BurstState(0.5, 100.0), BurstState(3.0, 20.0))
    s = small_scenario(phases=(Phase("b", 3000, 10, "unique", *CHAT, burst=burst),))
    w = Workload(s, random.Random(3))
    same = Workload(s, random.Random(3))
    grid = [t * 0.5 for t in range(6000)]
    rates = [w.rate(t) for t in grid]
    assert rates == [same.rate(t) for t in grid]
    assert set(rates) == {5.0, 30.0}
    high = sum(1 for r in rates if r == 30.0) / len(rates)
    assert 0.08 < high < 0.28  # 20 s of every ~120 s on average
    arrivals = w.arrivals(3000)
    in_high = sum(1 for r in arrivals if w.rate(r.arrival) == 30.0)
    expected = sum(rates) * 0.5
    assert abs(len(arrivals) - expected) < 4 * expected**0.5  # Poisson around the realised rate
    assert in_high / len(arrivals) == pytest.approx(30 * high / (30 * high + 5 * (1 - high)), abs=0.03)
    assert Workload(s, random.Random(4)).change_points() != w.change_points()


def test_a_mix_draws_each_shape_by_weight() -> None:
    mix = (
        RequestClass(3.0, Dist("fixed", 100), Dist("fixed", 10)),
        RequestClass(1.0, Dist("fixed", 900), Dist("fixed", 5)),
    )
    s = small_scenario(phases=(Phase("m", 2000, 20, "unique", mix[0].isl, mix[0].osl, mix=mix),))
    reqs = Workload(s, random.Random(1)).arrivals(2000)
    long = sum(1 for r in reqs if r.isl == 900) / len(reqs)
    assert long == pytest.approx(0.25, abs=0.02)
    assert {(r.isl, r.osl) for r in reqs} == {(100, 10), (900, 5)}


def test_prefix_groups_share_a_fixed_prefix_and_keep_unique_suffixes() -> None:
    phase = Phase(
        "p", 500, 20, "unique", Dist("uniform", 3000, 5000), Dist("fixed", 50), prefix_ratio=0.9, prefix_groups=5
    )
    s = small_scenario(phases=(phase,), profile={"max_model_len": 131072})
    reqs = Workload(s, random.Random(2)).arrivals(500)
    prefixes = {r.segments[0] for r in reqs}
    assert len(prefixes) == 5 and {tokens for _, tokens in prefixes} == {3600}  # 90 % of the mean 4000
    assert all(r.segments[0][1] + r.segments[1][1] == r.isl for r in reqs)
    assert len({r.segments[1][0] for r in reqs}) == len(reqs)


def _doc() -> dict[str, object]:
    doc: dict[str, object] = yaml.safe_load(
        (Path(scenario.__file__).parent / "scenarios" / "pd-default.yaml").read_text()
    )
    return doc


def test_unknown_keys_are_errors_that_name_them(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    for patch, where in (
        ({"phasess": []}, "unknown key 'phasess'"),
        ({"fleet": {"limits": {"decode": [3, 1]}}}, r"fleet\.limits\.decode"),
        ({"simulation": {"tick_seconds": 0.1}}, r"simulation: unknown key 'tick_seconds'"),
        ({"profile": "h200"}, r"profile: unknown profile 'h200'"),
        ({"phases": [{"name": "x", "seconds": 10, "rate": 1, "isl": 10, "osl": 10, "burst": [{"factor": 2}]}]},
         r"phases\[0\]\.burst"),
    ):  # fmt: skip
        path.write_text(yaml.safe_dump({**_doc(), **patch}))
        with pytest.raises(ScenarioError, match=where):
            scenario.load(str(path))
