"""The Go reference scaler's query form (``metricQuery`` + ``operationOverTime``), translated
into PromQL so both forms run through the same evaluator.

Grammar (whitespace anywhere between tokens)::

    query   = [ agg "(" ] name [ "{" [ label { "," label } [","] ] "}" ] [ ")" ]
    agg     = "sum" | "avg" | "min" | "max" | "count"          (default: sum)
    name    = any characters but whitespace and { } ( ) , = " '   (vllm:x, http.server.duration)
    label   = key "=" value                                    (value quoted "..."/'...' or bare)

``sum(vllm:num_requests_waiting{model="m"})`` with operation ``avg`` and a 2 minute window
becomes ``sum(avg_over_time(vllm:num_requests_waiting{model="m"}[2m]) and
vllm:num_requests_waiting{model="m"})``: the ``and`` drops series whose newest sample is a
staleness marker, so a stale series never contributes. A series must carry
every ``key=value`` (a series without the label does not match); empty values are rejected
because in PromQL ``k=""`` would match series *without* ``k``. An unquoted value ends at ``,``,
``}`` or whitespace and may not contain ``=`` (kedify/otel-add-on rejects ``b=2=2`` too); a
quoted one may.

``rate`` is kedify/otel-add-on's (``kedify_rate``: the reset-safe increase between the first
and the last sample in the window over the time between them), not Prometheus' extrapolated
``rate`` over the whole window; ``increase`` is Prometheus'.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from scaler.model import METRIC_NAME, Matcher
from scaler.query.ast import (
    AggregateExpr,
    BinaryExpr,
    Call,
    Expr,
    MatrixSelector,
    VectorMatching,
    VectorSelector,
)
from scaler.query.errors import QueryError
from scaler.query.printer import format_expr
from scaler.query.tokens import go_quote

OPERATIONS: tuple[str, ...] = ("last_one", "rate", "count", "avg", "min", "max", "sum", "increase")
"""The ``operationOverTime`` values, ``last_one`` being the default."""

_FUNCTION_OF = {
    "last_one": "last_over_time",
    "rate": "kedify_rate",
    "count": "count_over_time",
    "avg": "avg_over_time",
    "min": "min_over_time",
    "max": "max_over_time",
    "sum": "sum_over_time",
    "increase": "increase",
}
AGGREGATIONS: tuple[str, ...] = ("sum", "avg", "min", "max", "count")
_NAME_STOP = " \t\r\n{}(),=\"'"
_VALUE_STOP = " \t\r\n,}"


def _run_of(stop: str) -> re.Pattern[str]:
    """A run of characters up to (not including) any of ``stop``."""
    return re.compile("[^" + "".join(map(re.escape, stop)) + "]*")


_NAME_RUN = _run_of(_NAME_STOP)
_KEY_RUN = _run_of(_NAME_STOP + "!~")
_VALUE_RUN = _run_of(_VALUE_STOP + "=")


@dataclass(frozen=True, slots=True)
class CompatQuery:
    """A parsed compat query: metric ``name``, required ``labels``, outer ``aggregation``."""

    name: str
    labels: tuple[tuple[str, str], ...] = ()
    aggregation: str = "sum"


class _Reader:
    def __init__(self, text: str) -> None:
        self.text = text
        self.i = 0

    def error(self, message: str, at: int | None = None) -> QueryError:
        return QueryError.at(self.text, self.i if at is None else at, message)

    def skip(self) -> None:
        while self.i < len(self.text) and self.text[self.i].isspace():
            self.i += 1

    def peek(self) -> str:
        return self.text[self.i] if self.i < len(self.text) else ""

    def found(self) -> str:
        c = self.peek()
        return f"unexpected {go_quote(c)}" if c else "unexpected end of input"

    def run(self, until: re.Pattern[str]) -> str:
        """The characters from here up to a stop character of ``until`` (:func:`_run_of`)."""
        start = self.i
        match = until.match(self.text, start)
        assert match is not None  # a starred class matches, if only the empty string
        self.i = match.end()
        return self.text[start : self.i]

    def quoted(self) -> str:
        quote = self.text[self.i]
        start = self.i
        self.i += 1
        out: list[str] = []
        while self.i < len(self.text):
            c = self.text[self.i]
            self.i += 1
            if c == quote:
                return "".join(out)
            if c == "\\" and self.i < len(self.text):
                out.append(self.text[self.i])
                self.i += 1
            else:
                out.append(c)
        raise self.error("unterminated quoted string", start)


def parse_compat(text: str) -> CompatQuery:
    """Parse a compat query; raises :class:`QueryError` with the position of the problem."""
    r = _Reader(text)
    r.skip()
    aggregation = "sum"
    explicit = False
    for agg in AGGREGATIONS:
        head = text[r.i : r.i + len(agg)]
        if head.lower() == agg:
            j = r.i + len(agg)
            while j < len(text) and text[j].isspace():
                j += 1
            if j < len(text) and text[j] == "(":
                aggregation, explicit, r.i = agg, True, j + 1
                break
    r.skip()
    name_at = r.i
    name = r.run(_NAME_RUN)
    if not name:
        raise r.error(f"{r.found()}, expected metric name", name_at)
    r.skip()
    labels: list[tuple[str, str]] = []
    if r.peek() == "{":
        r.i += 1
        labels = _labels(r)
    r.skip()
    if explicit:
        if r.peek() != ")":
            raise r.error(f'{r.found()}, expected ")"')
        r.i += 1
        r.skip()
    if r.i < len(text):
        raise r.error(f"{r.found()}, expected end of query")
    return CompatQuery(name, tuple(labels), aggregation)


def _labels(r: _Reader) -> list[tuple[str, str]]:
    labels: list[tuple[str, str]] = []
    seen: set[str] = set()
    while True:
        r.skip()
        if r.peek() == "}":
            r.i += 1
            return labels
        key_at = r.i
        key = r.run(_KEY_RUN)
        if not key:
            raise r.error(f'{r.found()}, expected label name or "}}"')
        r.skip()
        if r.peek() != "=" or r.text[r.i + 1 : r.i + 2] == "~":
            hint = " (the compat form only supports k=v; use a PromQL query for !=, =~, !~)"
            raise r.error(f'{r.found()}, expected "=" after label {go_quote(key)}{hint}')
        r.i += 1
        r.skip()
        value_at = r.i
        value = r.quoted() if r.peek() in ('"', "'") else r.run(_VALUE_RUN)
        if r.peek() == "=":
            raise r.error(f'unexpected "=" in the value of label {go_quote(key)}: quote a value that contains "="', r.i)
        if not value:
            raise r.error(
                f"empty value for label {go_quote(key)}: a series without the label "
                "would match it; give a non-empty value or drop the label",
                value_at,
            )
        if key in seen:
            raise r.error(f"label {go_quote(key)} given twice", key_at)
        seen.add(key)
        labels.append((key, value))
        r.skip()
        if r.peek() == ",":
            r.i += 1
        elif r.peek() != "}":
            raise r.error(f'{r.found()}, expected "," or "}}"')


def compat_to_expr(q: CompatQuery | str, operation: str = "last_one", window_ms: int = 120_000) -> Expr:
    """The PromQL tree equivalent to a compat query with ``operationOverTime``."""
    if isinstance(q, str):
        q = parse_compat(q)
    function = _FUNCTION_OF.get(operation or "last_one")
    if function is None:
        raise QueryError(f"unknown operationOverTime {go_quote(operation)}: must be one of " + ", ".join(OPERATIONS))
    if window_ms <= 0:
        raise QueryError(f"window must be positive, got {window_ms}ms")
    if q.aggregation not in AGGREGATIONS:
        raise QueryError(f"unknown aggregation {go_quote(q.aggregation)}: must be one of " + ", ".join(AGGREGATIONS))
    matchers = tuple(Matcher.of(k, "=", v) for k, v in q.labels)
    return _expr(q.name, matchers, function, window_ms, q.aggregation)


def series_expr(labels: Iterable[tuple[str, str]], absent: Iterable[str], operation: str, window_ms: int) -> Expr:
    """:func:`compat_to_expr` of exactly one series (``GET /memstore/data``): its labels, and
    ``k=""`` for each label name in ``absent`` (those of the metric's other series), so that a
    series whose labels are a subset of another's does not select both."""
    pairs = dict(labels)
    name = pairs.pop(METRIC_NAME)
    matchers = (*(Matcher.of(k, "=", v) for k, v in sorted(pairs.items())), *(Matcher.of(k, "=", "") for k in absent))
    return _expr(name, matchers, _FUNCTION_OF[operation], window_ms, "sum")


def _expr(name: str, matchers: tuple[Matcher, ...], function: str, window_ms: int, aggregation: str) -> Expr:
    selector = VectorSelector(name, (*matchers, Matcher.of(METRIC_NAME, "=", name)))
    call = Call(function, (MatrixSelector(selector, window_ms),))
    # `and selector` drops series whose newest sample is a staleness marker (a pod that went
    # away): in the compat form a stale series never contributes, whatever the operation.
    live = BinaryExpr("and", call, selector, VectorMatching(card="many-to-many"))
    return AggregateExpr(aggregation, live)


def compat_lookback_ms(window_ms: int) -> int:
    """The instant-selector lookback to evaluate :func:`compat_to_expr` with: its ``and
    selector`` must see as far back as the window (at least Prometheus' 5 m), or a window over
    5 m would miss series last seen more than 5 m ago."""
    return max(300_000, window_ms)


def compat_to_promql_text(q: CompatQuery | str, operation: str = "last_one", window_ms: int = 120_000) -> str:
    """The PromQL text of :func:`compat_to_expr` (for docs and logs)."""
    return format_expr(compat_to_expr(q, operation, window_ms))
