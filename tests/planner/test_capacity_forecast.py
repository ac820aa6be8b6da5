"""Capacity (seed, correction, learned bounds) and forecast on hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from scaler.planner import bounds, capacity, parse_spec
from scaler.planner.forecast import forecast, settle, trend
from scaler.planner.plan import observe
from tests.planner.fleet import Fleet, Load

# raw prefill throughput 1000 tokens / (10 + 0.09*1000) ms = 10 000 tokens/s whatever the
# prompt length (c = 0); one 500-token prompt alone takes 10 + 0.09*500 = 55 ms
PREFILL_PROFILE = (
    "{base: opt125m-l4, max_num_batched_tokens: 1000, prefill: {a_ms: 10, b_ms_per_tok: 0.09, c_ms_per_tok2: 0}}"
)
# decode step 10 + 0.1*B ms: within a 50 ms ITL, (50 - 10) / 0.1 = 400 sequences
DECODE_PROFILE = (
    "{base: opt125m-l4, max_num_seqs: 1024, kv_capacity_tokens: 1000000000, "
    "decode: {d_ms: 10, e_ms_per_seq: 0.1, f_ms_per_ctx_tok: 0}}"
)


def _view(fleet: Fleet, role: str, profile: str | None, ttft: str = "2s") -> capacity.RoleView:
    metadata = {"planner": role, "deployment": fleet.deployment, "ttftTarget": ttft, "itlTarget": "50ms"}
    if profile:
        metadata["profile"] = profile
    _, _, view = observe(fleet.store, parse_spec(metadata), fleet.now_ms)
    return view


def test_prefill_seed_is_the_profile_throughput_at_the_utilisation_the_corrected_ttft_allows() -> None:
    fleet = Fleet("pre")
    fleet.add("a", "b")
    fleet.run(120, Load(prompt_tokens=5000, requests=10, ttft=0.12))  # 500-token prompts
    view = _view(fleet, "prefill", PREFILL_PROFILE)
    # utilisation 5000/10000 = 0.5; queueing model (Kingman): mean TTFT 0.055 * (1 + 0.75 *
    # 0.5/0.5) = 0.09625 s expected, 0.12 s observed
    correction = 0.12 / 0.09625
    assert view.correction[-1] == pytest.approx(correction)
    # the correction scales the service time (0.055 s → 0.055 × correction) and so divides the
    # throughput; prefill's budget is 2 s × 0.7 = 1.4 s, of which 1.4 - service is left for
    # the p90 wait (1.5 × service × rho/(1 - rho)): rho = slack / (slack + 1.5 × service)
    service = 0.055 * correction
    slack = 1.4 - service
    assert view.seed[-1] == pytest.approx(10_000 / correction * slack / (slack + 1.5 * service))
    # each pod did 5000 tokens/s within the SLO: the learned lower bound, under the seed here
    assert view.lower[-1] == pytest.approx(5000)
    assert view.capacity[-1] == pytest.approx(view.seed[-1])
    assert view.demand[-1] == pytest.approx(10_000)
    assert view.held[-1] and not view.missed[-1]


def test_prefill_work_is_the_prompt_tokens_the_prefix_cache_does_not_hold() -> None:
    fleet = Fleet("pre")
    fleet.add("a", "b")
    # 10 prompts/s of 500 tokens per pod, 450 of each found in the prefix cache
    fleet.run(120, Load(prompt_tokens=5000, requests=10, ttft=0.05, cached_tokens=4500))
    view = _view(fleet, "prefill", PREFILL_PROFILE)
    assert view.unit == "uncached prompt tokens/s"
    assert view.served[-1] == pytest.approx(1000)
    assert view.demand[-1] == pytest.approx(1000)
    assert view.lower[-1] == pytest.approx(500)  # per pod, within the SLO
    # the seed is the model's for 50-token prompts: 10 + 0.09*50 = 14.5 ms alone; utilisation
    # 500/10 000; Kingman's mean TTFT 14.5 ms × (1 + 0.75 × 0.05/0.95) under the 50 ms seen,
    # so the correction is at its cap, 1.5
    assert view.correction[-1] == pytest.approx(1.5)
    service = 0.0145 * 1.5
    slack = 1.4 - service
    rho = min(slack / (slack + 1.5 * service), 0.95)
    assert view.seed[-1] == pytest.approx(10_000 / 1.5 * rho)
    # the same pods without the counters: every prompt token is work
    plain = Fleet("pre")
    plain.add("a", "b")
    plain.run(120, Load(prompt_tokens=5000, requests=10, ttft=0.05))
    assert _view(plain, "prefill", PREFILL_PROFILE).demand[-1] == pytest.approx(10_000)


def test_prefill_correction_only_slows_the_model_and_by_half_at_most() -> None:
    for ttft, expected in ((0.05, 1.0), (0.2, 1.5)):
        fleet = Fleet("pre")
        fleet.add("a", "b")
        fleet.run(120, Load(prompt_tokens=5000, requests=10, ttft=ttft))
        # 0.05 / 0.09625 = 0.52: a TTFT under the model's does not make the pods faster;
        # 0.2 / 0.09625 = 2.08: capped at 1.5
        assert _view(fleet, "prefill", PREFILL_PROFILE).correction[-1] == pytest.approx(expected)


def test_without_a_profile_prefill_capacity_is_the_throughput_seen_while_the_slo_held() -> None:
    fleet = Fleet("pre")
    fleet.add("a", "b")
    fleet.run(100, Load(prompt_tokens=7000, requests=10, ttft=0.2))
    fleet.run(100, Load(prompt_tokens=3000, requests=6, ttft=0.2))
    view = _view(fleet, "prefill", None)
    assert np.isnan(view.seed[-1])
    assert view.capacity[-1] == pytest.approx(7000, rel=1e-6)
    assert view.demand[-1] == pytest.approx(6000)


def test_a_miss_while_queueing_caps_prefill_capacity_below_an_optimistic_seed() -> None:
    fleet = Fleet("pre")
    fleet.add("a", "b")
    # saturated: a queue on every pod, TTFT 1.5 s over the 1 s budget
    fleet.run(120, Load(prompt_tokens=4000, requests=8, ttft=1.5, waiting=5))
    view = _view(fleet, "prefill", "{base: opt125m-l4, prefill_tokens_per_second: 50000}")
    assert view.missed[-1]
    assert view.upper[-1] == pytest.approx(4000)
    assert view.capacity[-1] == pytest.approx(4000)
    # demand: the arrivals are what finished (the queue is steady here): 8000 tokens/s
    assert view.demand[-1] == pytest.approx(8000)
    assert view.backlog[-1] == pytest.approx(10 * 500)


def test_a_miss_with_the_queue_on_one_pod_teaches_no_upper_bound() -> None:
    fleet = Fleet("pre")
    fleet.add("a", "b")
    # pod b joined after a's queue built up: a drains it, b serves only new arrivals; the
    # waiting requests outnumber the pods, but b has none, so the fleet is not at capacity
    loads = {
        "a": Load(prompt_tokens=4000, requests=8, ttft=1.5, waiting=10),
        "b": Load(prompt_tokens=1500, requests=3, ttft=0.2, waiting=0),
    }
    fleet.run(120, loads)
    view = _view(fleet, "prefill", "{base: opt125m-l4, prefill_tokens_per_second: 50000}")
    assert not view.missed[-1]
    assert np.isinf(view.upper[-1])
    # once b queues too, the same miss is evidence
    fleet.run(120, {**loads, "b": Load(prompt_tokens=4000, requests=8, ttft=1.5, waiting=1)})
    view = _view(fleet, "prefill", "{base: opt125m-l4, prefill_tokens_per_second: 50000}")
    assert view.missed[-1]
    assert view.upper[-1] == pytest.approx(4000)


def test_decode_seed_is_the_token_rate_at_the_itl_bound_and_the_correction_scales_the_step() -> None:
    fleet = Fleet("dec")
    fleet.add("a", "b")
    # 100 running per pod; step 10 + 0.1*100 = 20 ms expected and observed
    fleet.run(120, Load(running=100, generation_tokens=5000, requests=10, prompt_tokens=5000, itl=0.02))
    view = _view(fleet, "decode", DECODE_PROFILE)
    assert view.correction[-1] == pytest.approx(1.0)
    # the largest batch whose mean step stays within 0.95 × 50 ms is (47.5 - 10) / 0.1 = 375
    # sequences, each getting a token every 47.5 ms
    assert view.seed[-1] == pytest.approx(375 / 0.0475)
    assert view.demand[-1] == pytest.approx(10_000)
    fleet.run(120, Load(running=100, generation_tokens=2500, requests=10, prompt_tokens=5000, itl=0.04))
    slow = _view(fleet, "decode", DECODE_PROFILE)
    # observed 40 ms where the model says 20: correction 2, so the modelled step must stay
    # under 47.5/2 = 23.75 ms: (23.75 - 10) / 0.1 = 137.5 sequences, at 2 × 23.75 ms per token
    assert slow.correction[-1] == pytest.approx(2.0)
    assert slow.seed[-1] == pytest.approx(137.5 / 0.0475)


def test_decode_is_slot_bound_only_where_the_batch_slots_cap_the_seeds_batch() -> None:
    fleet = Fleet("slots")
    fleet.add("a", "b")
    fleet.run(120, Load(running=100, generation_tokens=5000, requests=10, prompt_tokens=5000, itl=0.02))
    # the ITL allows 375 sequences (above): 1 024 slots leave the ITL to cap the batch, 256 cap
    # it themselves, and so do 256 beside a KV cache of 200 000 tokens only if it holds more
    # than 256 sequences of 500 + 500 tokens (it holds 200)
    assert not _view(fleet, "decode", DECODE_PROFILE).slot_bound[-1]
    slots = DECODE_PROFILE.replace("max_num_seqs: 1024", "max_num_seqs: 256")
    view = _view(fleet, "decode", slots)
    assert view.slot_bound[-1] and view.seed[-1] == pytest.approx(256 / (0.010 + 0.0001 * 256))
    kv = slots.replace("kv_capacity_tokens: 1000000000", "kv_capacity_tokens: 200000")
    assert not _view(fleet, "decode", kv).slot_bound[-1]
    # prefill has no slots to speak of
    assert not _view(fleet, "prefill", PREFILL_PROFILE).slot_bound.any()


def test_decode_demand_adds_the_tokens_a_growing_queue_asks_for() -> None:
    fleet = Fleet("dec")
    fleet.add("a")
    fleet.run(60, Load(running=100, generation_tokens=5000, requests=10, itl=0.02))
    for second in range(1, 31):  # the queue grows by 2 per second
        fleet.run(1, Load(running=100, waiting=2 * second, generation_tokens=5000, requests=10, itl=0.02))
    view = _view(fleet, "decode", None)
    # 500 tokens per request: 5000 tokens/s served + 2 more requests/s × 500 tokens
    assert view.demand[-1] == pytest.approx(6000)
    assert view.backlog[-1] == pytest.approx(60 * 500)


def test_a_queue_grows_net_of_what_the_pods_that_joined_within_the_window_serve() -> None:
    def growing(joins: bool) -> capacity.RoleView:
        fleet = Fleet("dec")
        fleet.add("a")
        fleet.run(60, Load(running=100, generation_tokens=5000, requests=10, itl=0.02))
        for second in range(1, 31):  # the queue on pod a grows by 10 requests (5000 tokens) a second
            if joins and second == 26:
                fleet.add("b")  # exports for the last 5 s of the 15-s rate window
            load = Load(running=100, waiting=10 * second, generation_tokens=5000, requests=10, itl=0.02)
            fleet.run(1, {"a": load, "b": Load(running=10, generation_tokens=500, requests=1, itl=0.02)})
        return _view(fleet, "decode", None)

    alone = growing(joins=False)
    assert alone.growth[-1] == pytest.approx(5000)
    # pod b exported at one of the window's three instants (5 s apart): it counts as 1 - 1/3 of
    # a pod joined, whose capacity is the 5000 tokens/s pod a served within the SLO
    joined = growing(joins=True)
    assert joined.capacity[-1] == pytest.approx(5000)
    assert joined.growth[-1] == pytest.approx(5000 - 2 / 3 * 5000)
    assert joined.backlog[-1] == pytest.approx(alone.backlog[-1])


def test_trend_needs_a_steady_rise_in_three_segments_and_forecast_is_capped() -> None:
    times = np.arange(0, 125_000, 5_000, dtype=np.int64)
    ramp = 100 + 2.0 * times / 1000
    assert trend(times, ramp, 40_000).slope[-1] == pytest.approx(2.0)
    noisy = ramp + np.random.default_rng(1).normal(0, 10, len(times))  # ±10 around a 80-per-segment rise
    assert trend(times, noisy, 40_000).slope[-1] == pytest.approx(2.0, rel=0.15)
    # a step seen through a 30-s window: a 30-s ramp, wherever it sits among the segments
    for end in range(30_000, 125_000, 5_000):
        smoothed = 100 + 200 * np.clip((times - (end - 30_000)) / 30_000, 0, 1)
        assert (trend(times, smoothed, 40_000).slope == 0.0).all()
    falling = 500 - 2.0 * times / 1000
    assert trend(times, falling, 40_000).slope[-1] == 0.0
    assert forecast(np.array([100.0]), np.array([2.0]), 30)[0] == pytest.approx(160)
    assert forecast(np.array([100.0]), np.array([10.0]), 60)[0] == pytest.approx(200)  # capped at 2x


def test_a_rise_is_extrapolated_only_once_it_lasted_the_start_up() -> None:
    times = np.arange(0, 400_000, 5_000, dtype=np.int64)
    # flat at 100, then rising 2/s from 100 s on: the rise of the segment means is positive
    # from 105 s, steady from 170 s; positive at every instant of (t − 120 s, t] from 220 s
    ramp = 100 + 2.0 * np.clip(times / 1000 - 100, 0, None)
    assert times[np.nonzero(trend(times, ramp, 30_000).slope)[0][0]] == 170_000
    lasting = trend(times, ramp, 30_000, persist_ms=120_000).slope
    assert times[np.nonzero(lasting)[0][0]] == 220_000
    # what each decision shows: how long the rise has lasted (115 s at 220 s: every instant of
    # (100 s, 220 s] is positive)
    rising = trend(times, ramp, 30_000).rising_s
    assert (rising[times <= 100_000] == 0.0).all()
    assert rising[times == 105_000][0] == 0.0 and rising[times == 220_000][0] == 115.0
    assert lasting[-1] == pytest.approx(2.0)
    # the same rise ending after 100 s: steady for a while, but never for a start-up
    bump = 100 + 2.0 * np.clip(times / 1000 - 100, 0, 100)
    assert (trend(times, bump, 30_000).slope > 0).sum() == 10
    assert (trend(times, bump, 30_000, persist_ms=120_000).slope == 0.0).all()
    # a rise under way since the grid's first instant began at an unknown time: it counts from
    # the first instant it can be measured at (the oldest segment holds three points at 70 s)
    steady = 100 + 2.0 * times / 1000
    assert times[np.nonzero(trend(times, steady, 30_000).slope)[0][0]] == 70_000
    assert times[np.nonzero(trend(times, steady, 30_000, persist_ms=120_000).slope)[0][0]] == 185_000


def test_the_level_caps_the_noise_at_the_minute_mean_but_passes_surges_falls_and_lasting_rises() -> None:
    times = np.arange(0, 120_000, 5_000, dtype=np.int64)  # 24 instants
    noisy = np.array([100.0, 110.0, 90.0, 120.0] * 6)  # mean 105
    level, surging = settle(times, noisy, 60_000)
    # from the 13th instant on, the minute's mean is 105: peaks are capped at it, lows pass
    assert level[12:].tolist() == [100.0, 105.0, 90.0, 105.0] * 3
    assert not surging.any()
    # a step to 200 surges (200 > 1.3 x the mean) and is taken at once
    step = np.concatenate([np.full(12, 100.0), np.full(12, 200.0)])
    level, surging = settle(times, step, 60_000)
    assert level[12] == 200.0 and surging[12]
    # the mean catches up; the 20-s low is 200 once four instants are at 200, so the level stays
    assert (level[12:] == 200.0).all()
    # a 20 % rise does not surge: capped at the mean until it fills the trailing 20 s (four
    # instants), then taken whole
    rise = np.concatenate([np.full(12, 100.0), np.full(12, 120.0)])
    level, surging = settle(times, rise, 60_000)
    assert not surging.any()
    assert level[12:15].tolist() == pytest.approx([100 + 20 * k / 12 for k in range(1, 4)])
    assert (level[15:] == 120.0).all()
    # a fall is taken at once
    fall = np.concatenate([np.full(12, 100.0), np.full(12, 50.0)])
    assert (settle(times, fall, 60_000)[0][12:] == 50.0).all()


def test_learned_bounds_keep_the_newer_evidence_when_they_contradict() -> None:
    load = np.array([50.0, 100.0, 90.0, 60.0, 60.0, 60.0, 70.0, 40.0, 110.0])
    held = np.array([1, 1, 1, 0, 0, 0, 1, 0, 1], dtype=bool)
    missed = np.array([0, 0, 0, 1, 1, 1, 0, 1, 0], dtype=bool)
    lower, upper = bounds.learn(load, held, missed, np.arange(9, dtype=np.int64) * 5000, 0)
    # held at 50 then 100: at least 100; 60 missed three times in a row (a workload that
    # changed: the cache stopped hitting) caps it at 60 and drops the older 100; held at 70
    # contradicts that cap in turn; a single miss at 40 does not persist; held at 110
    assert lower.tolist() == [50, 100, 100, 100, 100, 0, 70, 70, 110]
    assert upper.tolist() == [np.inf] * 5 + [60, np.inf, np.inf, np.inf]
    assert bounds.combine(np.full(9, 80.0), lower, upper).tolist() == [80, 100, 100, 100, 100, 60, 80, 80, 110]
    # evidence not seen again for 300 s is forgotten
    late = np.array([0, 305_000], dtype=np.int64)
    lower, upper = bounds.learn(np.array([100.0, 10.0]), np.array([True, False]), np.array([False, False]), late, 0)
    assert lower.tolist() == [100, 0]


def test_a_persistent_miss_caps_capacity_at_the_peak_load_of_its_latency_window() -> None:
    # a queue drained through the window: the load per pod fell from 100 to 50 while the
    # window's latencies stayed over target; they happened at the window's loads, so the
    # evidence is "over 100 (then 90) misses", not "over 60 (then 50)"
    load = np.array([100.0, 90.0, 60.0, 50.0])
    missed = np.ones(4, dtype=bool)
    times = np.arange(4, dtype=np.int64) * 5000
    _, upper = bounds.learn(load, np.zeros(4, dtype=bool), missed, times, 15_000)
    assert upper.tolist() == [np.inf, np.inf, 100, 90]
    # with no window behind the instant, the instant's own load, as before
    _, upper = bounds.learn(load, np.zeros(4, dtype=bool), missed, times, 0)
    assert upper.tolist() == [np.inf, np.inf, 60, 50]
    # an instant whose load is unknown teaches nothing, and does not hide the others' peak
    gap = np.array([100.0, np.nan, 60.0, 50.0])
    _, upper = bounds.learn(gap, np.zeros(4, dtype=bool), missed, times, 15_000)
    assert upper.tolist() == [np.inf, np.inf, 100, 60]


def test_a_lower_bound_lasts_while_the_workload_shape_does_and_an_upper_bound_expires_by_age() -> None:
    times = np.array([0, 200_000, 400_000, 600_000, 700_000], dtype=np.int64)
    load = np.array([100.0, 40.0, 40.0, 40.0, 40.0])
    held = np.array([1, 0, 0, 0, 0], dtype=bool)
    none = np.zeros(5, dtype=bool)
    # the same shape within 20 %: the pods' 100 stands 600 s later, though never seen again
    # (more replicas share the load); a shape 25 % away is another workload: forgotten
    shape = np.array([1000.0, 1100.0, 900.0, 1190.0, 1250.0])
    lower, _ = bounds.learn(load, held, none, times, 0, shape)
    assert lower.tolist() == [100, 100, 100, 100, 0]
    # the shape unknown (no profile): forgotten 300 s after it was learned, as before
    lower, _ = bounds.learn(load, held, none, times, 0, np.full(5, np.nan))
    assert lower.tolist() == [100, 100, 0, 0, 0]
    # an upper bound expires by age whatever the shape: an under-estimate shows only as idle pods
    missed = np.array([1, 1, 1, 0, 0], dtype=bool)
    close = np.array([0, 5_000, 10_000, 200_000, 320_000], dtype=np.int64)
    _, upper = bounds.learn(np.full(5, 50.0), none, missed, close, 0, np.full(5, 1000.0))
    assert upper.tolist() == [np.inf, np.inf, 50, 50, np.inf]
