"""Parser: structure, precedence, Prometheus 3 syntax, and precise error messages/positions.

Most messages below were checked against Prometheus itself (see tests/promql, which compares
them with promtool on every run); the rest follow Prometheus 3's grammar.
"""

from __future__ import annotations

import json
import math

import pytest

from scaler.model import Matcher, MatchOp
from scaler.query import QueryError, format_expr, parse_metric_selector, parse_promql
from scaler.query.ast import (
    AggregateExpr,
    At,
    BinaryExpr,
    Call,
    MatrixSelector,
    NumberLiteral,
    ParenExpr,
    StringLiteral,
    UnaryExpr,
    ValueType,
    VectorMatching,
    VectorSelector,
)
from scaler.query.lexer import Lexer
from scaler.query.tokens import T, go_quote, parse_number
from tests.promql.promql_cases import EXPRESSIONS


def sel(name: str, *matchers: Matcher) -> VectorSelector:
    return VectorSelector(name, (*matchers, Matcher.of("__name__", "=", name)))


def test_selector_with_all_matcher_types() -> None:
    e = parse_promql('http_requests_total{job="api", code!="200", path=~"/a.*", m!~"x|y"}')
    assert e == sel(
        "http_requests_total",
        Matcher.of("job", "=", "api"),
        Matcher.of("code", "!=", "200"),
        Matcher.of("path", "=~", "/a.*"),
        Matcher.of("m", "!~", "x|y"),
    )
    assert e.type is ValueType.VECTOR


def test_metric_names_with_colons_and_keywords_as_names() -> None:
    assert parse_promql("vllm:num_requests_waiting") == sel("vllm:num_requests_waiting")
    assert parse_promql("sum") == sel("sum")
    assert parse_promql("by + offset") == BinaryExpr("+", sel("by"), sel("offset"), VectorMatching())
    assert parse_promql('{__name__="up"}') == VectorSelector("", (Matcher.of("__name__", "=", "up"),))


def test_utf8_quoted_metric_and_label_names() -> None:
    e = parse_promql('{"http.server.duration", "http.method"="GET"}')
    assert isinstance(e, VectorSelector)
    assert e.matchers == (Matcher.of("__name__", "=", "http.server.duration"), Matcher.of("http.method", "=", "GET"))
    assert format_expr(e) == '{"http.server.duration", "http.method"="GET"}'
    assert parse_promql('sum by ("k8s.pod") (x)') == AggregateExpr("sum", sel("x"), None, ("k8s.pod",))


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("x[30s]", 30_000),
        ("x[5m]", 300_000),
        ("x[1h30m]", 5_400_000),
        ("x[500ms]", 500),
        ("x[1d]", 86_400_000),
        ("x[90]", 90_000),
        ("x[1.5]", 1500),
        ("x[2w]", 1_209_600_000),
    ],
)
def test_range_durations(text: str, ms: int) -> None:
    e = parse_promql(text)
    assert isinstance(e, MatrixSelector) and e.range_ms == ms
    assert e.type is ValueType.MATRIX


def test_offset_and_at_modifiers() -> None:
    e = parse_promql("x offset 5m")
    assert isinstance(e, VectorSelector) and e.offset_ms == 300_000
    e = parse_promql("x offset -1m30s")
    assert isinstance(e, VectorSelector) and e.offset_ms == -90_000
    e = parse_promql("x offset +1m30s")  # Prometheus 3: offset_duration_expr: unary_op number_duration_literal
    assert isinstance(e, VectorSelector) and e.offset_ms == 90_000
    e = parse_promql("rate(x[5m] offset 1m)")
    assert isinstance(e, Call)
    arg = e.args[0]
    assert isinstance(arg, MatrixSelector) and arg.selector.offset_ms == 60_000
    e = parse_promql("x @ 1700000000.5 offset 1m")
    assert isinstance(e, VectorSelector) and e.at == At("time", 1_700_000_000_500)
    e = parse_promql("x[1m] @ end()")
    assert isinstance(e, MatrixSelector) and e.selector.at == At("end")
    e = parse_promql("x @ start()")
    assert isinstance(e, VectorSelector) and e.at == At("start")


