"""A trigger's query: compiled from its metadata (compat form or PromQL) into a :class:`Query`."""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from scaler import query
from scaler.model import METRIC_NAME

AGGREGATES = ("sum", "avg", "max", "min")


class TriggerError(ValueError):
    """Invalid trigger metadata; ``key`` names the offending metadata key."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"metadata key {key!r}: {problem}")
        self.key = key
        self.problem = problem


@dataclass(frozen=True)
class Query:
    """A parsed, ready-to-run query and how to reduce its result to one number."""

    expr: query.Expr
    text: str
    """The PromQL form of the query (what actually runs)."""
    names: frozenset[str] | None
    """Metric names the query reads (None: it may read any series)."""
    aggregate: str | None = None
    lookback_ms: int | None = None
    """Instant-selector lookback, when the engine's (Prometheus' 5 m) is not right."""
    compat: query.CompatQuery | None = None
    """The compat form's parts (None for PromQL)."""
    operation: str = ""
    """The compat form's ``operationOverTime``."""
    logged: set[str] = field(default_factory=set, compare=False, hash=False, repr=False)
    """Annotations already logged for this query: each distinct one is logged once."""

    @staticmethod
    def of_compat(parsed: query.CompatQuery, operation: str, window_ms: int) -> Query:
        expr = query.compat_to_expr(parsed, operation, window_ms)
        text = query.format_expr(expr)
        # every selector of the compat form's tree names the metric: what _names would walk to
        names = frozenset((parsed.name,))
        return Query(expr, text, names, None, query.compat_lookback_ms(window_ms), parsed, operation)


def parse_duration(text: str) -> float:
    """A PromQL duration (``30s``, ``2m``, ``1h30m``, ``500ms``) or plain seconds (``45``,
    ``2.5``) → seconds."""
    text = text.strip()
    try:
        seconds = float(text)
    except ValueError:
        ms = query.parse_duration_ms(text)
        if ms is None:
            raise ValueError(f"invalid duration {text!r} (use e.g. 30s, 2m, 1h30m)") from None
        seconds = ms / 1000
    if not seconds > 0 or math.isinf(seconds):
        raise ValueError(f"duration {text!r} must be positive")
    return seconds


def compile_compat(metric_query: str, operation: str, window: str | None, retention_seconds: float) -> Query:
    """The compat form (``metricQuery`` + ``operationOverTime`` + ``window``, default and
    at most the retention) → a Query; raises TriggerError naming the key at fault."""
    seconds = retention_seconds
    if window is not None:
        try:
            seconds = parse_duration(window)
        except ValueError as exc:
            raise TriggerError("window", str(exc)) from None
        if seconds > retention_seconds:
            raise TriggerError("window", f"{window} is longer than the retention ({retention_seconds:g}s)")
    operation = operation.strip() or "last_one"
    if operation not in query.OPERATIONS:
        raise TriggerError(
            "operationOverTime", f"unknown operation {operation!r}; use one of {', '.join(query.OPERATIONS)}"
        )
    try:
        return Query.of_compat(query.parse_compat(metric_query), operation, int(seconds * 1000))
    except query.QueryError as exc:
        raise TriggerError("metricQuery", str(exc)) from None


def compile_promql(text: str, aggregate: str | None = None) -> Query:
    """A PromQL instant query (``aggregate`` reduces a multi-series result) → a Query."""
    if aggregate is not None and aggregate not in AGGREGATES:
        raise TriggerError("aggregate", f"must be one of {', '.join(AGGREGATES)}")
    try:
        expr = query.parse_promql(text)
    except query.QueryError as exc:
        raise TriggerError("query", str(exc)) from None
    return Query(expr, text, _names(expr), aggregate)


def _names(expr: query.Expr) -> frozenset[str] | None:
    names: set[str] = set()
    for matchers in query.selectors(expr):
        exact = [m.value for m in matchers if m.name == METRIC_NAME and m.op.value == "="]
        if not exact:
            return None
        names.add(exact[0])
    return frozenset(names)


K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Lru(Generic[K, V]):
    """At most ``size`` results of a parse or compile by their input, least recently used out
    first; an error (TriggerError) is kept and raised again like a result."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: OrderedDict[K, V | TriggerError] = OrderedDict()

    def get(self, key: K, make: Callable[[], V]) -> V:
        entry = self._entries.get(key)
        if entry is None:
            try:
                entry = make()
            except TriggerError as exc:
                entry = exc
            self._entries[key] = entry
            if len(self._entries) > self.size:
                self._entries.popitem(last=False)
        else:
            self._entries.move_to_end(key)
        if isinstance(entry, TriggerError):
            # without its last traceback: each raise of the same instance would add its frames to the
            # one before, and the cached error would keep every failed call's frames (and their gRPC
            # contexts) alive, a little more at each poll of bad metadata
            raise entry.with_traceback(None)
        return entry

    def __len__(self) -> int:
        return len(self._entries)


Queries = Lru[tuple[str | None, ...], Query]
"""Compiled queries by the metadata they compile from (``metricQuery`` with
``operationOverTime`` and ``window``, or ``query`` with ``aggregate``)."""
