"""``histogram_quantile`` over classic (``le``-labelled) bucket series.

Semantics of Prometheus 3's ``BucketQuantile``: buckets are grouped by all labels except
``le`` (the metric name included, then dropped from the result); a group needs a ``+Inf``
bucket and at least two buckets, else NaN; buckets with equal bounds are merged; counts that
differ only by float noise (relative 1e-12) are equalised and decreasing counts are raised to
the running maximum; the quantile is interpolated linearly inside its bucket, from 0 in the
first bucket if its bound is positive; a quantile in the ``+Inf`` bucket is the second-highest
bound. ``q < 0`` gives -Inf, ``q > 1`` +Inf, NaN gives NaN.

``histogram_fraction(lower, upper, buckets)`` is Prometheus 3's ``BucketFraction`` over the same
groups: the share of observations between the bounds, interpolated linearly inside buckets.
A bucket series whose ``le`` does not parse is skipped with Prometheus' warning; a group whose
counts had to be made monotonic gets its info annotation.
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Callable

from scaler.model import METRIC_NAME, LabelPairs
from scaler.query.annotations import Annotations, Pos
from scaler.query.gomath import INF, NAN, div
from scaler.query.vec import Vec, without

_FLOAT_RE = re.compile(
    r"[+-]?(?:inf|infinity|nan|(?:\d+(?:_\d+)*(?:\.(?:\d+(?:_\d+)*)?)?|\.\d+(?:_\d+)*)"
    r"(?:e[+-]?\d+)?)\Z",
    re.IGNORECASE,
)
_HEX_FLOAT_RE = re.compile(r"[+-]?0x[0-9a-f_]*(?:\.[0-9a-f_]*)?p[+-]?\d+\Z", re.IGNORECASE)
_MIN_NORMAL = sys.float_info.min
_SMALL_DELTA = 1e-12
_LE = frozenset({"le"})
_NAME_AND_LE = frozenset({"__name__", "le"})


def parse_go_float(text: str) -> float | None:
    """Go's ``strconv.ParseFloat(s, 64)``; None where Go reports a syntax error."""
    if _FLOAT_RE.match(text):
        if "_" in text:
            return None
        return float(text)
    if _HEX_FLOAT_RE.match(text):
        return float.fromhex(text.replace("_", ""))
    return None


def _almost_equal(a: float, b: float, epsilon: float) -> bool:
    if (math.isnan(a) and math.isnan(b)) or a == b:
        return True
    abs_sum = abs(a) + abs(b)
    diff = abs(a - b)
    if a == 0 or b == 0 or abs_sum < _MIN_NORMAL:
        return diff < epsilon * _MIN_NORMAL
    return diff / min(abs_sum, sys.float_info.max) < epsilon


def _fix_counts(counts: list[float]) -> bool:
    """``ensureMonotonicAndIgnoreSmallDeltas``, in place; True if a count had to be raised."""
    forced = False
    prev = counts[0]
    for i in range(1, len(counts)):
        cur = counts[i]
        if cur == prev:
            continue
        if _almost_equal(prev, cur, _SMALL_DELTA):
            counts[i] = prev
            continue
        if cur < prev:
            counts[i] = prev
            forced = True
            continue
        prev = cur
    return forced


def _coalesced(buckets: list[tuple[float, float]]) -> tuple[list[float], list[float], bool] | None:
    """Sorted, merged bounds and monotonic counts; None without a +Inf bucket."""
    buckets = sorted(buckets, key=lambda b: b[0])
    if buckets[-1][0] != INF:
        return None
    bounds: list[float] = []
    counts: list[float] = []
    for bound, count in buckets:
        if bounds and bounds[-1] == bound:
            counts[-1] += count
        else:
            bounds.append(bound)
            counts.append(count)
    forced = _fix_counts(counts)
    return bounds, counts, forced


def bucket_quantile(q: float, buckets: list[tuple[float, float]]) -> float:
    """The ``q`` quantile of ``(upper_bound, cumulative_count)`` buckets."""
    return _quantile(q, buckets)[0]