def test_precedence_and_associativity() -> None:
    a, b, c = sel("a"), sel("b"), sel("c")
    m = VectorMatching()
    assert parse_promql("a + b * c") == BinaryExpr("+", a, BinaryExpr("*", b, c, m), m)
    assert parse_promql("a - b - c") == BinaryExpr("-", BinaryExpr("-", a, b, m), c, m)
    assert parse_promql("a ^ b ^ c") == BinaryExpr("^", a, BinaryExpr("^", b, c, m), m)
    # unary minus binds like '*': -a^b = -(a^b), -a*b = (-a)*b
    assert parse_promql("-a ^ b") == UnaryExpr("-", BinaryExpr("^", a, b, m))
    assert parse_promql("-a * b") == BinaryExpr("*", UnaryExpr("-", a), b, m)
    many = VectorMatching("many-to-many")
    assert parse_promql("a or b and c") == BinaryExpr("or", a, BinaryExpr("and", b, c, many), many)
    assert parse_promql("a > b + c") == BinaryExpr(">", a, BinaryExpr("+", b, c, m), m)
    assert parse_promql("(a + b) * c") == BinaryExpr("*", ParenExpr(BinaryExpr("+", a, b, m)), c, m)


def test_number_literals() -> None:
    assert parse_promql("-1") == NumberLiteral(-1.0)
    assert parse_promql("0x1F") == NumberLiteral(31.0)
    assert parse_promql("010") == NumberLiteral(8.0)  # Go's ParseInt(s, 0, 64): octal
    assert parse_promql("1e3") == NumberLiteral(1000.0)
    assert parse_promql(".5") == NumberLiteral(0.5)
    assert parse_promql("5m") == NumberLiteral(300.0)  # Prometheus 3: durations are numbers
    inf = parse_promql("-Inf")
    assert isinstance(inf, NumberLiteral) and inf.value == -math.inf
    nan = parse_promql("NaN")
    assert isinstance(nan, NumberLiteral) and math.isnan(nan.value)
    assert parse_number("1_000") == 1000.0


def test_strings_and_escapes() -> None:
    assert parse_promql(r'"a\"b\n\x41\u00e9"') == StringLiteral('a"b\nAé')
    assert parse_promql("'single \\' quoted'") == StringLiteral("single ' quoted")
    assert parse_promql(r"`raw \n`") == StringLiteral(r"raw \n")


def test_aggregations_with_modifiers_before_or_after() -> None:
    x = sel("x")
    assert parse_promql("sum by (a, b) (x)") == AggregateExpr("sum", x, None, ("a", "b"))
    assert parse_promql("sum(x) by (a, b)") == AggregateExpr("sum", x, None, ("a", "b"))
    assert parse_promql("avg without (a) (x)") == AggregateExpr("avg", x, None, ("a",), True)
    assert parse_promql("topk(3, x)") == AggregateExpr("topk", x, NumberLiteral(3.0))
    assert parse_promql('count_values("v", x)') == AggregateExpr("count_values", x, StringLiteral("v"))
    assert parse_promql("SUM BY (a) (x)") == AggregateExpr("sum", x, None, ("a",))
    assert parse_promql("sum by (by, on, sum) (x)") == AggregateExpr("sum", x, None, ("by", "on", "sum"))


def test_vector_matching_modifiers() -> None:
    e = parse_promql("a > bool on(x, y) group_left(z) b")
    assert e == BinaryExpr(">", sel("a"), sel("b"), VectorMatching("many-to-one", ("x", "y"), True, ("z",)), True)
    e = parse_promql("a / ignoring(x) group_right b")
    assert e == BinaryExpr("/", sel("a"), sel("b"), VectorMatching("one-to-many", ("x",)))
    e = parse_promql("a unless on() b")
    assert e == BinaryExpr("unless", sel("a"), sel("b"), VectorMatching("many-to-many", (), True))
    assert parse_promql("1 + 2") == BinaryExpr("+", NumberLiteral(1.0), NumberLiteral(2.0))


def test_comments_and_whitespace() -> None:
    assert parse_promql("sum(\n  x # the metric\n)\n") == AggregateExpr("sum", sel("x"))


def test_tokens_inside_braces_are_identifiers() -> None:
    lexer = Lexer('x{sum="a", by!~"b"}')
    kinds = []
    while (tok := lexer.next_token()).type is not T.EOF:
        kinds.append(tok.type)
    assert kinds == [
        T.IDENTIFIER,
        T.LEFT_BRACE,
        T.IDENTIFIER,
        T.EQL,
        T.STRING,
        T.COMMA,
        T.IDENTIFIER,
        T.NEQ_REGEX,
        T.STRING,
        T.RIGHT_BRACE,
    ]


