"""A syntax tree as JSON in the shape of Prometheus' ``/api/v1/parse_query``
(``web/api/v1/translate_ast.go``). Duration expressions are reported by their value:
``rangeExpr``/``offsetExpr``/``stepExpr`` are null, as for a plain duration there."""

from __future__ import annotations

from typing import Any

from scaler.model import Matcher
from scaler.query.ast import (
    FUNCTIONS,
    AggregateExpr,
    At,
    BinaryExpr,
    Call,
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


def _selector(vs: VectorSelector) -> dict[str, Any]:
    timestamp, start_or_end = _at(vs.at)
    return {
        "name": vs.name,
        "offset": vs.offset_ms,
        "offsetExpr": None,
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
        return {"type": "matrixSelector", "range": e.range_ms, "rangeExpr": None, **_selector(e.selector)}
    if isinstance(e, SubqueryExpr):
        timestamp, start_or_end = _at(e.at)
        return {
            "type": "subquery",
            "expr": translate_ast(e.expr),
            "range": e.range_ms,
            "rangeExpr": None,
            "offset": e.offset_ms,
            "offsetExpr": None,
            "step": e.step_ms,
            "stepExpr": None,
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
