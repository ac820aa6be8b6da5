"""The capacity a role's replicas showed: bounds learned from the load per replica in windows
that held or kept missing the SLO (see :mod:`scaler.planner.capacity`, which combines them
with the profile's seed)."""

from __future__ import annotations

import math

import numpy as np

from scaler.planner import rolling
from scaler.planner.series import BoolArray
from scaler.series import FloatArray, Int64Array

MISS_PERSISTS = 3
"""Consecutive missed instants (15 s on a 5-s grid) before a miss lowers the upper bound."""
EVIDENCE_MS = 300_000
"""How long a learned bound or a measured correction stands without being seen again: the
workload it was learned on (its prompt lengths, its cache hits) may have gone. A lower bound
learned where the workload's shape is known lasts instead while the shape does (see
:data:`SHAPE_DRIFT`)."""
SHAPE_DRIFT = 0.2
"""How far the workload's shape (prefill: the profile's throughput for the uncached prompt
length; decode: the mean context) may move from where a lower bound was learned before the
bound is forgotten. A lower bound is not forgotten by age alone: the pods' peak load goes
unrepeated once more replicas share it, and forgotten, it would drop the capacity to the seed
and ask for replicas that the pods showed they do not need; an over-estimate shows as misses,
which lower it. An upper bound still expires by age: an under-estimate would show as nothing
but idle replicas."""


def learn(
    per_pod: FloatArray,
    held: BoolArray,
    missed: BoolArray,
    times: Int64Array,
    window_ms: int,
    shape: FloatArray | None = None,
) -> tuple[FloatArray, FloatArray]:
    """The learned lower and upper bounds at each instant, oldest evidence first.

    A window that held the SLO raises the lower bound to its per-replica load; a miss that
    persists (:data:`MISS_PERSISTS` instants) lowers the upper bound to the highest
    per-replica load of the latency window that missed: the latencies over target happened
    at some load of that window, not necessarily at the last instant's (a queue drained
    through the window leaves its latencies in it while the load falls). When a new
    piece of evidence contradicts the other bound, the newer one wins and the older bound is
    dropped: the workload changed (its prompt lengths, its cache hits) and with it the
    throughput a replica manages, or the older miss had another cause. A lower bound is
    forgotten for the same reason once the workload's ``shape`` moved by :data:`SHAPE_DRIFT`
    since it was learned (or, where the shape is unknown, after :data:`EVIDENCE_MS`); an upper
    bound not seen again for :data:`EVIDENCE_MS` is forgotten."""
    known = np.isfinite(per_pod)
    peak = rolling.maximum(np.where(known, per_pod, 0.0), rolling.starts(times, window_ms))
    peak = np.where(known, peak, np.nan)
    persists = missed.copy()
    for k in range(1, MISS_PERSISTS):
        persists[k:] &= missed[:-k]
        persists[:k] = False
    lower = np.zeros(len(per_pod))
    upper = np.full(len(per_pod), np.inf)
    shapes = np.full(len(per_pod), np.nan) if shape is None else shape
    low, high = 0.0, math.inf
    low_at = high_at = 0
    low_shape = math.nan
    for k, load in enumerate(per_pod):
        t = int(times[k])
        if low > 0 and _forgotten(t - low_at, low_shape, float(shapes[k])):
            low = 0.0
        if math.isfinite(high) and t - high_at > EVIDENCE_MS:
            high = math.inf
        if held[k] and load >= low:
            low, low_at, low_shape = float(load), t, float(shapes[k])
            if low >= high:
                high = math.inf
        elif persists[k] and peak[k] <= high:
            high, high_at = float(peak[k]), t
            if high <= low:
                low = 0.0
        lower[k], upper[k] = low, high
    return lower, upper


def _forgotten(age_ms: int, shape_then: float, shape_now: float) -> bool:
    """Whether a lower bound learned ``age_ms`` ago at workload shape ``shape_then`` is forgotten."""
    if math.isfinite(shape_then) and math.isfinite(shape_now) and shape_then > 0:
        return abs(shape_now / shape_then - 1) > SHAPE_DRIFT
    return age_ms > EVIDENCE_MS


def combine(seed: FloatArray, lower: FloatArray, upper: FloatArray) -> FloatArray:
    """The seed, raised to the learned lower bound and capped by the learned upper bound."""
    with np.errstate(invalid="ignore"):
        raised = np.where(np.isnan(seed), np.where(lower > 0, lower, np.nan), np.fmax(seed, lower))
        capped = np.where(np.isfinite(upper), np.fmin(raised, upper), raised)
    return np.asarray(np.where(np.isnan(capped) & np.isfinite(upper), upper, capped), dtype=np.float64)
