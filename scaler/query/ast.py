"""The PromQL syntax tree: immutable nodes, their value types and the function catalogue.
``str(node)`` prints PromQL text through :mod:`scaler.query.printer`.

Nodes compare by structure; source positions are kept for error messages but ignored by
``==``. Parse once, keep the tree, evaluate it many times.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Literal

from scaler.model import Matcher

Pos = tuple[int, int]
"""``(start, end)`` character offsets of a node in the query text."""


class ValueType(enum.Enum):
    """Result type of an expression; the value is Prometheus' documented name."""

    SCALAR = "scalar"
    VECTOR = "instant vector"
    MATRIX = "range vector"
    STRING = "string"


class Expr:
    """Base of every node."""

    __slots__ = ()
    pos: Pos

    @property
    def type(self) -> ValueType:
        raise NotImplementedError

    def __str__(self) -> str:
        from scaler.query.printer import format_expr  # the printer imports the node classes

        return format_expr(self)


@dataclass(frozen=True, slots=True)
class NumberLiteral(Expr):
    """A number; ``duration`` when it was written as a duration (``5m``), which Prometheus'
    printer keeps (``5m``, not ``300``). The spelling is not part of the value: it does not
    take part in ``==``."""

    value: float
    pos: Pos = field(default=(0, 0), compare=False, repr=False)
    duration: bool = field(default=False, compare=False)

    @property
    def type(self) -> ValueType:
        return ValueType.SCALAR


@dataclass(frozen=True, slots=True)
class StringLiteral(Expr):
    value: str
    pos: Pos = field(default=(0, 0), compare=False, repr=False)

    @property
    def type(self) -> ValueType:
        return ValueType.STRING


@dataclass(frozen=True, slots=True)
class At:
    """The ``@`` modifier: a fixed time, or the query's ``start()``/``end()``."""

    kind: Literal["time", "start", "end"]
    t_ms: int = 0


@dataclass(frozen=True, slots=True)
class DurationExpr:
    """A duration expression as written (``26m + 4m``, ``-(1m * 2)``): Prometheus'
    ``parser.DurationExpr``. ``lhs`` is None for unary minus; ``wrapped`` when it was written
    in parentheses. Leaves are :class:`NumberLiteral` (seconds; ``duration`` for ``4m``, not
    ``240``). A parenthesised literal is the literal itself and a signed literal is folded
    into the literal, as in Prometheus. The parser evaluates it at once: the node that holds
    it also holds its value in milliseconds, which is what evaluation reads; this tree is
    only printed (``format_query``, ``str(expr)``) and shown (``parse_query``)."""

    op: str
    lhs: DurationOperand | None
    rhs: DurationOperand
    wrapped: bool = False

    def __str__(self) -> str:
        from scaler.query.printer import format_duration_expr  # the printer imports the node classes

        return format_duration_expr(self)


DurationOperand = NumberLiteral | DurationExpr


@dataclass(frozen=True, slots=True)
class VectorSelector(Expr):
    """``name{matchers} offset d @ t``. ``matchers`` includes ``__name__="name"`` when the
    name is written outside the braces; ``name`` is then that name, else ``""``.
    ``offset_expr``: the offset's duration expression when one was written
    (``offset (1m + 1m)``); ``offset_ms`` is its value either way."""

    name: str
    matchers: tuple[Matcher, ...]
    offset_ms: int = 0
    at: At | None = None
    pos: Pos = field(default=(0, 0), compare=False, repr=False)
    offset_expr: DurationExpr | None = field(default=None, compare=False)

    @property
    def type(self) -> ValueType:
        return ValueType.VECTOR


@dataclass(frozen=True, slots=True)
class MatrixSelector(Expr):
    """``selector[range]``; ``range_expr`` as for :class:`VectorSelector`'s ``offset_expr``."""

    selector: VectorSelector
    range_ms: int
    pos: Pos = field(default=(0, 0), compare=False, repr=False)
    range_expr: DurationExpr | None = field(default=None, compare=False)

    @property
    def type(self) -> ValueType:
        return ValueType.MATRIX


