"""The planner's fixed parameters (the README's "The SLO planner" documents each)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Tuning:
    """The planner's fixed parameters (documented in the README)."""

    grid_ms: int = 5_000
    """Spacing of the instants the recommendation is evaluated at."""
    origin_ms: int = 120_000
    """The history the planner replays begins at a multiple of this (a multiple of
    ``grid_ms``): the calls within it replay the same history (see :func:`~scaler.planner.plan.grid`)."""
    window_ms: int = 15_000
    """Window of the rates (the demand): short, so a step shows within one HPA sync."""
    latency_window_ms: int = 30_000
    """Window of the latency distributions (the SLO is judged over 30-s windows too)."""
    long_window_ms: int = 300_000
    """Window of the mean prompt and output lengths (stable figures, noisy over short windows)."""
    settle_ms: int = 60_000
    """Span of the mean that settles the demand's level (see :func:`~scaler.planner.forecast.settle`)."""
    trend_segment_ms: int = 30_000
    """Length of each of the trend's three segments (see :mod:`~scaler.planner.forecast`):
    longer than the window, so that the ramp a window makes of a step lifts two at most."""
    band: float = 0.1
    """Decode's hysteresis band: scale down only when the demand fits into fewer replicas at
    90 % of their capacity."""
    slot_headroom: float = 0.92
    """Decode's scale-up point where a replica's batch is capped by its slots
    (``max_num_seqs``): the need rises once the demand passes 92 % of the modelled capacity,
    not 100 %. Near the cap a step's time grows with the batch, so the token rate saturates:
    at 92 % of it the batch fills ~60 % of the slots, at 97 % ~80 %, and the batch's random
    swings reach the cap and queue requests for a slot (TTFT misses at a load the model says
    one replica takes). Only the scale-up moves: a release still waits until the demand fits at
    ``1 − band`` of the capacity. Not while the demand surged within :attr:`steady_ms`: a
    burst's load is gone before a replica asked for it ahead of saturation would arrive."""
    steady_ms: int = 120_000
    """How long after the demand last surged :attr:`slot_headroom` applies again."""
    prefill_band: float = 0.0
    """Prefill's hysteresis band: none. A prefill replica's modelled capacity already holds the
    queueing margin of its TTFT share, and its demand sits within a few percent of a
    replica boundary for whole phases (long prompts, few replicas), where a band keeps one
    replica more than the SLO needs; the scale-up tolerance keeps it from flapping there."""
    tolerance: float = 0.1
    """Scale-up tolerance while the role holds its SLO with no queue: a demand up to 10 % above
    what the replicas running can take at the modelled capacity adds none (the HPA's own
    tolerance). The capacity is a target utilisation, not a limit, and the pods show they keep
    up; a 15-s rate's noise alone crosses it a few percent either way."""
    min_hold_s: float = 60.0
    """Shortest scale-down hold, whatever the start-up interval: a need that went away one
    rate window ago may still be a lull. The hold is otherwise one start-up: a replica released
    later than that would take no longer to come back than one asked for anew."""
    recur_hold_s: float = 600.0
    """Hold for a need that came back: a level the need returned to twice within this recurs
    (bursts, a periodic batch job) and is held this long after the need was last there (or a
    surge of the demand last stayed there one :attr:`window_ms`), since releasing it between
    bursts only buys a miss at the next one (a start-up is as long as a burst)."""
    sustain_ms: int = 30_000
    """How long the need must stay at a level for a return to it to count (a burst, not a blip
    of the rates): one SLO window."""
    fuse_ms: int = 30_000
    """A scale-down goes straight to the answer this much later (if the need does not rise in
    between), not level by level as the hold expires on each level the need fell through: one
    scale event, not one per level. One SLO window."""
    max_replicas: int = 1_000
    """The most replicas of a role the planner asks for: a demand beyond that many replicas'
    capacity is counted as that many. Real fleets stay far below it (the HPA's
    ``maxReplicaCount`` caps the answer anyway); it bounds what a pod exporting an absurd value
    (``vllm:num_requests_waiting`` = 1e15) can make the planner compute: every level up to the
    need is tracked for its recurrence."""
    drain_s: float = 60.0
    """A queue expected when the replicas asked for arrive is asked to drain within this: the
    SLO is judged per 30-s window."""
