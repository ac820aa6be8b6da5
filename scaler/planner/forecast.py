"""Demand forecast over the next start-up interval: the current level plus its rising trend.

Dynamo's SLA planner offers constant, ARIMA and Prophet predictors over its adjustment
interval; with at most a few minutes of history (the store's retention) a seasonal model has
nothing to fit, so this is the constant predictor plus a least-squares trend (Holt's linear
method without smoothing state, which a state-free planner cannot keep). Only a rising trend
is extrapolated: a replica started for a rise that does not come is held at most one
hysteresis window, while one missing for a rise that does come misses the SLO for a whole
start-up interval. A falling trend is left to the hysteresis.

A rise must also be *steady*: the span is cut into :data:`SEGMENTS` consecutive segments, each
as long as the measurement window, whose least-squares slopes must all agree within a factor of
two (the smallest is used). Rates measured over a window turn a step into a ramp as long as the
window; extrapolating that ramp would ask for the step a second time. Such a ramp touches at
most two segments, so the third one stays flat; a real ramp rises alike in all three.
"""

from __future__ import annotations

import numpy as np

from scaler.planner import rolling
from scaler.series import FloatArray, Int64Array

STEADY = 0.5
"""The segments' slopes must agree within this ratio for the rise to count as a trend."""
SEGMENTS = 3


def trend(times_ms: Int64Array, values: FloatArray, segment_ms: int) -> FloatArray:
    """Per instant ``i``, the steady slope (units per second) of ``values`` over the
    :data:`SEGMENTS` segments of ``segment_ms`` before ``t_i``: the smallest of their
    least-squares slopes when it is at least :data:`STEADY` × the largest, else 0 (also when a
    segment holds fewer than three points)."""
    slopes = rolling.slope(times_ms, values, rolling.starts(times_ms, segment_ms))
    low, high = slopes.copy(), slopes.copy()
    for k in range(1, SEGMENTS):
        end = np.searchsorted(times_ms, times_ms - k * segment_ms, side="right") - 1
        earlier = np.where(end >= 0, slopes[np.maximum(end, 0)], 0.0)
        low, high = np.minimum(low, earlier), np.maximum(high, earlier)
    return np.asarray(np.where((low > 0) & (low >= STEADY * high), low, 0.0), dtype=np.float64)


def forecast(level: FloatArray, slope: FloatArray, horizon_s: float, growth_cap: float = 2.0) -> FloatArray:
    """The demand expected one ``horizon_s`` ahead: ``level + max(0, slope) × horizon``, at
    most ``growth_cap`` × the level (a trend fitted on a minute of data is not allowed to
    promise more than that over one start-up interval)."""
    rise = np.maximum(slope, 0.0) * horizon_s
    return level + np.minimum(rise, np.maximum(level, 0.0) * (growth_cap - 1.0))
