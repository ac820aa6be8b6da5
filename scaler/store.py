"""The in-memory time-series store.

* Series are found through an inverted index (label name → value → series ids,
  :mod:`scaler.seriesindex`), so a query touches only the series it selects, never the whole store.
* Each series keeps its samples in two parallel numpy arrays (:mod:`scaler.series`), about
  one retention window of them; samples arrive in any order.
* Series with no sample left in the retention window are deleted by :meth:`Store.collect`
  (:mod:`scaler.retention`), which the application runs in small slices so the event loop
  never stalls.

The store is single-threaded by design: the application calls it only from its event loop.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from scaler.config import StoreLimits
from scaler.model import (
    METRIC_NAME,
    Clock,
    LabelPairs,
    Matcher,
    RejectReason,
    Sample,
    escape_name,
)
from scaler.retention import RetentionSweep
from scaler.series import FloatArray, Int64Array, Series
from scaler.seriesindex import SELECT_STEP, SeriesIndex, drain

__all__ = ["SELECT_STEP", "AppendResult", "FloatArray", "Int64Array", "Series", "Store", "drain"]

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
        self._index = SeriesIndex()
        self._sweep = RetentionSweep(self._index)
        self._listeners: list[Listener] = []
        self._series_listeners: list[SeriesListener] = []
        self._watch_requested: frozenset[str] = frozenset()
        self.watched: set[str] = set()
        """Metric names (as stored) whose touched series are reported to the series listeners:
        those :meth:`set_watched` asked for, and those that escape to one of them."""

    @property
    def deletions(self) -> int:
        """:attr:`SeriesIndex.deletions <scaler.seriesindex.SeriesIndex.deletions>`."""
        return self._index.deletions

    @property
    def generation(self) -> int:
        """:attr:`SeriesIndex.generation <scaler.seriesindex.SeriesIndex.generation>`."""
        return self._index.generation

    # ----------------------------------------------------------------- ingestion

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    @property
    def retention_ms(self) -> int:
        return int(self.limits.retention_seconds * 1000)

    def cutoff_ms(self, now_ms: int | None = None) -> int:
        """The oldest instant inside the retention at ``now_ms`` (default: the clock now). An
        older sample has expired: appends refuse it, the sweep trims it, and no reader (a PromQL
        selector, a planner decision) reads it before the sweep has come, so what is answered
        never depends on where the sweep stands."""
        return (self.now_ms() if now_ms is None else now_ms) - self.retention_ms

    def append(self, samples: Iterable[Sample]) -> AppendResult:
        """Store translated samples, enforcing retention, skew and the series limits."""
        result = AppendResult()
        now = self.now_ms()
        cutoff = self.cutoff_ms(now)
        horizon = now + int(self.limits.max_future_skew_seconds * 1000)
        touched = result.written
        watched = self.watched
        touched_series: list[Series] = []
        by_labels = self._index.by_labels
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
        series = self._index.by_labels.get(labels)
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
            watched.update(self._index.escaping_to(name))
        self.watched.clear()  # in place: an append in progress sees the update
        self.watched.update(watched)

    def restore(self, labels: LabelPairs, ts: Int64Array, vals: FloatArray, delta_total: float) -> int:
        """Re-create a series from a snapshot with its samples inside the retention window and
        the skew horizon; limits apply as to ingested data. Returns the samples restored."""
        if not len(ts) or labels in self._index.by_labels or self._admit(labels) is not None:
            return 0
        if len(ts) > 1 and not bool((ts[1:] > ts[:-1]).all()):  # never from our own writer
            order = np.argsort(ts, kind="stable")
            ts, vals = ts[order], vals[order]
            unique = np.ones(len(ts), dtype=bool)
            unique[:-1] = ts[1:] != ts[:-1]  # on a repeated timestamp the later sample wins, as in append
            ts, vals = ts[unique], vals[unique]
        now = self.now_ms()
        start = int(ts.searchsorted(self.cutoff_ms(now), side="left"))
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
        if len(self._index.by_id) >= limits.max_series:
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
        series = self._index.add(labels)
        if self._watch_requested and escape_name(series.name) in self._watch_requested:
            self.watched.add(series.name)
        return series

    # ----------------------------------------------------------------- retention

    def collect(self, budget: int | None = None) -> int:
        """Trim expired samples and delete empty series, visiting at most ``budget`` series.

        Successive calls walk the whole store round-robin; returns the series deleted.
        """
        return self._sweep.collect(self.cutoff_ms(), budget)

    def reset(self) -> None:
        """Delete every series (``POST /memstore/reset``)."""
        self._index.clear()
        self._sweep.clear()

    # ----------------------------------------------------------------- selection

    def select(self, matchers: Sequence[Matcher]) -> list[Series]:
        """Series whose labels satisfy every matcher (Prometheus semantics: an absent label
        reads as ``""``), sorted by labels. Candidates come from the index; the full store is
        scanned only when no matcher can use it."""
        return drain(self.select_steps(matchers))

    def select_steps(self, matchers: Sequence[Matcher]) -> Generator[None, None, list[Series]]:
        """:meth:`select` in steps, so a caller may give the event loop its turn
        (:meth:`SeriesIndex.select_steps <scaler.seriesindex.SeriesIndex.select_steps>`)."""
        return self._index.select_steps(matchers)

    def series(self) -> Iterator[Series]:
        return self._index.series()

    def get(self, labels: LabelPairs) -> Series | None:
        return self._index.by_labels.get(labels)

    def names(self) -> list[str]:
        return self._index.names()

    def label_names(self) -> list[str]:
        return self._index.label_names()

    def label_values(self, name: str) -> list[str]:
        return self._index.label_values(name)

    def count_matching(self, pairs: Sequence[tuple[str, str]]) -> int:
        """How many series carry every ``(label, value)`` pair (no series list built or sorted)."""
        return self._index.count_matching(pairs)

    def distinct_values(self, name: str) -> int:
        """How many values label ``name`` has across the store (0: no series carries it)."""
        return self._index.distinct_values(name)

    def carries(self, name: str, value: str) -> bool:
        """Whether some series has label ``name`` = ``value`` now, in exactly that spelling
        (selection also finds a metric name's escaped spellings; this does not)."""
        return self._index.carries(name, value)

    # ----------------------------------------------------------------- observation

    @property
    def series_count(self) -> int:
        return len(self._index.by_id)

    def sample_count(self) -> int:
        return sum(s.n for s in self._index.by_id.values())

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
