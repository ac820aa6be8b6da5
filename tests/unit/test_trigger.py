"""The trigger core, pure (no sockets): one test per metadata key and per error, the compat
compile with its window check, and Readings in every state against a real store and engine."""

from __future__ import annotations

import math

import pytest

from scaler import query
from scaler.config import StoreLimits, TriggerDefaults
from scaler.model import STALE_NAN, make_labels
from scaler.store import Store
from scaler.trigger import (
    KEDA_KEYS,
    KEDA_VALUE_LIMIT,
    OUR_KEYS,
    Reading,
    State,
    Trigger,
    TriggerCache,
    TriggerError,
    compile_compat,
    compile_promql,
    evaluate,
    parse,
    parse_any,
    parse_duration,
    read,
    sanitize_metric_name,
)

NOW_S = 1_800_000_000.0
NOW_MS = int(NOW_S * 1000)
RETENTION = 120.0
DEFAULTS = TriggerDefaults()
BASE = {"metricQuery": "waiting", "targetValue": "1"}


def trig(**metadata: str) -> Trigger:
    return parse({**BASE, **metadata}, DEFAULTS, RETENTION)


def error(metadata: dict[str, str], defaults: TriggerDefaults = DEFAULTS) -> TriggerError:
    with pytest.raises(TriggerError) as caught:
        parse(metadata, defaults, RETENTION)
    return caught.value


def engine_with(*series: tuple[str, dict[str, str], list[tuple[float, float]]], retention: float = 600) -> query.Engine:
    """A real store and engine holding ``(name, labels, [(age_s, value), ...])`` series."""
    store = Store(StoreLimits(retention_seconds=retention), clock=lambda: NOW_S)
    for name, labels, points in series:
        store.append([(make_labels(name, labels), int((NOW_S - age) * 1000), v, False) for age, v in points])
    return query.Engine(store)


# ---------------------------------------------------------------------- one test per key


def test_target_value_and_its_alias_threshold() -> None:
    assert trig(targetValue="2.5").target == 2.5
    assert parse({"metricQuery": "x", "threshold": "4"}, DEFAULTS, RETENTION).target == 4


def test_activation_threshold_and_its_alias() -> None:
    assert trig().activation == 0.0
    assert trig(activationThreshold="3").activation == 3
    assert trig(activationTargetValue="4.5").activation == 4.5


def test_clamp_min_and_clamp_max() -> None:
    t = trig(clampMin="1", clampMax="2")
    assert (t.clamp_min, t.clamp_max) == (1, 2)
    assert [t.clamp(v) for v in (0.5, 1.5, 9)] == [1, 1.5, 2]
    assert trig().clamp(-7) == -7


def test_metric_values_stay_within_what_keda_can_carry() -> None:
    t = parse({"query": "x", "targetValue": "1"}, DEFAULTS, RETENTION)
    assert t.metric_value(Reading(State.VALUE, raw=math.inf)) == KEDA_VALUE_LIMIT
    assert t.metric_value(Reading(State.VALUE, raw=-1e300)) == -KEDA_VALUE_LIMIT
    assert t.metric_value(Reading(State.VALUE, raw=1e15)) == 1e15
    assert math.ceil(KEDA_VALUE_LIMIT) * 1000 <= 2**63 - 1


def test_value_if_not_found_overrides_the_default() -> None:
    assert trig().value_if_not_found == 0.0
    assert trig(valueIfNotFound="3.5").value_if_not_found == 3.5
    assert parse(BASE, TriggerDefaults(value_if_not_found=7), RETENTION).value_if_not_found == 7


def test_err_if_not_found_overrides_the_default() -> None:
    assert trig().error_if_not_found is False
    assert trig(errIfNotFound="true").error_if_not_found is True
    strict = TriggerDefaults(error_if_not_found=True)
    assert parse(BASE, strict, RETENTION).error_if_not_found is True
    assert parse({**BASE, "errIfNotFound": "false"}, strict, RETENTION).error_if_not_found is False


def test_metric_name_given_or_derived_and_sanitized() -> None:
    assert trig(metricName="Decode Waiting!").metric_name == "decode-waiting"
    assert trig().metric_name == "waiting"
    derived = parse({"query": "sum(" + "x" * 200 + ")", "targetValue": "1"}, DEFAULTS, RETENTION).metric_name
    assert len(derived) == 63 and derived != sanitize_metric_name("sum(" + "x" * 201 + ")")
    assert sanitize_metric_name("!!!") == "metric"


