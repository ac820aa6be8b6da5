"""The forward pass over the grid: need, pending replicas, the queue expected when they arrive,
and the hysteresis in time (steps 3 and 4 of :mod:`~scaler.planner.plan`'s docstring)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from scaler.planner import capacity, rolling
from scaler.planner.recurrence import Recurrence
from scaler.planner.series import BoolArray
from scaler.planner.tuning import Tuning
from scaler.series import FloatArray, Int64Array


@dataclass(frozen=True)
class Steps:
    """The forward pass' figures at every grid instant."""

    need: Int64Array
    """Replicas the forecast demand needs, within the hysteresis band (held over the window)."""
    drain: Int64Array
    """Replicas that also drain the queue expected when asked-for replicas arrive (not held)."""
    asked: Int64Array
    pending: Int64Array
    projected: FloatArray
    """The queue (work units) expected when the replicas asked for are ready."""
    answer: Int64Array
    """What the planner answered: the highest need of the hold window, or the drain if higher."""
    recurring: BoolArray
    """The held need recurred: it was risen to twice within the recurrence hold, or it is a
    burst train's (see :class:`Recurrence`)."""
    hold_ms: Int64Array
    """Where it recurred, how long after the need was last at the level it is held."""
    fused: BoolArray
    """The answer is under the hold's because a scale-down went straight to the answer one
    fuse later (:attr:`Tuning.fuse_ms`), past levels whose hold was about to expire."""


def forward(
    times: Int64Array,
    pods: FloatArray,
    expected: FloatArray,
    surging: BoolArray,
    view: capacity.RoleView,
    startup_s: float,
    hold_s: float,
    tuning: Tuning,
    arrival_s: float,
    up_share: FloatArray | None = None,
) -> Steps:
    """Oldest first, each instant using only the answers before it.

    A replica asked for counts as pending for ``startup_s`` (the longest start-up); the queue
    is projected to grow until ``arrival_s`` after the ask. A scale-down goes straight to the
    answer :attr:`Tuning.fuse_ms` later, if the need does not rise again in between: where the
    need fell through several levels within a few seconds, the hold expires on each of them
    that far apart, and stepping through them is one scale event per level for a few seconds
    of one replica each. ``up_share`` (default 1) is the share of the capacity past which the
    need rises at each instant; a release still waits until the demand fits at ``1 − band`` of
    the whole capacity."""
    n = len(times)
    need, drain, asked, pending, answer = (np.zeros(n, dtype=np.int64) for _ in range(5))
    projected = np.zeros(n)
    recurring, fused_at = np.zeros(n, dtype=np.bool_), np.zeros(n, dtype=np.bool_)
    hold_ms = np.zeros(n, dtype=np.int64)
    ask_lo = rolling.starts(times, int(startup_s * 1000))
    hold_lo = rolling.starts(times, int(hold_s * 1000))
    # where the hold's window will begin one fuse later
    fuse_ms = tuning.fuse_ms
    hold_ahead = rolling.starts(times, max(int(hold_s * 1000) - fuse_ms, 0))
    fused, fused_until = 0, -1  # the last scale-down's answer, and what was asked for since
    # the grid begins where the store's retention cut the history off
    recur_ms = int(tuning.recur_hold_s * 1000)
    recurrence = Recurrence(int(hold_s * 1000), recur_ms, tuning.sustain_ms, truncated=True, touch_ms=tuning.window_ms)
    lowered = 0  # the last instant the answer went down: what was asked before it was released
    for k in range(n):
        running = int(pods[k])
        if k > 1 and answer[k - 1] < answer[k - 2]:
            lowered = k - 1
        lo = max(int(ask_lo[k]), lowered)
        asked[k] = int(answer[lo:k].max()) if k > lo else 0
        pending[k] = max(0, int(asked[k]) - running)
        whole = float(view.capacity[k])
        cap = whole * (1.0 if up_share is None else float(up_share[k]))
        demand = min(float(expected[k]), whole * tuning.max_replicas)
        if not (math.isfinite(cap) and cap > 0):
            # nothing known about capacity yet: hold what runs (none without work to do)
            need[k] = drain[k] = running if demand > 0 or view.busy[k] else 0
            reached = int(need[k])
        else:
            # calm: the SLO held over the latency window, with no more than a second of one
            # replica's work queued
            calm = bool(view.held[k]) and float(view.backlog[k]) <= cap and pending[k] == 0
            need[k] = banded(demand, cap, running + int(pending[k]), tuning, bool(view.busy[k]), running, calm, whole)
            reached = _reached(int(need[k]), demand, cap) if surging[k] else int(need[k])
            # the queue keeps growing as fast as it grows now, until the replicas asked for
            # arrive: ``arrival_s`` after the oldest ask still not exporting
            first = k
            while first > 0 and answer[first - 1] > running:
                first -= 1
            waited_s = (times[k] - times[first]) / 1000
            projected[k] = min(
                float(view.backlog[k]) + float(view.growth[k]) * max(arrival_s - waited_s, 0.0),
                whole * tuning.drain_s * tuning.max_replicas,
            )
            drain[k] = math.ceil((demand + projected[k] / tuning.drain_s) / cap - 1e-9) if demand > 0 else 0
            if surging[k] and projected[k] <= cap:
                # a surge's first seconds: the queue the fleet let build while its rate window
                # caught up with the step, within one second of one replica's work, is the
                # onset's, not a standing one; the need already plans for the new level
                drain[k] = min(int(drain[k]), int(need[k]))
            if waited_s > startup_s:
                # the replicas asked for are overdue (held back by maxReplicaCount, a quota, a
                # slow node): asking for more would not bring them sooner
                drain[k] = min(int(drain[k]), int(asked[k]))
        recurrence.update(int(times[k]), reached, bool(surging[k]))
        held = int(need[int(hold_lo[k]) : k + 1].max())
        level, level_hold_ms = recurrence.level(int(times[k]), held)
        if level > held:
            held, recurring[k], hold_ms[k] = level, True, level_hold_ms
        # a replica asked for to drain a queue is not cancelled while it starts: cancelled and
        # asked for again, it would start over
        now = by_hold = max(held, int(drain[lo : k + 1].max()))
        if times[k] <= fused_until:
            # the levels the last scale-down went past are not asked for again; what the need
            # or a queue asks for since is, and held
            fused = max(fused, int(need[k]), int(drain[k]))
            now = min(now, fused)
        elif k > 0 and now < answer[k - 1]:
            # the answer one fuse later if the need stays as it is: the hold's highest need, a
            # level still recurring then, and the drain asked for now (a scale-down ends the
            # window of the drains asked for before it)
            later_held = int(need[int(hold_ahead[k]) : k + 1].max())
            later_level, _ = recurrence.level(int(times[k]) + fuse_ms, later_held)
            later = max(later_held, later_level, int(drain[k]))
            if later < now:
                now, fused, fused_until = later, later, int(times[k]) + fuse_ms
        fused_at[k] = now < by_hold
        answer[k] = min(now, tuning.max_replicas)
    return Steps(need, drain, asked, pending, projected, answer, recurring, hold_ms, fused_at)


