"""The capacity model: its expectations against the workload's own draws, and its uses."""

from __future__ import annotations

import random
import statistics

import pytest

from scaler.sim import capacity, profiles
from scaler.sim.phases import Dist, Phase, RequestClass
from scaler.sim.workload import Workload
from tests.sim.helpers import scenario as small_scenario

CONV = RequestClass(5.5, Dist("lognormal", 6.63, 0.99), Dist("lognormal", 5.02, 0.86))
CODE = RequestClass(2.6, Dist("lognormal", 7.0, 1.36, 1, 7437), Dist("lognormal", 2.79, 0.85))


@pytest.mark.parametrize("name", ["opt125m-l4", "llama8b-h100"])
def test_shape_matches_the_workloads_draws(name: str) -> None:
    profile = profiles.named(name)
    phase = Phase("mix", 4000, 20, "unique", CONV.isl, CONV.osl, mix=(CONV, CODE))
    s = small_scenario(phases=(phase,), profile={})
    s = s.with_profile(profile)
    reqs = Workload(s, random.Random(1)).arrivals(4000)
    shape = capacity.shape(phase, profile)
    assert shape.isl == pytest.approx(statistics.fmean(r.isl for r in reqs), rel=0.03)
    assert shape.osl == pytest.approx(statistics.fmean(r.osl for r in reqs), rel=0.03)
    weighted_ctx = sum(r.osl * (r.isl + r.osl / 2) for r in reqs) / sum(r.osl for r in reqs)
    assert shape.ctx == pytest.approx(weighted_ctx, rel=0.05)
    assert shape.uncached_sq == pytest.approx(statistics.fmean(r.isl**2 for r in reqs), rel=0.08)


def test_the_queueing_model_asks_for_more_prefill_pods_as_the_ttft_target_tightens() -> None:
    profile = profiles.named("llama8b-h100")
    phase = Phase("rag", 600, 16, "unique", Dist("uniform", 4096, 8192), Dist("uniform", 64, 256))
    shape = capacity.shape(phase, profile)
    pods = [capacity.prefill_pods_for_ttft(16, shape, profile, slo) for slo in (4.0, 2.0, 1.0)]
    assert pods == sorted(pods) and pods[0] < pods[-1]
    utilization = 16 * shape.uncached / capacity.prefill_tokens_per_s(profile, shape.uncached, 1, shape.uncached_sq)
    assert pods[0] >= utilization


def test_on_profile_keeps_the_busier_roles_work() -> None:
    phase = Phase("chat", 1000, 30, "unique", CONV.isl, CONV.osl)
    s = small_scenario(phases=(phase,), profile={}).with_profile(profiles.named("opt125m-l4"))
    moved = capacity.on_profile(s, profiles.named("llama70b-tp4-h100"))
    before, after = capacity.work(s), capacity.work(moved)
    assert max(after.values()) == pytest.approx(max(before.values()), rel=1e-6)
    # opt-125m's chat is decode-bound; on Llama-70B the same shapes are prefill-bound
    assert max(before, key=before.__getitem__) == "decode" and max(after, key=after.__getitem__) == "prefill"
    assert moved.profile.name == "llama70b-tp4-h100" and moved.phases[0].rate != phase.rate
