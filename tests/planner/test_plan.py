"""The decision: need, pending replicas, hysteresis, missing data; hand-computed."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from scaler.planner import Plan, Tuning, decide, parse_spec, plan, take
from scaler.planner.plan import grid
from scaler.planner.recurrence import Recurrence
from scaler.planner.steps import banded
from tests.planner.fleet import Fleet, Load

# a decode replica generates 5000 tokens/s (direct hint) and starts within 60 s
PROFILE = "{base: opt125m-l4, decode_tokens_per_second: 5000, startup_seconds: 60}"


_META = {"planner": "decode", "deployment": "dec", "ttftTarget": "1s", "itlTarget": "50ms"}


def _plan(fleet: Fleet, profile: str = PROFILE) -> Plan:
    spec = parse_spec(_META | {"deployment": fleet.deployment, "profile": profile})
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


def test_decode_rises_at_92_percent_of_its_capacity_where_its_slots_cap_the_batch_and_says_so() -> None:
    fleet = Fleet("dec")
    fleet.add("a", "b")
    fleet.run(120, _busy(90))
    # a hint holds no batch: the need rises at the whole capacity, and the line says nothing
    hinted = _plan(fleet)
    assert hinted.scale_up_share == 1.0 and "scale-up at" not in hinted.line()
    # step 10 + 0.1·B ms: the ITL allows 350 sequences and more, 100 slots cap the batch
    slots = "{base: opt125m-l4, max_num_seqs: 100, decode: {d_ms: 10, e_ms_per_seq: 0.1, f_ms_per_ctx_tok: 0}}"
    # not within two minutes of the demand's surge from nothing, when the pods began
    assert _plan(fleet, slots).scale_up_share == 1.0
    fleet.run(60, _busy(90))
    capped = _plan(fleet, slots)
    assert capped.scale_up_share == pytest.approx(0.92) and "correction 1.05, scale-up at 92%)" in capped.line()
    assert capped.explain()["capacity"]["scaleUpShare"] == pytest.approx(0.92)  # type: ignore[index]


def test_the_queue_expected_when_asked_for_replicas_arrive_is_asked_for_once() -> None:
    fleet = Fleet("dec")
    fleet.add("a", "b")
    fleet.run(120, _busy(100))
    assert _plan(fleet).desired == 2
    # arrivals double: both pods stay at 100 running and the queue grows by 10/s per pod
    answers = []
    for second in range(1, 61):
        fleet.run(1, _busy(100, waiting=10 * second))
        if second % 5 == 0:
            answers.append(_plan(fleet).desired)
    result = _plan(fleet)
    # demand: 20 requests/s finish and 20/s more join the queue, × 500 tokens = 20000 tokens/s:
    # 4 replicas, but with 7 asked for the hysteresis band needs 20000 / (0.9 × 5000) → 5
    assert (result.demand, result.need, result.pods, result.backlog) == (20_000, 5, 2, 600_000)
    # asked 5 s into the rise, the replicas are due 60 s later; until then the 2 pods fall
    # 10000 tokens/s short, so the queue they will find is 600000 + 5 s × 10000 = 650000
    # tokens, to drain within 60 s: (20000 + 650000 / 60) / 5000 = 6.2 → 7
    assert result.projected_backlog == pytest.approx(650_000)
    assert (result.drain, result.desired, result.pending) == (7, 7, 5)
    # the same answer on every call once the 15-s window of decode arrivals has filled: the
    # queue grows, the wait shrinks alike
    assert answers[:3] == [3, 5, 7]
    assert answers[2:] == [7] * 10


def test_prefill_projects_its_queue_to_the_expected_start_up_and_decode_to_the_longest() -> None:
    fleet = Fleet("dec")
    fleet.add("a", "b")
    fleet.run(120, _busy(90))
    ranged = "{base: opt125m-l4, decode_tokens_per_second: 5000, startup_seconds: [30, 60]}"
    assert _plan(fleet, ranged).arrival_s == 60.0
    spec = parse_spec(_META | {"planner": "prefill", "deployment": fleet.deployment, "profile": ranged})
    prefill = plan(fleet.store, spec, fleet.now_ms)
    assert prefill is not None and prefill.arrival_s == 45.0


def test_asked_for_replicas_that_never_come_stay_pending_and_the_queue_is_not_piled_on() -> None:
    fleet = Fleet("dec")
    fleet.add("a", "b")
    fleet.run(120, _busy(100))
    for second in range(1, 181):  # the extra pods never come (e.g. maxReplicaCount is 2)
        fleet.run(1, _busy(100, waiting=10 * second))
    result = _plan(fleet)
    # overdue: asking for more would not bring them sooner, so the ask stays what it was
    # (7, as computed in the test above), though the queue (3600 requests) has grown sixfold
    assert (result.desired, result.drain, result.pending, result.backlog) == (7, 7, 5, 1_800_000)
    # once two of them come (taking 200 of the queue), what is still asked for stays asked for
    fleet.add("c", "d")
    fleet.run(5, _busy(100, waiting=850))
    result = _plan(fleet)
    assert (result.desired, result.pending) == (7, 3)


def test_scale_down_waits_for_the_hold_and_needs_the_hysteresis_band() -> None:
    fleet = Fleet("dec")
    fleet.add("a", "b", "c", "d")
    fleet.run(120, _busy(95))  # 19000 tokens/s → 4 replicas
    assert _plan(fleet).desired == 4
    fleet.run(60, _busy(68))  # 13600: 3 replicas would do, but 13600/(3 × 4500) > 1: inside the band
    result = _plan(fleet)
    assert (round(result.demand), result.need, result.desired) == (13_600, 4, 4)
    fleet.run(30, _busy(60))  # 12000 fits 3 replicas at 90 %: needs 3, but 4 are held for 60 s
    result = _plan(fleet)
    assert (result.need, result.desired, result.hold_s) == (3, 4, 60)
    fleet.run(25, _busy(60))
    assert _plan(fleet).desired == 4
    fleet.run(5, _busy(60))
    assert _plan(fleet).desired == 3


def test_prefill_has_no_hysteresis_band_and_decode_a_10_percent_one() -> None:
    tuning = Tuning()
    # 2.95 replicas' worth with 4 running: decode's band keeps 4 (2.95 / 0.9 = 3.3 → 4), prefill
    # goes to 3 at once (the hold, not the band, delays the answer)
    assert banded(2.95, 1.0, 4, tuning, True, 4, True) == 4
    assert banded(2.95, 1.0, 4, replace(tuning, band=tuning.prefill_band), True, 4, True) == 3
    # upwards the same for both: 3 running, 3.2 replicas' worth is within the tolerance while
    # calm, and needs a fourth when not
    assert banded(3.2, 1.0, 3, tuning, True, 3, True) == 3
    assert banded(3.2, 1.0, 3, tuning, True, 3, False) == 4
    assert banded(3.4, 1.0, 3, tuning, True, 3, True) == 4


def test_a_decision_is_made_from_a_copy_of_the_series_taken_at_its_instant() -> None:
    fleet = Fleet("dec")
    fleet.add("a", "b")
    fleet.run(120, _busy(90))
    spec = parse_spec(
        {"planner": "decode", "deployment": "dec", "ttftTarget": "1s", "itlTarget": "50ms", "profile": PROFILE}
    )
    snapshot = take(fleet.store, spec, fleet.now_ms)
    before = decide(snapshot)
    # the store moves on (samples appended, a pod gone) while the decision would be computed
    # elsewhere: the snapshot's decision does not move with it
    fleet.run(60, _busy(200))
    fleet.remove("b")
    fleet.run(5, _busy(200))
    assert decide(snapshot) == before
    assert before == plan(fleet.store, spec, snapshot.now_ms)
    assert before is not None and before.desired == 2


def test_a_decision_reads_only_the_retention_window_whichever_series_the_sweep_has_trimmed() -> None:
    # the retention sweep trims a few series per slice, so between two of its visits some series
    # still hold samples older than the retention and others do not: a decision that read them
    # would depend on where the sweep stood (the mean output length, generated tokens over
    # requests finished, moved by 2 %), and two scaler instances fed the same data answered
    # differently
    fleet = Fleet("dec", retention_seconds=120)
    fleet.add("a", "b")
    answers = []
    for running in (40, 120, 200, 60, 20):
        for _ in range(10):
            fleet.run(5, _busy(running))
            answers.append(_plan(fleet))
            fleet.store.collect(budget=3)
            assert _plan(fleet) == answers[-1]
    assert len({a.desired for a in answers}) >= 2


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


def _through(fleet: Fleet, seconds: int, load: Load) -> list[tuple[int, int, float]]:
    """(need, desired, hold) every 5 s."""
    out = []
    for _ in range(seconds // 5):
        fleet.run(5, load)
        result = _plan(fleet)
        out.append((result.need, result.desired, result.hold_s))
    return out


def test_a_burst_that_returns_after_its_replica_went_is_held_for_the_recurrence_hold() -> None:
    fleet = Fleet("dec", retention_seconds=1500)
    fleet.add("a", "b", "c")
    fleet.run(120, _busy(90))  # 13500 tokens/s: 3 replicas
    # a burst (21000 tokens/s: 4 replicas) for 60 s: the need is at 4 for longer than 30 s (its
    # first 25 s are the 30-s window's ramp, and the learned capacity and the 10 % tolerance
    # keep 3 for part of it)
    needs = [need for need, _, _ in _through(fleet, 60, _busy(140))]
    assert set(needs[:5]) <= {3, 4} and set(needs[5:]) == {4}
    # then the ordinary hold: 4 for 60 s after the need left 4, then 3
    quiet = _through(fleet, 120, _busy(90))
    assert [desired for _, desired, _ in quiet[:11]] == [4] * 11
    assert {desired for _, desired, _ in quiet[11:]} == {3}
    # a second burst 180 s after the first, after its replica went: a return to 4 within
    # 600 s, so 4 recurs and is held 600 s after the need was last at 4
    burst = _through(fleet, 60, _busy(140))
    assert burst[-1][:2] == (4, 4)
    after = _through(fleet, 660, _busy(90))
    assert {need for need, _, _ in after[12:]} == {3}
    assert {(desired, hold) for _, desired, hold in after[11:120]} == {(4, 600)}
    assert {(desired, hold) for _, desired, hold in after[121:]} == {(3, 60)}


def test_a_blip_shorter_than_an_slo_window_does_not_recur() -> None:
    fleet = Fleet("dec", retention_seconds=1500)
    fleet.add("a", "b", "c")
    fleet.run(120, _busy(90))
    _through(fleet, 60, _busy(140))
    _through(fleet, 120, _busy(90))
    # 25 s at 4 replicas' need (the 15-s rate window sees the rise within 5 s): not a return,
    # so only the ordinary hold follows it
    blip = [need for need, _, _ in _through(fleet, 30, _busy(140))]
    assert blip == [3, 4, 4, 4, 4, 4]
    after = _through(fleet, 120, _busy(90))
    assert {(desired, hold) for _, desired, hold in after[12:]} == {(3, 60)}


def test_a_burst_train_keeps_its_replica_through_the_next_lull() -> None:
    fleet = Fleet("dec", retention_seconds=1500)
    fleet.add("a", "b", "c")
    fleet.run(120, _busy(90))  # 13500 tokens/s: 3 replicas
    # two bursts of 40 s (24000 tokens/s: a surge, 4 replicas) with a 30-s lull between them;
    # over the first burst's first 15 s the arrivals also count the 210 requests that joined
    # at once (the rate window's change of those in the system): 5
    first = _through(fleet, 40, _busy(160))
    assert [need for need, _, _ in first] == [5, 5, 5, 4, 4, 4, 4, 4]
    assert max(need for need, _, _ in _through(fleet, 30, _busy(90))) <= 3
    second = _through(fleet, 40, _busy(160))
    # the need is back at 4 at the second burst's first instant, 30 + 5 = 35 s after it was
    # last there, within the 60-s hold. But the three pods served the first burst within the
    # SLO, so 8000 tokens/s per replica is learned and the bursts' demand needs 3: the band
    # holds 4 (24000 is over 90 % of three replicas' capacity). A surge's level is what its
    # demand needs, so the train is at 3: the lull after it may be as long as the last, and 3
    # is held 60 + 35 s after the need was last there instead of 60 s
    assert [need for need, _, _ in second] == [4] * 8
    after = _through(fleet, 150, _busy(90))
    assert {need for need, _, _ in after} <= {1, 2, 3}
    assert [(desired, hold) for _, desired, hold in after[:19]] == [(4, 60)] * 11 + [(3, 95)] * 8
    assert {(desired, hold) for _, desired, hold in after[19:]} == {(2, 60)}


def _recurring(needs: list[tuple[int, int]]) -> list[int]:
    """Feed (seconds, need) runs on a 5-s grid to a Recurrence (60-s hold, 600-s recurrence
    hold, 30-s sustain); the level held over an ordinary floor of 3 at each instant."""
    recurrence = Recurrence(60_000, 600_000, 30_000)
    out, t = [], 0
    for seconds, need in needs:
        for _ in range(seconds // 5):
            recurrence.update(t, need)
            out.append(recurrence.level(t, 3)[0])
            t += 5_000
    return out


def test_a_level_recurs_only_after_it_was_released_in_between() -> None:
    # at 4 for 100 s, below it for 120 s (longer than the 60-s hold: released), back for 60 s
    assert _recurring([(100, 4), (120, 3), (60, 4)])[-1] == 4
    # the same span below 4, but with the need back at 4 every 15 s (never 30 s in a row):
    # the answer never let 4 go, so coming back to it for good is not a return
    wobble = [(15, 3), (10, 4)] * 6
    assert set(_recurring([(100, 4), *wobble, (60, 4)])) == {3}


def test_a_stretch_cut_by_the_retention_is_not_a_return() -> None:
    # the planner's needs begin where the store's retention cut the history off: the need at 4
    # from the first instant had been there since an unknown time, so coming back to 4 after
    # a release is the first return seen, not the second (the same needs from the start of
    # the history recur: test_a_level_recurs_only_after_it_was_released_in_between)
    recurrence = Recurrence(60_000, 600_000, 30_000, truncated=True)
    t = 0
    for seconds, need in [(100, 4), (120, 3), (60, 4)]:
        for _ in range(seconds // 5):
            recurrence.update(t, need)
            t += 5_000
    assert recurrence.level(t - 5_000, 3) == (3, 0)
    # a second return within 600 s recurs
    for seconds, need in [(120, 3), (60, 4)]:
        for _ in range(seconds // 5):
            recurrence.update(t, need)
            t += 5_000
    assert recurrence.level(t - 5_000, 3) == (4, 600_000)
    # a stretch that begins within the first hold (at 30 s) is no return either: the forward
    # pass has no answers before its first instant, and its first needs may be its own
    late = Recurrence(60_000, 600_000, 30_000, truncated=True)
    t = 0
    for seconds, need in [(30, 3), (70, 4), (120, 3), (60, 4)]:
        for _ in range(seconds // 5):
            late.update(t, need)
            t += 5_000
    assert late.level(t - 5_000, 3) == (3, 0)


def test_replicas_released_are_not_pending() -> None:
    fleet = Fleet("dec")
    fleet.add("a", "b", "c")
    fleet.run(120, {"a": _busy(80), "b": _busy(90), "c": _busy(90)})
    assert _plan(fleet).desired == 3
    # b and c go idle: after the 60-s hold the answer falls to 1 and the HPA removes them
    idle = {"a": _busy(80), "b": _busy(0), "c": _busy(0)}
    answers: list[int] = []
    while not answers or answers[-1] > 1:
        fleet.run(5, idle)
        answers.append(_plan(fleet).desired)
    fleet.remove("b")
    fleet.remove("c")
    # within a start-up (60 s) of the fall, 3 is still the highest answer, but its replicas
    # were released, not asked for: nothing is pending. (Counted as pending, they made the
    # band keep 3 in view, and any demand over 90 % of one replica asked for a second again.)
    for _ in range(6):
        fleet.run(5, _busy(80))
        result = _plan(fleet)
        assert (result.asked, result.pending, result.desired) == (1, 0, 1), result.line()


def _held(runs: list[tuple[int, int, bool]]) -> list[tuple[int, int]]:
    """Feed (seconds, need, surging) runs on a 5-s grid to a Recurrence (60-s hold, 600-s
    recurrence hold, 30-s sustain); (level, hold in s) over a floor of 3 at each instant."""
    recurrence = Recurrence(60_000, 600_000, 30_000)
    out, t = [], 0
    for seconds, need, surging in runs:
        for _ in range(seconds // 5):
            recurrence.update(t, need, surging)
            level, hold_ms = recurrence.level(t, 3)
            out.append((level, hold_ms // 1000))
            t += 5_000
    return out


def test_a_burst_train_is_held_for_the_hold_plus_its_lull() -> None:
    # a surge to 4 at 100-115 s (20 s: shorter than the sustain, so no return), a lull of 30 s,
    # a second surge at 150-190 s: it came back 150 - 115 = 35 s after the need was last at 4,
    # within the 60-s hold, so 4 is held 60 + 35 = 95 s after 190 s, i.e. through 285 s
    needs = [(100, 3, False), (20, 4, True), (30, 3, False), (45, 4, True), (120, 3, False)]
    after = _held(needs)[-24:]  # 195 s to 310 s
    assert after[:19] == [(4, 95)] * 19
    assert after[19:] == [(3, 0)] * 5
    # the same needs without a surge (a wobble at a level boundary): the ordinary hold only
    calm = [(seconds, need, False) for seconds, need, _ in needs]
    assert set(_held(calm)[-24:]) == {(3, 0)}
    # a lull longer than the hold (70 s) released the level: no train either
    apart = [(100, 3, False), (20, 4, True), (65, 3, False), (45, 4, True), (120, 3, False)]
    assert set(_held(apart)[-24:]) == {(3, 0)}


def test_a_recurring_levels_hold_is_renewed_by_a_surge_that_stays_at_it_one_rate_window() -> None:
    # on a 5-s grid (index = seconds / 5): 4 recurs from 310 s, reached at 100 s and, after a
    # release, again at 280 s (two returns within 600 s); the need was last at it at 335 s, so it
    # is held until 935 s
    recurs = [(100, 3, False), (60, 4, True), (120, 3, False), (60, 4, True)]
    lull = (300, 3, False)  # 340-635 s
    after = (600, 3, False)
    plain = _held([*recurs, lull, after])
    assert plain[62] == (4, 600) and plain[187] == (4, 600) and set(plain[188:]) == {(3, 0)}
    # a 20-s burst at 640-655 s surged at 4 for 15 s (one rate window), shorter than the 30-s
    # sustain, so no return; but it was a burst at the level, so the hold runs from 655 s: 1 255 s
    touched = _held([*recurs, lull, (20, 4, True), *[after] * 2])
    assert touched[251] == (4, 600) and set(touched[252:]) == {(3, 0)}  # 1 255 s, 1 260 s
    # 10 s at 4 is within the rate's noise, and a need at 4 without a surge of the demand is a
    # wobble at a level boundary: neither renews the hold
    for blip in ((10, 4, True), (20, 4, False)):
        held = _held([*recurs, lull, blip, *[after] * 2])
        assert held[187] == (4, 600) and set(held[188:]) == {(3, 0)}, blip


def test_the_replayed_history_begins_where_every_window_is_full_and_moves_two_minutes_at_a_time() -> None:
    tuning = Tuning()
    retention = 1_500_000
    now = 1_800_000_007_000
    firsts = {int(grid(now + 5_000 * k, retention, tuning)[0]) for k in range(24)}
    # the calls of two minutes replay the same history: one first instant, a multiple of
    # 120 s, at which the mean lengths' 300-s window is inside the retention
    assert len(firsts) in (1, 2)
    for first in firsts:
        assert first % tuning.origin_ms == 0
    times = grid(now, retention, tuning)
    assert times[0] >= now - retention + tuning.long_window_ms
    assert times[0] - (now - retention + tuning.long_window_ms) < tuning.origin_ms
    assert times[-1] == now and set(times[1:-1] % tuning.grid_ms) == {0}
    # 24 calls 5 s apart span 115 s: the first instant moved at most once, by 120 s
    if len(firsts) == 2:
        assert max(firsts) - min(firsts) == tuning.origin_ms
    # a retention too short for the mean lengths' window (the service's default 120 s) keeps
    # the instants since the rate and latency windows are full, aligned to the grid
    short = grid(now, 120_000, tuning)
    assert short[0] == -(-(now - 120_000 + tuning.latency_window_ms) // tuning.grid_ms) * tuning.grid_ms


@pytest.mark.parametrize("value", [math.inf, -math.inf, 1e308, -1e308])
@pytest.mark.parametrize("field", ["running", "waiting", "kv", "generation_tokens", "requests", "itl"])
def test_values_past_2_53_a_pod_exports_are_skipped(field: str, value: float) -> None:
    # +Inf in a gauge, or 1e308 in a counter, overflowed the planner's sums: OverflowError out
    # of math.ceil, and numpy's overflow and invalid-value warnings on the way
    fleet = Fleet("dec")
    fleet.add("a", "b")
    fleet.run(120, _busy(90))
    bad = _busy(90)
    setattr(bad, field, value)
    fleet.run(10, bad)
    fleet.run(20, _busy(90))
    result = _plan(fleet)
    assert 1 <= result.desired <= 4


@pytest.mark.parametrize("role", ["prefill", "decode"])
def test_an_absurd_queue_asks_for_at_most_max_replicas(role: str) -> None:
    # every level up to the need is tracked for its recurrence: a pod exporting 1e15 waiting
    # requests (finite, under 2**53) made that a loop of 1e13 levels and a MemoryError
    fleet = Fleet("dec")
    fleet.add("a", "b")
    fleet.run(120, _busy(90))
    fleet.run(10, replace(_busy(90), waiting=1e15, prompt_tokens=1000.0))
    spec = parse_spec(_META | {"planner": role, "deployment": "dec", "profile": PROFILE})
    result = plan(fleet.store, spec, fleet.now_ms)
    assert result is not None and result.desired == Tuning().max_replicas
