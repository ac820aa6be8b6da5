"""``histogram_quantile`` over classic (``le``-labelled) bucket series.

Semantics of Prometheus 3's ``BucketQuantile``: buckets are grouped by all labels except
``le`` (the metric name included, then dropped from the result); a group needs a ``+Inf``
bucket and at least two buckets, else NaN; buckets with equal bounds are merged; counts that
differ only by float noise (relative 1e-12) are equalised and decreasing counts are raised to
the running maximum; the quantile is interpolated linearly inside its bucket, from 0 in the
first bucket if its bound is positive; a quantile in the ``+Inf`` bucket is the second-highest
bound. ``q < 0`` gives -Inf, ``q > 1`` +Inf, NaN gives NaN.
"""

from __future__ import annotations

import math
import re
import sys

from scaler.model import LabelPairs
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


def _fix_counts(counts: list[float]) -> None:
    """``ensureMonotonicAndIgnoreSmallDeltas``, in place."""
    prev = counts[0]
    for i in range(1, len(counts)):
        cur = counts[i]
        if cur == prev:
            continue
        if _almost_equal(prev, cur, _SMALL_DELTA) or cur < prev:
            counts[i] = prev
            continue
        prev = cur


def bucket_quantile(q: float, buckets: list[tuple[float, float]]) -> float:
    """The ``q`` quantile of ``(upper_bound, cumulative_count)`` buckets."""
    if math.isnan(q):
        return NAN
    if q < 0:
        return -INF
    if q > 1:
        return INF
    buckets = sorted(buckets, key=lambda b: b[0])
    if buckets[-1][0] != INF:
        return NAN
    bounds: list[float] = []
    counts: list[float] = []
    for bound, count in buckets:
        if bounds and bounds[-1] == bound:
            counts[-1] += count
        else:
            bounds.append(bound)
            counts.append(count)
    _fix_counts(counts)
    if len(bounds) < 2:
        return NAN
    observations = counts[-1]
    if observations == 0:
        return NAN
    rank = q * observations
    b = next((i for i in range(len(counts) - 1) if counts[i] >= rank), len(counts) - 1)
    if b == len(counts) - 1:
        return bounds[-2]
    if b == 0 and bounds[0] <= 0:
        return bounds[0]
    start, end, count = 0.0, bounds[b], counts[b]
    if b > 0:
        start = bounds[b - 1]
        count -= counts[b - 1]
        rank -= counts[b - 1]
    return start + (end - start) * div(rank, count)


def histogram_quantile(q: float, vec: Vec) -> Vec:
    groups: dict[LabelPairs, tuple[LabelPairs, list[tuple[float, float]]]] = {}
    for labels, value in zip(vec.labels, vec.values, strict=True):
        le = next((v for k, v in labels if k == "le"), "")
        bound = parse_go_float(le)
        if bound is None:
            continue
        key = without(labels, _LE)
        group = groups.get(key)
        if group is None:
            group = groups[key] = (without(labels, _NAME_AND_LE), [])
        group[1].append((bound, value))
    out = Vec()
    for out_labels, buckets in groups.values():
        out.append(out_labels, bucket_quantile(q, buckets))
    return out
