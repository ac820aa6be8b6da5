"""Trailing-window statistics over the planner's grid, vectorised with cumulative sums.

Window ``i`` holds the instants in ``(t_i − span, t_i]``; non-finite values are left out.
"""

from __future__ import annotations

import numpy as np

from scaler.planner.series import BoolArray
from scaler.series import FloatArray, Int64Array


def starts(times_ms: Int64Array, span_ms: int) -> Int64Array:
    """Index of the first instant of each trailing window."""
    return np.asarray(np.searchsorted(times_ms, times_ms - span_ms, side="right"), dtype=np.int64)


def _window_sum(values: FloatArray, lo: Int64Array) -> FloatArray:
    cumulative = np.concatenate(([0.0], np.cumsum(values)))
    return np.asarray(cumulative[np.arange(1, len(values) + 1)] - cumulative[lo], dtype=np.float64)


def mean(values: FloatArray, lo: Int64Array, min_points: int = 1) -> FloatArray:
    """The mean of each window's finite values; NaN with fewer than ``min_points``."""
    finite = np.isfinite(values)
    count = _window_sum(finite.astype(np.float64), lo)
    total = _window_sum(np.where(finite, values, 0.0), lo)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count >= max(min_points, 1), total / count, np.nan)


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


def maximum(values: FloatArray, lo: Int64Array) -> FloatArray:
    """Each window's largest value (NaN-free input)."""
    out = values.copy()
    positions = np.arange(len(values))
    for j in range(1, int((positions - lo).max(initial=0)) + 1):
        idx = positions - j
        out = np.where(idx >= lo, np.maximum(out, values[np.maximum(idx, 0)]), out)
    return out


def constant(values: FloatArray, lo: Int64Array) -> BoolArray:
    """Whether each window's values are all equal (and finite)."""
    out = np.isfinite(values)
    for j in range(1, int((np.arange(len(values)) - lo).max(initial=0)) + 1):
        idx = np.arange(len(values)) - j
        inside = idx >= lo
        previous = values[np.maximum(idx, 0)]
        out &= ~inside | (previous == values)
    return np.asarray(out, dtype=np.bool_)
