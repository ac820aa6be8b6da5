"""The query engine's public face: parse (cached), evaluate under limits, report annotations.

``Engine(store).instant(expr, t_ms)`` evaluates a parsed (or textual) expression at one
instant; ``range_query`` at every step of a range; ``evaluate`` does either and also returns
Prometheus' annotations (``warnings``/``infos``). ``await evaluate_async(...)`` is the same
evaluation run in slices of at most ``SLICE_SECONDS`` of CPU, giving the event loop back
between slices, so that a heavy query never holds up KEDA's calls on other triggers.

Limits (:class:`QueryLimits`, Prometheus' defaults): a query past ``timeout_s`` fails with
``query timed out in expression evaluation``; one holding more than ``max_samples`` samples
fails with ``query processing would load too many samples into memory in query execution``.
The timeout is checked at the same checkpoints the slicing uses.

Series are found only through ``Store.select`` (the inverted index) and read only through
``Series.window``, so a query costs what its selected series and samples cost, whatever the
size of the store. Selections are cached for the duration of one query.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass

from scaler.model import METRIC_NAME, Matcher, MatchOp
from scaler.query.annotations import Annotations
from scaler.query.ast import Expr, ValueType, VectorSelector, walk
from scaler.query.errors import QueryError
from scaler.query.evaluator import Context, Evaluator, matrix_rows
from scaler.query.parser import parse_promql
from scaler.query.values import Matrix, Sample, Scalar, String, TimeSeries, Value, Vector
from scaler.query.vec import RangeData, Vec
from scaler.store import Store

RESULT_STEP = 4096
"""Result samples or series built between two checkpoints of the final conversion."""

SLICE_SECONDS = 0.002
"""CPU time an ``evaluate_async`` slice may take before the event loop gets a turn (a
checkpoint can overshoot it by well under a millisecond). A KEDA call beside a heavy query needs
several turns of the loop (gRPC's events, the handler, the reply), each waiting for one slice:
with 10 ms slices that was ~40 ms a call (p50, heavy queries back to back on a 10k store), with
2 ms (and answers streamed 250 series a slice) ~13 ms, for a heavy query ~5 % slower."""


Pause = Callable[[], Awaitable[None]]
"""How a sliced evaluation yields to the event loop between two slices."""


async def turn() -> None:
    """One turn of the event loop: the default :data:`Pause` (KEDA's own evaluations)."""
    await asyncio.sleep(0)


@dataclass(frozen=True, slots=True)
class QueryLimits:
    """Per-query limits and defaults, as Prometheus' flags of the same meaning."""

    timeout_s: float = 120.0
    max_samples: int = 50_000_000
    evaluation_interval_ms: int = 60_000
    """Step of a subquery that names none (``x[5m:]``)."""


@dataclass(frozen=True, slots=True)
class Result:
    """A query's value and Prometheus' annotations about it."""

    value: Value
    warnings: tuple[str, ...] = ()
    infos: tuple[str, ...] = ()


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


_Run = tuple[Generator[None, None, Value], Annotations]


class Engine:
    """Evaluates PromQL over a :class:`~scaler.store.Store`."""

    def __init__(
        self,
        store: Store,
        lookback_ms: int = 300_000,
        limits: QueryLimits | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``clock`` (seconds) times the slices of :meth:`evaluate_async` and the timeout: the
        evaluation lab injects its virtual clock, on which a query takes no time, so where the
        event loop gets a turn does not depend on how loaded the machine is."""
        self.store = store
        self.lookback_ms = lookback_ms
        self.limits = limits or QueryLimits()
        self.clock = clock
        self._evaluator = Evaluator(store)

    # ------------------------------------------------------------------ public API

    def instant(self, expr: Expr | str, t_ms: int, lookback_ms: int | None = None) -> Value:
        """Evaluate ``expr`` at ``t_ms`` (instant selectors look back ``lookback_ms``, by default
        the engine's); raises :class:`QueryError`."""
        return self.evaluate(expr, t_ms, lookback_ms=lookback_ms).value

    def range_query(self, expr: Expr | str, start_ms: int, end_ms: int, step_ms: int) -> Matrix:
        """Evaluate ``expr`` at ``start, start+step, ... <= end``; series sorted by labels."""
        if step_ms <= 0:
            raise QueryError("zero or negative query resolution step widths are not accepted. Try a positive integer")
        value = self.evaluate(expr, start_ms, end_ms, step_ms).value
        assert isinstance(value, Matrix)
        return value

    def evaluate(
        self,
        expr: Expr | str,
        start_ms: int,
        end_ms: int | None = None,
        step_ms: int = 0,
        *,
        lookback_ms: int | None = None,
        timeout_s: float | None = None,
        text: str = "",
    ) -> Result:
        """An instant query at ``start_ms`` (``step_ms`` 0) or a range query, run to the end
        here; raises :class:`QueryError` (also past the timeout). ``text``: the source of a
        parsed ``expr``, for the positions in annotations."""
        gen, annotations, deadline = self._start(expr, start_ms, end_ms, step_ms, lookback_ms, timeout_s, text)
        clock = self.clock
        while True:
            try:
                next(gen)
            except StopIteration as stop:
                return Result(stop.value, tuple(annotations.warnings), tuple(annotations.infos))
            if clock() > deadline:
                gen.close()
                raise QueryError.timeout()

    async def evaluate_async(
        self,
        expr: Expr | str,
        start_ms: int,
        end_ms: int | None = None,
        step_ms: int = 0,
        *,
        lookback_ms: int | None = None,
        timeout_s: float | None = None,
        text: str = "",
        pause: Pause = turn,
    ) -> Result:
        """:meth:`evaluate`, yielding to the event loop every ``SLICE_SECONDS`` of work, with
        ``pause`` (by default one :func:`turn` of the loop; the HTTP API's queries pass a
        :meth:`~scaler.lowpriority.LowPriority.pause`, which lets ready KEDA work go first)."""
        gen, annotations, deadline = self._start(expr, start_ms, end_ms, step_ms, lookback_ms, timeout_s, text)
        clock = self.clock
        slice_end = clock() + SLICE_SECONDS
        while True:
            try:
                next(gen)
            except StopIteration as stop:
                return Result(stop.value, tuple(annotations.warnings), tuple(annotations.infos))
            now = clock()
            if now > deadline:
                gen.close()
                raise QueryError.timeout()
            if now >= slice_end:
                await pause()
                slice_end = clock() + SLICE_SECONDS

    # ------------------------------------------------------------------ internals

    def _start(
        self,
        expr: Expr | str,
        start: int,
        end: int | None,
        step: int,
        lookback_ms: int | None,
        timeout_s: float | None,
        text: str = "",
    ) -> tuple[Generator[None, None, Value], Annotations, float]:
        """The evaluation generator, its annotations and its monotonic deadline."""
        gen, annotations = self._run(expr, start, end, step, lookback_ms, text)
        return gen, annotations, self.clock() + (self.limits.timeout_s if timeout_s is None else timeout_s)

    def _run(
        self, expr: Expr | str, start: int, end: int | None, step: int, lookback_ms: int | None, text: str = ""
    ) -> _Run:
        text = expr if isinstance(expr, str) else text
        tree = _parse_cached(expr) if isinstance(expr, str) else expr
        end = start if end is None else end
        if step:
            if tree.type not in (ValueType.SCALAR, ValueType.VECTOR):
                raise QueryError(
                    f'invalid expression type "{tree.type.value}" for range query, must be Scalar or instant Vector'
                )
            if step < 0:
                raise QueryError(
                    "zero or negative query resolution step widths are not accepted. Try a positive integer"
                )
        annotations = Annotations(text)
        ctx = Context(
            start,
            start,
            end,
            self.lookback_ms if lookback_ms is None else lookback_ms,
            self.limits.evaluation_interval_ms,
            self.limits.max_samples,
            annotations,
            self.store.cutoff_ms() - 1,
        )
        run = self._range(tree, start, end, step, ctx) if step else self._instant(tree, ctx)
        return run, annotations

    def _instant(self, tree: Expr, ctx: Context) -> Generator[None, None, Value]:
        result = yield from self._evaluator.eval(tree, ctx)
        t = ctx.t
        if isinstance(result, float):
            return Scalar(t, result)
        if isinstance(result, str):
            return String(t, result)
        if isinstance(result, Vec):
            samples: list[Sample] = []
            labels, values = result.labels, result.values
            for a in range(0, len(labels), RESULT_STEP):  # 40k samples are ~20 ms of objects
                samples += map(Sample, labels[a : a + RESULT_STEP], values[a : a + RESULT_STEP])
                yield
            return Vector(t, tuple(samples))
        assert isinstance(result, RangeData)
        rows = matrix_rows(result)
        series: list[TimeSeries] = []
        for a in range(0, len(rows), RESULT_STEP):
            series += (TimeSeries(lb, ts, vs) for lb, ts, vs in rows[a : a + RESULT_STEP])
            yield
        return Matrix(tuple(series))

    def _range(self, tree: Expr, start: int, end: int, step: int, ctx: Context) -> Generator[None, None, Value]:
        points = yield from self._evaluator.eval_range(tree, start, end, step, ctx)
        keys = sorted(points)
        yield
        series: list[TimeSeries] = []
        for a in range(0, len(keys), RESULT_STEP):
            for lb in keys[a : a + RESULT_STEP]:
                ts, vs = points[lb]
                series.append(TimeSeries(lb, tuple(ts), tuple(vs)))
            yield
        return Matrix(tuple(series))
