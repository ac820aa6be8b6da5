"""Aggregation operators: ``sum avg min max count group stddev stdvar quantile topk bottomk
count_values``, with ``by (...)`` / ``without (...)``.

Groups are formed in input order. Values are computed exactly as Prometheus 3 does (Kahan
sums for ``sum``/``avg``, Welford for ``stddev``/``stdvar``, Go's heap for ``topk``/``bottomk``
so ties keep the same series), so results are bit-identical. A ``sum`` over a range
function's result on a selection groups by an index per series memoised on the selection and
sums in C (``scaler/_native/gather.c``'s ``group_sums``, the same Kahan loop).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING

import numpy as np

from scaler.model import METRIC_NAME, LabelPairs
from scaler.query.errors import QueryError
from scaler.query.gomath import NAN, kahan_avg, kahan_avg_array, kahan_sum_array, quantile
from scaler.query.printer import format_number
from scaler.query.selection import native_group_sums
from scaler.query.values import format_value
from scaler.query.vec import Int64Array, Vec, keep_only, set_label, without
from scaler.store import drain

if TYPE_CHECKING:
    from scaler.query.selection import Selection

_MAX_INT64 = 9223372036854774784.0
_MIN_INT64 = -9223372036854775808.0


_KEYS: dict[tuple[LabelPairs, frozenset[str], bool], LabelPairs] = {}
_KEYS_MAX = 1 << 18


def _grouper(grouping: tuple[str, ...], drop: bool) -> Callable[[LabelPairs], LabelPairs] | None:
    """The group key of a label set; None when everything is one group. Memoised: the same
    series and groupings recur every evaluation of a trigger."""
    if not drop and not grouping:
        return None
    names = frozenset((*grouping, METRIC_NAME)) if drop else frozenset(grouping)
    cut = without if drop else keep_only
    memo = _KEYS

    def key(labels: LabelPairs) -> LabelPairs:
        k = (labels, names, drop)
        out = memo.get(k)
        if out is None:
            if len(memo) >= _KEYS_MAX:
                memo.clear()
            out = memo[k] = cut(labels, names)
        return out

    return key


GROUP_STEP = 4096
"""Series grouped between two of :func:`groups_steps`' yields."""


def groups_steps(vec: Vec, grouping: tuple[str, ...], drop: bool) -> Generator[None, None, dict[LabelPairs, list[int]]]:
    """The groups of ``vec`` (group key → member indices, in input order), in pieces."""
    key = _grouper(grouping, drop)
    if key is None:
        return {(): list(range(len(vec)))} if len(vec) else {}
    groups: dict[LabelPairs, list[int]] = {}
    labels = vec.labels
    for a in range(0, len(labels), GROUP_STEP):
        for i in range(a, min(a + GROUP_STEP, len(labels))):
            k = key(labels[i])
            members = groups.get(k)
            if members is None:
                groups[k] = [i]
            else:
                members.append(i)
        if a + GROUP_STEP < len(labels):
            yield
    return groups


def _groups(vec: Vec, key: Callable[[LabelPairs], LabelPairs] | None) -> dict[LabelPairs, list[int]]:
    if key is None:
        return {(): list(range(len(vec)))} if len(vec) else {}
    groups: dict[LabelPairs, list[int]] = {}
    for i, labels in enumerate(vec.labels):
        groups.setdefault(key(labels), []).append(i)
    return groups


def _sum(values: list[float]) -> float:
    """Prometheus' Kahan-Neumaier sum (``kahan_inc``), the hottest loop of ``sum(rate(...))``."""
    return drain(_sum_steps(values))


def _sum_steps(values: list[float]) -> Generator[None, None, float]:
    """:func:`_sum` of a large group in pieces of ``GROUP_STEP``, the Kahan state carried
    across the yields, so the result is the same bits."""
    total, c = values[0], 0.0
    isinf = math.isinf
    for a in range(1, len(values), GROUP_STEP):
        for f in values[a : a + GROUP_STEP]:
            t = total + f
            if isinf(t):
                c = 0.0
            elif abs(total) >= abs(f):
                c += (total - t) + f
            else:
                c += (f - t) + total
            total = t
        yield
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


def aggregate(
    op: str,
    vec: Vec,
    grouping: tuple[str, ...],
    drop: bool,
    param: float | str | None,
    groups: dict[LabelPairs, list[int]] | None = None,
) -> Vec:
    """Apply aggregation ``op``; ``drop`` means ``without (grouping)``. ``groups``: the
    groups of ``vec`` if already formed (:func:`groups_steps`)."""
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
    if groups is None:
        groups = _groups(vec, key)
    drain(_per_group(op, values, groups, param, out))
    return out


def aggregate_steps(
    op: str, vec: Vec, grouping: tuple[str, ...], drop: bool, param: float | str | None
) -> Generator[None, None, Vec]:
    """:func:`aggregate` in pieces: a yield every ``GROUP_STEP`` series grouped or groups
    computed (``by (pod)`` over 40k series is 40k groups)."""
    if op in ("topk", "bottomk", "count_values") or not len(vec):
        return aggregate(op, vec, grouping, drop, param)
    if op == "sum" and native_group_sums is not None:
        found = yield from _selection_group_ids(vec, grouping, drop)
        if found is not None:
            gids, keys = found
            order, sums = native_group_sums(vec.floats(), gids, len(keys))
            return Vec([keys[k] for k in order.tolist()], sums.tolist())
    members = yield from _selection_groups(vec, grouping, drop)
    if members is not None:
        if op in ("sum", "avg"):
            return (yield from _sums(op, vec.values, members))
        groups = {key: rows.tolist() for key, rows in members}
    else:
        groups = yield from groups_steps(vec, grouping, drop)
    out = Vec()
    yield from _per_group(op, vec.values, groups, param, out)
    return out


