"""The PromQL syntax tree: immutable nodes, their value types, the function catalogue, and a
printer that turns a tree back into PromQL text (Prometheus' canonical spelling).

Nodes compare by structure; source positions are kept for error messages but ignored by
``==``. Parse once, keep the tree, evaluate it many times.
"""

from __future__ import annotations

import decimal
import enum
import math
import re
from dataclasses import dataclass, field
from typing import Literal

from scaler.model import METRIC_NAME, Matcher, MatchOp
from scaler.query.tokens import go_quote

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
        return format_expr(self)


@dataclass(frozen=True, slots=True)
class NumberLiteral(Expr):
    value: float
    pos: Pos = field(default=(0, 0), compare=False, repr=False)

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
class VectorSelector(Expr):
    """``name{matchers} offset d @ t``. ``matchers`` includes ``__name__="name"`` when the
    name is written outside the braces; ``name`` is then that name, else ``""``."""

    name: str
    matchers: tuple[Matcher, ...]
    offset_ms: int = 0
    at: At | None = None
    pos: Pos = field(default=(0, 0), compare=False, repr=False)

    @property
    def type(self) -> ValueType:
        return ValueType.VECTOR


@dataclass(frozen=True, slots=True)
class MatrixSelector(Expr):
    selector: VectorSelector
    range_ms: int
    pos: Pos = field(default=(0, 0), compare=False, repr=False)

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

UNSUPPORTED_FUNCTIONS: dict[str, str] = {
    **{
        n: "native histograms"
        for n in (
            "histogram_avg",
            "histogram_count",
            "histogram_sum",
            "histogram_stddev",
            "histogram_stdvar",
            "histogram_fraction",
            "histogram_quantiles",
        )
    },
    **{
        n: "experimental function"
        for n in (
            "double_exponential_smoothing",
            "mad_over_time",
            "first_over_time",
            "ts_of_first_over_time",
            "ts_of_last_over_time",
            "ts_of_max_over_time",
            "ts_of_min_over_time",
            "sort_by_label",
            "sort_by_label_desc",
            "info",
        )
    },
}
"""Prometheus functions that are deliberately not implemented, with the reason."""

# ----------------------------------------------------------------------- printing

_LEGACY_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
_LEGACY_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")


def format_duration(ms: int) -> str:
    """Prometheus' duration spelling: ``1h30m``, ``500ms``, ``0s``."""
    if ms == 0:
        return "0s"
    out = "-" if ms < 0 else ""
    ms = abs(ms)
    for unit, mult, exact in (
        ("y", 31_536_000_000, True),
        ("w", 604_800_000, True),
        ("d", 86_400_000, False),
        ("h", 3_600_000, False),
        ("m", 60_000, False),
        ("s", 1000, False),
        ("ms", 1, False),
    ):
        if exact and ms % mult:
            continue
        if ms >= mult:
            out += f"{ms // mult}{unit}"
            ms %= mult
    return out


def format_number(value: float) -> str:
    """Go's ``%v`` of a float64 (shortest digits; exponent form below 1e-4 and from 1e6)."""
    if math.isnan(value):
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "+Inf" if value > 0 else "-Inf"
    if value == 0:
        return "-0" if str(value).startswith("-") else "0"
    digits = decimal.Decimal(repr(value))
    sign, dig, exp = digits.normalize().as_tuple()
    assert isinstance(exp, int)
    exponent = len(dig) + exp - 1
    if exponent < -4 or exponent >= 6:
        mantissa = "".join(map(str, dig))
        m = mantissa[0] + ("." + mantissa[1:] if len(mantissa) > 1 else "")
        return f"{'-' if sign else ''}{m}e{'-' if exponent < 0 else '+'}{abs(exponent):02d}"
    return format(digits.normalize(), "f")


def format_label_name(name: str) -> str:
    return name if _LEGACY_LABEL.match(name) else go_quote(name)


def format_matcher(m: Matcher) -> str:
    return f"{format_label_name(m.name)}{m.op.value}{go_quote(m.value)}"


def _format_selector(vs: VectorSelector) -> str:
    matchers = list(vs.matchers)
    name = vs.name
    if name:
        matchers = [m for m in matchers if not (m.name == METRIC_NAME and m.op is MatchOp.EQ and m.value == name)]
    inner = ", ".join(
        go_quote(m.value)
        if (not name and m.name == METRIC_NAME and m.op is MatchOp.EQ and not _LEGACY_NAME.match(m.value))
        else format_matcher(m)
        for m in matchers
    )
    if name and not _LEGACY_NAME.match(name):
        return "{" + ", ".join([go_quote(name), *([inner] if inner else [])]) + "}"
    return f"{name}{{{inner}}}" if inner or not name else name


def _modifiers(vs: VectorSelector) -> str:
    out = ""
    if vs.offset_ms:
        out += f" offset {format_duration(vs.offset_ms)}"
    if vs.at is not None:
        at = vs.at
        out += f" @ {at.kind}()" if at.kind != "time" else f" @ {at.t_ms / 1000:.3f}"
    return out


def _grouping(labels: tuple[str, ...]) -> str:
    return "(" + ", ".join(format_label_name(x) for x in labels) + ")"


def format_expr(e: Expr) -> str:
    """PromQL text for a tree, as Prometheus' ``String()`` spells it."""
    if isinstance(e, NumberLiteral):
        return format_number(e.value)
    if isinstance(e, StringLiteral):
        return go_quote(e.value)
    if isinstance(e, VectorSelector):
        return _format_selector(e) + _modifiers(e)
    if isinstance(e, MatrixSelector):
        vs = e.selector
        return f"{_format_selector(vs)}[{format_duration(e.range_ms)}]{_modifiers(vs)}"
    if isinstance(e, Call):
        return f"{e.func}({', '.join(format_expr(a) for a in e.args)})"
    if isinstance(e, ParenExpr):
        return f"({format_expr(e.expr)})"
    if isinstance(e, UnaryExpr):
        return f"{e.op}{format_expr(e.expr)}"
    if isinstance(e, AggregateExpr):
        head = e.op
        if e.without or e.grouping:
            head += f" {'without' if e.without else 'by'} {_grouping(e.grouping)} "
        args = format_expr(e.expr)
        if e.param is not None:
            args = f"{format_expr(e.param)}, {args}"
        return f"{head}({args})"
    if isinstance(e, BinaryExpr):
        mods = " bool" if e.return_bool else ""
        mt = e.matching
        if mt is not None and (mt.on or mt.labels or mt.card in ("many-to-one", "one-to-many")):
            mods += f" {'on' if mt.on else 'ignoring'}{_grouping(mt.labels)}"
            if mt.card in ("many-to-one", "one-to-many"):
                side = "group_left" if mt.card == "many-to-one" else "group_right"
                mods += f" {side}{_grouping(mt.include)}"
        return f"{format_expr(e.lhs)} {e.op}{mods} {format_expr(e.rhs)}"
    raise TypeError(f"not a PromQL node: {e!r}")


def walk(e: Expr) -> list[Expr]:
    """Every node of a tree, parents before children."""
    out: list[Expr] = []
    stack: list[Expr] = [e]
    while stack:
        node = stack.pop()
        out.append(node)
        if isinstance(node, MatrixSelector):
            stack.append(node.selector)
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
