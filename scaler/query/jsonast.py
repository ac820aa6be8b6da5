"""A syntax tree as JSON in the shape of Prometheus' ``/api/v1/parse_query``
(``web/api/v1/translate_ast.go`` of 3.13/3.14). A range, offset or step written as a duration
expression is reported as Prometheus' parser leaves it before evaluation: ``range``/``offset``/
``step`` 0, and ``rangeExpr``/``offsetExpr``/``stepExpr`` the expression's tree
(``{"type": "durationExpr", "op", "lhs", "rhs", "wrapped"}``, leaves
``{"type": "numberLiteral", "val": seconds, "duration": written as a duration}``); they are
null for a plain duration, whose value is in ``range``/``offset``/``step``."""

from __future__ import annotations

from typing import Any

from scaler.model import Matcher
from scaler.query.ast import (
    FUNCTIONS,
    AggregateExpr,
    At,
    BinaryExpr,
    Call,
    DurationExpr,
    DurationOperand,
    Expr,
    MatrixSelector,
    NumberLiteral,
    ParenExpr,
    StringLiteral,
    SubqueryExpr,
    UnaryExpr,
    ValueType,
    VectorSelector,
)
from scaler.query.printer import format_float
from scaler.query.values import format_value

_TYPE_NAMES = {
    ValueType.SCALAR: "scalar",
    ValueType.VECTOR: "vector",
    ValueType.MATRIX: "matrix",
    ValueType.STRING: "string",
}
_MATCH_TYPES = {"=": "=", "!=": "!=", "=~": "=~", "!~": "!~"}


def _matchers(matchers: tuple[Matcher, ...]) -> list[dict[str, str]]:
    return [{"type": _MATCH_TYPES[m.op.value], "name": m.name, "value": m.value} for m in matchers]


def _at(at: At | None) -> tuple[int | None, str | None]:
    if at is None:
        return None, None
    if at.kind == "time":
        return at.t_ms, None
    return None, at.kind


def _duration_ast(d: DurationOperand | None) -> dict[str, Any] | None:
    """``translateDurationExpr``: the tree of a duration expression."""
    if d is None:
        return None
    if isinstance(d, NumberLiteral):
        return {"type": "numberLiteral", "val": format_float(d.value), "duration": d.duration}
    return {
        "type": "durationExpr",
        "op": d.op,
        "lhs": _duration_ast(d.lhs),
        "rhs": _duration_ast(d.rhs),
        "wrapped": d.wrapped,
    }


def _duration(ms: int, expr: DurationExpr | None) -> tuple[int, dict[str, Any] | None]:
    """A range's, offset's or step's value and expression: Prometheus' parser leaves the value
    0 (until evaluation) where an expression was written."""
    return (0 if expr is not None else ms), _duration_ast(expr)


def _selector(vs: VectorSelector) -> dict[str, Any]:
    timestamp, start_or_end = _at(vs.at)
    offset, offset_expr = _duration(vs.offset_ms, vs.offset_expr)
    return {
        "name": vs.name,
        "offset": offset,
        "offsetExpr": offset_expr,
        "matchers": _matchers(vs.matchers),
        "timestamp": timestamp,
        "startOrEnd": start_or_end,
        "anchored": False,
        "smoothed": False,
    }


def translate_ast(e: Expr) -> dict[str, Any]:
    """The JSON form of ``e``."""
    if isinstance(e, AggregateExpr):
        return {
            "type": "aggregation",
            "op": e.op,
            "expr": translate_ast(e.expr),
            "param": translate_ast(e.param) if e.param is not None else None,
            "grouping": list(e.grouping),
            "without": e.without,
        }
    if isinstance(e, BinaryExpr):
        m = e.matching
        matching = (
            None if m is None else {"card": m.card, "labels": list(m.labels), "on": m.on, "include": list(m.include)}
        )
        return {
            "type": "binaryExpr",
            "op": e.op,
            "lhs": translate_ast(e.lhs),
            "rhs": translate_ast(e.rhs),
            "matching": matching,
            "bool": e.return_bool,
        }
    if isinstance(e, Call):
        spec = FUNCTIONS[e.func]
        return {
            "type": "call",
            "func": {
                "name": spec.name,
                "argTypes": [_TYPE_NAMES[t] for t in spec.arg_types],
                "variadic": spec.variadic,
                "returnType": _TYPE_NAMES[spec.return_type],
            },
            "args": [translate_ast(a) for a in e.args],
        }
    if isinstance(e, MatrixSelector):
        range_, range_expr = _duration(e.range_ms, e.range_expr)
        return {"type": "matrixSelector", "range": range_, "rangeExpr": range_expr, **_selector(e.selector)}
    if isinstance(e, SubqueryExpr):
        timestamp, start_or_end = _at(e.at)
        range_, range_expr = _duration(e.range_ms, e.range_expr)
        offset, offset_expr = _duration(e.offset_ms, e.offset_expr)
        step, step_expr = _duration(e.step_ms, e.step_expr)
        return {
            "type": "subquery",
            "expr": translate_ast(e.expr),
            "range": range_,
            "rangeExpr": range_expr,
            "offset": offset,
            "offsetExpr": offset_expr,
            "step": step,
            "stepExpr": step_expr,
            "timestamp": timestamp,
            "startOrEnd": start_or_end,
        }
    if isinstance(e, NumberLiteral):
        return {"type": "numberLiteral", "val": format_value(e.value)}
    if isinstance(e, ParenExpr):
        return {"type": "parenExpr", "expr": translate_ast(e.expr)}
    if isinstance(e, StringLiteral):
        return {"type": "stringLiteral", "val": e.value}
    if isinstance(e, UnaryExpr):
        return {"type": "unaryExpr", "op": e.op, "expr": translate_ast(e.expr)}
    assert isinstance(e, VectorSelector)
    return {"type": "vectorSelector", **_selector(e)}
