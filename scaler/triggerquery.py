"""A query compiled once and evaluated to one number: what KEDA and ``/memstore/query`` need.

Both query forms compile to the same PromQL AST and run through the same engine, so they
can never disagree. ``evaluate`` reduces the engine's answer to one float or raises
:class:`NotFound` (no series, only stale series, or a NaN result) — never a silent 0.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

from scaler import query
from scaler.model import METRIC_NAME
from scaler.query.tokens import parse_duration_ms

AGGREGATES = ("sum", "avg", "max", "min")
logger = logging.getLogger(__name__)


class NotFound(LookupError):
    """The query matched no (non-stale) series."""


class WideResult(ValueError):
    """A PromQL query returned several series and the trigger did not say how to reduce them."""


def parse_duration(text: str) -> float:
    """A PromQL duration (``30s``, ``2m``, ``1h30m``, ``500ms``) or plain seconds (``45``,
    ``2.5``) → seconds."""
    text = text.strip()
    try:
        seconds = float(text)
    except ValueError:
        ms = parse_duration_ms(text)
        if ms is None:
            raise ValueError(f"invalid duration {text!r} (use e.g. 30s, 2m, 1h30m)") from None
        seconds = ms / 1000
    if not seconds > 0 or math.isinf(seconds):
        raise ValueError(f"duration {text!r} must be positive")
    return seconds


@dataclass(frozen=True)
class TriggerQuery:
    """A parsed, ready-to-run query and how to reduce its result to one number."""

    expr: query.Expr
    text: str
    """The PromQL form of the query (what actually runs)."""
    names: frozenset[str] | None
    """Metric names the query reads (None: it may read any series)."""
    aggregate: str | None = None
    lookback_ms: int | None = None
    """Instant-selector lookback, when the engine's (Prometheus' 5 m) is not right."""
    logged: set[str] = field(default_factory=set, compare=False, hash=False, repr=False)
    """Annotations already logged for this query: each distinct one is logged once."""

    @staticmethod
    def compat(metric_query: str, operation: str, window_seconds: float) -> TriggerQuery:
        parsed = query.parse_compat(metric_query)
        window_ms = int(window_seconds * 1000)
        expr = query.compat_to_expr(parsed, operation, window_ms)
        return TriggerQuery(expr, query.format_expr(expr), _names(expr), None, query.compat_lookback_ms(window_ms))

    @staticmethod
    def promql(text: str, aggregate: str | None = None) -> TriggerQuery:
        if aggregate is not None and aggregate not in AGGREGATES:
            raise ValueError(f"aggregate must be one of {', '.join(AGGREGATES)}")
        expr = query.parse_promql(text)
        return TriggerQuery(expr, text, _names(expr), aggregate)

    def evaluate(self, engine: query.Engine, t_ms: int) -> float:
        """Evaluate at ``t_ms``; raises NotFound, WideResult or query.QueryError."""
        return self.reduce(self._noted(engine.evaluate(self.text, t_ms, lookback_ms=self.lookback_ms)))

    async def evaluate_async(self, engine: query.Engine, t_ms: int) -> float:
        """:meth:`evaluate` in slices that leave the event loop to other calls between them."""
        result = await engine.evaluate_async(self.text, t_ms, lookback_ms=self.lookback_ms)
        return self.reduce(self._noted(result))

    def _noted(self, result: query.Result) -> query.Value:
        for text in (*result.warnings, *result.infos):
            if text not in self.logged:
                self.logged.add(text)
                logger.warning("query %r: %s", self.text, text)
        return result.value

    def reduce(self, result: query.Value) -> float:
        """The engine's answer as one number; raises NotFound or WideResult."""
        if isinstance(result, query.Scalar):
            value = result.value
        elif isinstance(result, query.Vector):
            values = [s.value for s in result.samples]
            if not values:
                raise NotFound("Metric not found")
            if len(values) == 1:
                value = values[0]
            elif self.aggregate is None:
                raise WideResult(
                    f"query returned {len(values)} series; wrap it in sum(...)/max(...) or set "
                    "the trigger's aggregate: sum|avg|max|min"
                )
            else:
                value = _reduce(self.aggregate, values)
        else:
            raise query.QueryError(f"query must return a scalar or an instant vector, got {result.kind}")
        if math.isnan(value):
            raise NotFound("query result is NaN (no data in the window)")
        return value


def _reduce(aggregate: str, values: list[float]) -> float:
    if aggregate == "sum":
        return math.fsum(values)
    if aggregate == "avg":
        return math.fsum(values) / len(values)
    if aggregate == "max":
        return max(values)
    return min(values)


def _names(expr: query.Expr) -> frozenset[str] | None:
    names: set[str] = set()
    for matchers in query.selectors(expr):
        exact = [m.value for m in matchers if m.name == METRIC_NAME and m.op.value == "="]
        if not exact:
            return None
        names.add(exact[0])
    return frozenset(names)
