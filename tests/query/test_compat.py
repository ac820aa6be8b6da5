"""The Go reference's compat query form: grammar, errors, translation, and semantics (it runs
through the same engine as PromQL)."""

from __future__ import annotations

import pytest

from scaler.model import STALE_NAN
from scaler.query import (
    OPERATIONS,
    CompatQuery,
    QueryError,
    Vector,
    compat_to_expr,
    compat_to_promql_text,
    parse_compat,
    parse_promql,
)
from tests.query.helpers import engine_with, values

S = 1000


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("vllm:num_requests_waiting", CompatQuery("vllm:num_requests_waiting")),
        ("sum(vllm:num_requests_waiting)", CompatQuery("vllm:num_requests_waiting")),
        ('avg(x{model="llama", role=prefill})', CompatQuery("x", (("model", "llama"), ("role", "prefill")), "avg")),
        (
            '  max ( http.server/duration { a = b , c="d e" , } )  ',
            CompatQuery("http.server/duration", (("a", "b"), ("c", "d e")), "max"),
        ),
        ("count(x{})", CompatQuery("x", (), "count")),
        ("MIN(x)", CompatQuery("x", (), "min")),
        ('x{a="q\\"uote", b=\'single\'}', CompatQuery("x", (("a", 'q"uote'), ("b", "single")))),
        ("sum", CompatQuery("sum")),
        ("x{k8s.pod.name=p-1}", CompatQuery("x", (("k8s.pod.name", "p-1"),))),
        ('avg(m{a=1, b="2=2"})', CompatQuery("m", (("a", "1"), ("b", "2=2")), "avg")),
    ],
)
def test_grammar(text: str, expected: CompatQuery) -> None:
    assert parse_compat(text) == expected


@pytest.mark.parametrize(
    ("text", "col", "message"),
    [
        ("", 1, "unexpected end of input, expected metric name"),
        ("sum()", 5, 'unexpected ")", expected metric name'),
        ("sum(x", 6, 'unexpected end of input, expected ")"'),
        ("x)", 2, 'unexpected ")", expected end of query'),
        ("x y", 3, 'unexpected "y", expected end of query'),
        ("x{a}", 4, 'unexpected "}", expected "=" after label "a"'),
        ("x{a!=b}", 4, 'unexpected "!", expected "=" after label "a"'),
        ("x{a=~b}", 4, 'unexpected "=", expected "=" after label "a"'),
        ("x{a=}", 5, 'empty value for label "a"'),
        ('x{a=""}', 5, 'empty value for label "a"'),
        ("x{a=b", 6, 'unexpected end of input, expected "," or "}"'),
        ("x{a=b c=d}", 7, 'unexpected "c", expected "," or "}"'),
        ("x{a=b, a=c}", 8, 'label "a" given twice'),
        ('x{a="b}', 5, "unterminated quoted string"),
        ("x{,}", 3, 'unexpected ",", expected label name or "}"'),
        # kedify/otel-add-on's parser rejects it too (metric/simple_parser_test.go); a quoted value may carry "="
        ("avg(metric_foo_bar{a=1, b=2=2})", 28, 'unexpected "=" in the value of label "b"'),
        ("x{a=b=}", 6, 'unexpected "=" in the value of label "a"'),
    ],
)
def test_errors_point_at_the_problem(text: str, col: int, message: str) -> None:
    with pytest.raises(QueryError) as info:
        parse_compat(text)
    assert info.value.line == 1 and info.value.col == col
    assert info.value.message.startswith(message), info.value.message


FUNCTIONS = {
    "last_one": "last_over_time",
    "rate": "kedify_rate",
    "count": "count_over_time",
    "avg": "avg_over_time",
    "min": "min_over_time",
    "max": "max_over_time",
    "sum": "sum_over_time",
    "increase": "increase",
}


@pytest.mark.parametrize("operation", OPERATIONS)
def test_each_operation_translates_to_promql(operation: str) -> None:
    text = compat_to_promql_text('avg(vllm:x{model="m"})', operation, 90_000)
    assert text == f'avg({FUNCTIONS[operation]}(vllm:x{{model="m"}}[1m30s]) and vllm:x{{model="m"}})'
    assert parse_promql(text) == compat_to_expr(parse_compat('avg(vllm:x{model="m"})'), operation, 90_000)


