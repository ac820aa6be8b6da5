"""The planner's decision: desired replicas of one role, a pure function of the stored series,
the spec and the clock.

KEDA calls the planner at irregular times, and several scaler replicas may each see some of the
calls, so the planner remembers nothing between calls. Whatever depends on history is recomputed
from the stored series by evaluating the state-free recommendation on a **grid** of past instants
aligned to absolute time (multiples of :attr:`Tuning.grid_ms`, plus "now"):

1. **signals** (:mod:`~scaler.planner.signals`) and **demand/capacity**
   (:mod:`~scaler.planner.capacity`) at every grid instant of the retention window;
2. **forecast** (:mod:`~scaler.planner.forecast`) of the demand one start-up interval ahead,
   from its level: the short window's demand, capped by its mean over :attr:`Tuning.settle_ms`
   unless it surges above that mean (a step shows at once, the window's noise does not set
   the level);
3. a forward pass over the grid, oldest first: the **need** ``ceil(forecast / capacity)``;
   the replicas **asked for** (the highest answer of the last start-up interval, since the
   answer last went down: replicas released are not on their way) that do not export
   (**pending**) — while some are pending, the queue that built up is not added again
   (the pods on their way will drain it, and if they never come, e.g. held back by
   ``maxReplicaCount``, asking for more would not help either), which is what keeps the planner
   from piling on during start-up (the queue expected when they arrive is drained instead:
   prefill's after the middle of the profile's start-up range, decode's after its longest; at
   a surge, a queue expected within one second of one replica's work asks for no more than the
   need: it is the onset's);
   then the **tolerance and band**: above what runs or is pending the need applies at once —
   unless the SLO holds with no queue and the demand is within :attr:`Tuning.tolerance` of
   their capacity — and below it only when the demand would fit even at ``1 − band`` of the
   capacity (decode; prefill has no band). Where decode's batch is capped by its slots and the
   demand has not surged for :attr:`Tuning.steady_ms`, the need rises past
   :attr:`Tuning.slot_headroom` of the capacity (:func:`scale_up_share`);
4. **scale-down hysteresis in time**: the answer is the highest need of the last start-up
   (at least :attr:`Tuning.min_hold_s`); a level the need *returns* to — reached for a
   sustained while after its replicas had been released, twice within
   :attr:`Tuning.recur_hold_s` — recurs and is held ``recur_hold_s`` after the need was last
   there, or after a surge of the demand last stayed there one rate window, however short the
   burst (bursts come back sooner than a released replica could; at a surge the level counted
   is what the demand needs, not what the band held); and a level the need came
   back to, with a surge of the demand, within one hold after a surge took it there is held
   for the hold plus that lull (a burst train: the next burst is expected after a lull like
   the last; see :class:`~scaler.planner.recurrence.Recurrence`). A scale-down goes straight
   to the answer :attr:`Tuning.fuse_ms` later, not one level at a time as the hold expires on
   each level the need fell through.

Every instant beyond the data (before the retention, before the pods existed) contributes no
demand, so missing data can only lower the answer, never raise it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from scaler.planner import capacity, rolling, selection, signals
from scaler.planner.forecast import forecast, settle, trend
from scaler.planner.selection import Taken
from scaler.planner.series import BoolArray
from scaler.planner.signals import Signals
from scaler.planner.spec import PlannerSpec
from scaler.planner.steps import forward
from scaler.planner.tuning import Tuning
from scaler.series import FloatArray, Int64Array
from scaler.store import Store


@dataclass(frozen=True)
class Plan:
    """A decision and everything it was made from (the status API shows it; the log line
    summarises it)."""

    role: str
    deployment: str
    at_ms: int
    desired: int
    pods: int
    unit: str
    demand: float
    level: float
    """The demand planned for: the demand capped by its mean over a minute, unless it surges."""
    surging: bool
    backlog: float
    slope_per_s: float
    rising_s: float
    """How long the demand's rise has lasted: a trend is extrapolated once it lasted a start-up."""
    forecast: float
    horizon_s: float
    capacity: float
    scale_up_share: float
    """The share of the capacity past which the need rises (below 1 where decode's batch is
    capped by its slots and the demand is steady: :attr:`Tuning.slot_headroom`)."""
    seed: float
    learned_lower: float
    learned_upper: float
    correction: float
    latency_mean_s: float
    latency_target_s: float
    miss_share: float
    slo_held: bool
    need: int
    drain: int
    asked: int
    pending: int
    projected_backlog: float
    arrival_s: float
    """How long after an ask the queue is projected to grow: prefill's expected start-up (the
    middle of the profile's range), decode's longest."""
    hold_s: float
    recurring: bool
    fused: bool
    """The answer is under the hold's: a scale-down went straight to the answer one fuse later."""
    band: float
    history_s: float
    series: int

    def line(self) -> str:
        """One log line: inputs, learned capacity, forecast, pending replicas, result."""
        return (
            f"planner {self.role} {self.deployment}: desired={self.desired} (pods={self.pods} "
            f"pending={self.pending} asked={self.asked} need={self.need} drain={self.drain} "
            f"hold={self.hold_s:.0f}s{' recurring' if self.recurring else ''}{' fused' if self.fused else ''}) "
            f"demand={_g(self.demand)} {self.unit} (level {_g(self.level)}{', surging' if self.surging else ''}) "
            f"forecast={_g(self.forecast)} over {self.horizon_s:.0f}s "
            f"(slope {_g(self.slope_per_s)}/s, rising {self.rising_s:.0f}s) "
            f"backlog={_g(self.backlog)} (at arrival {_g(self.projected_backlog)}, {self.arrival_s:.0f}s) "
            f"capacity/replica={_g(self.capacity)} (seed {_g(self.seed)}, learned {_g(self.learned_lower)}"
            f"..{_g(self.learned_upper)}, correction {self.correction:.2f}"
            f"{f', scale-up at {_pct(self.scale_up_share)}' if self.scale_up_share < 1 else ''}) "
            f"latency mean={_g(self.latency_mean_s)}s, {_pct(self.miss_share)} over target {_g(self.latency_target_s)}s"
        )

    def explain(self) -> dict[str, object]:
        """The decision for the status API, grouped as it was made: the inputs, the learned
        capacity and its correction, the forecast, the pending replicas, the hysteresis and
        the result (JSON-ready: a figure that is not known yet is None)."""
        groups: dict[str, dict[str, object]] = {
            "result": {"desired": self.desired, "need": self.need, "drain": self.drain},
            "inputs": {
                "pods": self.pods,
                "unit": self.unit,
                "demand": self.demand,
                "backlog": self.backlog,
                "latencyMeanSeconds": self.latency_mean_s,
                "latencyTargetSeconds": self.latency_target_s,
                "missShare": self.miss_share,
                "series": self.series,
                "historySeconds": self.history_s,
            },
            "capacity": {
                "perReplica": self.capacity,
                "scaleUpShare": self.scale_up_share,
                "seed": self.seed,
                "learnedLower": self.learned_lower,
                "learnedUpper": self.learned_upper,
                "sloHeld": self.slo_held,
            },
            "correction": {"factor": self.correction},
            "forecast": {
                "level": self.level,
                "surging": self.surging,
                "demand": self.forecast,
                "slopePerSecond": self.slope_per_s,
                "risingSeconds": self.rising_s,
                "horizonSeconds": self.horizon_s,
            },
            "pending": {
                "asked": self.asked,
                "pending": self.pending,
                "projectedBacklog": self.projected_backlog,
                "arrivalSeconds": self.arrival_s,
            },
            "hysteresis": {
                "holdSeconds": self.hold_s,
                "recurring": self.recurring,
                "fused": self.fused,
                "band": self.band,
            },
        }
        out: dict[str, object] = {name: {k: _json(v) for k, v in group.items()} for name, group in groups.items()}
        return out | {"role": self.role, "deployment": self.deployment, "atMs": self.at_ms}