def _reached(need: int, demand: float, cap: float) -> int:
    """The level a surge of the demand reaches, at a known capacity: what the demand needs,
    not more. The band holds what runs or is pending, and at a burst's onset that is what its
    queue asked for: on bursty every burst then needed a third decode pod again (1.93 replicas'
    demand within 10 % of two), renewed that level's recurrence hold, and the lulls held three
    pods where the fixed 1P+2D fleet meets every window. Off a surge (a plateau wobbling at a
    level boundary) the banded need counts, as it is what the answer held."""
    return min(need, math.ceil(demand / cap - 1e-9)) if demand > 0 else need


def banded(
    demand: float,
    cap: float,
    keep: int,
    tuning: Tuning,
    busy: bool,
    running: int,
    calm: bool,
    whole: float | None = None,
) -> int:
    """``ceil(demand / capacity)`` above what runs or is pending (while ``calm``, only beyond
    ``1 + tolerance`` of their capacity); below it only once the demand fits even at
    ``1 − band`` of the ``whole`` capacity (default ``cap``: the scale-up point may sit under it)."""
    if demand <= 0:
        return running if busy and cap <= 0 else 0
    up = math.ceil(demand / cap - 1e-9)
    if up > keep:
        if calm and keep > 0 and demand <= keep * cap * (1 + tuning.tolerance):
            return keep
        return up
    release_cap = cap if whole is None else whole
    return min(math.ceil(demand / (release_cap * (1 - tuning.band)) - 1e-9), keep)
