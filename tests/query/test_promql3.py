"""Hand-checked Prometheus 3 features that the differential suite's promtool (2.42) lacks:
duration expressions, classic-histogram functions, Go string escapes, annotations with their
exact texts, and the query limits. Expected values follow the Prometheus 3 documentation's
semantics and the cases of its promqltest files."""

from __future__ import annotations

import asyncio
import itertools
import math

import pytest

from scaler.query import Engine, QueryError, QueryLimits, Vector, parse_promql
from scaler.query.engine import SLICE_SECONDS
from scaler.query.printer import format_expr
from tests.query.helpers import NOW_MS, engine_with, values

M = 60_000


def _counter(step_ms: int, n: int, per_step: float) -> list[tuple[int, float]]:
    return [(i * step_ms, i * per_step) for i in range(n)]


COUNTER = engine_with({"metric1_total": _counter(10_000, 101, 1.0)})


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("sum_over_time(metric1_total[29s+1s:5s+5s])", 297.0),
        ("sum_over_time(metric1_total[29s+1s:((((8 - 2) / 3) * 7s) % 4) + 8000ms])", 297.0),
        ("sum_over_time(metric1_total[30:10])", 297.0),
        ("sum_over_time(metric1_total[(9m30s+30s)/20])", 297.0),
        ("count_over_time(metric1_total[1h30m % 1h])", 101.0),
        ("count_over_time(metric1_total[-5m+35m])", 101.0),
        ("count_over_time(metric1_total[24m+((1.5*2m)+2m)])", 101.0),
    ],
)
def test_duration_expressions(expr: str, expected: float) -> None:
    assert values(COUNTER.instant(expr, 1_000_000)) == {"{}": expected}


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("metric1_total offset (100 + 2)", {'{__name__="metric1_total"}': 89.0}),
        ("metric1_total offset 100 + 2", {"{}": 92.0}),
        ("metric1_total offset -2 * 2", {"{}": 200.0}),
        ("metric1_total offset (-2 * 2)", {'{__name__="metric1_total"}': 100.0}),
        ("metric1_total offset (-2 ^ 2)", {'{__name__="metric1_total"}': 100.0}),
        ("metric1_total offset (2 ^ 2)", {'{__name__="metric1_total"}': 99.0}),
    ],
)
def test_offset_takes_a_parenthesised_duration_expression(expr: str, expected: dict[str, float]) -> None:
    assert values(COUNTER.instant(expr, 1_000_000)) == expected


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("x[5m/0]", "division by zero"),
        ("x[step()]", "unsupported: step() in a duration expression"),
        ("x offset (min(1m, 2m))", "unsupported: min() in a duration expression"),
        ("x[1m-2m:]", "range must be greater than 0"),
    ],
)
def test_duration_expression_errors(expr: str, message: str) -> None:
    with pytest.raises(QueryError) as info:
        parse_promql(expr)
    assert message in str(info.value)


def test_subquery_aligns_steps_to_absolute_time_and_defaults_to_the_evaluation_interval() -> None:
    # samples every 10 s with value = t/10 s; a subquery step of 10 s lands on multiples of 10 s
    assert values(COUNTER.instant("sum_over_time(metric1_total[30s:10s] offset 3s)", 1_010_000)) == {"{}": 297.0}
    engine = Engine(COUNTER.store, limits=QueryLimits(evaluation_interval_ms=20_000))
    # default step 20 s: points at 960, 980, 1000 s (96 + 98 + 100)
    assert values(engine.instant("sum_over_time(metric1_total[1m:])", 1_000_000)) == {"{}": 294.0}
    assert format_expr(parse_promql("rate(x[5m:])")) == "rate(x[5m:])"


