"""Evaluator semantics, checked by hand where the differential suite cannot reach: Prometheus 3's
left-open windows and lookback, staleness, extrapolation details, errors, range queries and
the cost model (only selected series are read)."""

from __future__ import annotations

import math
from typing import Any

import pytest

from scaler.config import StoreLimits
from scaler.model import STALE_NAN, make_labels
from scaler.query import (
    Engine,
    Matrix,
    QueryError,
    Scalar,
    String,
    Vector,
    evaluator,
    metric_names,
    parse_promql,
    selectors,
)
from scaler.query.histogram import _fix_counts, bucket_quantile
from scaler.query.selection import gather_python
from scaler.store import Series, Store
from tests.query.helpers import engine_with, store_with, values

S = 1000
LINE = {"x": [(i * 15 * S, float(i)) for i in range(5)]}  # 0,1,2,3,4 at 0,15,30,45,60s


def at(engine: Engine, query: str, t_ms: int) -> dict[str, float]:
    return values(engine.instant(query, t_ms))


# ---------------------------------------------------------------- windows and lookback


def test_range_windows_are_left_open_and_right_closed() -> None:
    e = engine_with(LINE)
    assert at(e, "count_over_time(x[60s])", 60 * S) == {"{}": 4.0}  # (0, 60]: 15..60
    assert at(e, "count_over_time(x[60s])", 60 * S - 1) == {"{}": 4.0}  # (-0.001, 59.999]: 0..45
    assert at(e, "count_over_time(x[60s])", 75 * S) == {"{}": 3.0}  # (15, 75]: 30..60
    assert at(e, "sum_over_time(x[15s])", 30 * S) == {"{}": 2.0}  # (15, 30]: only 30s
    assert at(e, "count_over_time(x[15s] offset 15s)", 45 * S) == {"{}": 1.0}


def test_lookback_is_left_open() -> None:
    e = engine_with({"x": [(0, 1.0)]})
    assert at(e, "x", 300 * S - 1) == {'{__name__="x"}': 1.0}
    assert at(e, "x", 300 * S) == {}
    short = Engine(store_with({"x": [(0, 1.0)]}), lookback_ms=60 * S)
    assert values(short.instant("x", 59 * S)) == {'{__name__="x"}': 1.0}
    assert values(short.instant("x", 60 * S)) == {}


def test_an_instant_selector_never_reads_an_expired_sample_whether_or_not_the_sweep_has_run() -> None:
    # the lookback (5 m) is longer than the retention (2 m): a series last seen 3 m ago is
    # expired, though its samples stay until the retention sweep, which trims a few series per
    # slice, reaches it; read, it would make two scaler replicas fed the same data disagree
    clock = [1_000.0]
    store = Store(StoreLimits(retention_seconds=120), clock=lambda: clock[0])
    store.append([(make_labels("x", {"pod": "a"}), 1_000_000, 1.0, False)])
    store.append([(make_labels("x", {"pod": "b"}), 1_000_000, 2.0, False)])
    clock[0] += 100
    store.append([(make_labels("x", {"pod": "b"}), 1_100_000, 3.0, False)])
    e = Engine(store)
    assert values(e.instant("x", 1_100_000)) == {'{__name__="x",pod="a"}': 1.0, '{__name__="x",pod="b"}': 3.0}
    clock[0] += 80  # pod a's sample expired 60 s ago; the store still holds it
    unswept = values(e.instant("sum(x)", 1_180_000))
    assert store.collect() == 1
    assert unswept == values(e.instant("sum(x)", 1_180_000)) == {"{}": 3.0}


@pytest.mark.parametrize(
    "query",
    ["count_over_time(x[5m])", "rate(x_total[5m])", "increase(x_total[3m] offset 1m)", "min_over_time(x[10m:30s])"],
)
def test_a_range_never_reads_an_expired_sample_whether_or_not_the_sweep_has_run(query: str) -> None:
    # a 5-m window over a 2-m retention: what it reads must not depend on which series the
    # sweep has trimmed yet; the window's edges (rate's extrapolation) stay where they are
    clock = [1_000.0]
    store = Store(StoreLimits(retention_seconds=120), clock=lambda: clock[0])
    # 10-s samples over 5 minutes, sent at once (they are within the future skew): the series'
    # buffers grow to hold them all, as between two visits of the sweep
    points = [(1_000_000 + i * 10_000, float(i)) for i in range(30)]
    for name in ("x", "x_total"):
        labels = make_labels(name, {"pod": "a"})
        assert store.append([(labels, t, v, False) for t, v in points]).accepted == 30
    clock[0] = 1_300.0  # the samples before 1_180 s have expired
    unswept = values(Engine(store).instant(query, store.now_ms()))
    store.collect()
    assert unswept == values(Engine(store).instant(query, store.now_ms()))
    assert unswept  # the samples inside the retention still answer


