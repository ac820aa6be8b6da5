"""Functions, aggregations and float formatting: the cases the differential suite does not pin
down (Go's float corner cases, label templates, calendar functions)."""

from __future__ import annotations

import math

import pytest

from scaler.query import Vector, format_timestamp, format_value
from scaler.query import gomath as g
from scaler.query.aggregate import aggregate
from scaler.query.functions import expand_template
from scaler.query.vec import Vec
from tests.query.helpers import engine_with, values

S = 1000


def at(query: str, series: dict[str, list[tuple[int, float]]] | None = None, t: int = S) -> dict[str, float]:
    return values(engine_with(series or {}).instant(query, t))


def test_go_float_semantics() -> None:
    assert g.div(1.0, 0.0) == math.inf
    assert g.div(-1.0, 0.0) == -math.inf
    assert g.div(1.0, -0.0) == -math.inf
    assert math.isnan(g.div(0.0, 0.0))
    assert math.isnan(g.mod(5.0, 0.0))
    assert g.mod(-5.0, 3.0) == -2.0
    assert g.mod(5.0, math.inf) == 5.0
    assert g.pow_(2.0, 10.0) == 1024.0
    assert g.pow_(10.0, 400.0) == math.inf
    assert g.pow_(-10.0, 401.0) == -math.inf
    assert g.pow_(0.0, -1.0) == math.inf
    assert g.pow_(-0.0, -3.0) == -math.inf
    assert math.isnan(g.pow_(-8.0, 1 / 3))
    assert g.pow_(math.nan, 0.0) == 1.0
    assert g.ln(0.0) == -math.inf
    assert math.isnan(g.ln(-1.0))
    assert g.log2(8.0) == 3.0
    assert g.log10(0.0) == -math.inf
    assert math.isnan(g.sqrt(-1.0))
    assert g.exp(1000.0) == math.inf
    assert g.go_max(math.nan, math.inf) == math.inf
    assert math.isnan(g.go_max(math.nan, 1.0))
    assert math.copysign(1.0, g.go_max(-0.0, 0.0)) == 1.0
    assert math.copysign(1.0, g.go_min(-0.0, 0.0)) == -1.0
    assert g.TRIG["atanh"](1.0) == math.inf
    assert math.isnan(g.TRIG["acos"](2.0))
    assert g.TRIG["cosh"](1000.0) == math.inf


def test_kahan_summation_is_compensated() -> None:
    total, c = 0.0, 0.0
    for v in (1e16, 1.0, -1e16):
        total, c = g.kahan_inc(v, total, c)
    assert total + c == 1.0


def test_exact_sum_is_fsum_or_ieee_where_fsum_raises() -> None:
    assert g.exact_sum([0.1] * 10) == 1.0  # correctly rounded
    assert math.isnan(g.exact_sum([math.inf, 1.0, -math.inf]))
    assert g.exact_sum([1e308, 1e308]) == math.inf
    assert g.exact_sum([-1e308, -1e308]) == -math.inf
    assert g.exact_sum([]) == 0.0


def test_quantile() -> None:
    assert g.quantile(0.5, [3.0, 1.0, 2.0]) == 2.0
    assert g.quantile(0.25, [1.0, 2.0]) == 1.25
    assert g.quantile(-1, [1.0]) == -math.inf
    assert g.quantile(2, [1.0]) == math.inf
    assert math.isnan(g.quantile(0.5, []))
    assert math.isnan(g.quantile(0.0, [math.nan, 1.0]))  # NaN sorts first


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1.0, "1"),
        (1.5, "1.5"),
        (-0.25, "-0.25"),
        (1e21, "1000000000000000000000"),
        (1e-7, "0.0000001"),
        (123456789.123, "123456789.123"),
        (math.nan, "NaN"),
        (math.inf, "+Inf"),
        (-math.inf, "-Inf"),
        (0.1 + 0.2, "0.30000000000000004"),
        (-0.0, "-0"),
    ],
)
def test_format_value_is_gos_formatfloat_f(value: float, text: str) -> None:
    assert format_value(value) == text