# classic-histogram functions (histograms.test of Prometheus 3: testhistogram2/3, at 50m)
BUCKETS = engine_with(
    {
        **{
            f'h2_bucket{{le="{le}"}}': [(50 * M, v)]
            for le, v in (("0", 0), ("2", 10), ("4", 20), ("6", 30), ("+Inf", 30))
        },
        **{
            f'h3_bucket{{le="{le}",start="positive"}}': [(50 * M, v)]
            for le, v in (("0", 0), ("0.1", 50), (".2", 70), ("1e0", 110), ("+Inf", 110))
        },
        **{
            f'h3_bucket{{le="{le}",start="negative"}}': [(50 * M, v)]
            for le, v in (("-.25", 0), ("-.2", 10), ("-0.1", 20), ("0.3", 20), ("+Inf", 20))
        },
        **{
            f'nonmono_bucket{{le="{le}"}}': [(50 * M, v)]
            for le, v in (("0.1", 20), ("1", 10), ("10", 50), ("+Inf", 80))
        },
        'bad_bucket{le="x"}': [(50 * M, 1.0)],
    }
)


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("histogram_fraction(0, 4, h2_bucket)", {"{}": 0.6666666666666666}),
        ("histogram_fraction(0, 6, h2_bucket)", {"{}": 1.0}),
        ("histogram_fraction(0, 3.5, h2_bucket)", {"{}": 0.5833333333333334}),
        (
            "histogram_fraction(0, 0.2, h3_bucket)",
            {'{start="negative"}': 0.0, '{start="positive"}': 0.6363636363636364},
        ),
        ("histogram_fraction(-Inf, +Inf, h2_bucket)", {"{}": 1.0}),
        ("histogram_fraction(4, 0, h2_bucket)", {"{}": 0.0}),
    ],
)
def test_histogram_fraction_over_classic_buckets(expr: str, expected: dict[str, float]) -> None:
    assert values(BUCKETS.instant(expr, 50 * M)) == expected


def test_histogram_fraction_nan_bound_and_native_only_functions() -> None:
    result = values(BUCKETS.instant("histogram_fraction(NaN, 1, h2_bucket)", 50 * M))
    assert math.isnan(result["{}"])
    for fn in ("histogram_count", "histogram_sum", "histogram_avg", "histogram_stddev", "histogram_stdvar"):
        assert values(BUCKETS.instant(f"{fn}(h2_bucket)", 50 * M)) == {}  # floats only: nothing, as Prometheus


def test_go_string_escapes_are_bytes() -> None:
    engine = engine_with({'m{a="é"}': [(NOW_MS, 1.0)]})
    for literal in (r'"\xc3\xa9"', r'"\303\251"', r'"\u00e9"', r'"\U000000e9"', "`é`"):
        assert values(engine.instant(f"m{{a={literal}}}", NOW_MS)) == {'{__name__="m",a="é"}': 1.0}, literal
    assert values(engine.instant(r'm{a="\xff"}', NOW_MS)) == {}
    with pytest.raises(QueryError, match="invalid destination label name in label_replace"):
        engine.instant(r'label_replace(m, "\xff", "", "a", "(.*)")', NOW_MS)


ANNOTATED = engine_with(
    {
        "requests": [(t, t / 1000) for t in range(0, 120_001, 15_000)],
        "requests_total": [(t, t / 1000) for t in range(0, 120_001, 15_000)],
    }
)


@pytest.mark.parametrize(
    ("expr", "warnings", "infos"),
    [
        (
            "rate(requests[1m])",
            [],
            [
                "PromQL info: metric might not be a counter, name does not end in "
                '_total/_sum/_count/_bucket: "requests" (1:6)'
            ],
        ),
        ("rate(requests_total[1m])", [], []),
        ("rate(requests[1m:15s])", [], []),
        (
            "quantile_over_time(2, requests[1m])",
            ["PromQL warning: quantile value should be between 0 and 1, got 2 (1:20)"],
            [],
        ),
        ("quantile(-0.5, requests)", ["PromQL warning: quantile value should be between 0 and 1, got -0.5 (1:10)"], []),
        (
            "histogram_quantile(NaN, h2_bucket)",
            ["PromQL warning: quantile value should be between 0 and 1, got NaN (1:20)"],
            [],
        ),
    ],
)
def test_annotation_texts(expr: str, warnings: list[str], infos: list[str]) -> None:
    store_engine = ANNOTATED if "requests" in expr else BUCKETS
    result = store_engine.evaluate(expr, 120_000 if store_engine is ANNOTATED else 50 * M)
    assert (list(result.warnings), list(result.infos)) == (warnings, infos)