def test_instant_selector_takes_newest_sample_not_after_t() -> None:
    e = engine_with(LINE)
    assert at(e, "x", 44 * S) == {'{__name__="x"}': 2.0}
    assert at(e, "x", 45 * S) == {'{__name__="x"}': 3.0}
    assert at(e, "x", -1) == {}
    assert at(e, "x offset 30s", 60 * S) == {'{__name__="x"}': 2.0}
    assert at(e, "x offset -15s", 30 * S) == {'{__name__="x"}': 3.0}
    assert at(e, "x @ 30", 3_600 * S) == {'{__name__="x"}': 2.0}
    assert at(e, "x @ 45 offset 15s", 0) == {'{__name__="x"}': 2.0}


def test_staleness_markers() -> None:
    e = engine_with({"x": [(0, 1.0), (15 * S, 2.0), (30 * S, STALE_NAN), (60 * S, 4.0)]})
    assert at(e, "x", 29 * S) == {'{__name__="x"}': 2.0}
    assert at(e, "x", 30 * S) == {}
    assert at(e, "x", 45 * S) == {}
    assert at(e, "x", 60 * S) == {'{__name__="x"}': 4.0}
    assert at(e, "count_over_time(x[1m])", 45 * S) == {"{}": 2.0}
    assert at(e, "last_over_time(x[1m])", 45 * S) == {'{__name__="x"}': 2.0}
    assert at(e, "count_over_time(x[10s])", 35 * S) == {}  # only a marker in the window
    assert at(e, "timestamp(x)", 45 * S) == {}
    m = e.instant("x[1m]", 45 * S)
    assert isinstance(m, Matrix) and m[0].values == (1.0, 2.0)


def test_nan_is_a_value_not_a_marker() -> None:
    e = engine_with({"x": [(0, math.nan)]})
    result = e.instant("x", 10 * S)
    assert isinstance(result, Vector) and math.isnan(result[0].value)


# ---------------------------------------------------------------- rate family


def test_rate_extrapolates_to_window_edges() -> None:
    e = engine_with({"c": [(i * 15 * S, 10.0 * i) for i in range(5)]})
    # (7, 67]: 10,20,30,40 at 15..60s; 8 s to the start and 7 s to the end are < 1.1 x 15 s.
    factor = (45.0 + 8.0 + 7.0) / 45.0
    assert at(e, "increase(c[1m])", 67 * S) == {"{}": 30.0 * factor}
    assert at(e, "rate(c[1m])", 67 * S) == {"{}": 30.0 * (factor / 60.0)}
    assert at(e, "delta(c[1m])", 67 * S) == {"{}": 30.0 * factor}


def test_rate_extrapolates_half_an_interval_past_a_gap() -> None:
    e = engine_with({"c": [(15 * S, 10.0), (30 * S, 20.0)]})
    # (7, 67]: the series ends 37 s before the window does (> 16.5 s): extrapolate 7.5 s.
    assert at(e, "increase(c[1m])", 67 * S) == {"{}": 10.0 * ((15.0 + 8.0 + 7.5) / 15.0)}


def test_rate_zero_point_is_applied_after_the_gap_rule() -> None:
    """Prometheus 3: the start gap (23 s >= 16.5 s) first becomes half an interval (7.5 s),
    then the counter's zero point (15 s before the first sample) only shortens it if closer.
    Prometheus 2 took the zero point first and would extrapolate 15 s."""
    e = engine_with({"c": [(100 * S, 10.0), (115 * S, 20.0), (130 * S, 30.0)]})
    assert at(e, "increase(c[1m])", 137 * S) == {"{}": 20.0 * ((30.0 + 7.5 + 7.0) / 30.0)}
    # zero point closer than half an interval: 5 s before the first sample
    e = engine_with({"c": [(100 * S, 10.0), (115 * S, 40.0), (130 * S, 70.0)]})
    assert at(e, "increase(c[1m])", 137 * S) == {"{}": 60.0 * ((30.0 + 5.0 + 7.0) / 30.0)}


