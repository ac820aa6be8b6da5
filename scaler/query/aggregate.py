"""Aggregation operators: ``sum avg min max count group stddev stdvar quantile topk bottomk
count_values``, with ``by (...)`` / ``without (...)``.

Groups are formed in input order. Values are computed exactly as Prometheus 3 does (Kahan
sums for ``sum``/``avg``, Welford for ``stddev``/``stdvar``, Go's heap for ``topk``/``bottomk``
so ties keep the same series), so results are bit-identical.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from scaler.model import METRIC_NAME, LabelPairs
from scaler.query.errors import QueryError
from scaler.query.gomath import NAN, kahan_avg, quantile
from scaler.query.printer import format_number
from scaler.query.values import format_value
from scaler.query.vec import Vec, keep_only, set_label, without

_MAX_INT64 = 9223372036854774784.0
_MIN_INT64 = -9223372036854775808.0


def _grouper(grouping: tuple[str, ...], drop: bool) -> Callable[[LabelPairs], LabelPairs] | None:
    """The group key of a label set; None when everything is one group."""
    if drop:
        names = frozenset((*grouping, METRIC_NAME))
        return lambda labels: without(labels, names)
    if not grouping:
        return None
    keep = frozenset(grouping)
    return lambda labels: keep_only(labels, keep)


def _groups(vec: Vec, key: Callable[[LabelPairs], LabelPairs] | None) -> dict[LabelPairs, list[int]]:
    if key is None:
        return {(): list(range(len(vec)))} if len(vec) else {}
    groups: dict[LabelPairs, list[int]] = {}
    for i, labels in enumerate(vec.labels):
        groups.setdefault(key(labels), []).append(i)
    return groups


def _sum(values: list[float]) -> float:
    total, c = values[0], 0.0
    isinf = math.isinf
    for f in values[1:]:  # kahan_inc, inlined: this is the hottest loop of sum(rate(...))
        t = total + f
        if isinf(t):
            c = 0.0
        elif abs(total) >= abs(f):
            c += (total - t) + f
        else:
            c += (f - t) + total
        total = t
    return total + c


def _variance(values: list[float]) -> float:
    first = values[0]
    value = NAN if math.isnan(first) or math.isinf(first) else 0.0
    mean, count = first, 1.0
    for f in values[1:]:
        count += 1
        delta = f - mean
        mean += delta / count
        value += delta * (f - mean)
    return value / count


def _extreme(better: Callable[[float, float], bool]) -> Callable[[list[float]], float]:
    def pick(values: list[float]) -> float:
        best = values[0]
        for f in values[1:]:
            if better(best, f) or math.isnan(best):
                best = f
        return best

    return pick


_SIMPLE: dict[str, Callable[[list[float]], float]] = {
    "sum": _sum,
    "avg": kahan_avg,
    "count": lambda v: float(len(v)),
    "group": lambda _v: 1.0,
    "max": _extreme(lambda best, f: best < f),
    "min": _extreme(lambda best, f: best > f),
    "stdvar": _variance,
    "stddev": lambda v: math.sqrt(x) if (x := _variance(v)) >= 0 else NAN,
}


def aggregate(op: str, vec: Vec, grouping: tuple[str, ...], drop: bool, param: float | str | None) -> Vec:
    """Apply aggregation ``op``; ``drop`` means ``without (grouping)``."""
    key = _grouper(grouping, drop)
    if op in ("topk", "bottomk"):
        assert isinstance(param, float)
        return _select_k(vec, key, param, op == "topk")
    if op == "count_values":
        assert isinstance(param, str)
        return _count_values(vec, grouping, drop, param)
    if not len(vec):
        return Vec()
    out = Vec()
    values = vec.values
    if op == "quantile":
        assert isinstance(param, float)
        for group, members in _groups(vec, key).items():
            out.append(group, quantile(param, [values[i] for i in members]))
        return out
    fn = _SIMPLE[op]
    for group, members in _groups(vec, key).items():
        out.append(group, fn([values[i] for i in members]))
    return out


def _count_values(vec: Vec, grouping: tuple[str, ...], drop: bool, label: str) -> Vec:
    if not label:
        raise QueryError.execution('invalid label name ""')
    key = _grouper(grouping if drop else (*grouping, label), drop)
    assert key is not None
    counts: dict[LabelPairs, int] = {}
    for labels, value in zip(vec.labels, vec.values, strict=True):
        group = key(set_label(labels, label, format_value(value)))
        counts[group] = counts.get(group, 0) + 1
    return Vec(list(counts), [float(n) for n in counts.values()])


def _select_k(vec: Vec, key: Callable[[LabelPairs], LabelPairs] | None, param: float, top: bool) -> Vec:
    if not param >= 1:
        if math.isnan(param):
            raise QueryError.execution("Parameter value is NaN")
        return Vec()
    if param >= _MAX_INT64:
        raise QueryError.execution(f"Scalar value {format_number(param)} overflows int64")
    k = min(int(param), len(vec))
    values = vec.values
    if top:

        def less(a: int, b: int) -> bool:
            return math.isnan(values[a]) or values[a] < values[b]
    else:

        def less(a: int, b: int) -> bool:
            return math.isnan(values[a]) or values[a] > values[b]

    out = Vec()
    for members in _groups(vec, key).values():
        heap: list[int] = []
        for i in members:
            if len(heap) < k:
                heap.append(i)
                _up(heap, len(heap) - 1, less)
                continue
            root, f = values[heap[0]], values[i]
            beats = root < f if top else root > f
            if beats or (math.isnan(root) and not math.isnan(f)):
                heap[0] = i
                if k > 1 and not _down(heap, 0, less):
                    _up(heap, 0, less)
        sign = -1.0 if top else 1.0
        heap.sort(key=lambda i: (1, 0.0) if math.isnan(values[i]) else (0, sign * values[i]))
        for i in heap:
            out.append(vec.labels[i], values[i])
    return out


def _up(heap: list[int], j: int, less: Callable[[int, int], bool]) -> None:
    while j > 0:
        parent = (j - 1) // 2
        if not less(heap[j], heap[parent]):
            break
        heap[parent], heap[j] = heap[j], heap[parent]
        j = parent


def _down(heap: list[int], i0: int, less: Callable[[int, int], bool]) -> bool:
    i, n = i0, len(heap)
    while True:
        j = 2 * i + 1
        if j >= n:
            break
        if j + 1 < n and less(heap[j + 1], heap[j]):
            j += 1
        if not less(heap[j], heap[i]):
            break
        heap[i], heap[j] = heap[j], heap[i]
        i = j
    return i > i0