def test_histogram_annotations() -> None:
    result = BUCKETS.evaluate("histogram_quantile(0.5, nonmono_bucket)", 50 * M)
    assert list(result.infos) == [
        "PromQL info: input to histogram_quantile needed to be fixed for monotonicity "
        "(see https://prometheus.io/docs/prometheus/latest/querying/functions/#histogram_quantile) "
        'for metric name "nonmono_bucket" (1:25)'
    ]
    result = BUCKETS.evaluate("histogram_quantile(0.5, bad_bucket)", 50 * M)
    assert list(result.warnings) == [
        'PromQL warning: bucket label "le" is missing or has a malformed value of "x" '
        'for metric name "bad_bucket" (1:25)'
    ]


def test_sample_limit_and_timeout() -> None:
    engine = Engine(COUNTER.store, limits=QueryLimits(max_samples=50))
    assert isinstance(engine.instant("metric1_total", 1_000_000), Vector)
    with pytest.raises(QueryError) as info:
        engine.instant("count_over_time(metric1_total[10m])", 1_000_000)
    assert (str(info.value), info.value.kind) == (
        "query processing would load too many samples into memory in query execution",
        "execution",
    )
    with pytest.raises(QueryError) as info:
        COUNTER.evaluate("sum_over_time(metric1_total[1d:1s])", 1_000_000, timeout_s=0.05)
    assert (str(info.value), info.value.kind) == ("query timed out in expression evaluation", "timeout")
    with pytest.raises(QueryError, match="query timed out in expression evaluation"):
        asyncio.run(COUNTER.evaluate_async("sum_over_time(metric1_total[1d:1s])", 1_000_000, timeout_s=0.05))


def test_range_functions_over_more_series_than_one_checkpoint_chunk() -> None:
    """Selectors read and range functions compute in chunks of series between checkpoints."""
    engine = engine_with(
        {f'wide{{i="{i}"}}': [(NOW_MS - k * 15_000, float(i + k)) for k in range(4)] for i in range(1000)}
    )
    result = engine.instant("sum(sum_over_time(wide[1m])) + sum(count_over_time(wide[1m]))", NOW_MS)
    assert values(result) == {"{}": float(sum(4 * i + 6 for i in range(1000)) + 4000)}
    assert values(engine.instant("count(wide)", NOW_MS)) == {"{}": 1000.0}
    async_result = asyncio.run(engine.evaluate_async("quantile_over_time(0.5, wide[1m])", NOW_MS))
    assert values(async_result.value)['{i="999"}'] == 1000.5


def test_evaluate_async_gives_the_loop_back_through_the_pause_it_is_given() -> None:
    """Between slices ``evaluate_async`` awaits the ``pause`` it is passed (the HTTP API passes
    its low-priority turns), not a bare turn of the loop; the answer is the same."""
    engine = engine_with(
        {f'wide{{i="{i}"}}': [(NOW_MS - k * 15_000, float(i + k)) for k in range(4)] for i in range(1000)}
    )
    ticks = itertools.count()
    engine.clock = lambda: next(ticks) * SLICE_SECONDS  # every checkpoint ends a slice
    pauses: list[int] = []

    async def pause() -> None:
        pauses.append(1)
        await asyncio.sleep(0)

    paused = asyncio.run(engine.evaluate_async("quantile_over_time(0.5, wide[1m])", NOW_MS, pause=pause))
    assert len(pauses) >= 2
    assert values(paused.value) == values(engine.instant("quantile_over_time(0.5, wide[1m])", NOW_MS))