def test_defaults_and_odd_names() -> None:
    assert compat_to_promql_text("x") == "sum(last_over_time(x[2m]) and x)"
    assert (
        compat_to_promql_text("http.server.duration{k8s.pod=a}", "rate", 30_000)
        == 'sum(kedify_rate({"http.server.duration", "k8s.pod"="a"}[30s]) and {"http.server.duration", "k8s.pod"="a"})'
    )
    assert OPERATIONS[0] == "last_one" and len(OPERATIONS) == 8


def test_unknown_operation_names_the_allowed_ones() -> None:
    with pytest.raises(QueryError) as info:
        compat_to_expr(parse_compat("x"), "median", 60_000)
    assert str(info.value) == (
        'unknown operationOverTime "median": must be one of last_one, rate, count, avg, min, max, sum, increase'
    )
    with pytest.raises(QueryError, match="window must be positive"):
        compat_to_expr("x", "rate", 0)


SERIES = {
    'vllm:num_requests_waiting{pod="a",role="prefill"}': [(0, 1.0), (15 * S, 3.0), (30 * S, 5.0)],
    'vllm:num_requests_waiting{pod="b",role="prefill"}': [(0, 10.0), (15 * S, 20.0), (30 * S, 40.0)],
    'vllm:num_requests_waiting{pod="c"}': [(0, 100.0), (15 * S, 100.0), (30 * S, 100.0)],
    '{"http.server.duration", pod="a"}': [(0, 2.0), (30 * S, 4.0)],
}


def run(text: str, operation: str = "last_one", window_ms: int = 60_000) -> dict[str, float]:
    expr = compat_to_expr(parse_compat(text), operation, window_ms)
    return values(engine_with(SERIES).instant(expr, 35 * S))


def test_selection_requires_every_label() -> None:
    assert run("vllm:num_requests_waiting{role=prefill}") == {"{}": 45.0}
    assert run("vllm:num_requests_waiting") == {"{}": 145.0}
    assert run('vllm:num_requests_waiting{role="decode"}') == {}  # not found: empty, never 0
    assert run("nope") == {}


@pytest.mark.parametrize(
    ("operation", "expected"),
    [
        ("last_one", 45.0),
        ("count", 6.0),
        ("sum", 79.0),
        ("min", 11.0),
        ("max", 45.0),
        ("avg", 3.0 + 70.0 / 3),
    ],
)
def test_operations_over_time(operation: str, expected: float) -> None:
    assert run("vllm:num_requests_waiting{role=prefill}", operation) == pytest.approx({"{}": expected})


def test_increase_matches_promql() -> None:
    engine = engine_with(SERIES)
    via_compat = run("vllm:num_requests_waiting{role=prefill}", "increase")
    via_promql = values(engine.instant('sum(increase(vllm:num_requests_waiting{role="prefill"}[1m]))', 35 * S))
    assert via_compat == via_promql != {}


def test_rate_is_kedifys_and_not_promqls() -> None:
    # kedify/otel-add-on (metric/mem_store.go): the reset-safe increase between the first and the
    # last sample over the seconds between them; pods a and b at 0, 15 and 30 s: (4 + 30) / 30.
    assert run("vllm:num_requests_waiting{role=prefill}", "rate") == pytest.approx({"{}": 34 / 30})
    promql = values(engine_with(SERIES).instant('sum(rate(vllm:num_requests_waiting{role="prefill"}[1m]))', 35 * S))
    assert promql != pytest.approx({"{}": 34 / 30})  # Prometheus extrapolates over the window


def counter_at(points: list[tuple[int, float]], now_s: int, window_s: int) -> float | None:
    """Compat ``rate`` of one counter with ``points`` (seconds, value) at ``now_s``."""
    engine = engine_with({"c": [(t * S, v) for t, v in points]}, now_ms=now_s * S)
    got = values(engine.instant(compat_to_expr(parse_compat("c"), "rate", window_s * S), now_s * S))
    return got.get("{}")


