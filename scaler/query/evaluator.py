"""The PromQL evaluator: one query's evaluation as a generator, so it can run in slices.

Every ``_eval`` step is a generator that yields (``None``) at checkpoints — every few hundred
series read, every chunk of series a range function works on, every step of a range query or a
subquery — and returns its value. A driver (:mod:`scaler.query.engine`) runs it to the end,
and between checkpoints may hand the event loop to other work, check the deadline, or both.

Data is read consistently across those pauses: a selector copies what it reads (``RangeData``
concatenates windows into new arrays, instant selectors read plain numbers) before the next
checkpoint, and the series it selected are kept for the rest of the query, so samples appended
or trimmed while the query is paused never change what it already read.

Semantics are Prometheus 3's:

* an instant selector takes, per series, the newest sample in ``(t - lookback, t]``, and
  nothing if that sample is a staleness marker;
* a range selector ``x[r]`` takes the samples in ``(t - r, t]`` minus staleness markers;
* a subquery ``e[r:s]`` evaluates ``e`` at the multiples of ``s`` (absolute time) in
  ``(t - r, t]``; ``s`` defaults to the evaluation interval;
* ``offset d`` shifts all of these back by ``d``; ``@ t`` pins them to ``t``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from scaler.model import METRIC_NAME, LabelPairs, Matcher
from scaler.query.aggregate import aggregate_steps
from scaler.query.annotations import COUNTER_SUFFIXES, Annotations
from scaler.query.ast import (
    SET_OPS,
    AggregateExpr,
    At,
    BinaryExpr,
    Call,
    Expr,
    MatrixSelector,
    NumberLiteral,
    ParenExpr,
    StringLiteral,
    SubqueryExpr,
    UnaryExpr,
    VectorMatching,
    VectorSelector,
)
from scaler.query.binary import scalar_binop, set_binop, vector_binop, vector_scalar_binop
from scaler.query.errors import QueryError
from scaler.query.functions import INSTANT_FUNCTIONS, Arg, absent_labels
from scaler.query.gomath import duration_seconds
from scaler.query.histogram import histogram_fraction, histogram_quantile
from scaler.query.rangefuncs import RANGE_FUNCTIONS, VECTORISED
from scaler.query.selection import (
    RATE_KINDS,
    Latest,
    Selection,
    SelectionCache,
    gather,
    latest_steps,
    native_latest,
    native_rate,
    rate_steps,
)
from scaler.query.terms import MAX_DURATION_MS
from scaler.query.vec import RangeData, Vec, drop_name, joined, unique_steps
from scaler.store import Series, Store

Internal = float | str | Vec | RangeData
T = TypeVar("T")
Gen = Generator[None, None, T]
Points = dict[LabelPairs, tuple[list[int], list[float]]]

CHECKPOINT_SERIES = 256
"""Series read or computed between two checkpoints (each costs well under a millisecond)."""
VECTORISED_STEP = 4096
"""Series a range function computed with numpy (:data:`VECTORISED`) takes between checkpoints."""
GATHER_STEP = 4096
"""Series whose windows one ``gather`` reads between two checkpoints (~1 ms in C)."""
_DEFAULT_MATCHING = VectorMatching()
TOO_MANY_SAMPLES = "query processing would load too many samples into memory in query execution"


@dataclass(slots=True)
class Context:
    """One query's evaluation state."""

    t: int
    start: int
    end: int
    lookback: int
    interval: int
    """Step of a subquery that names none (Prometheus' global evaluation interval)."""
    max_samples: int
    annotations: Annotations
    expired: int = -(1 << 62)
    """The newest expired instant (:meth:`Store.cutoff_ms` less 1 ms): no selector reads a
    sample at or before it. The retention sweep trims a few series per slice, so until it
    reaches a series the series still holds such samples; read, they would make the answer
    depend on where the sweep stood (two replicas fed the same data would disagree while a
    5-m lookback outlasts a 2-m retention)."""
    samples: int = 0
    """Samples held by the evaluation now (loaded by selectors, or kept as results)."""
    cache: dict[tuple[Matcher, ...], Selection] = field(default_factory=dict)

    def count(self, n: int) -> None:
        self.samples += n
        if self.samples > self.max_samples:
            raise QueryError.execution(TOO_MANY_SAMPLES)


