"""The store's series index: every live series by id and by label set, the inverted index
(label name → value → series ids) a selection reads, and the Go reference's escaped metric
names.

* A selection touches only the series its matchers select, never the whole store: candidates
  come from the posting lists, intersected from the smallest; the full index is scanned only
  when no matcher can use it.
* A selection runs in steps (:meth:`SeriesIndex.select_steps`, a generator that yields between
  pieces of work) so that the event loop gets its turn; :func:`drain` runs one to its end.
* Label pairs are interned once per distinct pair, so a series costs one tuple of references.

:class:`scaler.store.Store` owns one index and is its only writer.
"""

from __future__ import annotations

import heapq
import itertools
import sys
from collections.abc import Generator, Iterator, Sequence
from typing import TypeVar

from scaler.model import METRIC_NAME, LabelPairs, Matcher, MatchOp, escape_name
from scaler.series import Series

__all__ = ["SELECT_STEP", "SeriesIndex", "drain"]

T = TypeVar("T")

SELECT_STEP = 4096
"""Units of selection work (series or label values) between two of ``select_steps``' yields:
about a millisecond each."""


class SeriesIndex:
    """Every live series, found by id, by label set or by matchers. See the module docstring."""

    def __init__(self) -> None:
        self.by_id: dict[int, Series] = {}
        self.by_labels: dict[LabelPairs, Series] = {}
        self._postings: dict[str, dict[str, set[int]]] = {}
        self._pairs: dict[tuple[str, str], tuple[str, str]] = {}
        """One shared ``(name, value)`` tuple per distinct label pair, alive as long as its
        postings entry: most pairs (``namespace``, ``job``, ``pod``, ``__name__``, ``le``…) are
        common to many series, so a series costs one tuple of references, not ~10 tuples."""
        self._escaped_names: dict[str, set[str]] = {}
        """The Go reference's escaped form of a metric name (``.``, ``/`` → ``_``) → the names
        stored under that form: a metric named in either form is found (see :meth:`_ids_steps`)."""
        self._next_id = 1
        self.deletions = 0
        """Series deleted so far (retention and reset): caches of series use it to prune."""
        self.generation = 0
        """Bumped whenever a series is created or deleted: a selection made at one generation
        holds exactly the matching series for as long as it is current (labels never change)."""

    # ----------------------------------------------------------------- writes

    def add(self, labels: LabelPairs) -> Series:
        """A new series of ``labels`` (not yet indexed), with its label pairs interned."""
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
        self.by_id[series.id] = series
        self.by_labels[labels] = series
        for key, value in labels:
            self._postings.setdefault(key, {}).setdefault(value, set()).add(series.id)
        self._escaped_names.setdefault(escape_name(series.name), set()).add(series.name)
        return series

    def remove(self, series: Series) -> None:
        series.alive = False
        self.deletions += 1
        self.generation += 1
        del self.by_id[series.id]
        del self.by_labels[series.labels]
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

    def clear(self) -> None:
        """Remove every series."""
        for series in self.by_id.values():
            series.alive = False
        self.deletions += len(self.by_id)
        self.generation += 1
        self.by_id.clear()
        self.by_labels.clear()
        self._postings.clear()
        self._pairs.clear()
        self._escaped_names.clear()

    # ----------------------------------------------------------------- lookups

    def escaping_to(self, name: str) -> set[str]:
        """The stored metric names whose escaped form is ``name`` (read-only)."""
        return self._escaped_names.get(name, set())

    def series(self) -> Iterator[Series]:
        return iter(list(self.by_id.values()))

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
            return len(self.by_id)
        smallest, rest = sets[0], sets[1:]
        return sum(1 for i in smallest if all(i in ids for ids in rest))

    def distinct_values(self, name: str) -> int:
        """How many values label ``name`` has across the store (0: no series carries it)."""
        return len(self._postings.get(name, ()))

    def carries(self, name: str, value: str) -> bool:
        """Whether some series has label ``name`` = ``value`` (O(1); no escaped-name aliasing)."""
        values = self._postings.get(name)
        return values is not None and bool(values.get(value))

    # ----------------------------------------------------------------- selection

    def select_steps(self, matchers: Sequence[Matcher]) -> Generator[None, None, list[Series]]:
        """Series whose labels satisfy every matcher (Prometheus semantics: an absent label
        reads as ``""``), sorted by labels, as a generator that yields (``None``) after every
        ``SELECT_STEP`` units of work (posting lists merged, label values or series matched,
        series sorted), so a caller may give the event loop its turn: a broad regex over 100k
        series is ~100 ms of work in one piece otherwise. The result is that of the index as
        it was when the selection began; the series are read at the end."""
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
            pool = [self.by_id[i] for i in candidates if i in self.by_id]
        else:
            pool = list(self.by_id.values())
        if rest:
            pool = yield from _filter_steps(pool, rest)
        return (yield from _sorted_steps(pool))

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


def drain(steps: Generator[None, None, T]) -> T:
    """Run a stepwise computation (a generator that yields ``None`` between pieces) to its end."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            result: T = done.value
            return result


def _filter_steps(pool: list[Series], rest: list[Matcher]) -> Generator[None, None, list[Series]]:
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
