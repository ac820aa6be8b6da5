"""The forward pass on a hand-built role view: the queue projected to the replicas' arrival, and
scale-downs straight to the answer one fuse later."""

from __future__ import annotations

import numpy as np
import pytest

from scaler.planner import Tuning
from scaler.planner.capacity import RoleView
from scaler.planner.plan import scale_up_share
from scaler.planner.steps import Steps, forward


def _view(demand: list[float], backlog: list[float], growth: float, slo_held: bool) -> RoleView:
    """A role view whose replica takes 10 000 tokens/s, the queue growing ``growth`` tokens a
    second; ``slo_held``: the SLO holds (latency 0.1 s, no miss), or it misses (2 s, every
    request over target). What was served is the demand (the forward pass does not read it)."""
    n = len(demand)
    full = np.full(n, 10_000.0)
    return RoleView(
        unit="tokens/s",
        demand=np.array(demand),
        served=np.array(demand),
        backlog=np.array(backlog),
        growth=np.full(n, growth),
        seed=full,
        lower=np.zeros(n),
        upper=np.full(n, np.inf),
        capacity=full,
        correction=np.ones(n),
        latency_mean=np.full(n, 0.1 if slo_held else 2.0),
        miss_share=np.full(n, 0.0 if slo_held else 1.0),
        held=np.full(n, slo_held),
        missed=np.full(n, not slo_held),
        busy=np.ones(n, dtype=np.bool_),
        slot_bound=np.zeros(n, dtype=np.bool_),
    )


def _run(arrival_s: float) -> Steps:
    """Three instants 5 s apart at two pods: a replica takes 10 000 tokens/s, the demand is
    21 000, and the queue, 100 000 tokens at first, grows 20 000 a second."""
    times = np.arange(3, dtype=np.int64) * 5_000
    view = _view([21_000.0] * 3, list(100_000 + 20_000 * times / 1000), 20_000.0, slo_held=False)
    pods = np.full(3, 2.0)
    return forward(times, pods, view.demand, np.zeros(3, dtype=np.bool_), view, 90.0, 90.0, Tuning(), arrival_s)


def test_the_queue_grows_until_the_replicas_asked_for_arrive() -> None:
    longest = _run(90.0)
    # asked at 0 s (21 000 needs 3), the replicas are due 90 s later: 100 000 + 90 × 20 000
    # tokens to drain within 60 s beside the demand, (21 000 + 1 900 000 / 60) / 10 000 = 5.3 → 6
    assert longest.projected[0] == pytest.approx(1_900_000)
    assert (longest.need[0], longest.drain[0], longest.answer[0]) == (3, 6, 6)
    # 5 and 10 s later the queue is 100 000 and 200 000 tokens longer, and the replicas 5 and
    # 10 s nearer: the same queue is expected at their arrival, and nothing more is asked for
    assert list(longest.projected) == pytest.approx([1_900_000] * 3)
    assert list(longest.answer) == [6, 6, 6] and list(longest.pending) == [0, 4, 4]


def test_an_expected_start_up_shorter_than_the_longest_projects_a_shorter_queue() -> None:
    expected = _run(60.0)
    # the same, due 60 s after the ask: 100 000 + 60 × 20 000 = 1 300 000 tokens,
    # (21 000 + 1 300 000 / 60) / 10 000 = 4.3 → 5
    assert list(expected.projected) == pytest.approx([1_300_000] * 3)
    assert list(expected.answer) == [5, 5, 5]


def _falling(demand: list[float]) -> Steps:
    """Instants 5 s apart at four pods that meet their SLO with no queue; a replica takes
    10 000 tokens/s, no hysteresis band, a 60-s start-up and hold."""
    n = len(demand)
    times = np.arange(n, dtype=np.int64) * 5_000
    view = _view(demand, [0.0] * n, 0.0, slo_held=True)
    pods = np.full(n, 4.0)
    surging = np.zeros(n, dtype=np.bool_)
    return forward(times, pods, view.demand, surging, view, 60.0, 60.0, Tuning(band=0.0), 60.0)


def test_a_scale_down_goes_straight_to_the_answer_one_fuse_later() -> None:
    # the need falls from 4 through 3 (55 s) to 2 (from 60 s on): the 60-s hold expires on 4
    # at 110 s and on 3 at 115 s, and the answer goes from 4 to 2 at 110 s, one scale event
    steps = _falling([40_000.0] * 11 + [30_000.0] + [20_000.0] * 28)
    assert list(steps.need[10:13]) == [4, 3, 2]
    assert list(steps.answer[:22]) == [4] * 22
    assert list(steps.answer[22:]) == [2] * 18
    # the decision says so while the hold alone would still have been 3 (110 s only)
    assert [bool(x) for x in steps.fused[20:25]] == [False, False, True, False, False]