def test_counter_resets() -> None:
    e = engine_with({"c": [(0, 10.0), (15 * S, 20.0), (30 * S, 5.0), (45 * S, 15.0)]})
    factor = (45.0 + 0.001 + 0.0) / 45.0  # window (-1ms, 45s]: 1 ms to the start
    assert at(e, "increase(c[45001ms])", 45 * S) == {"{}": (15.0 - 10.0 + 20.0) * factor}
    assert at(e, "resets(c[1m])", 45 * S) == {"{}": 1.0}
    assert at(e, "changes(c[1m])", 45 * S) == {"{}": 3.0}
    assert at(e, "irate(c[1m])", 45 * S) == {"{}": 10.0 / 15.0}
    assert at(e, "irate(c[1m])", 30 * S) == {"{}": 5.0 / 15.0}  # reset: last value / interval
    assert at(e, "idelta(c[1m])", 30 * S) == {"{}": -15.0}
    assert at(e, "delta(c[45001ms])", 45 * S) == {"{}": 5.0 * factor}


def test_rate_needs_two_samples() -> None:
    e = engine_with({"c": [(0, 1.0)]})
    assert at(e, "rate(c[1m])", 10 * S) == {}
    assert at(e, "irate(c[1m])", 10 * S) == {}
    assert at(e, "deriv(c[1m])", 10 * S) == {}
    assert at(e, "count_over_time(c[1m])", 10 * S) == {"{}": 1.0}


def test_deriv_and_predict_linear() -> None:
    e = engine_with({"g": [(i * 10 * S, 3.0 + 2.0 * i) for i in range(6)]})  # slope 0.2/s
    assert at(e, "deriv(g[1m])", 50 * S) == pytest.approx({"{}": 0.2})
    assert at(e, "predict_linear(g[1m], 10)", 50 * S) == pytest.approx({"{}": 15.0})


# ---------------------------------------------------------------- histograms


def bq(q: float, buckets: list[tuple[float, float]]) -> float:
    return bucket_quantile(q, buckets)


def test_bucket_quantile_interpolates() -> None:
    b = [(0.1, 1.0), (0.5, 3.0), (1.0, 4.0), (math.inf, 5.0)]
    assert bq(0.5, b) == 0.1 + (0.5 - 0.1) * (1.5 / 2.0)
    assert bq(0.1, b) == 0.1 * (0.5 / 1.0)  # first bucket interpolates from 0
    assert bq(0.95, b) == 1.0  # in the +Inf bucket: second-highest bound
    assert bq(0.5, list(reversed(b))) == bq(0.5, b)  # order does not matter


def test_bucket_quantile_special_cases() -> None:
    b = [(0.1, 1.0), (math.inf, 2.0)]
    assert bq(-0.1, b) == -math.inf
    assert bq(1.1, b) == math.inf
    assert math.isnan(bq(math.nan, b))
    assert math.isnan(bq(0.5, [(0.1, 1.0), (1.0, 2.0)]))  # no +Inf bucket
    assert math.isnan(bq(0.5, [(math.inf, 2.0)]))  # fewer than two buckets
    assert math.isnan(bq(0.5, [(0.1, 0.0), (math.inf, 0.0)]))  # no observations
    assert bq(0.5, [(-1.0, 2.0), (0.0, 3.0), (math.inf, 4.0)]) == -1.0  # lowest bound <= 0
    assert bq(0.5, [(0.1, 1.0), (0.1, 1.0), (math.inf, 4.0)]) == 0.1  # equal bounds merge


def test_bucket_counts_are_made_monotonic() -> None:
    counts = [1.0, 1.0 + 1e-15, 0.5, 3.0]
    _fix_counts(counts)
    assert counts == [1.0, 1.0, 1.0, 3.0]
    assert bq(0.5, [(1.0, 4.0), (2.0, 2.0), (math.inf, 8.0)]) == 1.0  # 2 -> 4


def test_histogram_quantile_groups_by_name_too() -> None:
    e = engine_with(
        {
            'a_bucket{le="1"}': [(0, 1.0)],
            'a_bucket{le="+Inf"}': [(0, 2.0)],
            'b_bucket{le="1"}': [(0, 1.0)],
            'b_bucket{le="+Inf"}': [(0, 2.0)],
            'a_bucket{le="bogus"}': [(0, 9.0)],
        }
    )
    assert at(e, "histogram_quantile(0.5, a_bucket)", S) == {"{}": 1.0}
    with pytest.raises(QueryError, match="same labelset"):
        e.instant('histogram_quantile(0.5, {__name__=~"[ab]_bucket"})', S)