def _json(value: object) -> object:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _g(value: float) -> str:
    return "-" if not math.isfinite(value) else f"{value:.4g}"


def _pct(value: float) -> str:
    return "-" if not math.isfinite(value) else f"{value:.0%}"


def grid(now_ms: int, retention_ms: int, tuning: Tuning) -> Int64Array:
    """Instants aligned to multiples of ``grid_ms`` inside the retention window, then ``now``.

    The forward pass replays the history from the grid's first instant, so whatever the first
    instants see must not depend on which call it is. They begin once every window the
    signals read back is full (the rates', the latencies' and, where the retention is at
    least twice as long, the mean lengths' :attr:`Tuning.long_window_ms`): a mean length over
    a window cut by the retention moved the replayed demand by a few per cent from one call
    to the next. And the first instant is aligned to multiples of :attr:`Tuning.origin_ms`
    (where that leaves four of them of history), so the calls of those two minutes replay the
    same history: with a first instant moving 5 s a call, a level recurred at one call and
    not at the next (bursty, seed 3: a decode pod asked for at 1 575 s and released at
    1 590 s; azure-mix, seed 3: prefill 4 → 2 → 3 → 2 within 30 s)."""
    step = tuning.grid_ms
    warm = max(tuning.window_ms, tuning.latency_window_ms)
    if retention_ms >= 2 * tuning.long_window_ms:
        warm = max(warm, tuning.long_window_ms)
    align = tuning.origin_ms if retention_ms - warm >= 4 * tuning.origin_ms else step
    first = -(-(now_ms - retention_ms + warm) // align) * align
    last = (now_ms // step) * step
    times = np.arange(first, last + 1, step, dtype=np.int64) if last >= first else np.empty(0, dtype=np.int64)
    if not len(times) or times[-1] != now_ms:
        times = np.append(times, np.int64(now_ms))
    return times


def scale_up_share(times: Int64Array, surging: BoolArray, slot_bound: BoolArray, tuning: Tuning) -> FloatArray:
    """Per instant, the share of the capacity past which the need rises:
    :attr:`Tuning.slot_headroom` where the batch is capped by its slots and the demand has not
    surged for :attr:`Tuning.steady_ms`, else 1."""
    recent = rolling.mean(surging.astype(np.float64), rolling.starts(times, tuning.steady_ms)) > 0
    return np.where(slot_bound & ~recent, tuning.slot_headroom, 1.0)


def history_needed_s(spec: PlannerSpec, tuning: Tuning = Tuning()) -> float:
    """The retention the planner's history needs (see :func:`grid`): the longest window the
    first instant reads back and its alignment, then the longest hold and one start-up of asks
    before it. A shorter retention still plans, on a shorter history: the recurrences and the
    holds longer than it are not seen."""
    warm_ms = max(tuning.window_ms, tuning.latency_window_ms, tuning.long_window_ms) + tuning.origin_ms
    hold_s = max(tuning.recur_hold_s, tuning.min_hold_s, spec.startup_s)
    return warm_ms / 1000 + hold_s + spec.startup_s


@dataclass(frozen=True)
class Snapshot:
    """What one decision reads, taken from the store on the event loop (:func:`take`); the
    decision itself (:func:`decide`) is a pure function of it and may run in another thread."""

    spec: PlannerSpec
    now_ms: int
    retention_ms: int
    taken: Taken


def take(store: Store, spec: PlannerSpec, now_ms: int) -> Snapshot:
    """The series ``spec`` reads, selected and copied at ``now_ms``."""
    taken = selection.take(
        store,
        spec.deployment,
        store.cutoff_ms(now_ms),
        ttft_limits=(spec.ttft_budget_s,),
        itl_limits=(spec.itl_target_s,),
        queue_limits=(spec.ttft_budget_s,),
    )
    return Snapshot(spec, now_ms, store.retention_ms, taken)


def observe(
    store: Store, spec: PlannerSpec, now_ms: int, tuning: Tuning = Tuning()
) -> tuple[Int64Array, Signals, capacity.RoleView]:
    """The grid, the signals on it and the role's demand and capacity there."""
    return _observe(take(store, spec, now_ms), tuning)


def _observe(snapshot: Snapshot, tuning: Tuning) -> tuple[Int64Array, Signals, capacity.RoleView]:
    spec = snapshot.spec
    times = grid(snapshot.now_ms, snapshot.retention_ms, tuning)
    seen = signals.compute(snapshot.taken, times, tuning.window_ms, tuning.latency_window_ms, tuning.long_window_ms)
    view = capacity.prefill(seen, spec) if spec.role == "prefill" else capacity.decode(seen, spec)
    return times, seen, view


def plan(store: Store, spec: PlannerSpec, now_ms: int, tuning: Tuning = Tuning()) -> Plan | None:
    """The desired replicas of ``spec.role`` at ``now_ms``; None when no pod of the deployment
    exports now (the caller answers "not found", as for any trigger without data)."""
    return decide(take(store, spec, now_ms), tuning)


def decide(snapshot: Snapshot, tuning: Tuning = Tuning()) -> Plan | None:
    """:func:`plan` from a :class:`Snapshot` (pure: safe in a worker thread)."""
    spec, now_ms = snapshot.spec, snapshot.now_ms
    times, seen, view = _observe(snapshot, tuning)
    if seen.pods[-1] <= 0:
        return None
    horizon = spec.startup_s + tuning.grid_ms / 1000
    level, surging = settle(times, view.demand, tuning.settle_ms)
    # the trend of the demand itself: the level dips below it for a while after a surge (the
    # mean catches up), which would read as a rise; extrapolated over a start-up once it lasted one
    slope, rising = trend(times, view.demand, tuning.trend_segment_ms, int(horizon * 1000))
    expected = forecast(level, slope, horizon)
    hold_s = max(spec.startup_s, tuning.min_hold_s)
    arrival_s = spec.startup_s
    if spec.role == "prefill":
        tuning = replace(tuning, band=tuning.prefill_band)
        arrival_s = spec.arrival_s
    up_share = scale_up_share(times, surging, view.slot_bound, tuning)
    steps = forward(times, seen.pods, expected, surging, view, spec.startup_s, hold_s, tuning, arrival_s, up_share)
    recurring = bool(steps.recurring[len(times) - 1])
    last = len(times) - 1
    return Plan(
        role=spec.role,
        deployment=spec.deployment,
        at_ms=now_ms,
        desired=int(steps.answer[last]),
        pods=int(seen.pods[last]),
        unit=view.unit,
        demand=float(view.demand[last]),
        level=float(level[last]),
        surging=bool(surging[last]),
        backlog=float(view.backlog[last]),
        slope_per_s=float(slope[last]),
        rising_s=float(rising[last]),
        forecast=float(expected[last]),
        horizon_s=horizon,
        capacity=float(view.capacity[last]),
        scale_up_share=float(up_share[last]),
        seed=float(view.seed[last]),
        learned_lower=float(view.lower[last]),
        learned_upper=float(view.upper[last]),
        correction=float(view.correction[last]),
        latency_mean_s=float(view.latency_mean[last]),
        latency_target_s=spec.ttft_budget_s if spec.role == "prefill" else spec.itl_target_s,
        miss_share=float(view.miss_share[last]),
        slo_held=bool(view.held[last]),
        need=int(steps.need[last]),
        asked=int(steps.asked[last]),
        pending=int(steps.pending[last]),
        drain=int(steps.drain[last]),
        projected_backlog=float(steps.projected[last]),
        arrival_s=arrival_s,
        hold_s=float(steps.hold_ms[last]) / 1000 if recurring else hold_s,
        recurring=recurring,
        fused=bool(steps.fused[last]),
        band=tuning.band,
        history_s=float(times[-1] - times[0]) / 1000,
        series=seen.series,
    )