def test_metric_query_compiles_the_compat_form() -> None:
    t = trig(metricQuery="max(vllm:num_requests_waiting{deployment=d})")
    assert t.query.names == frozenset({"vllm:num_requests_waiting"})
    assert t.query.text.startswith("max(last_over_time(vllm:num_requests_waiting{deployment=")


def test_operation_over_time() -> None:
    assert "rate(waiting[2m])" in trig(operationOverTime="rate").query.text
    assert "last_over_time" in trig(operationOverTime=" ").query.text  # blank = the default


def test_window() -> None:
    assert "count_over_time(waiting[30s])" in trig(operationOverTime="count", window="30s").query.text
    assert "[45s]" in trig(window="45").query.text  # plain seconds
    assert "[2m]" in trig().query.text  # default: the retention


def test_query_is_promql() -> None:
    t = parse({"query": "sum(rate(x[1m]))", "targetValue": "1"}, DEFAULTS, RETENTION)
    assert (t.query.text, t.query.names, t.query.aggregate) == ("sum(rate(x[1m]))", frozenset({"x"}), None)
    assert parse({"query": '{__name__=~"x.*"}', "targetValue": "1"}, DEFAULTS, RETENTION).query.names is None


def test_aggregate() -> None:
    assert parse({"query": "x", "targetValue": "1", "aggregate": "max"}, DEFAULTS, RETENTION).query.aggregate == "max"


def test_keda_own_and_unknown_keys_are_ignored() -> None:
    assert trig(**dict.fromkeys(KEDA_KEYS, "x"), somethingElse="y") == trig()
    assert not OUR_KEYS & KEDA_KEYS


# ---------------------------------------------------------------------- one test per error


@pytest.mark.parametrize(
    ("metadata", "key", "problem"),
    [
        ({"metricQuery": "x"}, "targetValue", "required"),
        ({"metricQuery": "x", "targetValue": "abc"}, "targetValue", "not a number"),
        ({"metricQuery": "x", "targetValue": "0"}, "targetValue", "greater than 0"),
        ({"metricQuery": "x", "targetValue": "nan"}, "targetValue", "finite"),
        ({"metricQuery": "x", "threshold": "-1"}, "threshold", "greater than 0"),
        ({**BASE, "activationThreshold": "high"}, "activationThreshold", "not a number"),
        ({**BASE, "activationTargetValue": "inf"}, "activationTargetValue", "finite"),
        ({**BASE, "clampMin": "5", "clampMax": "1"}, "clampMin", "greater than clampMax"),
        ({**BASE, "clampMax": "inf"}, "clampMax", "finite"),
        ({**BASE, "clampMin": "low"}, "clampMin", "not a number"),
        ({**BASE, "valueIfNotFound": "none"}, "valueIfNotFound", "not a number"),
        ({**BASE, "errIfNotFound": "maybe"}, "errIfNotFound", "true/false"),
        ({"targetValue": "1"}, "metricQuery", "required"),
        ({"metricQuery": "x", "query": "x", "targetValue": "1"}, "query", "exactly one"),
        ({"metricQuery": "sum(x", "targetValue": "1"}, "metricQuery", ""),
        ({**BASE, "operationOverTime": "median"}, "operationOverTime", "unknown operation 'median'"),
        ({**BASE, "window": "1h"}, "window", "longer than the retention (120s)"),
        ({**BASE, "window": "soon"}, "window", "invalid duration"),
        ({**BASE, "window": "0s"}, "window", "must be positive"),
        ({"query": "sum(x", "targetValue": "1"}, "query", ""),
        ({"query": "x", "window": "30s", "targetValue": "1"}, "window", "only applies to 'metricQuery'"),
        ({"query": "x", "operationOverTime": "rate", "targetValue": "1"}, "operationOverTime", "only applies"),
        ({"query": "x", "targetValue": "1", "aggregate": "median"}, "aggregate", "must be one of sum"),
    ],
)
def test_each_error_names_its_key(metadata: dict[str, str], key: str, problem: str) -> None:
    caught = error(metadata)
    assert caught.key == key
    assert problem in caught.problem
    assert str(caught).startswith(f"metadata key {key!r}: ")