@pytest.mark.parametrize("text", EXPRESSIONS)
def test_printer_round_trips(text: str) -> None:
    """``format_expr`` writes PromQL that parses back to the same tree."""
    tree = parse_promql(text)
    assert parse_promql(format_expr(tree)) == tree


def test_printer_spelling() -> None:
    assert (
        str(parse_promql('sum by (a) (rate(x{b="c"}[90s] offset 1m))'))
        == 'sum by (a) (rate(x{b="c"}[1m30s] offset 1m))'
    )
    assert str(parse_promql("a>bool on(x)group_left(y)b")) == "a > bool on(x) group_left(y) b"
    assert str(parse_promql("1e6 + 0.5")) == "1e+06 + 0.5"


def test_parse_metric_selector() -> None:
    assert parse_metric_selector('up{job="a"}') == (Matcher.of("job", "=", "a"), Matcher.of("__name__", "=", "up"))
    assert parse_metric_selector('{__name__=~"a.*"}')[0].op is MatchOp.RE
    with pytest.raises(QueryError, match="unexpected"):
        parse_metric_selector("rate(x[5m])")


ERRORS = [
    # (query, line, col, message)
    ("", 1, 1, "no expression found in input"),
    ("x{", 1, 3, "unexpected end of input inside braces"),
    ('x{a="', 1, 5, "unterminated quoted string"),
    ("sum by foo (x)", 1, 8, 'unexpected identifier "foo" in grouping opts, expected "("'),
    ("1 +", 1, 4, "unexpected end of input"),
    ("rate(x)", 1, 6, 'expected type range vector in call to function "rate", got instant vector'),
    ("foo{a}", 1, 6, 'unexpected "}" in label matching, expected label matching operator'),
    ("foo{a=}", 1, 7, 'unexpected "}" in label matching, expected string'),
    ('foo{a="b" c="d"}', 1, 11, 'unexpected identifier "c" in label matching, expected "," or "}"'),
    ("1 > 2", 1, 3, "comparisons between scalars must use BOOL modifier"),
    ("foo}", 1, 4, "unexpected character: '}'"),
    ("sum(foo", 1, 8, "unclosed left parenthesis"),
    ("foo)", 1, 4, "unexpected right parenthesis ')'"),
    ("foo[5m", 1, 7, "unexpected end of input in duration expression"),
    ("foo offset", 1, 11, "unexpected end of input in offset, expected number or duration"),
    ("sum(x) by", 1, 10, 'unexpected end of input in grouping opts, expected "("'),
    ('{a=""}', 1, 1, "vector selector must contain at least one non-empty matcher"),
    ('{a=~".*"}', 1, 1, "vector selector must contain at least one non-empty matcher"),
    ("unknown_fn(x)", 1, 1, 'unknown function with name "unknown_fn"'),
    ("holt_winters(x[5m], 0.5, 0.5)", 1, 1, 'unknown function with name "holt_winters"'),
    ("rate(x[5m], 1)", 1, 1, 'expected 1 argument(s) in call to "rate", got 2'),
    ("round(x, 1, 2)", 1, 1, 'expected at most 2 argument(s) in call to "round", got 3'),
    ('label_join(x, "a")', 1, 1, 'expected at least 3 argument(s) in call to "label_join", got 2'),
    ("sum()", 1, 1, "no arguments for aggregate expression provided"),
    ("topk(x)", 1, 1, "wrong number of arguments for aggregate expression provided, expected 2, got 1"),
    ("x[5m] offset 1m [5m]", 1, 17, "ranges only allowed for vector selectors"),
    ("x offset 1m [5m]", 1, 13, "no offset modifiers allowed before range"),
    ("x @ 10 [5m]", 1, 8, "no @ modifiers allowed before range"),
    ("(x)[5m]", 1, 4, "ranges only allowed for vector selectors"),
    (
        "sum(x) offset 5m",
        1,
        1,
        "offset modifier must be preceded by an instant vector selector or range vector selector or a subquery",
    ),
    ("x and 1", 1, 1, 'set operator "and" not allowed in binary scalar expression'),
    ("x + bool y", 1, 3, "bool modifier can only be used on comparison operators"),
    ("x + on(a) group_left(a) y", 1, 3, 'label "a" must not occur in ON and GROUP clause at once'),
    (
        "-x[5m]",
        1,
        1,
        'unary expression only allowed on expressions of type scalar or instant vector, got "range vector"',
    ),
    ("x @", 1, 4, "unexpected end of input in @, expected timestamp"),
    ('foo{__name__="bar"}', 1, 1, 'metric name must not be set twice: "foo" or "bar"'),
    ("x offset 1m offset 2m", 1, 1, "offset may not be set multiple times"),
    ("x @ 1 @ 2", 1, 1, "@ <timestamp> may not be set multiple times"),
    ("rate(x[5m],)", 1, 11, "trailing commas not allowed in function call args"),
    ("a == on(a) group_left b and on(a) group_left c", 1, 1, 'no grouping allowed for "and" operation'),
    ("a !b", 1, 3, "unexpected character after '!': 'b'"),
    ("count_values(1, x)", 1, 14, "expected type string in aggregation parameter, got scalar"),
    ("sum(x[5m])", 1, 5, "expected type instant vector in aggregation expression, got range vector"),
    ("x + y[5m]", 1, 5, "binary expression must contain only scalar and instant vector types"),
    ("1 + on(a) x", 1, 1, "vector matching only allowed between instant vectors"),
    ('x{a=~"("}', 1, 3, "error parsing regexp: missing closing ): `(`"),
    ("x[5mx]", 1, 3, 'bad number or duration syntax: "5mx"'),
    ("x[1.5m]", 1, 3, 'not a valid duration string: "1.5m"'),
    ('"a\\q"', 1, 1, "unknown escape sequence U+0071 'q'"),
    ("x y", 1, 3, 'unexpected identifier "y"'),
    ("sum(x y)", 1, 7, 'unexpected identifier "y" in aggregation'),
    ("sum by (a", 1, 10, "unclosed left parenthesis"),
    ("1 + @", 1, 5, "unexpected <op:@>"),
    ("sum by (a b) (x)", 1, 11, 'unexpected identifier "b" in grouping opts, expected "," or ")"'),
    ("sum by (1) (x)", 1, 9, 'unexpected number "1" in grouping opts, expected label'),
    ("x\n  + on(a) group_left(a) y", 2, 3, 'label "a" must not occur in ON and GROUP clause at once'),
    ("x[5m:0s]", 1, 2, "step must be greater than 0"),
    ("rate(x[0s:])", 1, 7, "range must be greater than 0"),
    ("x[1m][5m:1m]", 1, 1, "subquery is only allowed on instant vector, got range vector instead"),
    ("x[2m/0]", 1, 5, "division by zero"),
    (
        "x[step()]",
        1,
        3,
        "unsupported: step() in a duration expression "
        "(experimental: Prometheus enables it only with --enable-feature=promql-duration-expr)",
    ),
    ("limitk(2, x)", 1, 1, "unsupported: limitk() (experimental aggregation)"),
    (
        "first_over_time(x[5m])",
        1,
        1,
        'unsupported: function "first_over_time" '
        "(experimental: Prometheus enables it only with --enable-feature=promql-experimental-functions)",
    ),
]


@pytest.mark.parametrize(("text", "line", "col", "message"), ERRORS)
def test_errors_are_precise(text: str, line: int, col: int, message: str) -> None:
    with pytest.raises(QueryError) as info:
        parse_promql(text)
    err = info.value
    assert (err.line, err.col, err.message) == (line, col, message)
    assert str(err) == f"{line}:{col}: parse error: {message}"
    assert err.kind == "bad_data"


QUOTED = ["", "plain", "so-00001-llm-d", 'a"b', "a\\b", "tab\there", "nl\n", "\x00\x1f", "\x7f", "{}[]'"]


# a lone surrogate built with chr(): the fuzz seeds take this file's string literals as UTF-8
@pytest.mark.parametrize("text", [*QUOTED, "é ключ 値 \u2028", chr(0xD800)])
def test_go_quote_is_json_s_quoting_with_or_without_its_shortcut(text: str) -> None:
    assert go_quote(text) == json.dumps(text, ensure_ascii=False)
