"""The in-memory time-series store.

* Series are found through an inverted index (label name → value → series ids), so a query
  touches only the series it selects, never the whole store.
* Each series keeps its samples in two parallel numpy arrays (:mod:`scaler.series`), about
  one retention window of them; samples arrive in any order.
* Series with no sample left in the retention window are deleted by :meth:`Store.collect`,
  which the application runs in small slices so the event loop never stalls.

The store is single-threaded by design: the application calls it only from its event loop.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import sys
import time
from collections import Counter
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np

from scaler.config import StoreLimits
from scaler.model import (
    METRIC_NAME,
    Clock,
    LabelPairs,
    Matcher,
    MatchOp,
    RejectReason,
    Sample,
    escape_name,
)
from scaler.series import FloatArray, Int64Array, Series

__all__ = ["AppendResult", "FloatArray", "Int64Array", "Series", "Store"]

logger = logging.getLogger(__name__)

Listener = Callable[[frozenset[str]], None]
"""Called after an append with the metric names that received samples."""
SeriesListener = Callable[[Sequence[Series]], None]
"""Called after an append with the series of watched names (:attr:`Store.watched`) that
received samples (a series may appear more than once)."""


@dataclass(slots=True)
class AppendResult:
    """What happened to the samples of one append call."""

    accepted: int = 0
    rejected: Counter[RejectReason] = field(default_factory=Counter)
    written: Counter[str] = field(default_factory=Counter)
    """Samples accepted, by metric name."""

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())

    def merge(self, other: AppendResult) -> None:
        self.accepted += other.accepted
        self.rejected.update(other.rejected)
        self.written.update(other.written)


class Store:
    """In-memory TSDB with an inverted label index. See the module docstring."""

    def __init__(self, limits: StoreLimits | None = None, clock: Clock = time.time) -> None:
        self.limits = limits or StoreLimits()
        self.clock = clock
        self._series: dict[int, Series] = {}
        self._by_labels: dict[LabelPairs, Series] = {}
        self._postings: dict[str, dict[str, set[int]]] = {}
        self._pairs: dict[tuple[str, str], tuple[str, str]] = {}
        """One shared ``(name, value)`` tuple per distinct label pair, alive as long as its
        postings entry: most pairs (``namespace``, ``job``, ``pod``, ``__name__``, ``le``…) are
        common to many series, so a series costs one tuple of references, not ~10 tuples."""
        self._escaped_names: dict[str, set[str]] = {}
        """The Go reference's escaped form of a metric name (``.``, ``/`` → ``_``) → the names
        stored under that form: a metric named in either form is found (see :meth:`_ids_for`)."""
        self._next_id = 1
        self._listeners: list[Listener] = []
        self._series_listeners: list[SeriesListener] = []
        self._watch_requested: frozenset[str] = frozenset()
        self.watched: set[str] = set()
        """Metric names (as stored) whose touched series are reported to the series listeners:
        those :meth:`set_watched` asked for, and those that escape to one of them."""
        self._gc_queue: list[int] = []
        self.deletions = 0
        """Series deleted so far (retention and reset): caches of series use it to prune."""
        self.generation = 0
        """Bumped whenever a series is created or deleted: a selection made at one generation
        holds exactly the matching series for as long as it is current (labels never change)."""

    # ----------------------------------------------------------------- ingestion

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    @property
    def retention_ms(self) -> int:
        return int(self.limits.retention_seconds * 1000)

    def append(self, samples: Iterable[Sample]) -> AppendResult:
        """Store translated samples, enforcing retention, skew and the series limits."""
        result = AppendResult()
        now = self.now_ms()
        cutoff = now - self.retention_ms
        horizon = now + int(self.limits.max_future_skew_seconds * 1000)
        touched = result.written
        watched = self.watched
        touched_series: list[Series] = []
        by_labels = self._by_labels
        rejected = result.rejected
        accepted = 0
        for labels, ts_ms, value, is_delta in samples:
            if ts_ms < cutoff:
                rejected[RejectReason.TOO_OLD] += 1
                continue
            if ts_ms > horizon:
                rejected[RejectReason.TOO_FAR_IN_FUTURE] += 1
                continue
            series = by_labels.get(labels)
            if series is None:
                found = self.resolve(labels)
                if not isinstance(found, Series):
                    rejected[found] += 1
                    continue
                series = found
            if is_delta:
                total = series.delta_total + value
                if not math.isfinite(total):  # a NaN/±Inf delta, or an overflow: poison for good
                    rejected[RejectReason.INVALID_VALUE] += 1
                    continue
                series.delta_total = value = total
            n = series.n
            if ts_ms > series.last and n < len(series.ts):  # the common case, inlined
                series.ts[n] = ts_ms
                series.vals[n] = value
                series.n = n + 1
                series.last = ts_ms
            else:
                series.append(ts_ms, value, cutoff)
            touched[series.name] += 1
            if watched and series.name in watched:
                touched_series.append(series)
            accepted += 1
        result.accepted = accepted
        self.notify(touched, touched_series)
        return result

    def resolve(self, labels: LabelPairs) -> Series | RejectReason:
        """The series of ``labels``, created if the limits admit it, or why it cannot be."""
        series = self._by_labels.get(labels)
        if series is None:
            reason = self._admit(labels)
            if reason is not None:
                return reason
            series = self._create(labels)
        return series

    def notify(self, names: Iterable[str], series: Sequence[Series] = ()) -> None:
        """Tell the listeners that these metrics, and these series of watched metrics, received
        samples (after an append)."""
        touched = frozenset(names)
        if touched:
            for listener in list(self._listeners):
                listener(touched)
        if series:
            for series_listener in list(self._series_listeners):
                series_listener(series)

    def set_watched(self, names: Iterable[str]) -> None:
        """Report the touched series of these metrics (also stored under a name that escapes to
        one of them, as the Go reference's query form writes it) to the series listeners."""
        requested = frozenset(names)
        if requested == self._watch_requested:
            return
        self._watch_requested = requested
        watched = set(requested)
        for name in requested:
            watched.update(self._escaped_names.get(name, ()))
        self.watched.clear()  # in place: an append in progress sees the update
        self.watched.update(watched)

    def restore(self, labels: LabelPairs, ts: Int64Array, vals: FloatArray, delta_total: float) -> int:
        """Re-create a series from a snapshot with its samples inside the retention window and
        the skew horizon; limits apply as to ingested data. Returns the samples restored."""
        if not len(ts) or labels in self._by_labels or self._admit(labels) is not None:
            return 0
        if len(ts) > 1 and not bool((ts[1:] > ts[:-1]).all()):  # never from our own writer
            order = np.argsort(ts, kind="stable")
            ts, vals = ts[order], vals[order]
            unique = np.ones(len(ts), dtype=bool)
            unique[:-1] = ts[1:] != ts[:-1]  # on a repeated timestamp the later sample wins, as in append
            ts, vals = ts[unique], vals[unique]
        now = self.now_ms()
        start = int(ts.searchsorted(now - self.retention_ms, side="left"))
        end = int(ts.searchsorted(now + int(self.limits.max_future_skew_seconds * 1000), side="right"))
        if start >= end:
            return 0
        ts, vals = ts[start:end], vals[start:end]
        series = self._create(labels)
        series.load(ts, vals)
        series.delta_total = float(delta_total)
        return len(ts)

    def _admit(self, labels: LabelPairs) -> RejectReason | None:
        limits = self.limits
        if len(self._series) >= limits.max_series:
            return RejectReason.SERIES_LIMIT
        if len(labels) > limits.max_labels_per_series + 1:  # + __name__
            return RejectReason.TOO_MANY_LABELS
        for key, value in labels:
            if len(key) > limits.max_label_name_length and key != METRIC_NAME:
                return RejectReason.LABEL_NAME_TOO_LONG
            if len(value) > limits.max_label_value_length:
                return RejectReason.LABEL_VALUE_TOO_LONG
        return None

    def _create(self, labels: LabelPairs) -> Series:
        pairs = self._pairs
        shared = []
        for pair in labels:
            canonical = pairs.get(pair)
            if canonical is None:
                canonical = pairs[pair] = (sys.intern(pair[0]), sys.intern(pair[1]))
            shared.append(canonical)
        labels = tuple(shared)
        series = Series(self._next_id, labels)
        self._next_id += 1
        self.generation += 1
        self._series[series.id] = series
        self._by_labels[labels] = series
        for key, value in labels:
            self._postings.setdefault(key, {}).setdefault(value, set()).add(series.id)
        escaped = escape_name(series.name)
        self._escaped_names.setdefault(escaped, set()).add(series.name)
        if escaped in self._watch_requested:
            self.watched.add(series.name)
        return series

    def _delete(self, series: Series) -> None:
        series.alive = False
        self.deletions += 1
        self.generation += 1
        del self._series[series.id]
        del self._by_labels[series.labels]
        for key, value in series.labels:
            values = self._postings[key]
            ids = values[value]
            ids.discard(series.id)
            if not ids:
                del values[value]
                self._pairs.pop((key, value), None)
                if not values:
                    del self._postings[key]
                    continue
            if key == METRIC_NAME and value not in values:
                self._forget_escaped(value)

    def _forget_escaped(self, name: str) -> None:
        escaped = escape_name(name)
        real = self._escaped_names.get(escaped)
        if real is not None:
            real.discard(name)
            if not real:
                del self._escaped_names[escaped]

    # ----------------------------------------------------------------- retention

    def collect(self, budget: int | None = None) -> int:
        """Trim expired samples and delete empty series, visiting at most ``budget`` series.

        Successive calls walk the whole store round-robin; returns the series deleted.
        """
        if not self._gc_queue:
            self._gc_queue = list(self._series)
        cutoff = self.now_ms() - self.retention_ms
        take = len(self._gc_queue) if budget is None else min(budget, len(self._gc_queue))
        batch = self._gc_queue[-take:]
        del self._gc_queue[-take:]
        deleted = 0
        for series_id in batch:
            series = self._series.get(series_id)
            if series is None:
                continue
            if series.n == 0 or series.last_ts < cutoff:
                self._delete(series)
                deleted += 1
            elif series.first_ts < cutoff:
                series.trim(cutoff)
        return deleted

    def reset(self) -> None:
        """Delete every series (``POST /memstore/reset``)."""
        for series in self._series.values():
            series.alive = False
        self.deletions += len(self._series)
        self.generation += 1
        self._series.clear()
        self._by_labels.clear()
        self._postings.clear()
        self._pairs.clear()
        self._escaped_names.clear()
        self._gc_queue.clear()

    # ----------------------------------------------------------------- selection

    def select(self, matchers: Sequence[Matcher]) -> list[Series]:
        """Series whose labels satisfy every matcher (Prometheus semantics: an absent label
        reads as ``""``), sorted by labels. Candidates come from the index; the full store is
        scanned only when no matcher can use it."""
        return drain(self.select_steps(matchers))

    def select_steps(self, matchers: Sequence[Matcher]) -> Generator[None, None, list[Series]]:
        """:meth:`select` as a generator that yields (``None``) after every ``SELECT_STEP``
        units of work (posting lists merged, label values or series matched, series sorted),
        so a caller may give the event loop its turn: a broad regex over 100k series is
        ~100 ms of work in one piece otherwise. The result is the same as :meth:`select`'s
        for the store as it was when the selection began; the series are read at the end."""
        postings: list[set[int]] = []
        rest: list[Matcher] = []
        for matcher in sorted(matchers, key=_selectivity):
            if matcher.matches_empty:
                rest.append(matcher)
                continue
            ids = yield from self._ids_steps(matcher)
            if not ids:
                return []
            postings.append(ids)
        if postings:
            postings.sort(key=len)  # intersect from the smallest posting list
            candidates = set(postings[0])  # the only copy, of the smallest set
            for ids in postings[1:]:
                candidates &= ids
                if not candidates:
                    return []
            pool = [self._series[i] for i in candidates if i in self._series]
        else:
            pool = list(self._series.values())
        if rest:
            pool = yield from self._filter_steps(pool, rest)
        return (yield from _sorted_steps(pool))

    def _filter_steps(self, pool: list[Series], rest: list[Matcher]) -> Generator[None, None, list[Series]]:
        # one RE2 match per distinct label value (~4 us each), not per series
        memos: list[tuple[Matcher, dict[str, bool]]] = [(m, {}) for m in rest]
        out: list[Series] = []
        for a in range(0, len(pool), SELECT_STEP):
            for series in pool[a : a + SELECT_STEP]:
                for matcher, memo in memos:
                    value = series.label(matcher.name)
                    hit = memo.get(value)
                    if hit is None:
                        hit = memo[value] = matcher.matches(value)
                    if not hit:
                        break
                else:
                    out.append(series)
            yield
        return out

    def _ids_steps(self, matcher: Matcher) -> Generator[None, None, set[int]]:
        values = self._postings.get(matcher.name, {})
        if matcher.op is MatchOp.EQ:
            ids = values.get(matcher.value)
            if ids is None and matcher.name == METRIC_NAME:
                return self._escaped_ids(escape_name(matcher.value))
            return ids if ids is not None else set()  # read-only: select() never mutates it
        out: set[int] = set()
        work = 0
        for value, ids in list(values.items()):
            if matcher.matches(value):
                out |= ids
                work += len(ids)
            work += 1
            if work >= SELECT_STEP:
                work = 0
                yield
        return out

    def _escaped_ids(self, name: str) -> set[int]:
        """Series whose name escapes to ``name``: a metric name no series has exactly finds the
        names of the same escaped form, in either direction (``a.b`` finds ``a_b`` and
        ``a/b``, and ``a_b`` finds ``a.b``), as kedify/otel-add-on, which stores names escaped."""
        out: set[int] = set()
        names = self._postings.get(METRIC_NAME, {})
        for real in self._escaped_names.get(name, ()):
            out |= names.get(real, set())
        return out

    def series(self) -> Iterator[Series]:
        return iter(list(self._series.values()))

    def get(self, labels: LabelPairs) -> Series | None:
        return self._by_labels.get(labels)

    def names(self) -> list[str]:
        return sorted(self._postings.get(METRIC_NAME, {}))

    def label_names(self) -> list[str]:
        return sorted(self._postings)

    def label_values(self, name: str) -> list[str]:
        return sorted(self._postings.get(name, {}))

    def count_matching(self, pairs: Sequence[tuple[str, str]]) -> int:
        """How many series carry every ``(label, value)`` pair: an intersection of posting
        lists walked from the smallest, with no series list built or sorted."""
        sets = sorted((self._postings.get(name, {}).get(value, set()) for name, value in pairs), key=len)
        if not sets:
            return len(self._series)
        smallest, rest = sets[0], sets[1:]
        return sum(1 for i in smallest if all(i in ids for ids in rest))

    def distinct_values(self, name: str) -> int:
        """How many values label ``name`` has across the store (0: no series carries it)."""
        return len(self._postings.get(name, ()))

    # ----------------------------------------------------------------- observation

    @property
    def series_count(self) -> int:
        return len(self._series)

    def sample_count(self) -> int:
        return sum(s.n for s in self._series.values())

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener`` after every append that stored samples; returns an unsubscribe."""
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    def subscribe_series(self, listener: SeriesListener) -> Callable[[], None]:
        """Call ``listener`` after every append that stored samples of a watched metric
        (:meth:`set_watched`) with those series; returns an unsubscribe."""
        self._series_listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._series_listeners:
                self._series_listeners.remove(listener)

        return unsubscribe


T = TypeVar("T")


def drain(steps: Generator[None, None, T]) -> T:
    """Run a stepwise computation (a generator that yields ``None`` between pieces) to its end."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            result: T = done.value
            return result


SELECT_STEP = 4096
"""Units of selection work (series or label values) between two of ``select_steps``' yields:
about a millisecond each."""


def _sorted_steps(pool: list[Series]) -> Generator[None, None, list[Series]]:
    """``sorted(pool, key=labels)`` in pieces: runs of ``SELECT_STEP`` sorted one per step,
    then merged lazily, a yield every ``SELECT_STEP`` series."""
    if len(pool) <= SELECT_STEP:
        pool.sort(key=_labels_of)
        return pool
    runs: list[list[Series]] = []
    for a in range(0, len(pool), SELECT_STEP):
        runs.append(sorted(pool[a : a + SELECT_STEP], key=_labels_of))
        yield
    out: list[Series] = []
    merged = heapq.merge(*runs, key=_labels_of)
    while True:
        piece = list(itertools.islice(merged, SELECT_STEP))
        out += piece
        if len(piece) < SELECT_STEP:
            return out
        yield


def _labels_of(series: Series) -> LabelPairs:
    return series.labels


def _selectivity(matcher: Matcher) -> int:
    """Evaluate cheap, selective matchers first: equality before regex."""
    return 0 if matcher.op is MatchOp.EQ else 1
