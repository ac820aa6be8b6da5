"""Functions over instant vectors and scalars (``abs``, ``clamp``, ``histogram_quantile``,
``label_replace``, ``time``, ...). Range-vector functions live in :mod:`rangefuncs`; the few
that need the syntax tree or raise annotations (``absent``, ``absent_over_time``, ``timestamp``
of a selector, ``histogram_quantile``, ``histogram_fraction``) are in the evaluator.
``histogram_count/sum/avg/stddev/stdvar`` read only native histograms, which this store does not
hold: as in Prometheus over float samples, they return nothing.

Names follow Prometheus 3 without delayed name removal: every function that changes values
drops ``__name__``; ``sort``, ``sort_desc``, ``label_replace`` and ``label_join`` keep it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable

from scaler.model import METRIC_NAME, LabelPairs, MatchOp
from scaler.query import gomath
from scaler.query.ast import NATIVE_HISTOGRAM_FUNCTIONS, Expr, MatrixSelector, VectorSelector
from scaler.query.errors import QueryError
from scaler.query.tokens import is_valid_utf8
from scaler.query.vec import Vec, drop_name, set_label
from scaler.regex import Match, RegexError, compile_anchored

Arg = float | str | Vec
InstantFunction = Callable[[list[Arg], int], "Vec | float"]
"""``(evaluated_args, eval_time_ms) -> vector or scalar``."""


def _valid_label_name(name: str) -> bool:
    """Prometheus 3 (UTF-8 names): any non-empty string of valid UTF-8."""
    return bool(name) and is_valid_utf8(name)


def _vec_arg(args: list[Arg], i: int) -> Vec:
    v = args[i]
    assert isinstance(v, Vec)
    return v


def _float_arg(args: list[Arg], i: int) -> float:
    v = args[i]
    assert isinstance(v, float)
    return v


def _str_arg(args: list[Arg], i: int) -> str:
    v = args[i]
    assert isinstance(v, str)
    return v


def _map(vec: Vec, fn: Callable[[float], float]) -> Vec:
    return Vec([drop_name(lb) for lb in vec.labels], [fn(v) for v in vec.values])


def _simple(fn: Callable[[float], float]) -> InstantFunction:
    return lambda args, _t: _map(_vec_arg(args, 0), fn)


def _ceil(x: float) -> float:
    return x if not math.isfinite(x) else math.copysign(float(math.ceil(x)), x)


def _floor(x: float) -> float:
    return x if not math.isfinite(x) else math.copysign(float(math.floor(x)), x)


def _sgn(x: float) -> float:
    if x < 0:
        return -1.0
    if x > 0:
        return 1.0
    return x


def _round(args: list[Arg], _t: int) -> Vec:
    inverse = gomath.div(1.0, _float_arg(args, 1)) if len(args) > 1 else 1.0
    return _map(_vec_arg(args, 0), lambda f: gomath.div(_floor(f * inverse + 0.5), inverse))


def _clamp(vec: Vec, lo: float, hi: float) -> Vec:
    if hi < lo:
        return Vec()
    return _map(vec, lambda f: gomath.go_max(lo, gomath.go_min(hi, f)))


def _timestamp(args: list[Arg], t: int) -> Vec:
    return _map(_vec_arg(args, 0), lambda _f: t / 1000)


def _sorted(descending: bool) -> InstantFunction:
    def sort(args: list[Arg], _t: int) -> Vec:
        vec = _vec_arg(args, 0)
        order = sorted(range(len(vec)), key=lambda i: _sort_key(vec.values[i], descending))
        return Vec([vec.labels[i] for i in order], [vec.values[i] for i in order])

    return sort


def _sort_key(v: float, descending: bool) -> tuple[int, float]:
    if math.isnan(v):
        return (1, 0.0)
    return (0, -v if descending else v)


def _scalar(args: list[Arg], _t: int) -> float:
    vec = _vec_arg(args, 0)
    return vec.values[0] if len(vec) == 1 else gomath.NAN


def _civil(seconds: int) -> tuple[int, int, int, int]:
    """``(year, month, day, day_of_year)`` of a Unix time, proleptic Gregorian, UTC."""
    days = seconds // 86400
    z = days + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy_mar = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy_mar + 2) // 153
    day = doy_mar - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    year = yoe + era * 400 + (1 if month <= 2 else 0)
    leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    before = (0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334)[month - 1]
    return year, month, day, before + day + (1 if leap and month > 2 else 0)


def _days_in_month(seconds: int) -> float:
    year, month, _, _ = _civil(seconds)
    if month == 2:
        return 29.0 if year % 4 == 0 and (year % 100 != 0 or year % 400 == 0) else 28.0
    return 30.0 if month in (4, 6, 9, 11) else 31.0


_DATE_PARTS: dict[str, Callable[[int], float]] = {
    "year": lambda s: float(_civil(s)[0]),
    "month": lambda s: float(_civil(s)[1]),
    "day_of_month": lambda s: float(_civil(s)[2]),
    "day_of_year": lambda s: float(_civil(s)[3]),
    "day_of_week": lambda s: float((s // 86400 + 4) % 7),
    "days_in_month": _days_in_month,
    "hour": lambda s: float(s % 86400 // 3600),
    "minute": lambda s: float(s % 3600 // 60),
}


def _date(part: Callable[[int], float]) -> InstantFunction:
    def apply(args: list[Arg], t: int) -> Vec:
        if not args:
            return Vec([()], [part(t // 1000 if t >= 0 else -((-t) // 1000))])
        return _map(_vec_arg(args, 0), lambda f: part(math.trunc(f)) if math.isfinite(f) else gomath.NAN)

    return apply


_TEMPLATE = re.compile(r"\$(?:\{([a-zA-Z0-9_]+)\}|([a-zA-Z0-9_]+)|(\$))")


def expand_template(template: str, match: Match) -> str:
    """Go's ``Regexp.ExpandString``: ``$1``, ``${1}``, ``$name``; ``$1x`` means ``${1x}``."""

    def repl(m: re.Match[str]) -> str:
        if m.group(3):
            return "$"
        name = m.group(1) or m.group(2)
        try:
            group = match.group(int(name)) if name.isdigit() else match.group(name)
        except IndexError:
            return ""
        return group or ""

    return _TEMPLATE.sub(repl, template)