def test_the_cache_returns_the_same_trigger_and_the_same_error() -> None:
    cache = TriggerCache(DEFAULTS, RETENTION, size=2)
    assert cache.get(BASE) is cache.get(dict(BASE))
    bad = {"metricQuery": "x"}
    with pytest.raises(TriggerError) as first:
        cache.get(bad)
    with pytest.raises(TriggerError) as second:
        cache.get(bad)
    assert first.value is second.value
    cache.get({**BASE, "targetValue": "2"})
    cache.get({**BASE, "targetValue": "3"})  # evicts the least recently used
    assert len(cache) == 2


def test_triggers_of_one_query_share_its_compiled_query_and_its_error() -> None:
    """Triggers that differ elsewhere than in their query compile it once; a different window
    or operation is a different query; the compiled queries are bounded like the triggers."""
    cache = TriggerCache(DEFAULTS, RETENTION, size=3)
    compat = {"metricQuery": "sum(waiting{deployment=a})", "operationOverTime": "avg"}
    one, two = cache.get({**compat, "targetValue": "2"}), cache.get({**compat, "targetValue": "3", "metricName": "b"})
    assert isinstance(one, Trigger) and isinstance(two, Trigger)
    assert one.query is two.query and (one.target, two.target) == (2.0, 3.0)
    assert one.query == parse({**compat, "targetValue": "2"}, DEFAULTS, RETENTION).query
    other = cache.get({**compat, "targetValue": "2", "window": "30s"})
    assert isinstance(other, Trigger) and other.query is not one.query and other.query.text != one.query.text
    promql = {"query": "sum(rate(x_total[1m]))", "aggregate": "max"}
    first, second = cache.get({**promql, "targetValue": "1"}), cache.get({**promql, "targetValue": "4"})
    assert isinstance(first, Trigger) and isinstance(second, Trigger) and first.query is second.query
    with pytest.raises(TriggerError) as bad:
        cache.get({"metricQuery": "sum(x{a=~b})", "targetValue": "1"})
    with pytest.raises(TriggerError) as again:
        cache.get({"metricQuery": "sum(x{a=~b})", "targetValue": "2"})
    assert bad.value.key == again.value.key == "metricQuery" and str(bad.value) == str(again.value)
    assert len(cache.queries) == 3 and len(cache) == 3


def test_a_cached_error_raised_again_and_again_keeps_one_traceback() -> None:
    """Each raise of the same exception object appends its frames to the traceback it already
    has: the cache must not let a ScaledObject polled with bad metadata grow it (and keep every
    failed call's frames alive) without bound."""
    cache = TriggerCache(DEFAULTS, RETENTION)

    def depth() -> int:
        with pytest.raises(TriggerError) as caught:
            cache.get({"metricQuery": "x", "targetValue": "0"})
        tb, frames = caught.value.__traceback__, 0
        while tb is not None:
            frames, tb = frames + 1, tb.tb_next
        return frames

    first = depth()
    assert [depth() for _ in range(20)] == [first] * 20