@pytest.mark.parametrize(
    ("points", "now_s", "window_s", "expected"),
    [
        # a counter rising 1/s over the last 60 s of a 120 s window (a new series): 60 / 60
        ([(60, 0.0), (80, 20.0), (100, 40.0), (120, 60.0)], 120, 120, 1.0),
        # a reset: 50, 60, 5, 15 over 30 s -> (10 + 5 + 10) / 30
        ([(90, 50.0), (100, 60.0), (110, 5.0), (120, 15.0)], 120, 120, 25 / 30),
        # kedify's mem_store_test.go: 1..6 a second apart; two seconds apart; 1, 3, ..., 11
        ([(t, float(t - 14)) for t in range(15, 21)], 20, 80, 1.0),
        ([(10 + 2 * i, float(i + 1)) for i in range(6)], 20, 80, 0.5),
        ([(15 + i, float(1 + 2 * i)) for i in range(6)], 20, 80, 2.0),
        # one sample: found, rate 0 (kedify: found, 0)
        ([(119, 42.0)], 120, 120, 0.0),
        # only the samples inside the window count: 100 -> 110 -> 130 over the last 20 s
        ([(50, 0.0), (100, 100.0), (110, 110.0), (120, 130.0)], 120, 25, 30 / 20),
    ],
)
def test_rate_by_hand(points: list[tuple[int, float]], now_s: int, window_s: int, expected: float) -> None:
    assert counter_at(points, now_s, window_s) == pytest.approx(expected)


def test_rate_of_no_sample_in_the_window_is_not_found() -> None:
    assert counter_at([(10, 1.0), (20, 2.0)], 120, 60) is None


@pytest.mark.parametrize(
    ("agg", "expected"),
    [
        ("sum", 45.0),
        ("avg", 22.5),
        ("min", 5.0),
        ("max", 40.0),
        ("count", 2.0),
    ],
)
def test_outer_aggregations(agg: str, expected: float) -> None:
    assert run(f"{agg}(vllm:num_requests_waiting{{role=prefill}})") == {"{}": expected}


def test_escaped_name_resolves_to_the_stored_name() -> None:
    assert run("http_server_duration") == {"{}": 4.0}
    assert run("http.server.duration") == {"{}": 4.0}


def test_result_is_a_single_sample_vector() -> None:
    expr = compat_to_expr(parse_compat("vllm:num_requests_waiting"), "max", 60_000)
    result = engine_with(SERIES).instant(expr, 35 * S)
    assert isinstance(result, Vector) and len(result) == 1 and result[0].labels == ()


def test_a_series_whose_newest_sample_is_a_staleness_marker_never_contributes() -> None:
    series = {
        'vllm:num_requests_running{pod="gone"}': [(0, 10.0), (15 * S, 10.0), (30 * S, STALE_NAN)],
        'vllm:num_requests_running{pod="live"}': [(0, 3.0), (15 * S, 3.0), (30 * S, 3.0)],
    }
    engine = engine_with(series)
    for operation in OPERATIONS:
        expr = compat_to_expr(parse_compat("vllm:num_requests_running"), operation, 60_000)
        live_only = compat_to_expr(parse_compat("vllm:num_requests_running{pod=live}"), operation, 60_000)
        assert values(engine.instant(expr, 35 * S)) == values(engine.instant(live_only, 35 * S)), operation
    # plain PromQL keeps Prometheus semantics: last_over_time skips the marker and sees the old 10
    promql = values(engine.instant("sum(last_over_time(vllm:num_requests_running[1m]))", 35 * S))
    assert promql == {"{}": 13.0}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # only ASCII space, tab, CR and LF end a name or a bare value; other whitespace is part of it
        ("a\u00a0b{k=v\u2003w}", CompatQuery("a\u00a0b", (("k", "v\u2003w"),))),
        ("a\x0bb{k=v\x0cw}", CompatQuery("a\x0bb", (("k", "v\x0cw"),))),
        ("x{k=v!~}", CompatQuery("x", (("k", "v!~"),))),  # "!" and "~" end a key, not a value
        ("x{k=[a-z]+.*}", CompatQuery("x", (("k", "[a-z]+.*"),))),  # regex characters are plain here
        ("é{ключ=値}", CompatQuery("é", (("ключ", "値"),))),
    ],
)
def test_names_keys_and_bare_values_end_only_at_their_stop_characters(text: str, expected: CompatQuery) -> None:
    assert parse_compat(text) == expected


@pytest.mark.parametrize("text", ["x{k!=v}", "x{k~v}", "x{=v}", "x{k=a=b}"])
def test_a_key_or_value_cut_short_by_a_stop_character_is_an_error(text: str) -> None:
    with pytest.raises(QueryError):
        parse_compat(text)
