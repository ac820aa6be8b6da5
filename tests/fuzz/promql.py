"""Fuzz target ``promql``: query text → parse + type-check → print → evaluate.

Only :class:`scaler.query.QueryError` may escape the parser and the engine (and, from a
trigger's reduction, the documented ``NotFound``/``WideResult``). Properties checked:

* the printer is a fixpoint: ``format(parse(format(parse(q)))) == format(parse(q))``, and the
  reprinted tree has the same type;
* results are canonical: label sets sorted with unique names, no two samples with the same set;
* subqueries, duration expressions and Go string escapes go through the same round trip, and
  a query the engine cannot finish within its limits ends in Prometheus' timeout or sample
  limit error, never a hang.

A query may use 2 s of CPU (``x[1000000y]``, ``topk(1e300, x)``, 5000 nested parentheses
must all fail fast); libFuzzer's ``-timeout`` backs that up. A too-deep query must be a
QueryError, never a RecursionError. Label regexes run on RE2 (linear time), so no slow input
is tolerated.
"""

from __future__ import annotations

import itertools
import math

from tests.fuzz import common
from tests.fuzz.common import atheris

with atheris.instrument_imports(include=["scaler"]):
    from scaler import query
    from scaler.query import QueryError
    from scaler.trigger import Query, State, evaluate

ENGINE = query.Engine(common.vllm_store(), limits=query.QueryLimits(timeout_s=0.5, max_samples=1_000_000))
"""Limits well inside the CPU budget: ``x[1000000y:1ms]`` must end in Prometheus' timeout."""
RANGE_START_MS = common.NOW_MS - 60_000
CPU_BUDGET_S = 2.0
STEP_MS = 15_000


def check_error(exc: QueryError, text: str) -> None:
    message = str(exc)
    if not message or exc.kind not in ("bad_data", "execution", "timeout"):
        common.fail("malformed QueryError", exc)
    if exc.line is not None and (exc.col is None or not 1 <= exc.line <= text.count("\n") + 1 or exc.col < 1):
        common.fail("parse error position outside the query", exc, text)


def check_labels(labels: tuple[tuple[str, str], ...]) -> None:
    names = [name for name, _ in labels]
    if any(not b > a for a, b in itertools.pairwise(names)):
        common.fail("result label names not strictly increasing", labels)


def check_value(value: query.Value) -> None:
    if isinstance(value, query.Vector):
        seen = set()
        for sample in value:
            check_labels(sample.labels)
            if type(sample.value) is not float:
                common.fail("sample value is not a float", sample)
            seen.add(sample.labels)
        if len(seen) != len(value):
            common.fail("vector holds one label set twice", value)
    elif isinstance(value, query.Matrix):
        for series in value:
            check_labels(series.labels)
            if len(series.timestamps) != len(series.values):
                common.fail("matrix series with unequal lengths", series)


def test_one_input(data: bytes) -> None:
    try:
        with common.cpu_budget(CPU_BUDGET_S):
            check_query(data.decode("utf-8", "replace"))
    except common.Overrun:
        common.fail(f"one query took more than {CPU_BUDGET_S} s of CPU", data)


def check_query(text: str) -> None:
    try:
        query.parse_metric_selector(text)
    except QueryError as exc:
        check_error(exc, text)
    try:
        expr = query.parse_promql(text)
    except QueryError as exc:
        check_error(exc, text)
        return
    printed = query.format_expr(expr)
    try:
        again = query.parse_promql(printed)
    except QueryError as exc:
        common.fail("the printed form of a valid query does not parse", text, printed, exc)
        raise
    if query.format_expr(again) != printed or again.type is not expr.type:
        common.fail("printing is not a fixpoint", text, printed, query.format_expr(again))
    query.metric_names(expr)
    try:
        check_value(ENGINE.instant(expr, common.NOW_MS))
    except QueryError as exc:
        check_error(exc, text)
    try:
        check_value(ENGINE.range_query(expr, RANGE_START_MS, common.NOW_MS, STEP_MS))
    except QueryError as exc:
        check_error(exc, text)
    reading = evaluate(Query(expr, text, None, "avg"), ENGINE, common.NOW_MS)
    if reading.state is State.VALUE and (reading.raw is None or math.isnan(reading.raw)):
        common.fail("a trigger reading of a VALUE without a number", text, reading)