# ---------------------------------------------------------------------- compile


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("2m", 120), ("1m30s", 90), ("500ms", 0.5), ("1h", 3600), ("45", 45), ("2.5", 2.5)],
)
def test_window_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "30 s", "0s", "0", "-5", "inf", "1m1h"])
def test_bad_window_durations(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_compile_compat_is_what_metadata_and_rest_share() -> None:
    assert compile_compat("waiting", "rate", "30s", RETENTION) == trig(operationOverTime="rate", window="30s").query
    assert compile_compat("waiting", "", None, RETENTION).lookback_ms == 300_000
    assert compile_compat("waiting", "count", "10m", 600).lookback_ms == 600_000
    with pytest.raises(TriggerError, match="longer than the retention"):
        compile_compat("waiting", "last_one", "3m", RETENTION)
    with pytest.raises(TriggerError) as caught:
        compile_promql("x", "median")
    assert caught.value.key == "aggregate"


@pytest.mark.parametrize("operation", query.OPERATIONS)
def test_the_compat_text_is_what_the_printer_spells(operation: str) -> None:
    # the compat text is format_expr's spelling of the tree, whatever the aggregation, window,
    # names and quoting (a composed text that skips the printer's second walk of the selector
    # was tried and dropped: ~4 µs a new trigger, against a copy of the printer's layout)
    queries = [
        "waiting",
        "max(vllm:num_requests_waiting{deployment=so-1, pod=p})",
        'avg(a.b{k="v[1]\\"", inf="x", on="y"})',
        'count(inf{k_8s="é\\n", z=" ]"})',
        "min(bool{le=0.5})",
        'sum(x_total{path="/a{b}[c]"})',
    ]
    for text in queries:
        for window in ("30s", "90s", "10m", None):
            q = compile_compat(text, operation, window, 600)
            assert q.text == query.format_expr(q.expr)


# ---------------------------------------------------------------------- readings


@pytest.mark.parametrize("age_s", [290, 310, 570])
def test_a_compat_window_longer_than_five_minutes_sees_every_series_in_it(age_s: int) -> None:
    """The compat form's staleness check (`and selector`) looks back as far as the window, not
    only PromQL's 5 m: a series last seen 310 s ago is in a 10 m window."""
    engine = engine_with(("g", {"pod": "a"}, [(age_s, 4.0)]))
    assert evaluate(compile_compat("g{pod=a}", "count", "600", 600), engine, NOW_MS).raw == 1
    assert evaluate(compile_compat("g", "last_one", "600", 600), engine, NOW_MS).raw == 4.0
    outside = evaluate(compile_compat("g", "count", "240", 600), engine, NOW_MS)  # outside a 4 m window
    assert outside.state is State.NOT_FOUND


def test_evaluate_states() -> None:
    engine = engine_with(
        ("w", {"pod": "a"}, [(10, 3.0)]),
        ("w", {"pod": "b"}, [(10, 4.0)]),
        ("gone", {"pod": "a"}, [(20, 1.0), (10, STALE_NAN)]),
        ("nan", {}, [(10, math.nan)]),
    )
    assert evaluate(compile_promql("sum(w)"), engine, NOW_MS) == Reading(State.VALUE, raw=7.0)
    assert evaluate(compile_promql("scalar(sum(w))"), engine, NOW_MS).raw == 7.0
    wide = evaluate(compile_promql("w"), engine, NOW_MS)
    assert (wide.state, wide.number) == (State.INVALID, None) and "2 series" in wide.message
    assert evaluate(compile_promql("w", "max"), engine, NOW_MS).raw == 4.0
    assert evaluate(compile_promql("w", "avg"), engine, NOW_MS).raw == 3.5
    assert evaluate(compile_promql("w", "min"), engine, NOW_MS).raw == 3.0
    assert evaluate(compile_promql("w", "sum"), engine, NOW_MS).raw == 7.0
    assert evaluate(compile_compat("gone", "last_one", None, 600), engine, NOW_MS).state is State.NOT_FOUND
    assert evaluate(compile_promql("absent_metric"), engine, NOW_MS).state is State.NOT_FOUND
    assert evaluate(compile_promql("nan"), engine, NOW_MS).message.startswith("query result is NaN")
    not_a_number = evaluate(compile_promql('"text"'), engine, NOW_MS)
    assert not_a_number.state is State.INVALID and "scalar or an instant vector" in not_a_number.message


def test_read_applies_the_not_found_policy() -> None:
    engine = engine_with(("w", {}, [(5, 2.0)]))
    found = trig(metricQuery="w", clampMax="1", activationThreshold="1.5")
    reading = read(found, engine, NOW_MS, warming=True)  # data is data, even while warming up
    assert reading == Reading(State.VALUE, raw=2.0)
    assert (found.metric_value(reading), found.is_active(reading)) == (1.0, True)  # activation is unclamped

    absent = trig(metricQuery="absent", valueIfNotFound="3", clampMax="1")
    hold = read(absent, engine, NOW_MS, warming=True)
    assert (hold.state, hold.number) == (State.HOLD, None) and "warming up" in hold.message
    fallback = read(absent, engine, NOW_MS, warming=False)
    assert (fallback.state, fallback.fallback, fallback.number) == (State.NOT_FOUND, 3.0, 3.0)
    assert absent.metric_value(fallback) == 3.0  # compat form: kedify/otel-add-on's unclamped valueIfNotFound
    absent_promql = parse(
        {"query": "absent", "targetValue": "1", "valueIfNotFound": "3", "clampMax": "1"}, DEFAULTS, RETENTION
    )
    fallback = read(absent_promql, engine, NOW_MS, warming=False)
    assert absent_promql.metric_value(fallback) == 1.0  # PromQL: the fallback is clamped too, as before
    strict = read(trig(metricQuery="absent", errIfNotFound="true"), engine, NOW_MS, warming=False)
    assert (strict.state, strict.number) == (State.NOT_FOUND, None) and "errIfNotFound" in strict.message

    two = engine_with(("w", {"pod": "a"}, [(5, 1.0)]), ("w", {"pod": "b"}, [(5, 1.0)]))
    wide = parse({"query": "w", "targetValue": "1", "valueIfNotFound": "9"}, DEFAULTS, RETENTION)
    for warming in (True, False):  # an invalid query is invalid, warm-up or not, fallback or not
        invalid = read(wide, two, NOW_MS, warming)
        assert (invalid.state, invalid.number) == (State.INVALID, None)


def test_a_not_found_reading_is_made_once_per_trigger_and_never_shared() -> None:
    engine = engine_with(("w", {}, [(5, 2.0)]))
    a = trig(metricQuery="absent_a", valueIfNotFound="3")
    b = trig(metricQuery="absent_b", valueIfNotFound="4")
    strict = trig(metricQuery="absent_a", errIfNotFound="true")  # a's query, another policy
    first = read(a, engine, NOW_MS, warming=False)
    assert read(a, engine, NOW_MS, warming=False) is first  # kept: nothing to format again
    other = read(b, engine, NOW_MS, warming=False)
    assert (other.fallback, "absent_b" in other.message, "absent_a" in other.message) == (4.0, True, False)
    assert (first.fallback, "absent_a" in first.message) == (3.0, True)
    refused = read(strict, engine, NOW_MS, warming=False)
    assert (refused.number, "errIfNotFound" in refused.message) == (None, True)
    hold = read(a, engine, NOW_MS, warming=True)  # the warm-up state is part of what is kept
    assert (hold.state, hold.number) == (State.HOLD, None)
    assert read(a, engine, NOW_MS, warming=False) is first
    nan = read(trig(metricQuery="w", valueIfNotFound="5"), engine_with(("w", {}, [(5, math.nan)])), NOW_MS, False)
    assert (nan.fallback, nan.message) == (5.0, "no series matches 'sum(last_over_time(w[2m]) and w)'")


def test_a_not_found_reading_with_annotations_keeps_them() -> None:
    engine = engine_with(("g", {}, [(5, 1.0)]))  # a gauge: rate() over it is annotated
    absent = parse({"query": "rate(g{pod='none'}[1m])", "targetValue": "1"}, DEFAULTS, RETENTION)
    annotated = parse({"query": "rate(g[1m]) > 100", "targetValue": "1"}, DEFAULTS, RETENTION)
    plain = read(absent, engine, NOW_MS, warming=False)
    noted = read(annotated, engine, NOW_MS, warming=False)
    assert plain.state is noted.state is State.NOT_FOUND
    assert noted.infos or noted.warnings, "rate() of a gauge carries an annotation"
    assert read(annotated, engine, NOW_MS, warming=False) == noted


@pytest.mark.parametrize("operation", ["", "rate", "count", "avg", "min", "max", "sum", "increase"])
@pytest.mark.parametrize(
    "metric_query", ["w", "max(vllm:num_requests_waiting{deployment=d, model='m'})", "http.server.duration"]
)
def test_a_compat_query_reads_the_names_its_tree_selects(metric_query: str, operation: str) -> None:
    compiled = compile_compat(metric_query, operation, "1m", 600)
    names = {m.value for ms in query.selectors(compiled.expr) for m in ms if m.name == "__name__"}
    assert compiled.names == frozenset(names) and len(names) == 1


def test_a_planner_trigger_on_a_store_shorter_than_its_history_is_parsed_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    meta = {"planner": "decode", "deployment": "dec", "ttftTarget": "1s", "itlTarget": "50ms", "profile": "opt125m-l4"}
    with caplog.at_level("WARNING", logger="scaler.trigger"):
        parse_any(meta, DEFAULTS, RETENTION)
    # opt125m-l4 starts within 60 s: 300 s of lengths' window + 120 s of alignment + the 600-s
    # recurrence hold + 60 s of asks
    assert [r.getMessage() for r in caplog.records] == [
        "planner trigger decode dec: the store keeps 120s of samples (METRIC_STORE_RETENTION_SECONDS) and the "
        "planner's history needs 1080s (its recurring levels and holds look back that far; "
        "the overlay manifests/keda-planner/scaler keeps enough for every built-in profile): it plans on the "
        "shorter history"
    ]
    caplog.clear()
    with caplog.at_level("WARNING", logger="scaler.trigger"):
        parse_any(meta, DEFAULTS, 1500.0)
    assert not caplog.records
