"""Fuzz target ``compat``: the Go reference's query form and KEDA trigger metadata.

Input: the compat query on the first line, then ``key=value`` metadata lines (``\\n`` inside a
value stands for a newline). Checked:

* ``trigger.compile_compat(text, operationOverTime, window, retention)`` raises only
  TriggerError; what it compiles prints as PromQL that parses back to the same text, and
  ``trigger.evaluate`` turns it into a Reading (a VALUE holds a number, never NaN);
* ``trigger.parse`` (and the cache in front of it) turns any metadata into a Trigger or a
  TriggerError naming a key; a Trigger's numbers are valid (target > 0, finite, clamps ordered,
  a KEDA-safe metric name).
"""

from __future__ import annotations

import math
import re

from tests.fuzz import common
from tests.fuzz.common import atheris

with atheris.instrument_imports(include=["scaler"]):
    from scaler import query
    from scaler.config import TriggerDefaults
    from scaler.query import QueryError
    from scaler.trigger import (
        OUR_KEYS,
        AnyTrigger,
        Query,
        State,
        Trigger,
        TriggerCache,
        TriggerError,
        compile_compat,
        evaluate,
        parse,
    )

DEFAULTS = TriggerDefaults()
RETENTION_S = 120.0
ENGINE = query.Engine(common.vllm_store())
CPU_BUDGET_S = 2.0
_METRIC_NAME = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\Z")


def parse_input(data: bytes) -> tuple[str, dict[str, str]]:
    lines = data.decode("utf-8", "replace").split("\n")
    metadata: dict[str, str] = {}
    for line in lines[1:]:
        key, _, value = line.partition("=")
        metadata[key] = value.replace("\\n", "\n")
    return lines[0].replace("\\n", "\n"), metadata


def check_reading(compiled: Query) -> None:
    reading = evaluate(compiled, ENGINE, common.NOW_MS)
    if reading.state is State.VALUE and (type(reading.raw) is not float or math.isnan(reading.raw)):
        common.fail("evaluate returned a value that is no number", reading)
    if reading.state not in (State.VALUE, State.NOT_FOUND, State.INVALID) or reading.fallback is not None:
        common.fail("evaluate returned a reading only a trigger's policy makes", reading)


def check_compat(text: str, metadata: dict[str, str]) -> None:
    operation = metadata.get("operationOverTime", "last_one")
    try:
        compiled = compile_compat(text, operation, metadata.get("window"), RETENTION_S)
    except TriggerError as exc:
        if exc.key not in ("metricQuery", "operationOverTime", "window"):
            common.fail("compile_compat blames a key it does not read", exc.key, exc)
        return
    try:
        reparsed = query.parse_promql(compiled.text)
    except QueryError as exc:
        common.fail("the PromQL form of a compat query does not parse", text, compiled.text, exc)
        raise
    if query.format_expr(reparsed) != compiled.text:
        common.fail("the PromQL form of a compat query does not print back", compiled.text, reparsed)
    if compiled.names is None or len(compiled.names) != 1:
        common.fail("a compat query reads exactly one metric name", compiled.names)
    check_reading(compiled)


def check_trigger(trigger: Trigger) -> None:
    numbers = [trigger.target, trigger.activation, trigger.value_if_not_found]
    if not trigger.target > 0 or not all(math.isfinite(x) for x in numbers):
        common.fail("trigger with an invalid number", trigger)
    if trigger.clamp_min is not None and trigger.clamp_max is not None and trigger.clamp_min > trigger.clamp_max:
        common.fail("trigger with clampMin > clampMax", trigger)
    if not _METRIC_NAME.match(trigger.metric_name):
        common.fail("metric name KEDA would reject", trigger.metric_name)
    check_reading(trigger.query)


def test_one_input(data: bytes) -> None:
    try:
        with common.cpu_budget(CPU_BUDGET_S):
            check_input(data)
    except common.Overrun:
        common.fail(f"one input took more than {CPU_BUDGET_S} s of CPU", data)


def check_input(data: bytes) -> None:
    text, metadata = parse_input(data)
    check_compat(text, metadata)
    if text and "metricQuery" not in metadata and "query" not in metadata:
        metadata["metricQuery"] = text
    try:
        trigger = parse(metadata, DEFAULTS, RETENTION_S)
    except TriggerError as exc:
        if exc.key not in OUR_KEYS:
            common.fail("TriggerError names a key that is not a trigger key", exc.key, exc)
        cached: Trigger | TriggerError = exc
    else:
        check_trigger(trigger)
        cached = trigger
    cache = TriggerCache(DEFAULTS, RETENTION_S, size=1)
    for _ in range(2):
        try:
            got: AnyTrigger | TriggerError = cache.get(metadata)
        except TriggerError as exc:
            got = exc
        if type(got) is not type(cached) or str(got) != str(cached):
            common.fail("TriggerCache disagrees with trigger.parse", got, cached)
