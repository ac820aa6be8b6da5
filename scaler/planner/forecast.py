"""Demand forecast over the next start-up interval: the current level plus its rising trend.

Dynamo's SLA planner offers constant, ARIMA and Prophet predictors over its adjustment
interval; with at most a few minutes of history (the store's retention) a seasonal model has
nothing to fit, so this is the constant predictor plus a least-squares trend (Holt's linear
method without smoothing state, which a state-free planner cannot keep). Only a rising trend
is extrapolated: a replica started for a rise that does not come is held at most one
hysteresis window, while one missing for a rise that does come misses the SLO for a whole
start-up interval. A falling trend is left to the hysteresis.
"""

from __future__ import annotations

import numpy as np

from scaler.planner import rolling
from scaler.series import FloatArray, Int64Array


def trend(times_ms: Int64Array, values: FloatArray, span_ms: int) -> FloatArray:
    """Per instant ``i``, the least-squares slope (units per second) of ``values`` over the
    instants in ``(t_i − span, t_i]``; 0 where fewer than three finite points exist."""
    return rolling.slope(times_ms, values, rolling.starts(times_ms, span_ms))


def forecast(level: FloatArray, slope: FloatArray, horizon_s: float, growth_cap: float = 2.0) -> FloatArray:
    """The demand expected one ``horizon_s`` ahead: ``level + max(0, slope) × horizon``, at
    most ``growth_cap`` × the level (a trend fitted on a minute of data is not allowed to
    promise more than that over one start-up interval)."""
    rise = np.maximum(slope, 0.0) * horizon_s
    return level + np.minimum(rise, np.maximum(level, 0.0) * (growth_cap - 1.0))
