"""A query's answer reduced to one :class:`Reading` (value, hold, not found, invalid) with its
annotations."""

from __future__ import annotations

import enum
import logging
import math
from dataclasses import dataclass, replace

from scaler import query
from scaler.model import METRIC_NAME
from scaler.query.gomath import exact_sum
from scaler.trigger.queries import Query

logger = logging.getLogger("scaler.trigger")
"""The trigger core logs under one name (the planner's decision lines, annotations)."""

NOT_FOUND_MESSAGE = "Metric not found"


class State(enum.Enum):
    VALUE = "value"
    """The query answered one number."""
    HOLD = "hold"
    """Nothing found during the warm-up: answer nothing yet, so KEDA keeps the replicas."""
    NOT_FOUND = "not_found"
    """Nothing found (no series, only stale ones, or NaN): the fallback, or an error without one."""
    INVALID = "invalid"
    """The query cannot be answered as one number (several series, an evaluation error)."""


@dataclass(frozen=True, slots=True)
class Reading:
    """What one evaluation of a query came to."""

    state: State
    raw: float | None = None
    """The query's value (VALUE only)."""
    fallback: float | None = None
    """NOT_FOUND only: the value to answer with instead (None with errIfNotFound)."""
    message: str = ""
    warnings: tuple[str, ...] = ()
    """Prometheus' warning annotations of the query (e.g. a counter function over a gauge)."""
    infos: tuple[str, ...] = ()

    @property
    def number(self) -> float | None:
        """The number this reading answers with: the value or the fallback; None if there is none."""
        return self.raw if self.state is State.VALUE else self.fallback


def evaluate(q: Query, engine: query.Engine, now_ms: int) -> Reading:
    """``q`` at ``now_ms`` as a VALUE, NOT_FOUND (without fallback) or INVALID reading."""
    if _selects_nothing(q, engine):
        return _NOTHING
    try:
        result = engine.evaluate(q.expr, now_ms, lookback_ms=q.lookback_ms, text=q.text)
    except query.QueryError as exc:
        return Reading(State.INVALID, message=str(exc))
    return _noted(q, result)


async def evaluate_async(q: Query, engine: query.Engine, now_ms: int, pause: query.Pause = query.turn) -> Reading:
    """:func:`evaluate` in slices that leave the event loop to other calls between them, with
    ``pause`` between slices (see :meth:`~scaler.query.Engine.evaluate_async`): KEDA's calls
    take a bare turn, the REST API's queries low-priority turns."""
    if _selects_nothing(q, engine):
        return _NOTHING
    try:
        # the parsed tree, not the text: the engine's parse cache holds 512 queries, and
        # thousands of triggers (one stream each) would each be parsed again at every evaluation
        result = await engine.evaluate_async(q.expr, now_ms, lookback_ms=q.lookback_ms, text=q.text, pause=pause)
    except query.QueryError as exc:
        return Reading(State.INVALID, message=str(exc))
    return _noted(q, result)


def _selects_nothing(q: Query, engine: query.Engine) -> bool:
    """Whether ``q`` is a compat query that asks for a ``label="value"`` no series carries now.
    Its selector then selects no series (the store's selection intersects the postings of each
    such matcher), so ``agg(f(m{…}[w]) and m{…})`` is an empty vector without annotations at
    any time: not found, the reading the engine would give, without running it (20–50 µs of
    interpretation and a selection cached per query). A fleet scaled to zero (no pod exports),
    the rechecks of its idle streams and KEDA's polls of it read such triggers over and over.
    The metric name is left to the engine (it also matches escaped spellings)."""
    compat = q.compat
    if compat is None:
        return False
    carries = engine.store.carries
    return any(value and label != METRIC_NAME and not carries(label, value) for label, value in compat.labels)


_NOTHING = Reading(State.NOT_FOUND, message=NOT_FOUND_MESSAGE)
"""What a query that selects nothing reads (:func:`_reduced` of an empty vector)."""


def _noted(q: Query, result: query.Result) -> Reading:
    """The reading of ``result`` with its annotations, each distinct one logged once per query."""
    for text in (*result.warnings, *result.infos):
        if text not in q.logged:
            q.logged.add(text)
            logger.warning("query %r: %s", q.text, text)
    reading = _reduced(q, result.value)
    if not result.warnings and not result.infos:
        return reading  # the common case: no copy
    return replace(reading, warnings=result.warnings, infos=result.infos)


def _reduced(q: Query, result: query.Value) -> Reading:
    if isinstance(result, query.Scalar):
        value = result.value
    elif isinstance(result, query.Vector):
        values = [s.value for s in result.samples]
        if not values:
            return Reading(State.NOT_FOUND, message=NOT_FOUND_MESSAGE)
        if len(values) == 1:
            value = values[0]
        elif q.aggregate is None:
            return Reading(
                State.INVALID,
                message=f"query returned {len(values)} series; wrap it in sum(...)/max(...) or set "
                "the trigger's aggregate: sum|avg|max|min",
            )
        else:
            value = _reduce(q.aggregate, values)
    else:
        return Reading(State.INVALID, message=f"query must return a scalar or an instant vector, got {result.kind}")
    if math.isnan(value):
        return Reading(State.NOT_FOUND, message="query result is NaN (no data in the window)")
    return Reading(State.VALUE, raw=value)


def _reduce(aggregate: str, values: list[float]) -> float:
    if aggregate == "sum":
        return exact_sum(values)
    if aggregate == "avg":
        return exact_sum(values) / len(values)
    if aggregate == "max":
        return max(values)
    return min(values)
