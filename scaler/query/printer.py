"""PromQL text from a syntax tree, in Prometheus' canonical spelling (durations like ``1m30s``,
numbers like Go's ``%g``, quoted UTF-8 names where the legacy charset does not fit).

Duration expressions print as written, normalised as Prometheus' ``DurationExpr.String()`` does
(``printer.go``): one space around each operator, parentheses only where they were written,
duration literals in ``model.Duration`` spelling (``90s`` → ``1m30s``), other numbers as Go's
``strconv.FormatFloat(v, 'f', -1, 64)`` (``1.5``, ``0.0001``). Two deliberate differences, both
so that the text reads back to the same value: a duration literal prints its exact
milliseconds and its sign bit (Prometheus converts ``seconds * 1e9`` to an integer by
truncation, so ``1s1ms`` would print as ``1s``, and ``-0s`` as ``0s``), and a negative literal
on the left of ``^`` keeps its parentheses (``(-2) ^ 2``; Prometheus prints ``-2 ^ 2``, which
reads back as ``-(2 ^ 2)``), and an offset expression is parenthesised, and signed before an
arithmetic operator, where Prometheus' spelling reads back as another query
(``foo offset (1m) - 8`` prints as ``foo offset (1m - 8)``, not ``foo offset 1m - 8``;
``foo offset +(1m + 1m) * 2`` keeps its ``+``, not ``foo offset (1m + 1m) * 2``)."""

from __future__ import annotations

import decimal
import math
import re

from scaler.model import METRIC_NAME, Matcher, MatchOp
from scaler.query.ast import (
    AggregateExpr,
    BinaryExpr,
    Call,
    DurationExpr,
    DurationOperand,
    Expr,
    MatrixSelector,
    NumberLiteral,
    ParenExpr,
    StringLiteral,
    SubqueryExpr,
    UnaryExpr,
    VectorSelector,
)
from scaler.query.tokens import DURATION_OPERATORS, go_quote

_LEGACY_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
_LEGACY_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")
_NUMBER_WORDS = frozenset({"inf", "nan"})
"""Legacy names the lexer reads as numbers (in any case) wherever a name could stand."""
_NOT_METRIC_NAMES = _NUMBER_WORDS | {"bool", "on", "ignoring", "group_left", "group_right", "atan2"}
"""Legacy names the parser does not accept as a bare metric name: they must be quoted."""
_DURATION_OPERATORS = frozenset(DURATION_OPERATORS.values())
"""Operators that, written after an offset's group, the parser reads as part of the offset."""


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


def format_float(value: float) -> str:
    """Go's ``strconv.FormatFloat(v, 'f', -1, 64)``: the shortest digits, never an exponent."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == 0:
        return "-0" if math.copysign(1.0, value) < 0 else "0"
    return format(decimal.Decimal(repr(value)).normalize(), "f")


def _format_literal(n: NumberLiteral) -> str:
    """A number as Prometheus' ``NumberLiteral.String()`` in a duration expression: a duration
    literal in ``model.Duration`` spelling with its sign, any other number as Go's ``'f'``."""
    if not n.duration:
        return format_float(n.value)
    return ("-" if math.copysign(1.0, n.value) < 0 else "") + format_duration(round(abs(n.value) * 1000))


def _negative(n: DurationOperand) -> bool:
    return isinstance(n, NumberLiteral) and math.copysign(1.0, n.value) < 0


def format_duration_expr(d: DurationOperand) -> str:
    """A duration expression as Prometheus' ``DurationExpr.String()`` writes it."""
    if isinstance(d, NumberLiteral):
        return _format_literal(d)
    if d.lhs is None:
        body = ("-" if d.op == "-" else "") + format_duration_expr(d.rhs)
    else:
        lhs = format_duration_expr(d.lhs)
        if d.op == "^" and _negative(d.lhs):
            lhs = f"({lhs})"  # "-2 ^ 2" would read back as "-(2 ^ 2)": "^" binds tighter than "-"
        body = f"{lhs} {d.op} {format_duration_expr(d.rhs)}"
    return f"({body})" if d.wrapped else body


def _duration(ms: int, expr: DurationExpr | None) -> str:
    return format_duration(ms) if expr is None else format_duration_expr(expr)


