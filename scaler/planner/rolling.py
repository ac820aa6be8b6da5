"""Trailing-window statistics over the planner's grid, vectorised with cumulative sums.

Window ``i`` holds the instants in ``(t_i − span, t_i]``; non-finite values are left out.
"""

from __future__ import annotations

import numpy as np

from scaler.series import FloatArray, Int64Array


def starts(times_ms: Int64Array, span_ms: int) -> Int64Array:
    """Index of the first instant of each trailing window."""
    return np.asarray(np.searchsorted(times_ms, times_ms - span_ms, side="right"), dtype=np.int64)


def _window_sum(values: FloatArray, lo: Int64Array) -> FloatArray:
    cumulative = np.concatenate(([0.0], np.cumsum(values)))
    return np.asarray(cumulative[np.arange(1, len(values) + 1)] - cumulative[lo], dtype=np.float64)


def mean(values: FloatArray, lo: Int64Array) -> FloatArray:
    finite = np.isfinite(values)
    count = _window_sum(finite.astype(np.float64), lo)
    total = _window_sum(np.where(finite, values, 0.0), lo)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / count, np.nan)


def slope(times_ms: Int64Array, values: FloatArray, lo: Int64Array, min_points: int = 3) -> FloatArray:
    """Least-squares slope per second in each window; 0 with fewer than ``min_points``."""
    finite = np.isfinite(values)
    x = np.where(finite, (times_ms - times_ms[0]) / 1000.0, 0.0)
    y = np.where(finite, values, 0.0)
    n = _window_sum(finite.astype(np.float64), lo)
    sx, sy = _window_sum(x, lo), _window_sum(y, lo)
    sxx, sxy = _window_sum(x * x, lo), _window_sum(x * y, lo)
    denom = n * sxx - sx * sx
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (n * sxy - sx * sy) / denom
    return np.where((n >= min_points) & (denom > 1e-9), out, 0.0)