@dataclass(frozen=True, slots=True)
class SubqueryExpr(Expr):
    """``expr[range:step] offset d @ t``; ``step_ms`` 0 means the engine's evaluation interval.
    ``range_expr``/``step_expr``/``offset_expr`` as for :class:`VectorSelector`."""

    expr: Expr
    range_ms: int
    step_ms: int = 0
    offset_ms: int = 0
    at: At | None = None
    pos: Pos = field(default=(0, 0), compare=False, repr=False)
    range_expr: DurationExpr | None = field(default=None, compare=False)
    step_expr: DurationExpr | None = field(default=None, compare=False)
    offset_expr: DurationExpr | None = field(default=None, compare=False)

    @property
    def type(self) -> ValueType:
        return ValueType.MATRIX


@dataclass(frozen=True, slots=True)
class Call(Expr):
    func: str
    args: tuple[Expr, ...]
    pos: Pos = field(default=(0, 0), compare=False, repr=False)

    @property
    def type(self) -> ValueType:
        return FUNCTIONS[self.func].return_type


@dataclass(frozen=True, slots=True)
class AggregateExpr(Expr):
    op: str
    expr: Expr
    param: Expr | None = None
    grouping: tuple[str, ...] = ()
    without: bool = False
    pos: Pos = field(default=(0, 0), compare=False, repr=False)

    @property
    def type(self) -> ValueType:
        return ValueType.VECTOR


Card = Literal["one-to-one", "many-to-one", "one-to-many", "many-to-many"]


@dataclass(frozen=True, slots=True)
class VectorMatching:
    card: Card = "one-to-one"
    labels: tuple[str, ...] = ()
    on: bool = False
    include: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class BinaryExpr(Expr):
    op: str
    lhs: Expr
    rhs: Expr
    matching: VectorMatching | None = None
    return_bool: bool = False
    pos: Pos = field(default=(0, 0), compare=False, repr=False)

    @property
    def type(self) -> ValueType:
        if self.lhs.type is ValueType.SCALAR and self.rhs.type is ValueType.SCALAR:
            return ValueType.SCALAR
        return ValueType.VECTOR


@dataclass(frozen=True, slots=True)
class UnaryExpr(Expr):
    op: str
    expr: Expr
    pos: Pos = field(default=(0, 0), compare=False, repr=False)

    @property
    def type(self) -> ValueType:
        return self.expr.type


@dataclass(frozen=True, slots=True)
class ParenExpr(Expr):
    expr: Expr
    pos: Pos = field(default=(0, 0), compare=False, repr=False)

    @property
    def type(self) -> ValueType:
        return self.expr.type


ARITHMETIC_OPS = frozenset({"+", "-", "*", "/", "%", "^", "atan2"})
COMPARISON_OPS = frozenset({"==", "!=", ">", "<", ">=", "<="})
SET_OPS = frozenset({"and", "or", "unless"})
AGGREGATE_OPS = frozenset(
    {"sum", "avg", "count", "min", "max", "group", "stddev", "stdvar", "topk", "bottomk", "count_values", "quantile"}
)
PARAM_AGGREGATE_OPS = frozenset({"topk", "bottomk", "count_values", "quantile"})


@dataclass(frozen=True, slots=True)
class FunctionSpec:
    """A function's signature. ``variadic``: 0 fixed arity; ``n > 0`` the last argument may be
    repeated/omitted up to ``n`` times (``round(v[, to_nearest])``); ``-1`` unbounded."""

    name: str
    arg_types: tuple[ValueType, ...]
    return_type: ValueType
    variadic: int = 0


_S, _V, _M, _STR = ValueType.SCALAR, ValueType.VECTOR, ValueType.MATRIX, ValueType.STRING