# ---------------------------------------------------------------- errors and names


def test_evaluation_errors_have_no_position() -> None:
    e = engine_with(
        {'m{a="1",b="x"}': [(0, 1.0)], 'm{a="1",b="y"}': [(0, 2.0)], 'n{a="1"}': [(0, 3.0)], 'n2{a="1"}': [(0, 4.0)]}
    )
    with pytest.raises(QueryError) as info:
        e.instant("n + on(a) m", S)
    assert str(info.value) == (
        'found duplicate series for the match group {a="1"} on the right hand-side of the '
        'operation: [{__name__="m", a="1", b="y"}, {__name__="m", a="1", b="x"}];many-to-many '
        "matching not allowed: matching labels must be unique on one side"
    )
    assert info.value.kind == "execution" and info.value.line is None
    with pytest.raises(QueryError, match="many-to-one matching must be explicit"):
        e.instant("m + on(a) n", S)
    with pytest.raises(QueryError, match="on the left hand-side"):
        e.instant("m + on(a) group_right n", S)
    with pytest.raises(QueryError, match=r"^vector cannot contain metrics with the same labelset$"):
        e.instant('{__name__=~"n.*"} * 2', S)
    with pytest.raises(QueryError, match=r"^Parameter value is NaN$"):
        e.instant("topk(NaN, m)", S)
    with pytest.raises(QueryError, match=r"^Scalar value 1e\+20 overflows int64$"):
        e.instant("topk(1e20, m)", S)
    with pytest.raises(QueryError, match=r'^invalid label name ""$'):
        e.instant('count_values("", m)', S)
    with pytest.raises(QueryError, match="invalid regular expression in label_replace"):
        e.instant('label_replace(m, "a", "b", "a", "(")', S)


def test_names_are_dropped_like_prometheus_3() -> None:
    e = engine_with({'m{a="1"}': [(0, 4.0)]})
    assert at(e, "m", S) == {'{__name__="m",a="1"}': 4.0}
    assert at(e, "m > 1", S) == {'{__name__="m",a="1"}': 4.0}  # filter keeps the name
    assert at(e, "m > bool 1", S) == {'{a="1"}': 1.0}
    assert at(e, "m * 1", S) == {'{a="1"}': 4.0}
    assert at(e, "-m", S) == {'{a="1"}': -4.0}
    assert at(e, "abs(m)", S) == {'{a="1"}': 4.0}
    assert at(e, "sort(m)", S) == {'{__name__="m",a="1"}': 4.0}
    assert at(e, "last_over_time(m[1m])", S) == {'{__name__="m",a="1"}': 4.0}
    assert at(e, "max_over_time(m[1m])", S) == {'{a="1"}': 4.0}
    assert at(e, "topk(1, m)", S) == {'{__name__="m",a="1"}': 4.0}
    assert at(e, "sum by (__name__) (m)", S) == {'{__name__="m"}': 4.0}


def test_absent() -> None:
    e = engine_with({"m": [(0, 1.0)]})
    assert at(e, 'absent(nope{a="b", c=~"d"})', S) == {'{a="b"}': 1.0}
    assert at(e, "absent(m)", S) == {}
    assert at(e, 'absent_over_time(nope{a="b"}[1m])', S) == {'{a="b"}': 1.0}
    assert at(e, "absent(sum(nope))", S) == {"{}": 1.0}


def test_topk_keeps_the_first_of_equal_values_like_gos_heap() -> None:
    e = engine_with({f'm{{i="{i}"}}': [(0, 1.0)] for i in range(4)})
    assert at(e, "topk(1, m)", S) == {'{__name__="m",i="0"}': 1.0}
    assert set(at(e, "topk(2, m)", S)) == {'{__name__="m",i="0"}', '{__name__="m",i="1"}'}


def test_sort_orders_and_puts_nan_last() -> None:
    e = engine_with({'m{i="a"}': [(0, 3.0)], 'm{i="b"}': [(0, math.nan)], 'm{i="c"}': [(0, 1.0)]})
    asc = e.instant("sort(m)", S)
    desc = e.instant("sort_desc(m)", S)
    assert isinstance(asc, Vector) and isinstance(desc, Vector)
    assert [dict(s.labels)["i"] for s in asc] == ["c", "a", "b"]
    assert [dict(s.labels)["i"] for s in desc] == ["a", "c", "b"]


