"""Binary operators: arithmetic, comparisons (filtering or ``bool``), ``and``/``or``/``unless``,
and vector matching (``on``/``ignoring``, ``group_left``/``group_right``), with Prometheus'
result labels and error messages.
"""

from __future__ import annotations

import operator
from collections.abc import Callable

from scaler.model import METRIC_NAME, LabelPairs
from scaler.query import gomath
from scaler.query.ast import ARITHMETIC_OPS, COMPARISON_OPS, VectorMatching
from scaler.query.errors import QueryError
from scaler.query.vec import Vec, drop_name, format_labels, keep_only, set_label, without

ARITHMETIC: dict[str, Callable[[float, float], float]] = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "/": gomath.div,
    "%": gomath.mod,
    "^": gomath.pow_,
    "atan2": gomath.atan2,
}
COMPARISON: dict[str, Callable[[float, float], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    "<": operator.lt,
    ">=": operator.ge,
    "<=": operator.le,
}


def scalar_binop(op: str, lhs: float, rhs: float) -> float:
    if op in ARITHMETIC_OPS:
        return ARITHMETIC[op](lhs, rhs)
    return 1.0 if COMPARISON[op](lhs, rhs) else 0.0


def vector_scalar_binop(op: str, vec: Vec, scalar: float, swap: bool, return_bool: bool) -> Vec:
    """``vec op scalar`` (or ``scalar op vec`` when ``swap``)."""
    out = Vec()
    if op in ARITHMETIC_OPS:
        fn = ARITHMETIC[op]
        if swap:
            out.values = [fn(scalar, v) for v in vec.values]
        else:
            out.values = [fn(v, scalar) for v in vec.values]
        out.labels = [drop_name(lb) for lb in vec.labels]
        return out
    cmp = COMPARISON[op]
    for labels, v in zip(vec.labels, vec.values, strict=True):
        keep = cmp(scalar, v) if swap else cmp(v, scalar)
        if return_bool:
            out.append(drop_name(labels), 1.0 if keep else 0.0)
        elif keep:
            out.append(labels, v)
    return out


def _signature(matching: VectorMatching) -> Callable[[LabelPairs], LabelPairs]:
    names = frozenset(matching.labels)
    if matching.on:
        return lambda labels: keep_only(labels, names)
    ignored = names | {METRIC_NAME}
    return lambda labels: without(labels, ignored)


def set_binop(op: str, lhs: Vec, rhs: Vec, matching: VectorMatching) -> Vec:
    """``and``, ``or``, ``unless``."""
    sig = _signature(matching)
    if op == "and":
        if not lhs or not rhs:
            return Vec()
        right = {sig(lb) for lb in rhs.labels}
        return _filter(lhs, lambda lb: sig(lb) in right)
    if op == "unless":
        if not lhs or not rhs:
            return Vec(list(lhs.labels), list(lhs.values))
        right = {sig(lb) for lb in rhs.labels}
        return _filter(lhs, lambda lb: sig(lb) not in right)
    left = {sig(lb) for lb in lhs.labels}
    out = Vec(list(lhs.labels), list(lhs.values))
    for labels, v in zip(rhs.labels, rhs.values, strict=True):
        if sig(labels) not in left:
            out.append(labels, v)
    return out


def _filter(vec: Vec, keep: Callable[[LabelPairs], bool]) -> Vec:
    out = Vec()
    for labels, v in zip(vec.labels, vec.values, strict=True):
        if keep(labels):
            out.append(labels, v)
    return out


def vector_binop(op: str, lhs: Vec, rhs: Vec, matching: VectorMatching, return_bool: bool) -> Vec:
    """Arithmetic or comparison between two instant vectors."""
    if not lhs or not rhs:
        return Vec()
    card = matching.card
    swapped = card == "one-to-many"
    if swapped:
        lhs, rhs = rhs, lhs
    sig = _signature(matching)
    right: dict[LabelPairs, int] = {}
    for j, labels in enumerate(rhs.labels):
        s = sig(labels)
        if s in right:
            matched = keep_only(labels, frozenset(matching.labels)) if matching.on else s
            side = "left" if swapped else "right"
            raise QueryError.execution(
                f"found duplicate series for the match group {format_labels(matched)} on the "
                f"{side} hand-side of the operation: [{format_labels(labels)}, "
                f"{format_labels(rhs.labels[right[s]])}];many-to-many matching not allowed: "
                "matching labels must be unique on one side"
            )
        right[s] = j
    arithmetic = op in ARITHMETIC_OPS
    fn = ARITHMETIC.get(op)
    cmp = COMPARISON.get(op)
    include = matching.include
    keep_names = frozenset(matching.labels)
    one_to_one = card == "one-to-one"
    matched_sigs: dict[LabelPairs, set[LabelPairs] | None] = {}
    out = Vec()
    for labels, lv in zip(lhs.labels, lhs.values, strict=True):
        s = sig(labels)
        match = right.get(s)
        if match is None:
            continue
        j = match
        rv = rhs.values[j]
        fl, fr = (rv, lv) if swapped else (lv, rv)
        if fn is not None:
            value, keep = fn(fl, fr), True
        else:
            assert cmp is not None
            value, keep = fl, cmp(fl, fr)
        if return_bool:
            value, keep_sample = (1.0 if keep else 0.0), True
        else:
            keep_sample = keep
        metric = labels
        if arithmetic:
            metric = drop_name(metric)
        if one_to_one:
            metric = keep_only(metric, keep_names) if matching.on else without(metric, keep_names)
        if include:
            one_side = dict(rhs.labels[j])
            for name in include:
                metric = set_label(metric, name, one_side.get(name, ""))
        if return_bool:
            metric = drop_name(metric)
        if one_to_one:
            if s in matched_sigs:
                raise QueryError.execution(
                    "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)"
                )
            matched_sigs[s] = None
        else:
            seen = matched_sigs.get(s)
            if seen is None:
                seen = matched_sigs[s] = set()
            elif metric in seen:
                raise QueryError.execution("multiple matches for labels: grouping labels must ensure unique matches")
            seen.add(metric)
        if keep_sample:
            out.append(metric, value)
    return out


assert set(COMPARISON) == COMPARISON_OPS
