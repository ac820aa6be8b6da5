"""A compat trigger that asks for a ``label="value"`` no series carries reads "not found" without
running the engine (``scaler.trigger.readings``): the same reading as the engine's, for every
operation and aggregation, never an answer from before an append, and the engine still runs
whenever a series could match."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest

from scaler import query
from scaler.config import StoreLimits
from scaler.model import make_labels
from scaler.query.compat import AGGREGATIONS
from scaler.store import Store
from scaler.trigger import Query, Reading, State, compile_compat, compile_promql, evaluate, evaluate_async

NOW_S = 1_800_000_000.0
NOW_MS = int(NOW_S * 1000)
RETENTION = 600.0


class CountingEngine(query.Engine):
    """The real engine, counting the evaluations it runs."""

    def __init__(self, store: Store) -> None:
        super().__init__(store)
        self.runs = 0

    def evaluate(self, *args: Any, **kwargs: Any) -> query.Result:
        self.runs += 1
        return super().evaluate(*args, **kwargs)

    async def evaluate_async(self, *args: Any, **kwargs: Any) -> query.Result:
        self.runs += 1
        return await super().evaluate_async(*args, **kwargs)


def fleet(*deployments: str) -> CountingEngine:
    """A store with ``waiting`` and ``tokens_total`` of one pod per deployment (three samples
    each), and ``other{deployment="elsewhere"}``."""
    store = Store(StoreLimits(retention_seconds=RETENTION), clock=lambda: NOW_S)
    for deployment in deployments:
        labels = {"deployment": deployment, "pod": f"{deployment}-0"}
        for name, values in (("waiting", (3.0, 4.0, 5.0)), ("tokens_total", (10.0, 20.0, 40.0))):
            ages = (30, 20, 10)
            store.append(
                [
                    (make_labels(name, labels), NOW_MS - age * 1000, v, False)
                    for age, v in zip(ages, values, strict=True)
                ]
            )
    store.append([(make_labels("other", {"deployment": "elsewhere"}), NOW_MS - 1000, 1.0, False)])
    return CountingEngine(store)


def compat(text: str, operation: str = "", window: str | None = None) -> Query:
    return compile_compat(text, operation, window, RETENTION)


@pytest.mark.parametrize(("operation", "aggregation"), list(itertools.product(query.OPERATIONS, AGGREGATIONS)))
def test_a_missing_label_value_reads_what_the_engine_reads(operation: str, aggregation: str) -> None:
    engine = fleet("a", "b")
    for name in ("waiting", "tokens_total"):
        for labels in ('deployment="gone"', 'deployment="a", pod="gone"', 'pod="a-0", deployment="elsewhere-too"'):
            q = compat(f"{aggregation}({name}{{{labels}}})", operation, "1m")
            # the same text as PromQL runs through the engine: the reference answer
            reference = evaluate(compile_promql(q.text, None), engine, NOW_MS)
            runs = engine.runs
            assert evaluate(q, engine, NOW_MS) == reference == Reading(State.NOT_FOUND, message="Metric not found")
            assert engine.runs == runs, "the engine ran for a selector that selects nothing"


def test_the_engine_still_runs_when_every_value_exists() -> None:
    engine = fleet("a", "b")
    # each value exists, but no series has both: the engine decides (and finds nothing)
    q = compat('waiting{deployment="a", pod="b-0"}')
    assert evaluate(q, engine, NOW_MS).state is State.NOT_FOUND
    assert engine.runs == 1
    # a value the metric does not have but another metric does: still the engine's answer
    assert evaluate(compat('waiting{deployment="elsewhere"}'), engine, NOW_MS).state is State.NOT_FOUND
    assert engine.runs == 2
    assert evaluate(compat('waiting{deployment="a"}'), engine, NOW_MS) == Reading(State.VALUE, raw=5.0)
    assert engine.runs == 3


def test_the_metric_name_is_left_to_the_engine() -> None:
    engine = fleet("a")
    # no series is named waiting_x, but the escaped spelling finds waiting.x's series as kedify does
    engine.store.append([(make_labels("waiting.x", {"deployment": "a"}), NOW_MS - 1000, 7.0, False)])
    assert evaluate(compat('waiting_x{deployment="a"}'), engine, NOW_MS) == Reading(State.VALUE, raw=7.0)
    assert evaluate(compat("waiting_y"), engine, NOW_MS).state is State.NOT_FOUND
    assert engine.runs == 2


def test_never_an_answer_from_before_an_append_nor_after_a_deletion() -> None:
    engine = fleet("a")
    q = compat('waiting{deployment="new"}', "last_one", "1m")
    assert asyncio.run(evaluate_async(q, engine, NOW_MS)).state is State.NOT_FOUND
    assert engine.runs == 0
    engine.store.append([(make_labels("waiting", {"deployment": "new", "pod": "p"}), NOW_MS - 1000, 9.0, False)])
    assert engine.store.carries("deployment", "new")
    assert asyncio.run(evaluate_async(q, engine, NOW_MS)) == Reading(State.VALUE, raw=9.0)
    assert engine.runs == 1
    # the series ages out of the store: its label value goes with it, and nothing is found again
    later = NOW_MS + int(2 * RETENTION * 1000)
    engine.store.clock = lambda: later / 1000
    engine.store.collect()
    assert not engine.store.carries("deployment", "new")
    assert evaluate(q, engine, later) == Reading(State.NOT_FOUND, message="Metric not found")


def test_the_reading_passes_its_pause_to_the_engine() -> None:
    """The REST API's readings pause between slices as low-priority work; the value is the same
    as a bare turn's."""
    engine = fleet("a", "b")
    ticks = itertools.count()
    engine.clock = lambda: next(ticks) * query.engine.SLICE_SECONDS  # every checkpoint ends a slice
    pauses: list[int] = []

    async def pause() -> None:
        pauses.append(1)
        await asyncio.sleep(0)

    q = compat("tokens_total", "rate", "1m")
    paused = asyncio.run(evaluate_async(q, engine, NOW_MS, pause))
    assert pauses
    assert paused == asyncio.run(evaluate_async(q, engine, NOW_MS)) == evaluate(q, engine, NOW_MS)