def _trailing_offset(e: Expr) -> DurationExpr | None:
    """The offset expression the printed form of ``e`` ends with, if any."""
    while isinstance(e, (UnaryExpr, BinaryExpr, MatrixSelector)):
        e = e.expr if isinstance(e, UnaryExpr) else e.rhs if isinstance(e, BinaryExpr) else e.selector
    return e.offset_expr if isinstance(e, (VectorSelector, SubqueryExpr)) else None


def _offset_text(d: DurationExpr, before_operator: bool) -> str:
    """An offset expression spelt so that it reads back whole and alone. After ``offset`` the
    parser takes a literal alone (``offset 1m - 8`` is ``(… offset 1m) - 8``), a signed group
    alone (``offset -(1m) - 8``), and an unsigned group with any arithmetic that follows it
    (``offset (1m) - 8`` is an offset of 52 s)."""
    text = format_duration_expr(d)
    if d.lhs is None and isinstance(d.rhs, DurationExpr) and d.rhs.wrapped:
        return text  # "-(…)": a signed group
    if d.wrapped:
        return "+" + text if before_operator else text
    if before_operator:
        return f"+({text})"
    return text if text.startswith("(") else f"({text})"


def format_label_name(name: str) -> str:
    return name if _LEGACY_LABEL.match(name) else go_quote(name)


def _bare_metric_name(name: str) -> bool:
    return _LEGACY_NAME.match(name) is not None and name.lower() not in _NOT_METRIC_NAMES


def format_matcher(m: Matcher) -> str:
    return f"{format_label_name(m.name)}{m.op.value}{go_quote(m.value)}"


def _format_selector(vs: VectorSelector) -> str:
    matchers = list(vs.matchers)
    name = vs.name
    if name:
        matchers = [m for m in matchers if not (m.name == METRIC_NAME and m.op is MatchOp.EQ and m.value == name)]
    inner = ", ".join(
        go_quote(m.value)
        if (not name and m.name == METRIC_NAME and m.op is MatchOp.EQ and not _bare_metric_name(m.value))
        else format_matcher(m)
        for m in matchers
    )
    if name and not _bare_metric_name(name):
        return "{" + ", ".join([go_quote(name), *([inner] if inner else [])]) + "}"
    return f"{name}{{{inner}}}" if inner or not name else name


def _modifiers(vs: VectorSelector | SubqueryExpr) -> str:
    """`` @ t offset d``: Prometheus' printer writes the ``@`` modifier first."""
    out = ""
    if vs.at is not None:
        at = vs.at
        out += f" @ {at.kind}()" if at.kind != "time" else f" @ {at.t_ms / 1000:.3f}"
    if vs.offset_ms or vs.offset_expr is not None:
        d = vs.offset_expr
        out += f" offset {format_duration(vs.offset_ms) if d is None else _offset_text(d, before_operator=False)}"
    return out


def _grouping(labels: tuple[str, ...]) -> str:
    return "(" + ", ".join(go_quote(x) if x.lower() in _NUMBER_WORDS else format_label_name(x) for x in labels) + ")"


def format_expr(e: Expr) -> str:
    """PromQL text for a tree, as Prometheus' ``String()`` spells it."""
    if isinstance(e, NumberLiteral):
        return _format_literal(e) if e.duration else format_number(e.value)
    if isinstance(e, StringLiteral):
        return go_quote(e.value)
    if isinstance(e, VectorSelector):
        return _format_selector(e) + _modifiers(e)
    if isinstance(e, MatrixSelector):
        vs = e.selector
        return f"{_format_selector(vs)}[{_duration(e.range_ms, e.range_expr)}]{_modifiers(vs)}"
    if isinstance(e, SubqueryExpr):
        step = _duration(e.step_ms, e.step_expr) if e.step_ms or e.step_expr is not None else ""
        return f"{format_expr(e.expr)}[{_duration(e.range_ms, e.range_expr)}:{step}]{_modifiers(e)}"
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
        lhs = format_expr(e.lhs)
        d = _trailing_offset(e.lhs) if e.op in _DURATION_OPERATORS else None
        if d is not None:  # "foo offset (1m) * 2" would read back as an offset of 2 m
            lhs = lhs.removesuffix(_offset_text(d, before_operator=False)) + _offset_text(d, before_operator=True)
        if e.op == "^" and lhs == "+Inf":
            lhs = "Inf"  # "+Inf ^ x" would parse back as "+(Inf ^ x)": "^" binds tighter than unary +
        return f"{lhs} {e.op}{mods} {format_expr(e.rhs)}"
    raise TypeError(f"not a PromQL node: {e!r}")
