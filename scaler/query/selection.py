"""Selections kept across queries, and the windows of a selection read in one pass.

KEDA asks the same queries every few seconds, and in steady state no series appears or goes
away between two asks. :class:`SelectionCache` keeps the series a matcher set selected together
with the store's :attr:`~scaler.store.Store.generation` at that time; while the generation is
unchanged the selection is still exact (a series' labels never change), so a repeated query
skips the postings, the regular expressions and the sort. What is derived from the selected
series' labels alone (their labels without the metric name, whether those are distinct, the
group of each series under a ``by``/``without`` clause) is memoised on the :class:`Selection`
and lives as long as it.

:func:`gather` reads the samples ``lo < ts <= hi`` of many series into concatenated arrays: in
C (``scaler/_native/gather.c``) when the extension is built, else per series in Python.
:data:`native_rate` reads the same windows but keeps only ``delta``/``increase``/``rate`` of
each (no copy of the samples), and :data:`native_group_sums` sums such values per group.
"""

from __future__ import annotations

import itertools
import math
from collections import OrderedDict
from collections.abc import Callable, Generator, Hashable
from typing import Any

import numpy as np

from scaler.model import LabelPairs, Matcher, is_stale
from scaler.query.annotations import COUNTER_SUFFIXES
from scaler.query.vec import Vec, drop_name
from scaler.store import FloatArray, Int64Array, Series, Store

Gathered = tuple[Int64Array, Int64Array, Int64Array, FloatArray]
"""``(rows, offs, ts, vals)``: series ``rows[i]`` of the list owns ``ts[offs[i]:offs[i+1]]``."""

Latest = tuple[Int64Array, Int64Array, FloatArray]
"""``(rows, ts, vals)``: the sample an instant selector sees of series ``rows[i]`` of the list."""

Rated = tuple[Int64Array, FloatArray, int]
"""``(rows, values, samples)``: ``values[i]`` is the value of series ``rows[i]`` of the list;
``samples`` were read."""

_native_gather: Callable[[list[Series], int, int], Gathered] | None
native_latest: Callable[[list[Series], int, int, int, int], Latest] | None
native_rate: Callable[[list[Series], int, int, int, int, int, float], Rated] | None
"""``delta``/``increase``/``rate`` straight from the windows, in C (kinds :data:`RATE_KINDS`);
None without the extension (the evaluator then gathers and uses numpy)."""
native_group_sums: Callable[[FloatArray, Int64Array, int], tuple[Int64Array, FloatArray]] | None
"""PromQL's ``sum`` per group in C: ``(groups in order of first member, sums)``; or None."""
try:
    from scaler._native.gather import gather as _native_gather
    from scaler._native.gather import group_sums as native_group_sums
    from scaler._native.gather import latest as native_latest
    from scaler._native.gather import rate as native_rate
except ImportError:  # a source checkout that was never built: the Python and numpy code serves
    _native_gather = native_rate = native_group_sums = native_latest = None

RATE_KINDS = {"delta": 0, "increase": 1, "rate": 2}
"""The range functions :data:`native_rate` computes, by its ``kind`` argument."""

SELECTIONS = 512
"""Matcher sets whose selections are kept (least recently used first out)."""


class Selection:
    """The series a matcher set selected (sorted by labels; read-only) and what is derived
    from their labels, memoised."""

    __slots__ = ("_memo", "series")

    def __init__(self, series: list[Series]) -> None:
        self.series = series
        self._memo: dict[Hashable, Any] = {}

    def __len__(self) -> int:
        return len(self.series)

    def memo(self, key: Hashable, make: Callable[[], Any]) -> Any:
        """``make()``, computed once per selection under ``key``."""
        found = self._memo.get(key, self._memo)
        if found is self._memo:
            found = self._memo[key] = make()
        return found

    def recall(self, key: Hashable) -> Any:
        """What :meth:`keep` kept under ``key``, or None."""
        return self._memo.get(key)

    def keep(self, key: Hashable, value: Any) -> None:
        """Memoise ``value`` (made in pieces by the caller) under ``key``."""
        self._memo[key] = value

    @property
    def dropped(self) -> list[LabelPairs]:
        """Each series' labels without the metric name (what most functions return)."""
        labels: list[LabelPairs] = self.memo("dropped", lambda: [drop_name(s.labels) for s in self.series])
        return labels

    @property
    def dropped_unique(self) -> bool:
        """Whether no two series differ only in their name: then no subset of their dropped
        labels repeats, and the duplicate-labelset check can be skipped."""
        unique: bool = self.memo("dropped_unique", lambda: len(set(self.dropped)) == len(self.series))
        return unique

    @property
    def named_like_counters(self) -> bool:
        """Whether every series' name ends like a counter's (``rate`` has nothing to warn about)."""
        named: bool = self.memo("counter_names", lambda: all(s.name.endswith(COUNTER_SUFFIXES) for s in self.series))
        return named

    @property
    def signatures_are_rows(self) -> bool:
        """Whether each series' signature under a vector matching's default (its labels without
        ``__name__``) is its :attr:`dropped` labels, and those are distinct: then matching two
        vectors of this selection by signature is matching them by row."""
        plain: bool = self.memo(
            "signatures_are_rows",
            lambda: (
                self.dropped_unique
                and all(
                    len(s.labels) - len(d) == (1 if s.name else 0)
                    for s, d in zip(self.series, self.dropped, strict=True)
                )
            ),
        )
        return plain


