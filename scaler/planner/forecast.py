"""Demand forecast over the next start-up interval: the current level plus its rising trend.

Dynamo's SLA planner offers constant, ARIMA and Prophet predictors over its adjustment
interval; with at most a few minutes of history (the store's retention) a seasonal model has
nothing to fit, so this is the constant predictor plus a least-squares trend (Holt's linear
method without smoothing state, which a state-free planner cannot keep). Only a rising trend
is extrapolated: a replica started for a rise that does not come is held at most one
hysteresis window, while one missing for a rise that does come misses the SLO for a whole
start-up interval. A falling trend is left to the hysteresis.

A rise must also be *steady*: the span is cut into :data:`SEGMENTS` consecutive segments, each
a little longer than the measurement window, whose means must rise by similar steps (within a factor of
:data:`STEADY`); the slope is then the rise of the means from the first segment to the last.
Rates measured over a window turn a step into a ramp as long as the window; extrapolating that
ramp would ask for the step a second time. Such a ramp lifts at most two segments unevenly, or,
centred in the middle one, leaves the first and the last flat inside; a real ramp lifts each by
the same step and rises inside each. Means of a segment's points are also far less noisy
than slopes fitted inside one.

And a rise must have *lasted* as long as it is extrapolated: the rise of the means from the
first segment to the last must have been positive at every instant of the last start-up
interval (``persist_ms``) before its slope is carried over the next one. A ramp a scenario
or a day is made of lasts many minutes and loses nothing; a rise of the rates' noise, or a
surge that ends, does not last a start-up (two minutes on an H100), and is no longer planned
for: it asked for a replica that was held a whole hold for a rise that had gone. Measured in
the lab (seeds 1–3): slow-ramp identical; GPU-hours −1 to −5 % elsewhere, scale events on
prefix-collapse 14.3 → 10.7. Where pods take six minutes to start (the lab's
``llama70b-tp4-h100``) the short rises no longer extrapolated had been headroom at the next
step: attainment there fell 2–6 points at 2–7 % fewer GPU-hours."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from scaler.planner import rolling
from scaler.planner.series import BoolArray
from scaler.series import FloatArray, Int64Array

SURGE = 1.3
"""The short-window demand is planned for as is once it exceeds the settled level by this
factor (about three standard deviations of a 15-s window's noise at a few hundred requests)."""
SUSTAIN_MS = 20_000
"""A rise that holds this long is taken as the demand's level (see :func:`settle`)."""
STEADY = 0.5
"""The segments' steps must agree within this ratio for the rise to count as a trend."""
SEGMENTS = 3


class Trend(NamedTuple):
    """The demand's trend at each instant (see :func:`trend`)."""

    slope: FloatArray
    """The steady slope, units per second (0 where there is none to extrapolate)."""
    rising_s: FloatArray
    """How long the rise from the first segment's mean to the last's has been positive (0 where
    it is not): what the slope waits on to last a start-up (shown with each decision)."""


def trend(times_ms: Int64Array, values: FloatArray, segment_ms: int, persist_ms: int = 0) -> Trend:
    """Per instant ``i``, the steady slope (units per second) of ``values`` over the
    :data:`SEGMENTS` segments of ``segment_ms`` before ``t_i`` (see the module docstring); 0
    unless every step between consecutive segment means is positive and at least
    :data:`STEADY` × the largest step, every segment holds three points or more, and the
    rise from the first segment's mean to the last's has been positive at every instant of the
    last ``persist_ms`` (``(t − persist, t]``, the grid reaching back that far: a rise under
    way at the grid's first instant began at an unknown time); and how long that rise has been
    positive."""
    means = rolling.mean(values, rolling.starts(times_ms, segment_ms), min_points=3)
    segments = [means]
    for k in range(1, SEGMENTS):
        end = np.searchsorted(times_ms, times_ms - k * segment_ms, side="right") - 1
        segments.append(np.where(end >= 0, means[np.maximum(end, 0)], np.nan))
    steps = [segments[k] - segments[k + 1] for k in range(SEGMENTS - 1)]
    # the newest and the oldest segment must each rise inside too: a step centred in the middle
    # segment steps the means evenly but leaves both ends flat
    low = np.minimum.reduce(steps)
    high = np.maximum.reduce(steps)
    rise = (segments[0] - segments[-1]) / ((SEGMENTS - 1) * segment_ms / 1000)
    # inside, a segment of a steady ramp rises by a whole step; a quarter of one is required
    slopes = rolling.slope(times_ms, values, rolling.starts(times_ms, segment_ms))
    oldest_end = np.searchsorted(times_ms, times_ms - (SEGMENTS - 1) * segment_ms, side="right") - 1
    oldest = np.where(oldest_end >= 0, slopes[np.maximum(oldest_end, 0)], 0.0)
    ends_rise = np.minimum(slopes, oldest) >= STEADY / 2 * np.maximum(rise, 0.0)
    # how long the rise has been positive: from the first instant of its positive run, one past
    # the last instant that was not positive
    positive = np.isfinite(rise) & (rise > 0)
    first = np.maximum.accumulate(np.where(positive, -1, np.arange(len(rise)))) + 1
    lo = rolling.starts(times_ms, persist_ms)
    lasted = positive & (first <= lo) & (lo >= 1)
    # lasted implies a finite, positive rise
    steady = lasted & (low > 0) & (low >= STEADY * high) & ends_rise
    since = (times_ms - times_ms[np.minimum(first, len(rise) - 1)]) / 1000.0
    return Trend(
        np.asarray(np.where(steady, rise, 0.0), dtype=np.float64),
        np.asarray(np.where(positive, since, 0.0), dtype=np.float64),
    )


def forecast(level: FloatArray, slope: FloatArray, horizon_s: float, growth_cap: float = 2.0) -> FloatArray:
    """The demand expected one ``horizon_s`` ahead: ``level + max(0, slope) × horizon``, at
    most ``growth_cap`` × the level (a trend fitted on a minute of data is not allowed to
    promise more than that over one start-up interval)."""
    rise = np.maximum(slope, 0.0) * horizon_s
    return level + np.minimum(rise, np.maximum(level, 0.0) * (growth_cap - 1.0))


def settle(
    times_ms: Int64Array, demand: FloatArray, span_ms: int, sustain_ms: int = SUSTAIN_MS, surge: float = SURGE
) -> tuple[FloatArray, BoolArray]:
    """The demand level to plan for, and where it surges: ``demand`` capped by the higher of its
    mean over the last ``span_ms`` and its lowest value over the last ``sustain_ms``; uncapped
    where it exceeds ``surge`` × that mean.

    A short window sees a step within one HPA sync but is noisy, and the planner holds the
    highest need of its hold window, i.e. the noise's peaks: at ±9 % per window, the highest of
    two minutes of instants runs ~18 % above the mean, a replica more than the load needs for
    most of the time. Capped by the mean over a minute, the peaks are the mean's, half as
    high. A rise that lasts lifts the cap within ``sustain_ms`` (its lowest value there rises
    with it; the mean would take a minute), a step or a burst shows at once, as a surge
    (Knative's autoscaler reads a stable and a panic window the same way), and a fall at once
    too, since the cap only ever lowers the demand."""
    stable = rolling.mean(demand, rolling.starts(times_ms, span_ms))
    lowest = -rolling.maximum(-np.nan_to_num(demand), rolling.starts(times_ms, sustain_ms))
    surging = np.asarray(np.isfinite(stable) & (demand > surge * stable), dtype=np.bool_)
    cap = np.fmax(stable, lowest)
    level = np.where(surging | ~np.isfinite(stable), demand, np.fmin(demand, cap))
    return np.asarray(level, dtype=np.float64), surging