@pytest.mark.parametrize(
    ("t_ms", "text"),
    [
        (1_700_000_000_123, "1700000000.123"),
        (1_700_000_000_000, "1700000000"),
        (1_700_000_000_050, "1700000000.050"),
        (5, "0.005"),
        (-1500, "-1.500"),
    ],
)
def test_format_timestamp(t_ms: int, text: str) -> None:
    assert format_timestamp(t_ms) == text


def test_math_functions_drop_the_name() -> None:
    m = {'m{a="1"}': [(0, -2.5)]}
    assert at("abs(m)", m) == {'{a="1"}': 2.5}
    assert at("ceil(m)", m) == {'{a="1"}': -2.0}
    assert at("floor(m)", m) == {'{a="1"}': -3.0}
    assert at("round(m)", m) == {'{a="1"}': -2.0}  # ties round up
    assert at("round(m, 2)", m) == {'{a="1"}': -2.0}
    assert at("round(m, 0.1)", m) == {'{a="1"}': -2.5}
    assert at("sgn(m)", m) == {'{a="1"}': -1.0}
    assert at("clamp(m, -1, 1)", m) == {'{a="1"}': -1.0}
    assert at("clamp(m, 1, -1)", m) == {}
    assert at("clamp_min(m, 0)", m) == {'{a="1"}': 0.0}
    assert at("clamp_max(m, -3)", m) == {'{a="1"}': -3.0}
    assert at("exp(m * 0)", m) == {'{a="1"}': 1.0}
    assert at("sqrt(-m * 10)", m) == {'{a="1"}': 5.0}
    assert at("deg(m * 0 + pi())", m) == {'{a="1"}': 180.0}
    assert at("rad(m * 0 + 180)", m) == {'{a="1"}': math.pi}
    assert at("scalar(m)", m) == {"": -2.5}
    assert at("vector(2)") == {"{}": 2.0}
    assert math.isnan(at("scalar(vector(1) and vector(2) unless vector(3))")[""])


def test_label_replace_and_join() -> None:
    m = {'m{src="abc-123",other="x"}': [(0, 1.0)]}
    assert at('label_replace(m, "dst", "$2/$1", "src", "(.*)-(.*)")', m) == {
        '{__name__="m",dst="123/abc",other="x",src="abc-123"}': 1.0
    }
    assert at('label_replace(m, "dst", "$1x", "src", "(.*)-.*")', m) == {  # $1x means ${1x}
        '{__name__="m",other="x",src="abc-123"}': 1.0
    }
    assert at('label_replace(m, "dst", "${1}x", "src", "(.*)-.*")', m) == {
        '{__name__="m",dst="abcx",other="x",src="abc-123"}': 1.0
    }
    assert at('label_replace(m, "other", "", "src", ".*")', m) == {'{__name__="m",src="abc-123"}': 1.0}
    assert at('label_replace(m, "dst", "y", "src", "nomatch")', m) == {'{__name__="m",other="x",src="abc-123"}': 1.0}
    assert at('label_join(m, "j", "+", "other", "missing", "src")', m) == {
        '{__name__="m",j="x++abc-123",other="x",src="abc-123"}': 1.0
    }


def test_expand_template() -> None:
    from scaler.regex import compile_anchored

    match = compile_anchored(r"(?P<word>a)(b)").fullmatch("ab")
    assert match is not None
    assert expand_template("$1-$2-$word-${2}c-$$-$9", match) == "a-b-a-bc-$-"


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("year(vector(1000000000))", 2001.0),
        ("month(vector(1000000000))", 9.0),
        ("day_of_month(vector(1000000000))", 9.0),
        ("day_of_year(vector(1000000000))", 252.0),
        ("day_of_week(vector(1000000000))", 0.0),
        ("hour(vector(1000000000))", 1.0),
        ("minute(vector(1000000000))", 46.0),
        ("days_in_month(vector(1000000000))", 30.0),
        ("days_in_month(vector(1706745600))", 29.0),  # 2024-02-01
        ("days_in_month(vector(4105123200))", 28.0),  # 2100-02-01
        ("day_of_year(vector(1735603200))", 366.0),  # 2024-12-31
        ("year(vector(-1))", 1969.0),
    ],
)
def test_calendar_functions(query: str, expected: float) -> None:
    assert at(query) == {"{}": expected}