class SelectionCache:
    """Selections by matcher set, valid while the store's generation is unchanged: a new
    generation drops them all at once (they are all stale then), so a cache never keeps a
    deleted series, or its samples, alive."""

    def __init__(self, store: Store, size: int = SELECTIONS) -> None:
        self.store = store
        self.size = size
        self._generation = store.generation
        self._entries: OrderedDict[tuple[Matcher, ...], Selection] = OrderedDict()

    def select_steps(self, matchers: tuple[Matcher, ...]) -> Generator[None, None, Selection]:
        """The selection of ``matchers`` (:meth:`Store.select_steps`), from the cache when
        no series was created or deleted since it was made."""
        store = self.store
        if store.generation != self._generation:
            self._entries.clear()
            self._generation = store.generation
        found = self._entries.get(matchers)
        if found is not None:
            self._entries.move_to_end(matchers)
            return found
        generation = store.generation
        selection = Selection((yield from store.select_steps(matchers)))
        if store.generation == generation == self._generation:  # nothing came or went meanwhile
            self._entries[matchers] = selection
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
        return selection


def latest_steps(series: list[Series], lo: int, ref: int, step: int) -> Generator[None, None, Latest]:
    """Per series, the sample an instant selector sees: the newest in ``lo < ts <= ref``, unless
    it is a staleness marker (see :data:`Latest`); in C ``step`` series between two yields."""
    if native_latest is None:
        return (yield from latest_python(series, lo, ref, step))
    parts: list[Latest] = []
    for a in range(0, len(series), step):
        if a:
            yield
        parts.append(native_latest(series, a, a + step, lo, ref))
    if len(parts) == 1:
        return parts[0]
    if not parts:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0)
    rows, times, values = zip(*parts, strict=True)
    return np.concatenate(rows), np.concatenate(times), np.concatenate(values)


def latest_python(series: list[Series], lo: int, ref: int, step: int) -> Generator[None, None, Latest]:
    """:func:`latest_steps` without the extension (and its reference in tests)."""
    rows: list[int] = []
    times: list[int] = []
    values: list[float] = []
    for i, s in enumerate(series):
        if i % step == step - 1:
            yield
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
        rows.append(i)
        times.append(t)
        values.append(v)
    return np.array(rows, dtype=np.int64), np.array(times, dtype=np.int64), np.array(values, dtype=np.float64)


def gather(series: list[Series], lo: int, hi: int) -> Gathered:
    """The samples ``lo < ts <= hi`` of each series, back to back (see :data:`Gathered`);
    series with none are left out of ``rows``."""
    if _native_gather is not None:
        return _native_gather(series, lo, hi)
    return gather_python(series, lo, hi)


def rate_steps(
    selection: Selection, lo: int, hi: int, func: str, range_seconds: float, count: Callable[[int], None], step: int
) -> Generator[None, None, Vec]:
    """``func`` (one of :data:`RATE_KINDS`) of every selected series over its samples
    ``lo < ts <= hi``, computed in C :data:`native_rate` ``step`` series between two yields;
    ``count`` is told the samples read. The vector is labelled by the selection (names dropped)
    and holds its values as an array."""
    assert native_rate is not None
    series = selection.series
    row_parts: list[Int64Array] = []
    value_parts: list[FloatArray] = []
    for a in range(0, len(series), step):
        if a:
            yield
        rows, values, samples = native_rate(series, a, a + step, lo, hi, RATE_KINDS[func], range_seconds)
        count(samples)
        row_parts.append(rows)
        value_parts.append(values)
    if not row_parts:
        return Vec()
    if len(row_parts) == 1:
        return Vec(None, None, selection, row_parts[0], value_parts[0])
    return Vec(None, None, selection, np.concatenate(row_parts), np.concatenate(value_parts))


def gather_python(series: list[Series], lo: int, hi: int) -> Gathered:
    """:func:`gather` without the extension (and its reference in tests)."""
    rows: list[int] = []
    ts_parts: list[Int64Array] = []
    val_parts: list[FloatArray] = []
    for i, s in enumerate(series):
        ts, vals = s.window(lo, hi)
        if ts.shape[0]:
            rows.append(i)
            ts_parts.append(ts)
            val_parts.append(vals)
    offs = np.array([0, *itertools.accumulate(p.shape[0] for p in ts_parts)], dtype=np.int64)
    if not rows:
        return np.zeros(0, dtype=np.int64), offs, np.zeros(0, dtype=np.int64), np.zeros(0)
    return np.array(rows, dtype=np.int64), offs, np.concatenate(ts_parts), np.concatenate(val_parts)