def test_value_kinds() -> None:
    e = engine_with(LINE)
    assert e.instant("1 + 1", S) == Scalar(S, 2.0)
    assert e.instant('"hi"', S) == String(S, "hi")
    assert e.instant("time()", 1500) == Scalar(1500, 1.5)
    m = e.instant("x[30s]", 60 * S)
    assert isinstance(m, Matrix) and m[0].timestamps == (45 * S, 60 * S) and m[0].values == (3.0, 4.0)
    assert at(e, "timestamp(x)", 50 * S) == {"{}": 45.0}
    assert at(e, "timestamp(x * 1)", 50 * S) == {"{}": 50.0}


# ---------------------------------------------------------------- range queries


def test_range_query_equals_instant_queries_at_each_step() -> None:
    e = engine_with(
        {
            'c{k="a"}': [(i * 15 * S, 10.0 * i) for i in range(20)],
            'c{k="b"}': [(i * 15 * S, 5.0 * i) for i in range(10)],
        }
    )
    q = "rate(c[1m])"
    m = e.range_query(q, 60 * S, 240 * S, 30 * S)
    assert [dict(s.labels)["k"] for s in m] == ["a", "b"]
    for series in m:
        for t, v in zip(series.timestamps, series.values, strict=True):
            assert values(e.instant(q, t))["{" + f'k="{dict(series.labels)["k"]}"' + "}"] == v
    assert m[1].timestamps[-1] == 150 * S  # later windows hold fewer than two samples of b


def test_range_query_of_scalars_and_at_modifiers() -> None:
    e = engine_with(LINE)
    m = e.range_query("time()", 0, 30 * S, 15 * S)
    assert m[0].labels == () and m[0].values == (0.0, 15.0, 30.0)
    m = e.range_query("x @ start()", 15 * S, 45 * S, 15 * S)
    assert m[0].values == (1.0, 1.0, 1.0)
    m = e.range_query("x @ end()", 15 * S, 45 * S, 15 * S)
    assert m[0].values == (3.0, 3.0, 3.0)


@pytest.mark.parametrize(
    ("query", "step", "message"),
    [
        ("x[1m]", 1000, 'invalid expression type "range vector" for range query'),
        ('"s"', 1000, 'invalid expression type "string" for range query'),
        ("x", 0, "zero or negative query resolution step widths are not accepted"),
    ],
)
def test_range_query_rejects(query: str, step: int, message: str) -> None:
    with pytest.raises(QueryError, match=message):
        engine_with(LINE).range_query(query, 0, 10 * S, step)


# ---------------------------------------------------------------- introspection and cost


def test_selectors_and_metric_names() -> None:
    expr = parse_promql('sum(rate(a{x="1"}[5m])) / on() b + {__name__=~"c.*"}')
    sels = selectors(expr)
    assert [[str(m) for m in s] for s in sels] == [['x="1"', '__name__="a"'], ['__name__="b"'], ['__name__=~"c.*"']]
    assert metric_names(expr) == {"a", "b"}
    assert selectors("vllm:x") == selectors(parse_promql("vllm:x"))


def test_cost_follows_the_selected_series_not_the_store(monkeypatch: pytest.MonkeyPatch) -> None:
    series = {f'm{{d="{i % 100}",i="{i}"}}': [(0, 1.0), (15 * S, 2.0)] for i in range(2000)}
    store = store_with(series)
    calls = {"selected": 0, "windows": 0}
    select = store.select_steps
    window = Series.window

    def counting_select(matchers: Any) -> Any:
        found = yield from select(matchers)
        calls["selected"] += len(found)
        return found

    def counting_window(self: Series, lo: int, hi: int) -> Any:
        calls["windows"] += 1
        return window(self, lo, hi)

    monkeypatch.setattr(store, "select_steps", counting_select)
    monkeypatch.setattr(Series, "window", counting_window)
    monkeypatch.setattr(evaluator, "gather", gather_python)  # the C gather reads no Series.window
    e = Engine(store)
    rate = (1.0 * ((15.0 + 7.5 + 5.0) / 15.0)) / 60.0
    assert at(e, 'sum(rate(m{d="7"}[1m]))', 20 * S) == pytest.approx({"{}": 20 * rate})
    assert calls == {"selected": 20, "windows": 20}
    e = Engine(store)  # a fresh engine: no selection kept from the query above
    m = e.range_query('sum(m{d="7"})', 0, 60 * S, 15 * S)
    assert m[0].values == (20.0, 40.0, 40.0, 40.0, 40.0)
    assert calls["selected"] == 40  # one selection for the whole range query
