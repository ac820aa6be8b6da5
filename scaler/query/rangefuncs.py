"""Functions over range vectors (``rate(x[5m])``, ``avg_over_time(x[1m])``, ...).

Each takes a :class:`RangeData` (all selected windows concatenated) and returns one value per
series. The common scaling functions — ``rate``/``increase``/``delta``, ``irate``/``idelta``,
``count``/``last``/``present_over_time``, ``changes``, ``resets`` — are computed for all series
at once with numpy, using exactly Prometheus' float operations so results are bit-identical.
The compensated (Kahan) summations run per series over Python floats, as in Prometheus.
``rate``/``increase``/``delta`` straight over a selector whose series are all named like
counters skip this module when the C extension is built: ``scaler/_native/gather.c`` computes
them from the series' windows without copying them (the same operations; tests compare bits).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import numpy as np

from scaler.query.gomath import NAN, div, duration_seconds, exact_sum, kahan_avg, kahan_inc, quantile, sqrt
from scaler.query.vec import FloatArray, Int64Array, RangeData, Vec, drop_name

RangeFunction = Callable[[RangeData, list[float], int], Vec]
"""``(data, scalar_args, eval_time_ms) -> vector``."""


def _vec(
    rd: RangeData, index: Int64Array | list[int] | None, values: FloatArray | list[float], keep_name: bool = False
) -> Vec:
    vals = values.tolist() if isinstance(values, np.ndarray) else values
    if rd.origin is not None and rd.rows is not None:  # labelled by the selection's rows (no label list made)
        return Vec(None, vals, rd.origin, rd.rows if index is None else rd.rows[index], named=keep_name)
    labels = rd.labels if index is None else [rd.labels[i] for i in index]
    if not keep_name:
        labels = [drop_name(lb) for lb in labels]
    return Vec(labels, vals)


def _segments(rd: RangeData) -> tuple[Int64Array, Int64Array]:
    return rd.offs[:-1], rd.offs[1:]


def _pair_counts(rd: RangeData, flags: np.ndarray) -> Int64Array:
    """Per series, how many consecutive sample pairs have ``flags`` set (``flags[i]`` is the
    pair ``(i, i+1)`` of the concatenated arrays)."""
    starts, ends = _segments(rd)
    cum = np.zeros(len(flags) + 1, dtype=np.int64)
    np.cumsum(flags, out=cum[1:])
    return cum[ends - 1] - cum[starts]


def _extrapolated_rate(rd: RangeData, is_counter: bool, is_rate: bool) -> Vec:
    starts, ends = _segments(rd)
    counts = ends - starts
    idx = np.nonzero(counts >= 2)[0]
    if len(idx) == 0:
        return Vec()
    first, last = starts[idx], ends[idx] - 1
    vals, ts = rd.vals, rd.ts
    first_v = vals[first]
    with np.errstate(invalid="ignore", over="ignore"):  # inf - inf is NaN, as in Go
        result = vals[last] - first_v
    if is_counter and len(vals) > 1:
        dropped = _pair_counts(rd, vals[1:] < vals[:-1])[idx]
        for j in np.nonzero(dropped)[0].tolist():
            seg = vals[first[j] : last[j] + 1].tolist()
            total = seg[-1] - seg[0]
            for prev, cur in itertools.pairwise(seg):
                if cur < prev:
                    total += prev
            result[j] = total
    first_t, last_t = ts[first], ts[last]
    to_start = (first_t - rd.start).astype(np.float64) / 1000
    to_end = (rd.end - last_t).astype(np.float64) / 1000
    sampled = (last_t - first_t).astype(np.float64) / 1000
    average = sampled / (counts[idx] - 1).astype(np.float64)
    threshold = average * 1.1
    half = average / 2
    to_start = np.where(to_start >= threshold, half, to_start)
    if is_counter:
        with np.errstate(divide="ignore", invalid="ignore"):
            to_zero = np.where((result > 0) & (first_v >= 0), sampled * (first_v / result), to_start)
        to_start = np.where(to_zero < to_start, to_zero, to_start)
    to_end = np.where(to_end >= threshold, half, to_end)
    factor = (sampled + to_start + to_end) / sampled
    if is_rate:
        factor = factor / duration_seconds(rd.range_ms)
    return _vec(rd, idx, result * factor)


def _instant_value(rd: RangeData, is_rate: bool) -> Vec:
    starts, ends = _segments(rd)
    idx = np.nonzero(ends - starts >= 2)[0]
    if len(idx) == 0:
        return Vec()
    last = ends[idx] - 1
    prev_v, last_v = rd.vals[last - 1], rd.vals[last]
    interval = rd.ts[last] - rd.ts[last - 1]
    with np.errstate(invalid="ignore", over="ignore"):  # inf - inf is NaN, as in Go
        result = last_v - prev_v
    if is_rate:
        result = np.where(last_v < prev_v, last_v, result) / (interval.astype(np.float64) / 1000)
    return _vec(rd, idx, result)


def _kedify_rate(rd: RangeData, _args: list[float], _t: int) -> Vec:
    """kedify/otel-add-on's ``rate``: the reset-safe increase over the samples in the window (a
    drop counts the new value, as after a counter reset) divided by the seconds between the
    first and the last of them, with no extrapolation; 0 for a single sample."""
    ts, vals = rd.ts, rd.vals
    out: list[float] = []
    for a, b in itertools.pairwise(rd.offs.tolist()):
        if b - a < 2 or ts[b - 1] == ts[a]:
            out.append(0.0)
            continue
        seg = vals[a:b]
        with np.errstate(invalid="ignore", over="ignore"):  # inf - inf is NaN, as in Go
            steps = np.where(seg[1:] < seg[:-1], seg[1:], seg[1:] - seg[:-1])
        out.append(exact_sum(steps.tolist()) / (float(ts[b - 1] - ts[a]) / 1000))
    return _vec(rd, None, out)


def _changes(rd: RangeData, _args: list[float], _t: int) -> Vec:
    v = rd.vals
    prev, cur = v[:-1], v[1:]
    flags = (cur != prev) & ~(np.isnan(cur) & np.isnan(prev))
    return _vec(rd, None, _pair_counts(rd, flags).astype(np.float64))


def _resets(rd: RangeData, _args: list[float], _t: int) -> Vec:
    v = rd.vals
    return _vec(rd, None, _pair_counts(rd, v[1:] < v[:-1]).astype(np.float64))


def _per_series(fn: Callable[[list[float]], float]) -> RangeFunction:
    def apply(rd: RangeData, _args: list[float], _t: int) -> Vec:
        vals = rd.vals.tolist()
        bounds = rd.offs.tolist()
        out = [fn(vals[a:b]) for a, b in itertools.pairwise(bounds)]
        return _vec(rd, None, out)

    return apply


def _sum(values: list[float]) -> float:
    total = c = 0.0
    for v in values:
        total, c = kahan_inc(v, total, c)
    return total if math.isinf(total) else total + c


def _variance(values: list[float]) -> float:
    count = mean = c_mean = aux = c_aux = 0.0
    for f in values:
        count += 1
        delta = f - (mean + c_mean)
        mean, c_mean = kahan_inc(delta / count, mean, c_mean)
        aux, c_aux = kahan_inc(delta * (f - (mean + c_mean)), aux, c_aux)
    return (aux + c_aux) / count


def _extreme(better: Callable[[float, float], bool]) -> Callable[[list[float]], float]:
    def pick(values: list[float]) -> float:
        best = values[0]
        for f in values:
            if better(f, best) or math.isnan(best):
                best = f
        return best

    return pick


def _count(rd: RangeData, _args: list[float], _t: int) -> Vec:
    starts, ends = _segments(rd)
    return _vec(rd, None, (ends - starts).astype(np.float64))


def _last(rd: RangeData, _args: list[float], _t: int) -> Vec:
    return _vec(rd, None, rd.vals[rd.offs[1:] - 1], keep_name=True)


def _present(rd: RangeData, _args: list[float], _t: int) -> Vec:
    return _vec(rd, None, [1.0] * len(rd))


def linear_regression(ts: list[int], vals: list[float], intercept_time: int) -> tuple[float, float]:
    """Least squares fit with Kahan sums; returns ``(slope, intercept at intercept_time)``."""
    n = sum_x = c_x = sum_y = c_y = sum_xy = c_xy = sum_x2 = c_x2 = 0.0
    init_y = vals[0]
    const_y = True
    for i, (t, v) in enumerate(zip(ts, vals, strict=True)):
        if const_y and i > 0 and v != init_y:
            const_y = False
        n += 1.0
        x = float(t - intercept_time) / 1e3
        sum_x, c_x = kahan_inc(x, sum_x, c_x)
        sum_y, c_y = kahan_inc(v, sum_y, c_y)
        sum_xy, c_xy = kahan_inc(x * v, sum_xy, c_xy)
        sum_x2, c_x2 = kahan_inc(x * x, sum_x2, c_x2)
    if const_y:
        if math.isinf(init_y):
            return NAN, NAN
        return 0.0, init_y
    sum_x += c_x
    sum_y += c_y
    sum_xy += c_xy
    sum_x2 += c_x2
    cov_xy = sum_xy - sum_x * sum_y / n
    var_x = sum_x2 - sum_x * sum_x / n
    slope = div(cov_xy, var_x)
    return slope, sum_y / n - slope * sum_x / n


def _regression(rd: RangeData, predict: float | None, t_eval: int) -> Vec:
    ts, vals, bounds = rd.ts.tolist(), rd.vals.tolist(), rd.offs.tolist()
    index: list[int] = []
    out: list[float] = []
    for i, (a, b) in enumerate(itertools.pairwise(bounds)):
        if b - a < 2:
            continue
        if predict is None:
            slope, _ = linear_regression(ts[a:b], vals[a:b], ts[a])
            out.append(slope)
        else:
            slope, intercept = linear_regression(ts[a:b], vals[a:b], t_eval)
            out.append(slope * predict + intercept)
        index.append(i)
    return _vec(rd, index, out)


def _quantile_over_time(rd: RangeData, args: list[float], _t: int) -> Vec:
    q = args[0]
    vals, bounds = rd.vals.tolist(), rd.offs.tolist()
    return _vec(rd, None, [quantile(q, vals[a:b]) for a, b in itertools.pairwise(bounds)])


RANGE_FUNCTIONS: dict[str, RangeFunction] = {
    "rate": lambda rd, _a, _t: _extrapolated_rate(rd, True, True),
    "increase": lambda rd, _a, _t: _extrapolated_rate(rd, True, False),
    "delta": lambda rd, _a, _t: _extrapolated_rate(rd, False, False),
    "irate": lambda rd, _a, _t: _instant_value(rd, True),
    "idelta": lambda rd, _a, _t: _instant_value(rd, False),
    "deriv": lambda rd, _a, t: _regression(rd, None, t),
    "predict_linear": lambda rd, a, t: _regression(rd, a[0], t),
    "kedify_rate": _kedify_rate,
    "changes": _changes,
    "resets": _resets,
    "count_over_time": _count,
    "last_over_time": _last,
    "present_over_time": _present,
    "sum_over_time": _per_series(_sum),
    "avg_over_time": _per_series(kahan_avg),
    "min_over_time": _per_series(_extreme(lambda cur, best: cur < best)),
    "max_over_time": _per_series(_extreme(lambda cur, best: cur > best)),
    "stdvar_over_time": _per_series(_variance),
    "stddev_over_time": _per_series(lambda v: sqrt(_variance(v))),
    "quantile_over_time": _quantile_over_time,
}
"""Every function whose argument is a range vector (``absent_over_time`` is the engine's)."""

VECTORISED = frozenset(
    {"rate", "increase", "delta", "irate", "idelta", "changes", "resets", "count_over_time", "last_over_time"}
    | {"present_over_time"}
)
"""The functions computed for all series at once with numpy (no Python loop per series)."""
