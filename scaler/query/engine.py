"""The PromQL evaluator.

``Engine(store).instant(expr, t_ms)`` evaluates a parsed (or textual) expression at one
instant; ``range_query`` evaluates it at every step of a range. Semantics are Prometheus 3's:

* an instant selector takes, per series, the newest sample in ``(t - lookback, t]``, and
  nothing if that sample is a staleness marker;
* a range selector ``x[r]`` takes the samples in ``(t - r, t]`` minus staleness markers;
* ``offset d`` shifts both back by ``d``; ``@ t`` pins them to ``t`` (``start()``/``end()``:
  the query's range).

Series are found only through ``Store.select`` (the inverted index) and read only through
``Series.window``, so a query costs what its selected series and samples cost, whatever the
size of the store. Selections are cached for the duration of one query.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from scaler.model import METRIC_NAME, Matcher, MatchOp, is_stale
from scaler.query.aggregate import aggregate
from scaler.query.ast import (
    SET_OPS,
    AggregateExpr,
    BinaryExpr,
    Call,
    Expr,
    MatrixSelector,
    NumberLiteral,
    ParenExpr,
    StringLiteral,
    UnaryExpr,
    ValueType,
    VectorMatching,
    VectorSelector,
    walk,
)
from scaler.query.binary import scalar_binop, set_binop, vector_binop, vector_scalar_binop
from scaler.query.errors import QueryError
from scaler.query.functions import INSTANT_FUNCTIONS, Arg
from scaler.query.parser import parse_promql
from scaler.query.rangefuncs import RANGE_FUNCTIONS
from scaler.query.values import Matrix, Sample, Scalar, String, TimeSeries, Value, Vector
from scaler.query.vec import RangeData, Vec, check_unique, drop_name
from scaler.store import Series, Store

_Internal = float | str | Vec | RangeData
_DEFAULT_MATCHING = VectorMatching()


@dataclass(slots=True)
class _Ctx:
    t: int
    start: int
    end: int
    lookback: int
    cache: dict[tuple[Matcher, ...], list[Series]] = field(default_factory=dict)


@functools.lru_cache(maxsize=512)
def _parse_cached(text: str) -> Expr:
    return parse_promql(text)


def selectors(expr: Expr | str) -> list[tuple[Matcher, ...]]:
    """The matchers of every vector and range selector in ``expr`` (in query order)."""
    tree = _parse_cached(expr) if isinstance(expr, str) else expr
    return [node.matchers for node in walk(tree) if isinstance(node, VectorSelector)]


def metric_names(expr: Expr | str) -> set[str]:
    """Metric names a query reads through ``__name__`` equality (others: regex, absent)."""
    names: set[str] = set()
    for matchers in selectors(expr):
        for m in matchers:
            if m.name == METRIC_NAME and m.op is MatchOp.EQ:
                names.add(m.value)
    return names


def _unparen(e: Expr) -> Expr:
    while isinstance(e, ParenExpr):
        e = e.expr
    return e


class Engine:
    """Evaluates PromQL over a :class:`~scaler.store.Store`."""

    def __init__(self, store: Store, lookback_ms: int = 300_000) -> None:
        self.store = store
        self.lookback_ms = lookback_ms
        self._dispatch: dict[type, Callable[[Any, _Ctx], _Internal]] = {
            NumberLiteral: lambda e, _c: e.value,
            StringLiteral: lambda e, _c: e.value,
            ParenExpr: lambda e, c: self._eval(e.expr, c),
            VectorSelector: self._vector_selector,
            MatrixSelector: self._matrix_selector,
            Call: self._call,
            AggregateExpr: self._aggregate,
            BinaryExpr: self._binary,
            UnaryExpr: self._unary,
        }

    # ------------------------------------------------------------------ public API

    def instant(self, expr: Expr | str, t_ms: int, lookback_ms: int | None = None) -> Value:
        """Evaluate ``expr`` at ``t_ms`` (instant selectors look back ``lookback_ms``, by default
        the engine's); raises :class:`QueryError`."""
        tree = _parse_cached(expr) if isinstance(expr, str) else expr
        result = self._eval(tree, _Ctx(t_ms, t_ms, t_ms, self.lookback_ms if lookback_ms is None else lookback_ms))
        if isinstance(result, float):
            return Scalar(t_ms, result)
        if isinstance(result, str):
            return String(t_ms, result)
        if isinstance(result, Vec):
            return Vector(t_ms, tuple(Sample(lb, v) for lb, v in zip(result.labels, result.values, strict=True)))
        bounds = result.offs.tolist()
        ts, vals = result.ts.tolist(), result.vals.tolist()
        return Matrix(
            tuple(
                TimeSeries(lb, tuple(ts[a:b]), tuple(vals[a:b]))
                for lb, (a, b) in zip(result.labels, itertools.pairwise(bounds), strict=True)
            )
        )

    def range_query(self, expr: Expr | str, start_ms: int, end_ms: int, step_ms: int) -> Matrix:
        """Evaluate ``expr`` at ``start, start+step, ... <= end``; series sorted by labels."""
        tree = _parse_cached(expr) if isinstance(expr, str) else expr
        if tree.type not in (ValueType.SCALAR, ValueType.VECTOR):
            raise QueryError(
                f'invalid expression type "{tree.type.value}" for range query, must be Scalar or instant Vector'
            )
        if step_ms <= 0:
            raise QueryError("zero or negative query resolution step widths are not accepted. Try a positive integer")
        ctx = _Ctx(start_ms, start_ms, end_ms, self.lookback_ms)
        points: dict[tuple[tuple[str, str], ...], tuple[list[int], list[float]]] = {}
        for t in range(start_ms, end_ms + 1, step_ms):
            ctx.t = t
            result = self._eval(tree, ctx)
            if isinstance(result, float):
                series = points.setdefault((), ([], []))
                series[0].append(t)
                series[1].append(result)
                continue
            assert isinstance(result, Vec)
            for labels, v in zip(result.labels, result.values, strict=True):
                series = points.setdefault(labels, ([], []))
                series[0].append(t)
                series[1].append(v)
        return Matrix(tuple(TimeSeries(lb, tuple(ts), tuple(vs)) for lb, (ts, vs) in sorted(points.items())))

    # ------------------------------------------------------------------ evaluation

    def _eval(self, e: Expr, ctx: _Ctx) -> _Internal:
        return self._dispatch[type(e)](e, ctx)

    def _vector(self, e: Expr, ctx: _Ctx) -> Vec:
        v = self._eval(e, ctx)
        assert isinstance(v, Vec)
        return v

    def _scalar(self, e: Expr, ctx: _Ctx) -> float:
        v = self._eval(e, ctx)
        assert isinstance(v, float)
        return v

    def _select(self, matchers: tuple[Matcher, ...], ctx: _Ctx) -> list[Series]:
        found = ctx.cache.get(matchers)
        if found is None:
            found = ctx.cache[matchers] = self.store.select(matchers)
        return found

    def _ref_time(self, vs: VectorSelector, ctx: _Ctx) -> int:
        at = vs.at
        if at is None:
            return ctx.t - vs.offset_ms
        base = at.t_ms if at.kind == "time" else (ctx.start if at.kind == "start" else ctx.end)
        return base - vs.offset_ms

    def _latest(self, vs: VectorSelector, ctx: _Ctx) -> tuple[list[Series], list[int], list[float]]:
        """Per selected series, the sample an instant selector sees: (series, ts, value)."""
        ref = self._ref_time(vs, ctx)
        lo = ref - ctx.lookback
        found: list[Series] = []
        times: list[int] = []
        values: list[float] = []
        for s in self._select(vs.matchers, ctx):
            if not s.n:
                continue
            t = s.last_ts
            if t <= ref:
                if t <= lo:
                    continue
                v = s.last_value
            else:
                ts, vals = s.window(lo, ref)
                if not len(ts):
                    continue
                t, v = int(ts[-1]), float(vals[-1])
            if math.isnan(v) and is_stale(v):
                continue
            found.append(s)
            times.append(t)
            values.append(v)
        return found, times, values

    def _vector_selector(self, vs: VectorSelector, ctx: _Ctx) -> Vec:
        found, _, values = self._latest(vs, ctx)
        return Vec([s.labels for s in found], values)

    def _matrix_selector(self, ms: MatrixSelector, ctx: _Ctx) -> RangeData:
        vs = ms.selector
        ref = self._ref_time(vs, ctx)
        lo = ref - ms.range_ms
        labels, ts_parts, val_parts = [], [], []
        for s in self._select(vs.matchers, ctx):
            ts, vals = s.window(lo, ref)
            if ts.shape[0]:
                labels.append(s.labels)
                ts_parts.append(ts)
                val_parts.append(vals)
        return RangeData.build(labels, ts_parts, val_parts, lo, ref, ms.range_ms)

    def _call(self, e: Call, ctx: _Ctx) -> _Internal:
        name = e.func
        args = [_unparen(a) for a in e.args]
        if name == "timestamp" and isinstance(args[0], VectorSelector):
            found, times, _ = self._latest(args[0], ctx)
            return check_unique(Vec([drop_name(s.labels) for s in found], [t / 1000 for t in times]))
        if name == "absent":
            if len(self._vector(args[0], ctx)):
                return Vec()
            return Vec([_absent_labels(args[0])], [1.0])
        if name == "absent_over_time":
            data = self._eval(args[0], ctx)
            assert isinstance(data, RangeData)
            return Vec() if len(data) else Vec([_absent_labels(args[0])], [1.0])
        range_fn = RANGE_FUNCTIONS.get(name)
        if range_fn is not None:
            window: RangeData | None = None
            scalars: list[float] = []
            for arg in args:
                if isinstance(arg, MatrixSelector):
                    window = self._matrix_selector(arg, ctx)
                else:
                    scalars.append(self._scalar(arg, ctx))
            assert window is not None
            return check_unique(range_fn(window, scalars, ctx.t))
        values: list[Arg] = []
        for arg in args:
            value = self._eval(arg, ctx)
            assert not isinstance(value, RangeData)
            values.append(value)
        result = INSTANT_FUNCTIONS[name](values, ctx.t)
        return check_unique(result) if isinstance(result, Vec) else result

    def _aggregate(self, e: AggregateExpr, ctx: _Ctx) -> Vec:
        param: float | str | None = None
        if e.param is not None:
            p = self._eval(_unparen(e.param), ctx)
            assert isinstance(p, (float, str))
            param = p
        vec = self._vector(e.expr, ctx)
        return aggregate(e.op, vec, e.grouping, e.without, param)

    def _binary(self, e: BinaryExpr, ctx: _Ctx) -> _Internal:
        lhs = self._eval(e.lhs, ctx)
        rhs = self._eval(e.rhs, ctx)
        if isinstance(lhs, float) and isinstance(rhs, float):
            return scalar_binop(e.op, lhs, rhs)
        if isinstance(lhs, Vec) and isinstance(rhs, float):
            return check_unique(vector_scalar_binop(e.op, lhs, rhs, False, e.return_bool))
        if isinstance(lhs, float) and isinstance(rhs, Vec):
            return check_unique(vector_scalar_binop(e.op, rhs, lhs, True, e.return_bool))
        assert isinstance(lhs, Vec) and isinstance(rhs, Vec)
        matching = e.matching or _DEFAULT_MATCHING
        if e.op in SET_OPS:
            return check_unique(set_binop(e.op, lhs, rhs, matching))
        return check_unique(vector_binop(e.op, lhs, rhs, matching, e.return_bool))

    def _unary(self, e: UnaryExpr, ctx: _Ctx) -> _Internal:
        value = self._eval(e.expr, ctx)
        if e.op == "+":
            return value
        if isinstance(value, float):
            return -value
        assert isinstance(value, Vec)
        return check_unique(Vec([drop_name(lb) for lb in value.labels], [-v for v in value.values]))


def _absent_labels(arg: Expr) -> tuple[tuple[str, str], ...]:
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