def _unparen(e: Expr) -> Expr:
    while isinstance(e, ParenExpr):
        e = e.expr
    return e


def go_div(a: int, b: int) -> int:
    """Go's integer division (truncates toward zero)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


REF_LIMIT_MS = 2**63 - 1 - 2 * MAX_DURATION_MS
"""How far from the epoch a selector or subquery reads (either way): its reference time is held
inside ``±REF_LIMIT_MS``, so it, and it less a range and a lookback (each at most
:data:`MAX_DURATION_MS`), stay int64 milliseconds, which the store's C readers take. An ``@``
modifier (``x @ 1.8e16`` is 1.8e19 ms) or a query time may lie beyond int64; no sample does (an
OTLP timestamp is uint64 nanoseconds), so the held time reads the same samples: none."""


def _ref_time(at: At | None, offset_ms: int, ctx: Context) -> int:
    if at is None:
        ref = ctx.t - offset_ms
    else:
        base = at.t_ms if at.kind == "time" else (ctx.start if at.kind == "start" else ctx.end)
        ref = base - offset_ms
    return min(max(ref, -REF_LIMIT_MS), REF_LIMIT_MS)


class Evaluator:
    """Evaluates trees over one store; stateless between queries."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._selections = SelectionCache(store)
        self._dispatch: dict[type, Callable[[Any, Context], Gen[Internal]]] = {
            NumberLiteral: self._literal,
            StringLiteral: self._literal,
            ParenExpr: lambda e, c: self.eval(e.expr, c),
            VectorSelector: self._vector_selector,
            MatrixSelector: self._matrix_selector,
            SubqueryExpr: self._subquery,
            Call: self._call,
            AggregateExpr: self._aggregate,
            BinaryExpr: self._binary,
            UnaryExpr: self._unary,
        }

    def eval(self, e: Expr, ctx: Context) -> Gen[Internal]:
        return self._dispatch[type(e)](e, ctx)

    def eval_range(self, e: Expr, start: int, end: int, step: int, ctx: Context) -> Gen[Points]:
        """``e`` at ``start, start+step, ... <= end``: per output series, its points."""
        points: Points = {}
        saved_t, base = ctx.t, ctx.samples
        held = 0
        for t in range(start, end + 1, step):
            ctx.t = t
            ctx.samples = base + held
            result = yield from self.eval(e, ctx)
            if isinstance(result, float):
                result = Vec([()], [result])
            assert isinstance(result, Vec)
            for labels, v in zip(result.labels, result.values, strict=True):
                series = points.get(labels)
                if series is None:
                    series = points[labels] = ([], [])
                series[0].append(t)
                series[1].append(v)
            held += len(result)
            yield
        ctx.t = saved_t
        ctx.samples = base
        ctx.count(held)
        return points

    # ------------------------------------------------------------------ leaves

    def _literal(self, e: NumberLiteral | StringLiteral, _ctx: Context) -> Gen[Internal]:
        return e.value
        yield  # a generator like every other step

    def _vector(self, e: Expr, ctx: Context) -> Gen[Vec]:
        v = yield from self.eval(e, ctx)
        assert isinstance(v, Vec)
        return v

    def _scalar(self, e: Expr, ctx: Context) -> Gen[float]:
        v = yield from self.eval(e, ctx)
        assert isinstance(v, float)
        return v

    def _select(self, matchers: tuple[Matcher, ...], ctx: Context) -> Gen[Selection]:
        found = ctx.cache.get(matchers)
        if found is None:
            found = ctx.cache[matchers] = yield from self._selections.select_steps(matchers)
        return found

    def _latest(self, vs: VectorSelector, ctx: Context) -> Gen[tuple[list[Series], list[int], list[float]]]:
        """Per selected series, the sample an instant selector sees: (series, ts, value)."""
        selected = yield from self._select(vs.matchers, ctx)
        rows, times, values = yield from self._latest_rows(vs, selected, ctx)
        series = selected.series
        return [series[i] for i in rows.tolist()], times.tolist(), values.tolist()

    def _latest_rows(self, vs: VectorSelector, selected: Selection, ctx: Context) -> Gen[Latest]:
        ref = _ref_time(vs.at, vs.offset_ms, ctx)
        step = CHECKPOINT_SERIES if native_latest is None else GATHER_STEP
        found = yield from latest_steps(selected.series, max(ref - ctx.lookback, ctx.expired), ref, step)
        ctx.count(len(found[0]))
        return found

    def _vector_selector(self, vs: VectorSelector, ctx: Context) -> Gen[Internal]:
        selected = yield from self._select(vs.matchers, ctx)
        rows, _, values = yield from self._latest_rows(vs, selected, ctx)
        return Vec(None, None, selected, rows, values, named=True)

    def _matrix_selector(self, ms: MatrixSelector, ctx: Context) -> Gen[Internal]:
        vs = ms.selector
        ref = _ref_time(vs.at, vs.offset_ms, ctx)
        lo = ref - ms.range_ms
        read = max(lo, ctx.expired)  # the window stays (lo, ref]: rate extrapolates to its edges
        selected = yield from self._select(vs.matchers, ctx)
        series = selected.series
        if len(series) <= GATHER_STEP:
            rows, offs, ts, vals = gather(series, read, ref)
        else:  # in pieces, each copied before the pause: the store may change meanwhile
            parts = []
            for a in range(0, len(series), GATHER_STEP):
                parts.append(gather(series[a : a + GATHER_STEP], read, ref))
                yield
            rows = np.concatenate([p[0] + a for p, a in zip(parts, range(0, len(series), GATHER_STEP), strict=True)])
            sizes = np.concatenate([np.diff(p[1]) for p in parts])
            offs = np.zeros(len(sizes) + 1, dtype=np.int64)
            np.cumsum(sizes, out=offs[1:])
            ts = np.concatenate([p[2] for p in parts])
            vals = np.concatenate([p[3] for p in parts])
        rd = RangeData.gathered(selected, rows, offs, ts, vals, (lo, ref, ms.range_ms))
        ctx.count(len(rd.ts))
        return rd

    def _subquery(self, sq: SubqueryExpr, ctx: Context) -> Gen[Internal]:
        ref = _ref_time(sq.at, sq.offset_ms, ctx)
        step = sq.step_ms or ctx.interval
        lo = ref - sq.range_ms
        first = step * go_div(lo, step)
        if first <= lo:
            first += step
        points = yield from self.eval_range(sq.expr, first, ref, step, ctx)
        labels = list(points)
        ts_parts = [np.array(points[lb][0], dtype=np.int64) for lb in labels]
        val_parts = [np.array(points[lb][1], dtype=np.float64) for lb in labels]
        return RangeData.build(labels, ts_parts, val_parts, lo, ref, sq.range_ms)

    # ------------------------------------------------------------------ functions

    def _range_arg(self, e: Expr, ctx: Context) -> Gen[RangeData]:
        data = yield from self.eval(e, ctx)
        assert isinstance(data, RangeData)
        return data

    def _call(self, e: Call, ctx: Context) -> Gen[Internal]:
        name = e.func
        args = [_unparen(a) for a in e.args]
        if name == "timestamp" and isinstance(args[0], VectorSelector):
            found, times, _ = yield from self._latest(args[0], ctx)
            return (yield from unique_steps(Vec([drop_name(s.labels) for s in found], [t / 1000 for t in times])))
        if name == "absent":
            present = yield from self._vector(args[0], ctx)
            return Vec() if len(present) else Vec([absent_labels(args[0])], [1.0])
        if name == "absent_over_time":
            data = yield from self._range_arg(args[0], ctx)
            return Vec() if len(data) else Vec([absent_labels(args[0])], [1.0])
        if name in ("histogram_quantile", "histogram_fraction"):
            return (yield from self._histogram(e, args, ctx))
        if name in RANGE_FUNCTIONS:
            return (yield from self._range_call(e, args, ctx))
        values: list[Arg] = []
        for arg in args:
            value = yield from self.eval(arg, ctx)
            assert not isinstance(value, RangeData)
            values.append(value)
        result = INSTANT_FUNCTIONS[name](values, ctx.t)
        return (yield from unique_steps(result)) if isinstance(result, Vec) else result

    def _histogram(self, e: Call, args: list[Expr], ctx: Context) -> Gen[Internal]:
        scalars = []
        for arg in args[:-1]:
            scalars.append((yield from self._scalar(arg, ctx)))
        vec = yield from self._vector(args[-1], ctx)
        pos = e.args[-1].pos
        if e.func == "histogram_quantile":
            return (yield from unique_steps(histogram_quantile(scalars[0], vec, ctx.annotations, e.args[0].pos, pos)))
        return (yield from unique_steps(histogram_fraction(scalars[0], scalars[1], vec, ctx.annotations, pos)))

    def _range_call(self, e: Call, args: list[Expr], ctx: Context) -> Gen[Internal]:
        if e.func in RATE_KINDS and native_rate is not None and isinstance(args[0], MatrixSelector):
            fused = yield from self._rate_of_windows(e.func, args[0], ctx)
            if fused is not None:
                return fused
        fn = RANGE_FUNCTIONS[e.func]
        window: RangeData | None = None
        window_arg = 0
        scalars: list[float] = []
        for i, arg in enumerate(args):
            if isinstance(arg, (MatrixSelector, SubqueryExpr)):
                window = yield from self._range_arg(arg, ctx)
                window_arg = i
            else:
                scalars.append((yield from self._scalar(arg, ctx)))
        assert window is not None
        if e.func in ("rate", "increase") and isinstance(args[window_arg], MatrixSelector):
            self._check_counter_names(window, e.args[window_arg], ctx)
        if e.func == "quantile_over_time" and len(window):
            q = scalars[0]
            if math.isnan(q) or q < 0 or q > 1:
                ctx.annotations.invalid_quantile(q, e.args[0].pos)
        step = VECTORISED_STEP if e.func in VECTORISED else CHECKPOINT_SERIES
        parts: list[Vec] = []
        for a in range(0, len(window), step):
            parts.append(fn(window.slice(a, a + step), scalars, ctx.t))
            yield
        out = joined(parts, window.origin)
        return (yield from unique_steps(out))

    def _rate_of_windows(self, func: str, ms: MatrixSelector, ctx: Context) -> Gen[Vec | None]:
        """``rate``/``increase``/``delta`` of a selector straight from the series' windows (in C,
        nothing copied); None where the general path must run: a ``rate``/``increase`` over a
        series not named like a counter (its warning names what the windows hold), or a window
        reaching back past the retention (the C reader takes the window's edge for both the
        samples and the extrapolation)."""
        vs = ms.selector
        selected = yield from self._select(vs.matchers, ctx)
        if func != "delta" and not selected.named_like_counters:
            return None
        ref = _ref_time(vs.at, vs.offset_ms, ctx)
        if ref - ms.range_ms < ctx.expired:  # the general path reads only what has not expired
            return None
        seconds = duration_seconds(ms.range_ms)
        vec = yield from rate_steps(selected, ref - ms.range_ms, ref, func, seconds, ctx.count, GATHER_STEP)
        return (yield from unique_steps(vec))

    def _check_counter_names(self, window: RangeData, arg: Expr, ctx: Context) -> None:
        origin = window.origin
        if origin is not None and origin.named_like_counters:
            return  # every selected series is named like a counter: nothing to warn about
        names = {_name_of(lb) for lb in window.labels}
        for name in sorted(names):
            if name and not name.endswith(COUNTER_SUFFIXES):
                ctx.annotations.possible_non_counter(name, arg.pos)

    # ------------------------------------------------------------------ operators

    def _aggregate(self, e: AggregateExpr, ctx: Context) -> Gen[Internal]:
        param: float | str | None = None
        if e.param is not None:
            p = yield from self.eval(_unparen(e.param), ctx)
            assert isinstance(p, (float, str))
            param = p
            if e.op == "quantile" and isinstance(p, float) and (math.isnan(p) or p < 0 or p > 1):
                ctx.annotations.invalid_quantile(p, e.param.pos)
        vec = yield from self._vector(e.expr, ctx)
        return (yield from aggregate_steps(e.op, vec, e.grouping, e.without, param))

    def _binary(self, e: BinaryExpr, ctx: Context) -> Gen[Internal]:
        lhs = yield from self.eval(e.lhs, ctx)
        rhs_expr = _unparen(e.rhs)
        if e.op in _ROW_FILTERS and isinstance(lhs, Vec) and isinstance(rhs_expr, VectorSelector):
            kept = yield from self._filter_rows(e, lhs, rhs_expr, ctx)
            if kept is not None:
                return (yield from unique_steps(kept))
        rhs = yield from self.eval(e.rhs, ctx)
        if isinstance(lhs, float) and isinstance(rhs, float):
            return scalar_binop(e.op, lhs, rhs)
        if isinstance(lhs, Vec) and isinstance(rhs, float):
            return (yield from unique_steps(vector_scalar_binop(e.op, lhs, rhs, False, e.return_bool)))
        if isinstance(lhs, float) and isinstance(rhs, Vec):
            return (yield from unique_steps(vector_scalar_binop(e.op, rhs, lhs, True, e.return_bool)))
        assert isinstance(lhs, Vec) and isinstance(rhs, Vec)
        matching = e.matching or _DEFAULT_MATCHING
        if e.op in SET_OPS:
            return (yield from unique_steps(set_binop(e.op, lhs, rhs, matching)))
        return (yield from unique_steps(vector_binop(e.op, lhs, rhs, matching, e.return_bool)))

    def _filter_rows(self, e: BinaryExpr, lhs: Vec, vs: VectorSelector, ctx: Context) -> Gen[Vec | None]:
        """``lhs and vs`` / ``lhs unless vs`` by row, without the right-hand vector or any label
        set: when ``lhs`` is labelled by the very selection ``vs`` makes (a range function of the
        same selector, as in the compat form ``f(x[w]) and x``) and a series' signature is its row
        (:attr:`Selection.signatures_are_rows`). None where the general path must run."""
        if not _by_signature(e.matching):
            return None
        selected = yield from self._select(vs.matchers, ctx)
        if lhs.origin is not selected or lhs.rows is None or not selected.signatures_are_rows:
            return None
        rows, _, _ = yield from self._latest_rows(vs, selected, ctx)
        live = np.zeros(len(selected), dtype=np.bool_)
        live[rows] = True
        keep = live[lhs.rows] if e.op == "and" else ~live[lhs.rows]
        return Vec(None, None, selected, lhs.rows[keep], lhs.floats()[keep], named=lhs.named)

    def _unary(self, e: UnaryExpr, ctx: Context) -> Gen[Internal]:
        value = yield from self.eval(e.expr, ctx)
        if e.op == "+":
            return value
        if isinstance(value, float):
            return -value
        assert isinstance(value, Vec)
        return (yield from unique_steps(Vec([drop_name(lb) for lb in value.labels], [-v for v in value.values])))


_ROW_FILTERS = frozenset({"and", "unless"})
"""The set operations :meth:`Evaluator._filter_rows` may answer."""


def _by_signature(matching: VectorMatching | None) -> bool:
    """Whether a set operation matches on the default signature (the labels without the name)."""
    return matching is None or (not matching.on and not matching.labels)


def _name_of(labels: LabelPairs) -> str:
    if labels and labels[0][0] == METRIC_NAME:
        return labels[0][1]
    return next((v for k, v in labels if k == METRIC_NAME), "")


def matrix_rows(rd: RangeData) -> list[tuple[LabelPairs, tuple[int, ...], tuple[float, ...]]]:
    bounds = rd.offs.tolist()
    ts, vals = rd.ts.tolist(), rd.vals.tolist()
    return [
        (lb, tuple(ts[a:b]), tuple(vals[a:b])) for lb, (a, b) in zip(rd.labels, itertools.pairwise(bounds), strict=True)
    ]