def _label_replace(args: list[Arg], _t: int) -> Vec:
    vec = _vec_arg(args, 0)
    dst, repl, src, regex = (_str_arg(args, i) for i in range(1, 5))
    try:
        pattern = compile_anchored(regex)
    except RegexError:
        raise QueryError.execution(f"invalid regular expression in label_replace(): {regex}") from None
    if not _valid_label_name(dst):
        raise QueryError.execution(f"invalid destination label name in label_replace(): {dst}")
    out = Vec()
    for labels, value in zip(vec.labels, vec.values, strict=True):
        m = pattern.fullmatch(dict(labels).get(src, ""))
        if m is not None:
            labels = set_label(labels, dst, expand_template(repl, m))
        out.append(labels, value)
    return out


def _label_join(args: list[Arg], _t: int) -> Vec:
    vec = _vec_arg(args, 0)
    dst, sep = _str_arg(args, 1), _str_arg(args, 2)
    sources = [_str_arg(args, i) for i in range(3, len(args))]
    for name in sources:
        if not _valid_label_name(name):
            raise QueryError.execution(f"invalid source label name in label_join(): {name}")
    if not _valid_label_name(dst):
        raise QueryError.execution(f"invalid destination label name in label_join(): {dst}")
    out = Vec()
    for labels, value in zip(vec.labels, vec.values, strict=True):
        lm = dict(labels)
        out.append(set_label(labels, dst, sep.join(lm.get(s, "") for s in sources)), value)
    return out


INSTANT_FUNCTIONS: dict[str, InstantFunction] = {
    "abs": _simple(abs),
    "ceil": _simple(_ceil),
    "floor": _simple(_floor),
    "exp": _simple(gomath.exp),
    "ln": _simple(gomath.ln),
    "log2": _simple(gomath.log2),
    "log10": _simple(gomath.log10),
    "sqrt": _simple(gomath.sqrt),
    "sgn": _simple(_sgn),
    "deg": _simple(lambda v: v * 180 / math.pi),
    "rad": _simple(lambda v: v * math.pi / 180),
    **{name: _simple(fn) for name, fn in gomath.TRIG.items()},
    "round": _round,
    "clamp": lambda a, _t: _clamp(_vec_arg(a, 0), _float_arg(a, 1), _float_arg(a, 2)),
    "clamp_min": lambda a, _t: _clamp(_vec_arg(a, 0), _float_arg(a, 1), gomath.INF),
    "clamp_max": lambda a, _t: _clamp(_vec_arg(a, 0), -gomath.INF, _float_arg(a, 1)),
    "timestamp": _timestamp,
    "sort": _sorted(False),
    "sort_desc": _sorted(True),
    "scalar": _scalar,
    "vector": lambda a, _t: Vec([()], [_float_arg(a, 0)]),
    "time": lambda _a, t: t / 1000,
    "pi": lambda _a, _t: math.pi,
    **{name: lambda _a, _t: Vec() for name in NATIVE_HISTOGRAM_FUNCTIONS},
    "label_replace": _label_replace,
    "label_join": _label_join,
    **{name: _date(part) for name, part in _DATE_PARTS.items()},
}


def absent_labels(arg: Expr) -> LabelPairs:
    """Labels of ``absent(sel)``'s sample: the selector's equality matchers, except names
    matched more than once (Prometheus' historic behaviour)."""
    vs = arg.selector if isinstance(arg, MatrixSelector) else arg
    if not isinstance(vs, VectorSelector):
        return ()
    out: dict[str, str] = {}
    seen: set[str] = set()
    for m in vs.matchers:
        if m.name == METRIC_NAME:
            continue
        if m.op is MatchOp.EQ and m.name not in seen:
            out[m.name] = m.value
            seen.add(m.name)
        else:
            out.pop(m.name, None)
    return tuple(sorted((k, v) for k, v in out.items() if v))