def test_a_need_that_rises_again_within_the_fuse_is_asked_for_and_held() -> None:
    # the same fall, then the demand needs 3 again at 120 and 125 s only: the answer fused
    # down to 2 at 110 s does not keep it from 3 (the fuse keeps away only the levels it went
    # past), and the 3 is held like any need, not dropped back to the fused 2 within the fuse
    steps = _falling([40_000.0] * 11 + [30_000.0] + [20_000.0] * 12 + [30_000.0] * 2 + [20_000.0] * 14)
    assert list(steps.need[23:27]) == [2, 3, 3, 2]
    assert list(steps.answer[21:]) == [4, 2, 2] + [3] * 13 + [2] * 3


def _onset(backlog: float, surging: bool) -> Steps:
    """One instant at two pods that meet their SLO: the demand, 19 950 tokens/s, needs 1.995
    replicas of 10 000 tokens/s, and the queue grows 50 tokens a second for the 60 s until a
    replica asked for would arrive."""
    view = _view([19_950.0], [backlog], 50.0, slo_held=True)
    times, pods = np.zeros(1, dtype=np.int64), np.full(1, 2.0)
    return forward(times, pods, view.demand, np.full(1, surging), view, 60.0, 60.0, Tuning(), 60.0)


def test_a_surge_drains_no_more_than_it_needs_while_its_queue_is_within_a_second_of_work() -> None:
    # a 3 000-token queue is 6 000 tokens when a replica would arrive: (19 950 + 6 000 / 60) /
    # 10 000 = 2.005 replicas drain it within 60 s, but at a surge that is the onset's queue
    # (within one second of one replica's work) and the need, 2, is what is asked for
    onset = _onset(3_000.0, surging=True)
    assert (onset.need[0], onset.drain[0]) == (2, 2)
    # off a surge the queue is drained as ever (a ramp's first queue is its early warning)
    assert _onset(3_000.0, surging=False).drain[0] == 3
    # and a surge's queue of more than a second of one replica's work is drained
    assert _onset(12_000.0, surging=True).drain[0] == 3


def test_a_burst_recurs_at_the_level_its_demand_needs_not_the_band_held() -> None:
    # three pods run throughout; bursts of 45 s (19 000 tokens/s: 1.9 replicas, which the 10 %
    # band holds at the three that run) surge at 0, 300 and 600 s, in lulls of 5 000 tokens/s
    n = 300
    times = np.arange(n, dtype=np.int64) * 5_000
    burst = (times % 300_000 < 45_000) & (times < 650_000)
    demand = np.where(burst, 19_000.0, 5_000.0)
    view = _view(list(demand), [0.0] * n, 0.0, slo_held=True)
    steps = forward(times, np.full(n, 3.0), view.demand, burst, view, 60.0, 60.0, Tuning(), 60.0)
    assert set(steps.need[burst]) == {3} and set(steps.need[~burst]) == {1}
    # the second and third bursts are returns (the first began with the history), so the
    # level recurs and is held 600 s after the need was last at it (640 s): at the two
    # replicas the bursts' demand needs, not the three the band held
    at = {int(t) // 1000: int(a) for t, a in zip(times, steps.answer, strict=True)}
    assert at[900] == 2 and at[1235] == 2 and bool(steps.recurring[180])
    assert at[1245] == 1


def _near_capacity(demand: float, pods: float, share: float) -> Steps:
    """One instant at ``pods`` pods that miss their SLO with no queue (not calm: no scale-up
    tolerance); a replica takes 10 000 tokens/s, and the need rises past ``share`` of that."""
    view = _view([demand], [0.0], 0.0, slo_held=False)
    times, running = np.zeros(1, dtype=np.int64), np.full(1, pods)
    surging, up_share = np.zeros(1, dtype=np.bool_), np.full(1, share)
    return forward(times, running, view.demand, surging, view, 60.0, 60.0, Tuning(), 60.0, up_share)


def test_a_scale_up_share_under_one_asks_for_a_replica_before_the_capacity_and_releases_it_as_before() -> None:
    # 9 500 tokens/s on one replica of 10 000: within its capacity, past 92 % of it (9 200)
    assert _near_capacity(9_500.0, 1.0, 1.0).need[0] == 1
    assert _near_capacity(9_500.0, 1.0, 0.92).need[0] == 2
    # a release still waits until the demand fits at 90 % of the whole capacity: 8 500 fits into
    # one replica at 9 000, not at 90 % of the 9 200 (8 280), and 9 100 fits in neither
    assert _near_capacity(8_500.0, 2.0, 0.92).need[0] == 1
    assert _near_capacity(9_100.0, 2.0, 0.92).need[0] == 2


def test_the_scale_up_share_applies_where_the_slots_cap_the_batch_and_no_surge_came_for_two_minutes() -> None:
    times = np.arange(61, dtype=np.int64) * 5_000  # 0 to 300 s
    surging = times == 100_000
    slot_bound = times != 250_000
    shares = scale_up_share(times, surging, slot_bound, Tuning())
    share = dict(zip((int(t) // 1000 for t in times), shares, strict=True))
    # before the surge, and from 120 s after it on, but for the instant whose batch the slots
    # do not cap
    assert share[95] == share[220] == share[300] == pytest.approx(0.92)
    assert share[100] == share[215] == share[250] == 1.0