def test_calendar_functions_default_to_eval_time() -> None:
    assert values(engine_with({}).instant("hour()", 3 * 3_600_000 + 5)) == {"{}": 3.0}


def vec(*pairs: tuple[dict[str, str], float]) -> Vec:
    return Vec([tuple(sorted(lb.items())) for lb, _ in pairs], [v for _, v in pairs])


def test_aggregations() -> None:
    v = vec(
        ({"__name__": "m", "a": "x", "b": "1"}, 1.0),
        ({"__name__": "m", "a": "x", "b": "2"}, 3.0),
        ({"__name__": "m", "a": "y", "b": "1"}, 10.0),
    )
    assert aggregate("sum", v, ("a",), False, None).values == [4.0, 10.0]
    assert aggregate("sum", v, ("a",), False, None).labels == [(("a", "x"),), (("a", "y"),)]
    assert aggregate("avg", v, (), False, None).values == [14.0 / 3]
    assert aggregate("count", v, ("b",), True, None).labels == [(("a", "x"),), (("a", "y"),)]
    assert aggregate("max", v, (), False, None).values == [10.0]
    assert aggregate("min", v, (), False, None).values == [1.0]
    assert aggregate("group", v, ("a",), False, None).values == [1.0, 1.0]
    assert aggregate("stdvar", v, (), False, None).values == pytest.approx([(1 + 9 + 100) / 3 - (14 / 3) ** 2])
    assert aggregate("quantile", v, (), False, 0.5).values == [3.0]
    assert aggregate("topk", v, (), False, 2.0).values == [10.0, 3.0]
    assert aggregate("bottomk", v, ("a",), False, 1.0).values == [1.0, 10.0]
    cv = aggregate("count_values", v, (), False, "val")
    assert cv.labels == [(("val", "1"),), (("val", "3"),), (("val", "10"),)]
    assert aggregate("sum", Vec(), (), False, None).values == []


def test_min_max_ignore_nan_unless_all_nan() -> None:
    v = vec(({"i": "1"}, math.nan), ({"i": "2"}, 2.0), ({"i": "3"}, 1.0))
    assert aggregate("max", v, (), False, None).values == [2.0]
    assert aggregate("min", v, (), False, None).values == [1.0]
    assert math.isnan(
        aggregate(
            "max",
            vec(
                ({"i": "1"}, math.nan),
            ),
            (),
            False,
            None,
        ).values[0]
    )
    assert aggregate("topk", v, (), False, 1.0).values == [2.0]


def test_avg_survives_overflow() -> None:
    v = vec(({"i": "1"}, 1.7e308), ({"i": "2"}, 1.7e308), ({"i": "3"}, -1.7e308))
    assert aggregate("avg", v, (), False, None).values == pytest.approx([1.7e308 / 3])
    assert aggregate("sum", v, (), False, None).values == [math.inf]


def test_over_time_functions_by_hand() -> None:
    m = {"g": [(0, 1.0), (10 * S, 5.0), (20 * S, 3.0), (30 * S, math.nan)]}
    t = 30 * S
    assert values(engine_with(m).instant("max_over_time(g[1m])", t)) == {"{}": 5.0}
    assert values(engine_with(m).instant("min_over_time(g[25s])", 20 * S)) == {"{}": 1.0}
    assert values(engine_with(m).instant("avg_over_time(g[25s])", 20 * S)) == {"{}": 3.0}
    assert values(engine_with(m).instant("quantile_over_time(0.5, g[25s])", 20 * S)) == {"{}": 3.0}
    assert values(engine_with(m).instant("stddev_over_time(g[25s])", 20 * S)) == pytest.approx({"{}": math.sqrt(8 / 3)})
    assert values(engine_with(m).instant("changes(g[1m])", t)) == {"{}": 3.0}
    assert values(engine_with(m).instant("present_over_time(g[1m])", t)) == {"{}": 1.0}
    result = engine_with(m).instant("sum_over_time(g[1m])", t)
    assert isinstance(result, Vector) and math.isnan(result[0].value)
