"""Duration expressions printed and shown as Prometheus 3 does: ``format_query``/``str(expr)``
keep the expression as written, normalised by ``DurationExpr.String()``
(``promql/parser/printer.go``), and ``parse_query`` carries ``rangeExpr``/``offsetExpr``/
``stepExpr`` trees (``web/api/v1/translate_ast.go``) — in process and over HTTP on a real server.

Expected texts are worked out by hand from Prometheus' sources, cited per case:
``parse_test.go`` (the tree the grammar builds for an input: where ``Wrapped`` is set, which sign
is folded into a literal), ``printer.go`` (``DurationExpr.writeTo``: ``LHS op RHS`` with one space
each side, ``-RHS`` for unary minus, parentheses when ``Wrapped``; ``NumberLiteral.String``:
``model.Duration`` for a duration literal, ``FormatFloat(v, 'f', -1, 64)`` otherwise),
``promqltest/testdata/duration_expression.test`` and ``duration_arithmetic.test`` (the inputs)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from scaler.query import QueryError, format_expr, parse_promql, translate_ast
from scaler.query.ast import BinaryExpr, MatrixSelector, SubqueryExpr, VectorSelector, walk
from tests.conftest import RunningService

PRINTED = [
    # parse_test.go `rate(foo[2m+2m])`: RangeExpr ADD(120 s, 120 s), both Duration literals.
    ("rate(foo[2m+2m])", "rate(foo[2m + 2m])"),
    # parse_test.go `foo[4s+4s:1s*2] offset (5s-8)`: range, step and a Wrapped offset expression.
    ("foo[4s+4s:1s*2] offset (5s-8)", "foo[4s + 4s:1s * 2] offset (5s - 8)"),
    # parse_test.go `foo offset -(1^2)`: SUB{RHS: POW, Wrapped}; writeTo prints "-" + RHS.
    ("foo offset -(1^2)", "foo offset -(1 ^ 2)"),
    # parse_test.go `foo offset (-1^2)`: Wrapped SUB{RHS: POW} ("-" binds like "*", "^" tighter).
    ("foo offset (-1^2)", "foo offset (-1 ^ 2)"),
    # parse_test.go `foo[0+-2^2]` shape: ADD(literal, SUB{RHS: POW}).
    ("foo[20m+-2^2]", "foo[20m + -2 ^ 2]"),
    # parse_test.go `foo offset 5s-8` / `foo offset -1^1`: the offset takes the literal only.
    ("foo offset 5s-8", "foo offset 5s - 8"),
    ("foo offset -1^1", "foo offset -1s ^ 1"),
    # duration_expression.test, range selectors.
    ("changes(http_requests[26m+4m])", "changes(http_requests[26m + 4m])"),
    ("changes(http_requests[30m+0s])", "changes(http_requests[30m + 0s])"),
    ("changes(http_requests[1800])", "changes(http_requests[30m])"),  # a plain number is Range, not RangeExpr
    ("changes(http_requests[60*30])", "changes(http_requests[60 * 30])"),
    ("changes(http_requests[2m*15])", "changes(http_requests[2m * 15])"),
    ("changes(http_requests[2m*(10+5)])", "changes(http_requests[2m * (10 + 5)])"),
    ("changes(http_requests[29m+60s])", "changes(http_requests[29m + 1m])"),  # model.Duration(60 s)
    ("changes(http_requests[24m+((1.5*2m)+2m)])", "changes(http_requests[24m + ((1.5 * 2m) + 2m)])"),
    ("changes(http_requests[-5m+35m])", "changes(http_requests[-5m + 35m])"),  # the sign folds into 5m
    ("changes(http_requests[1h/2])", "changes(http_requests[1h / 2])"),
    ("changes(http_requests[1h30m % 1h])", "changes(http_requests[1h30m % 1h])"),
    ("changes(http_requests[30m1s-30m1s % 1m])", "changes(http_requests[30m1s - 30m1s % 1m])"),
    ("changes(http_requests[(9m30s+30s)*3])", "changes(http_requests[(9m30s + 30s) * 3])"),
    # duration_expression.test, subquery range and step, offsets.
    ("sum_over_time(metric1_total[29s+1s:5s+5s])", "sum_over_time(metric1_total[29s + 1s:5s + 5s])"),
    (
        "sum_over_time(metric1_total[29s+1s:((((8 - 2) / 3) * 7s) % 4) + 8000ms])",
        "sum_over_time(metric1_total[29s + 1s:((((8 - 2) / 3) * 7s) % 4) + 8s])",
    ),
    (
        "sum_over_time(metric1_total[29s+1s:20*500ms] offset -(20*(((((8 - 2) / 3) * 7s) % 4) + 8000ms)))",
        "sum_over_time(metric1_total[29s + 1s:20 * 500ms] offset -(20 * (((((8 - 2) / 3) * 7s) % 4) + 8s)))",
    ),
    ("metric1_total offset (100 + 2)", "metric1_total offset (100 + 2)"),
    ("metric1_total offset 100 + 2", "metric1_total offset 1m40s + 2"),
    ("metric1_total offset (2 ^ 2)", "metric1_total offset (2 ^ 2)"),
    ("metric1_total offset (-2 * 2)", "metric1_total offset (-2 * 2)"),
    ("metric1_total offset (-2 ^ 2)", "metric1_total offset (-2 ^ 2)"),
    ("metric1_total offset -4", "metric1_total offset -4s"),
    # duration_arithmetic.test.
    ("metric offset (5m + 1)", "metric offset (5m + 1)"),
    ("metric offset (5m - 120)", "metric offset (5m - 120)"),
    # generated_parser.y paren_duration_expr: parentheses around a literal are dropped (no Wrapped).
    ("x[(5m)]", "x[5m]"),
    ("x offset ((90s))", "x offset 1m30s"),
    ("x[((5m+1m))]", "x[(5m + 1m)]"),  # Wrapped is one flag: doubled parentheses print once
    ("x[-(-(1m+1m))]", "x[-(-(1m + 1m))]"),
    # NumberLiteral.String: FormatFloat 'f' (no exponent) for a plain number.
    ("x[1e3*1ms]", "x[1000 * 1ms]"),
    ("x[0.0001+1m]", "x[0.0001 + 1m]"),
    # with @, in Prometheus' order (printer.go writes " @ t" before " offset d").
    ("x[5m+1m] offset (1m*2) @ end()", "x[5m + 1m] @ end() offset (1m * 2)"),
    ("max_over_time(x[5m:30s+30s] offset (1m+1m) @ 100)", "max_over_time(x[5m:30s + 30s] @ 100.000 offset (1m + 1m))"),
    # A top-level duration literal keeps its spelling (number_duration_literal sets Duration).
    ("x > 90s", "x > 1m30s"),
    ("-5m", "-5m"),
    # Deliberate differences (scaler/query/printer.py), so that the text reads back the same:
    ("x[(-2)^2*1m]", "x[(-2) ^ 2 * 1m]"),  # Prometheus: "-2 ^ 2 * 1m", which is -(2^2) * 1m
    ("x[1s1ms+1m]", "x[1s1ms + 1m]"),  # Prometheus truncates 1.001 s * 1e9 to "1s"
]


@pytest.mark.parametrize(("text", "printed"), PRINTED)
def test_duration_expressions_print_as_prometheus_does(text: str, printed: str) -> None:
    tree = parse_promql(text)
    assert format_expr(tree) == printed
    again = parse_promql(printed)
    assert again == tree  # the same values: ranges, steps and offsets in milliseconds
    assert translate_ast(again) == translate_ast(tree)  # and the same expressions, as written
    assert format_expr(again) == printed


# Offsets Prometheus' printer spells so that they read back as another query; ours keep their
# meaning (scaler/query/printer.py). After "offset" the grammar takes a literal alone, a signed
# group alone (generated_parser.y's "unary_op LEFT_PAREN duration_expr RIGHT_PAREN", which wins
# its reduce/reduce conflict with paren_duration_expr by coming first) and an unsigned group with
# the arithmetic that follows it (shift over reduce).
REREAD = [
    # The fuzz find: "(subquery offset -1m) - 8" is a range vector in arithmetic, not an offset of -52 s.
    ("x[1m:] offset -(1m)-(2^3)", None, "binary expression must contain only scalar and instant vector types"),
    ("foo offset -(1m)-(2^3)", "foo offset -1m - (2 ^ 3)", (-60_000, "-")),
    ("foo offset +(1m)*2", "foo offset 1m * 2", (60_000, "*")),
    ("foo offset +(1m+1m)*2", "foo offset +(1m + 1m) * 2", (120_000, "*")),  # Prometheus: "(1m + 1m) * 2"
    ("foo offset (1m)-(2^3)", "foo offset (1m - (2 ^ 3))", (52_000, None)),  # Prometheus: "1m - (2 ^ 3)"
    ("foo offset (-1m)*2", "foo offset (-1m * 2)", (-120_000, None)),  # Prometheus: "-1m * 2"
    ("foo offset (1m+1m)*2 > 2", "foo offset (1m + 1m) * 2 > 2", (240_000, ">")),
    ("a + -foo offset +(1m+1m) ^ 2", "a + -foo offset +(1m + 1m) ^ 2", (120_000, "+")),
]


@pytest.mark.parametrize(("text", "printed", "expected"), REREAD)
def test_an_offset_prints_as_text_that_reads_back_as_the_same_query(
    text: str, printed: str | None, expected: Any
) -> None:
    if printed is None:
        with pytest.raises(QueryError, match=expected):
            parse_promql(text)
        return
    tree = parse_promql(text)
    offset_ms, top = expected
    assert (tree.op if isinstance(tree, BinaryExpr) else None) == top
    assert [e.offset_ms for e in walk(tree) if isinstance(e, VectorSelector) and e.name == "foo"] == [offset_ms]
    assert format_expr(tree) == printed
    again = parse_promql(printed)
    assert again == tree
    assert format_expr(again) == printed


def test_the_expression_is_kept_beside_its_value() -> None:
    ms = parse_promql("x[26m+4m]")
    assert isinstance(ms, MatrixSelector) and ms.range_ms == 1_800_000 and str(ms.range_expr) == "26m + 4m"
    assert ms == parse_promql("x[30m]")  # evaluation reads the value: the same tree as a plain range
    sq = parse_promql("x[29s+1s:20*500ms] offset -(1m+1m)")
    assert isinstance(sq, SubqueryExpr)
    assert (sq.range_ms, sq.step_ms, sq.offset_ms) == (30_000, 10_000, -120_000)
    vs = parse_promql("x offset (1m-1m)")
    assert isinstance(vs, VectorSelector) and vs.offset_ms == 0 and vs.offset_expr is not None
    assert format_expr(vs) == "x offset (1m - 1m)"


def _number(val: str, duration: bool) -> dict[str, Any]:
    return {"type": "numberLiteral", "val": val, "duration": duration}


def _dexpr(op: str, lhs: Any, rhs: Any, wrapped: bool = False) -> dict[str, Any]:
    return {"type": "durationExpr", "op": op, "lhs": lhs, "rhs": rhs, "wrapped": wrapped}


# web/api/v1/translate_ast_test.go (TestTranslateASTDurationExpressions), the cases without the
# flag-only step()/range()/min()/max(); and parse_test.go's `foo offset -(1^2)` tree.
SHOWN: list[tuple[str, str, dict[str, Any]]] = [
    ("foo[5m]", "matrixSelector", {"range": 300_000, "rangeExpr": None, "offset": 0, "offsetExpr": None}),
    (
        "foo[5m] offset 1m",
        "matrixSelector",
        {"range": 300_000, "rangeExpr": None, "offset": 60_000, "offsetExpr": None},
    ),
    ("foo[5m+1m]", "matrixSelector", {"range": 0, "rangeExpr": _dexpr("+", _number("300", True), _number("60", True))}),
    (
        "foo[5m+1m] offset (10m/2)",
        "matrixSelector",
        {
            "rangeExpr": _dexpr("+", _number("300", True), _number("60", True)),
            "offset": 0,
            "offsetExpr": _dexpr("/", _number("600", True), _number("2", False), wrapped=True),
        },
    ),
    (
        "foo[5m:1m]",
        "subquery",
        {"range": 300_000, "rangeExpr": None, "step": 60_000, "stepExpr": None, "offset": 0, "offsetExpr": None},
    ),
    (
        "foo[4s+4s:1s*2] offset (5s-8)",
        "subquery",
        {
            "range": 0,
            "rangeExpr": _dexpr("+", _number("4", True), _number("4", True)),
            "step": 0,
            "stepExpr": _dexpr("*", _number("1", True), _number("2", False)),
            "offset": 0,
            "offsetExpr": _dexpr("-", _number("5", True), _number("8", False), wrapped=True),
        },
    ),
    ("foo offset 5m", "vectorSelector", {"offset": 300_000, "offsetExpr": None}),
    (
        "foo offset -(1^2)",
        "vectorSelector",
        {"offset": 0, "offsetExpr": _dexpr("-", None, _dexpr("^", _number("1", False), _number("2", False), True))},
    ),
    # number_duration_literal holds Go's time.Duration.Seconds() (sec + nsec/1e9): 1 + 0.118.
    (
        "x[1s118ms+1m]",
        "matrixSelector",
        {"range": 0, "rangeExpr": _dexpr("+", _number("1.1179999999999999", True), _number("60", True))},
    ),
    (
        "foo[-5m+35m]",
        "matrixSelector",
        {"range": 0, "rangeExpr": _dexpr("+", _number("-300", True), _number("2100", True))},
    ),
]


@pytest.mark.parametrize(("text", "kind", "fields"), SHOWN)
def test_parse_query_shows_duration_expressions_as_prometheus_does(
    text: str, kind: str, fields: dict[str, Any]
) -> None:
    tree = translate_ast(parse_promql(text))
    assert tree["type"] == kind
    assert {k: tree[k] for k in fields} == fields


def test_format_and_parse_query_over_http(service: RunningService) -> None:
    """Every case above through a real server: ``format_query`` by GET and POST, ``parse_query``."""
    wrong = []
    for i, (text, printed) in enumerate(PRINTED):
        if i % 2:
            reply = httpx.post(f"{service.http}/api/v1/format_query", data={"query": text})
        else:
            reply = httpx.get(f"{service.http}/api/v1/format_query", params={"query": text})
        body = reply.json()
        if reply.status_code != 200 or body != {"status": "success", "data": printed}:
            wrong.append((text, reply.status_code, body))
    assert wrong == []
    for text, kind, fields in SHOWN:
        reply = httpx.get(f"{service.http}/api/v1/parse_query", params={"query": text})
        assert reply.status_code == 200, reply.text
        tree = reply.json()["data"]
        assert tree["type"] == kind and {k: tree[k] for k in fields} == fields, text
    body = httpx.post(f"{service.http}/api/v1/parse_query", data={"query": "rate(x[26m+4m])"}).json()
    assert body["data"]["args"][0]["rangeExpr"] == _dexpr("+", _number("1560", True), _number("240", True))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("x[5m%0]", "modulo by zero"),  # generated_parser.y duration_expr MOD: "modulo by zero"
        ("x[5m/(1m-1m)]", "division by zero"),
        ("x offset (1m+1m) offset 5m", "offset may not be set multiple times"),  # an expression counts as set
    ],
)
def test_duration_expression_errors_over_http(service: RunningService, text: str, message: str) -> None:
    reply = httpx.get(f"{service.http}/api/v1/format_query", params={"query": text})
    assert reply.status_code == 400
    assert reply.json()["errorType"] == "bad_data" and message in reply.json()["error"]