def _quantile(q: float, buckets: list[tuple[float, float]]) -> tuple[float, bool]:
    """:func:`bucket_quantile`, and whether the counts had to be forced monotonic."""
    if math.isnan(q):
        return NAN, False
    if q < 0:
        return -INF, False
    if q > 1:
        return INF, False
    fixed = _coalesced(buckets)
    if fixed is None:
        return NAN, False
    bounds, counts, forced = fixed
    if len(bounds) < 2:
        return NAN, forced
    observations = counts[-1]
    if observations == 0:
        return NAN, forced
    rank = q * observations
    b = next((i for i in range(len(counts) - 1) if counts[i] >= rank), len(counts) - 1)
    if b == len(counts) - 1:
        return bounds[-2], forced
    if b == 0 and bounds[0] <= 0:
        return bounds[0], forced
    start, end, count = 0.0, bounds[b], counts[b]
    if b > 0:
        start = bounds[b - 1]
        count -= counts[b - 1]
        rank -= counts[b - 1]
    return start + (end - start) * div(rank, count), forced


def bucket_fraction(lower: float, upper: float, buckets: list[tuple[float, float]]) -> tuple[float, bool]:
    """The share of observations in ``[lower, upper]``, and whether counts were forced monotonic."""
    fixed = _coalesced(buckets)
    if fixed is None or len(fixed[0]) < 2:
        return NAN, False
    bounds, counts, forced = fixed
    count = counts[-1]
    if count == 0 or math.isnan(lower) or math.isnan(upper):
        return NAN, forced
    if lower >= upper:
        return 0.0, forced
    rank = lower_rank = upper_rank = 0.0
    lower_set = upper_set = False
    lower_bound = 0.0 if bounds[0] > 0 else -INF
    for i, (upper_bound, bucket_count) in enumerate(zip(bounds, counts, strict=True)):
        if i > 0:
            lower_bound = bounds[i - 1]

        def interpolate(
            v: float, lo: float = lower_bound, hi: float = upper_bound, c: float = bucket_count, below: float = rank
        ) -> float:
            if lo == -INF:
                return c
            return below + (c - below) * (v - lo) / (hi - lo)

        if not lower_set and lower_bound >= lower:
            lower_rank, lower_set = rank, True
        if not upper_set and lower_bound >= upper:
            upper_rank, upper_set = rank, True
        if lower_set and upper_set:
            break
        if not lower_set and lower_bound < lower < upper_bound:
            lower_rank, lower_set = interpolate(lower), True
        if not upper_set and lower_bound < upper < upper_bound:
            upper_rank, upper_set = interpolate(upper), True
        if lower_set and upper_set:
            break
        rank = bucket_count
    if not lower_set or lower_rank > count:
        lower_rank = count
    if not upper_set or upper_rank > count:
        upper_rank = count
    return (upper_rank - lower_rank) / count, forced


def _by_histogram(
    vec: Vec, annotations: Annotations, pos: Pos
) -> list[tuple[LabelPairs, str, list[tuple[float, float]]]]:
    """Bucket series grouped by their labels without ``le``: (result labels, name, buckets)."""
    groups: dict[LabelPairs, tuple[LabelPairs, str, list[tuple[float, float]]]] = {}
    for labels, value in zip(vec.labels, vec.values, strict=True):
        le = next((v for k, v in labels if k == "le"), "")
        bound = parse_go_float(le)
        if bound is None:
            name = next((v for k, v in labels if k == METRIC_NAME), "")
            annotations.bad_bucket_label(name, le, pos)
            continue
        key = without(labels, _LE)
        group = groups.get(key)
        if group is None:
            name = next((v for k, v in key if k == METRIC_NAME), "")
            group = groups[key] = (without(labels, _NAME_AND_LE), name, [])
        group[2].append((bound, value))
    return list(groups.values())


def _per_histogram(
    vec: Vec, annotations: Annotations, pos: Pos, fn: Callable[[list[tuple[float, float]]], tuple[float, bool]]
) -> Vec:
    out = Vec()
    for out_labels, name, buckets in _by_histogram(vec, annotations, pos):
        value, forced = fn(buckets)
        if forced:
            annotations.forced_monotonicity(name, pos)
        out.append(out_labels, value)
    return out


def histogram_quantile(q: float, vec: Vec, annotations: Annotations, q_pos: Pos, pos: Pos) -> Vec:
    if math.isnan(q) or q < 0 or q > 1:
        annotations.invalid_quantile(q, q_pos)
    return _per_histogram(vec, annotations, pos, lambda buckets: _quantile(q, buckets))


def histogram_fraction(lower: float, upper: float, vec: Vec, annotations: Annotations, pos: Pos) -> Vec:
    return _per_histogram(vec, annotations, pos, lambda buckets: bucket_fraction(lower, upper, buckets))