def _selection_groups(
    vec: Vec, grouping: tuple[str, ...], drop: bool
) -> Generator[None, None, list[tuple[LabelPairs, Int64Array]] | None]:
    """The groups of a vector labelled by a selection (``origin``/``rows``: a range function's
    result or an instant selector's, see :class:`Vec`): (key, member indices in input order),
    in order of first member, as :func:`groups_steps` forms them. Each series' group is found
    once per selection (memoised on it), then grouping is numpy. None for other vectors, or
    too many groups (the general path does them in pieces)."""
    found = yield from _selection_group_ids(vec, grouping, drop)
    if found is None:
        return None
    g, keys = found
    order = np.argsort(g, kind="stable")
    ordered = g[order]
    starts = np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1])))
    ends = np.append(starts[1:], len(order))
    firsts = order[starts]  # a group's first member: the groups in order of appearance
    out = []
    for j in np.argsort(firsts).tolist():
        a, b = int(starts[j]), int(ends[j])
        out.append((keys[int(ordered[a])], order[a:b]))
    return out


def _selection_group_ids(
    vec: Vec, grouping: tuple[str, ...], drop: bool
) -> Generator[None, None, tuple[Int64Array, list[LabelPairs]] | None]:
    """For a vector labelled by a selection: the group index of each of its series, and the
    group keys (of the whole selection; memoised on it). None for other vectors, or too many
    groups (the general path does them in pieces)."""
    origin, rows = vec.origin, vec.rows
    if origin is None or rows is None:
        return None
    memo_key = ("groups", grouping, drop, vec.named)
    found = origin.recall(memo_key)
    if found is None:
        found = yield from _group_ids(origin, grouping, drop, vec.named)
        origin.keep(memo_key, found)
    gids, keys = found
    if len(keys) > GROUP_STEP:
        return None
    return gids[rows], keys


def _group_ids(
    origin: Selection, grouping: tuple[str, ...], drop: bool, named: bool
) -> Generator[None, None, tuple[Int64Array, list[LabelPairs]]]:
    """Per series of ``origin`` (labelled by its own labels if ``named``, else without the
    name), the index of its group, and the group keys (in pieces)."""
    key = _grouper(grouping, drop)
    labels = [s.labels for s in origin.series] if named else origin.dropped
    if key is None:
        return np.zeros(len(labels), dtype=np.int64), [()]
    ids: dict[LabelPairs, int] = {}
    gids: list[int] = []
    for a in range(0, len(labels), GROUP_STEP):
        gids += [ids.setdefault(key(lb), len(ids)) for lb in labels[a : a + GROUP_STEP]]
        yield
    return np.array(gids, dtype=np.int64), list(ids)


SUM_VECTORISED = 16
"""Groups at least this big are summed with numpy (``gomath.kahan_sum_array``), smaller ones
by the Python loop (cheaper below it)."""


def _sums(op: str, values: list[float], members: list[tuple[LabelPairs, Int64Array]]) -> Generator[None, None, Vec]:
    """``sum`` or ``avg`` per group, bit-identical to :data:`_SIMPLE`'s."""
    arr = np.array(values, dtype=np.float64)
    out = Vec()
    for n_group, (key, rows) in enumerate(members, 1):
        if n_group % GROUP_STEP == 0:
            yield
        n = len(rows)
        if n < SUM_VECTORISED:
            group = [values[i] for i in rows.tolist()]
            value = _SINGLE[op](group[0]) if n == 1 and op in _SINGLE else _SIMPLE[op](group)
        elif op == "sum":
            value = kahan_sum_array(arr[rows])
        else:
            value = kahan_avg_array(arr[rows])
        out.labels.append(key)
        out.values.append(value)
    return out


def _per_group(
    op: str, values: list[float], groups: dict[LabelPairs, list[int]], param: float | str | None, out: Vec
) -> Generator[None, None, None]:
    fn = _SIMPLE[op] if op != "quantile" else None
    single = _SINGLE.get(op)
    for n, (group, members) in enumerate(groups.items(), 1):
        if single is not None and len(members) == 1:
            value = single(values[members[0]])
        elif op == "sum" and len(members) > GROUP_STEP:
            value = yield from _sum_steps([values[i] for i in members])
        elif fn is None:
            assert isinstance(param, float)
            value = quantile(param, [values[i] for i in members])
        else:
            value = fn([values[i] for i in members])
        out.labels.append(group)
        out.values.append(value)
        if n % GROUP_STEP == 0:
            yield


_SINGLE: dict[str, Callable[[float], float]] = {
    "sum": lambda f: f + 0.0,  # Kahan's final ``sum + c``: -0 becomes 0, as in _sum
    "max": lambda f: f,
    "min": lambda f: f,
    "count": lambda _f: 1.0,
    "group": lambda _f: 1.0,
}
"""The value of a one-series group without the general loop, bit-identical to it (and so to
Prometheus): the float itself for ``min``/``max``, itself plus the zero compensation for ``sum``."""


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