def _catalogue() -> dict[str, FunctionSpec]:
    specs = [
        FunctionSpec(n, (_V,), _V)
        for n in (
            "abs",
            "absent",
            "ceil",
            "exp",
            "floor",
            "ln",
            "log2",
            "log10",
            "sqrt",
            "sgn",
            "sort",
            "sort_desc",
            "timestamp",
            "acos",
            "acosh",
            "asin",
            "asinh",
            "atan",
            "atanh",
            "cos",
            "cosh",
            "sin",
            "sinh",
            "tan",
            "tanh",
            "deg",
            "rad",
        )
    ]
    specs += [
        FunctionSpec(n, (_M,), _V)
        for n in (
            "rate",
            "kedify_rate",
            "irate",
            "increase",
            "delta",
            "idelta",
            "deriv",
            "resets",
            "changes",
            "avg_over_time",
            "min_over_time",
            "max_over_time",
            "sum_over_time",
            "count_over_time",
            "last_over_time",
            "stddev_over_time",
            "stdvar_over_time",
            "present_over_time",
            "absent_over_time",
        )
    ]
    specs += [
        FunctionSpec(n, (_V,), _V, variadic=1)
        for n in ("day_of_month", "day_of_week", "day_of_year", "days_in_month", "hour", "minute", "month", "year")
    ]
    specs += [
        FunctionSpec("quantile_over_time", (_S, _M), _V),
        FunctionSpec("predict_linear", (_M, _S), _V),
        FunctionSpec("histogram_quantile", (_S, _V), _V),
        FunctionSpec("histogram_fraction", (_S, _S, _V), _V),
        FunctionSpec("clamp", (_V, _S, _S), _V),
        FunctionSpec("clamp_min", (_V, _S), _V),
        FunctionSpec("clamp_max", (_V, _S), _V),
        FunctionSpec("round", (_V, _S), _V, variadic=1),
        FunctionSpec("scalar", (_V,), _S),
        FunctionSpec("vector", (_S,), _V),
        FunctionSpec("time", (), _S),
        FunctionSpec("pi", (), _S),
        FunctionSpec("label_replace", (_V, _STR, _STR, _STR, _STR), _V),
        FunctionSpec("label_join", (_V, _STR, _STR, _STR), _V, variadic=-1),
    ]
    return {s.name: s for s in specs}


FUNCTIONS: dict[str, FunctionSpec] = _catalogue()
"""Every function this engine evaluates."""

NATIVE_HISTOGRAM_FUNCTIONS = frozenset(
    {"histogram_avg", "histogram_count", "histogram_sum", "histogram_stddev", "histogram_stdvar"}
)
"""Prometheus 3 accepts these by default but they read only native histograms: over the float
samples this store holds (classic ``_bucket`` series included) they return nothing."""
for _name in NATIVE_HISTOGRAM_FUNCTIONS:
    FUNCTIONS[_name] = FunctionSpec(_name, (_V,), _V)

_EXPERIMENTAL = "experimental: Prometheus enables it only with --enable-feature=promql-experimental-functions"
UNSUPPORTED_FUNCTIONS: dict[str, str] = {
    n: _EXPERIMENTAL
    for n in (
        "double_exponential_smoothing",
        "end",
        "first_over_time",
        "histogram_quantiles",
        "info",
        "integral",
        "mad_over_time",
        "range",
        "sort_by_label",
        "sort_by_label_desc",
        "start",
        "step",
        "ts_of_first_over_time",
        "ts_of_last_over_time",
        "ts_of_max_over_time",
        "ts_of_min_over_time",
    )
}
"""Prometheus functions kept behind a feature flag there, and so not offered here, with why."""
DURATION_FUNCTIONS = frozenset({"step", "range", "min", "max"})
"""Functions Prometheus allows inside duration expressions only behind the same flag."""


def walk(e: Expr) -> list[Expr]:
    """Every node of a tree, parents before children."""
    out: list[Expr] = []
    stack: list[Expr] = [e]
    while stack:
        node = stack.pop()
        out.append(node)
        if isinstance(node, MatrixSelector):
            stack.append(node.selector)
        elif isinstance(node, SubqueryExpr):
            stack.append(node.expr)
        elif isinstance(node, Call):
            stack.extend(reversed(node.args))
        elif isinstance(node, (ParenExpr, UnaryExpr)):
            stack.append(node.expr)
        elif isinstance(node, AggregateExpr):
            stack.append(node.expr)
            if node.param is not None:
                stack.append(node.param)
        elif isinstance(node, BinaryExpr):
            stack.extend((node.rhs, node.lhs))
    return out
