"""Why a role scaled or did not: what KEDA asked each trigger and what it was answered, and who
exports. The registry behind ``GET /api/v1/scaledobjects``, ``/ui`` and ``keda-otel-scaler status``.

Pure (no protocol code) and bounded:

* **Triggers** are keyed by the ScaledObject (``scaledObjectRef`` namespace and name) and the
  trigger's metric name. The KEDA servicer records every call (:meth:`Registry.asked`), every
  reading of a trigger (:meth:`Registry.read`), every error it answers (:meth:`Registry.failed`)
  and metadata it refused (:meth:`Registry.refused`): O(1) each, no formatting, no query. A
  reading also adds a point to the trigger's :class:`History`: one point per slot of
  ``retention / HISTORY_POINTS`` (a later reading in the same slot replaces it), so a trigger
  re-read on every ingest (``StreamIsActive``) costs no more than one polled every 15 s.
* **Sources** are keyed by the exporting resource's namespace, deployment (or statefulset) and
  pod. The OTLP receivers call :meth:`Registry.exported` once per request with the sources of
  its resources: O(1) per resource, never per sample.
* What costs more (the series a trigger matches, a source's series in the store, the reason in
  words) is computed only when the status is asked for (:mod:`scaler.reason`).
* An entry not asked about (a source: not exporting) for ``idle_seconds`` (an hour) is evicted,
  and at most ``max_triggers`` / ``max_sources`` entries are kept, the least recently touched
  evicted first: ScaledObject names and resource attributes come from clients. Every eviction
  is reported to ``on_evict`` (the app counts it in ``/metrics`` and drops the trigger's gauges).
"""

from __future__ import annotations

import math
from collections import Counter, OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar, runtime_checkable

import numpy as np

from scaler.model import Clock, RejectReason
from scaler.trigger import Reading, State

HISTORY_POINTS = 120
"""Points of a trigger's value kept over the retention (the sparkline's resolution)."""
IDLE_SECONDS = 3600.0
"""An entry not touched for this long is evicted."""
MAX_TRIGGERS = 4096
"""Trigger entries kept at most, unless more streams may be open (:func:`trigger_capacity`)."""
_FIRST_POINTS = 4
"""A trigger's history starts with room for this many points and doubles as it fills."""
MAX_SOURCES = 10_000
"""Source entries kept at most."""


def trigger_capacity(max_streams: int) -> int:
    """Trigger entries to keep with ``MAX_STREAMS`` = ``max_streams``: at least one per open stream
    (as many as parsed triggers are cached), else a stream's every reading would evict another
    trigger's entry (and its gauges) and the status view would miss open streams. An entry
    holds ~1 KB plus its history (at most ~2 KB)."""
    return max(MAX_TRIGGERS, max_streams)


Key = tuple[str, str, str]
"""A trigger: (namespace, ScaledObject, metric name); a source: (namespace, deployment, pod)."""
Evicted = Callable[[str, str, Key], None]
"""``on_evict(kind, reason, key)``: kind ``trigger`` or ``source``, reason ``idle`` or ``cap``."""


@runtime_checkable
class Explains(Protocol):
    """A trigger kind that can say how it decided (the planner): :meth:`explain` returns its
    latest decision's inputs and internals as JSON-ready values, or None before the first."""

    def explain(self) -> Mapping[str, object] | None: ...


class Answering(Protocol):
    """What the registry needs of any trigger kind."""

    @property
    def metric_name(self) -> str: ...
    @property
    def target(self) -> float: ...
    def metric_value(self, reading: Reading) -> float: ...
    def is_active(self, reading: Reading) -> bool: ...


class History:
    """A trigger's value over the retention: at most ``HISTORY_POINTS + 1`` (time, value) points,
    one per time slot; NaN where the reading had no number. A ring of two numpy arrays that
    start at ``_FIRST_POINTS`` and double as points arrive, up to ``HISTORY_POINTS + 1``
    (~2 KB): a registry holding an entry per open stream (10,000s) pays for the points its
    triggers have, not for the whole retention of each."""

    __slots__ = ("_t", "_v", "count", "head", "slot_s")

    def __init__(self, slot_s: float) -> None:
        self.slot_s = slot_s
        self._t = np.zeros(_FIRST_POINTS)
        self._v = np.zeros(_FIRST_POINTS)
        self.head = 0
        """Index of the newest point."""
        self.count = 0

    def add(self, at: float, value: float) -> None:
        if self.count and math.floor(at / self.slot_s) <= math.floor(self._t[self.head] / self.slot_s):
            i = self.head  # same slot (or the clock stepped back): the newer reading wins
        else:
            if self.count == len(self._t) < HISTORY_POINTS + 1:
                self._grow()
            size = len(self._t)
            i = self.head = (self.head + 1) % size if self.count else 0
            self.count = min(self.count + 1, size)
        self._t[i] = at
        self._v[i] = value

    def _grow(self) -> None:
        """Full below the cap: the points oldest first into arrays twice as long (at most the cap)."""
        order = np.roll(np.arange(self.count), -((self.head + 1) % self.count))
        size = min(2 * self.count, HISTORY_POINTS + 1)
        t, v = np.zeros(size), np.zeros(size)
        t[: self.count], v[: self.count] = self._t[order], self._v[order]
        self._t, self._v, self.head = t, v, self.count - 1

    @property
    def nbytes(self) -> int:
        """Bytes its points take now."""
        return self._t.nbytes + self._v.nbytes

    @staticmethod
    def full_nbytes() -> int:
        """Bytes the points of a full history take."""
        return 2 * (HISTORY_POINTS + 1) * np.dtype(np.float64).itemsize

    def points(self, since: float) -> list[tuple[float, float]]:
        """Points at or after ``since``, oldest first."""
        size = len(self._t)
        start = (self.head - self.count + 1) % size
        order = [(start + k) % size for k in range(self.count)]
        return [(float(self._t[i]), float(self._v[i])) for i in order if self._t[i] >= since]


@dataclass(slots=True)
class Calls:
    count: int = 0
    last: float = 0.0


@dataclass(frozen=True, slots=True)
class Failure:
    at: float
    method: str
    code: str
    message: str


@dataclass(slots=True)
class TriggerStatus:
    """What is known about one trigger of one ScaledObject."""

    namespace: str
    name: str
    metric: str
    history: History
    touched: float
    first_asked: float
    trigger: Answering | None = None
    """The parsed trigger last asked about (None while its metadata is refused)."""
    refused: str = ""
    """Why its metadata was refused (INVALID_ARGUMENT), while it is."""
    calls: dict[str, Calls] = field(default_factory=dict)
    reading: Reading | None = None
    read_at: float = 0.0
    errors: Counter[str] = field(default_factory=Counter)
    """Errors answered, by gRPC code."""
    last_error: Failure | None = None

    def called(self, method: str, now: float) -> None:
        calls = self.calls.get(method)
        if calls is None:
            calls = self.calls[method] = Calls()
        calls.count += 1
        calls.last = now

    @property
    def number(self) -> float | None:
        """The latest reading's number (its value, or the valueIfNotFound fallback)."""
        return None if self.reading is None or self.refused else self.reading.number

    @property
    def value(self) -> float | None:
        """What GetMetrics answers for the latest reading (clamped)."""
        if self.number is None or self.trigger is None or self.reading is None:
            return None
        return self.trigger.metric_value(self.reading)

    @property
    def active(self) -> bool | None:
        if self.number is None or self.trigger is None or self.reading is None:
            return None
        return self.trigger.is_active(self.reading)

    @property
    def warming(self) -> bool:
        """The latest reading was held for the warm-up (KEDA gets UNAVAILABLE and keeps replicas)."""
        return not self.refused and self.reading is not None and self.reading.state is State.HOLD

    @property
    def erroring(self) -> bool:
        """KEDA gets an error for this trigger now (a warm-up hold is not counted as one)."""
        if self.refused:
            return True
        return self.reading is not None and self.reading.number is None and self.reading.state is not State.HOLD


@dataclass(slots=True)
class SourceStatus:
    """What is known about one exporting resource."""

    namespace: str
    deployment: str
    pod: str
    touched: float
    first_export: float
    exports: int = 0
    """OTLP requests that carried it."""
    rejected: Counter[str] = field(default_factory=Counter)
    """Its samples rejected so far, by reason (from requests carrying it alone)."""
    shared_rejected: int = 0
    """Samples rejected in requests it shared with other sources (not attributable)."""


E = TypeVar("E", TriggerStatus, SourceStatus)


class _Bounded(Generic[E]):
    """Entries in the order they were last touched: idle ones leave from the front, and past
    the cap the least recently touched goes."""

    def __init__(self, kind: str, idle_seconds: float, cap: int, on_evict: Evicted) -> None:
        self.kind = kind
        self.idle_seconds = idle_seconds
        self.cap = cap
        self.on_evict = on_evict
        self.entries: OrderedDict[Key, E] = OrderedDict()

    def touch(self, key: Key, now: float, make: Callable[[Key, float], E]) -> E:
        entry = self.entries.get(key)
        if entry is None:
            self.expire(now)
            entry = self.entries[key] = make(key, now)
            if len(self.entries) > self.cap:
                self.on_evict(self.kind, "cap", self.entries.popitem(last=False)[0])
        else:
            self.entries.move_to_end(key)
        entry.touched = now
        return entry

    def expire(self, now: float) -> None:
        while self.entries:
            key, oldest = next(iter(self.entries.items()))
            if now - oldest.touched < self.idle_seconds:
                return
            del self.entries[key]
            self.on_evict(self.kind, "idle", key)


def _ignore(kind: str, reason: str, key: Key) -> None:
    del kind, reason, key


class Registry:
    """Triggers KEDA asked about and sources that export. See the module docstring."""

    def __init__(
        self,
        clock: Clock,
        retention_seconds: float,
        idle_seconds: float = IDLE_SECONDS,
        max_triggers: int = MAX_TRIGGERS,
        max_sources: int = MAX_SOURCES,
        on_evict: Evicted = _ignore,
    ) -> None:
        self.clock = clock
        self.retention_seconds = retention_seconds
        self._triggers: _Bounded[TriggerStatus] = _Bounded("trigger", idle_seconds, max_triggers, on_evict)
        self._sources: _Bounded[SourceStatus] = _Bounded("source", idle_seconds, max_sources, on_evict)

    # ----------------------------------------------------------------- triggers (KEDA servicer)

    def _trigger(self, namespace: str, name: str, metric: str, now: float) -> TriggerStatus:
        return self._triggers.touch((namespace, name, metric), now, self._new_trigger)

    def _new_trigger(self, key: Key, now: float) -> TriggerStatus:
        return TriggerStatus(*key, History(self.retention_seconds / HISTORY_POINTS), now, now)

    @staticmethod
    def _new_source(key: Key, now: float) -> SourceStatus:
        return SourceStatus(*key, now, now)

    def asked(self, namespace: str, name: str, trigger: Answering, method: str) -> None:
        """KEDA called ``method`` for this trigger (a stream counts once, when it opens)."""
        now = self.clock()
        entry = self._trigger(namespace, name, trigger.metric_name, now)
        entry.trigger, entry.refused = trigger, ""
        entry.called(method, now)

    def read(self, namespace: str, name: str, trigger: Answering, reading: Reading) -> None:
        """A reading of the trigger, about to be answered (or held, or failed)."""
        now = self.clock()
        entry = self._trigger(namespace, name, trigger.metric_name, now)
        entry.trigger, entry.refused = trigger, ""
        entry.reading, entry.read_at = reading, now
        entry.history.add(now, math.nan if reading.number is None else trigger.metric_value(reading))

    def failed(self, namespace: str, name: str, metric: str, method: str, code: str, message: str) -> None:
        """KEDA's call was answered with an error."""
        now = self.clock()
        entry = self._trigger(namespace, name, metric, now)
        entry.errors[code] += 1
        entry.last_error = Failure(now, method, code, message)

    def refused(self, namespace: str, name: str, metric: str, method: str, message: str) -> None:
        """The trigger's metadata is invalid (answered INVALID_ARGUMENT)."""
        now = self.clock()
        entry = self._trigger(namespace, name, metric, now)
        entry.refused = message
        entry.history.add(now, math.nan)
        entry.called(method, now)

    def triggers(self) -> list[TriggerStatus]:
        """Every trigger entry still kept, by ScaledObject and metric name."""
        self._triggers.expire(self.clock())
        return sorted(self._triggers.entries.values(), key=lambda e: (e.namespace, e.name, e.metric))

    # ----------------------------------------------------------------- sources (OTLP receivers)

    def exported(self, keys: Sequence[Key], rejected: Mapping[RejectReason, int]) -> None:
        """An OTLP request was stored, carrying resources of these sources: O(1) per source. Its
        rejected samples are the source's when it carries one; a request carrying several (a
        gateway collector's batch) counts them as shared by each, since the native loop reports
        rejections per request (a native loop reporting them per resource would call this once
        per resource)."""
        now = self.clock()
        total = sum(rejected.values()) if rejected else 0
        entries = self._sources.entries
        for key in keys:
            entry = entries.get(key)
            if entry is None:
                entry = self._sources.touch(key, now, self._new_source)
            else:
                entries.move_to_end(key)
                entry.touched = now
            entry.exports += 1
            if total and len(keys) == 1:
                entry.rejected.update({str(reason): count for reason, count in rejected.items() if count})
            elif total:
                entry.shared_rejected += total

    def sources(self) -> list[SourceStatus]:
        """Every source still kept, by namespace, deployment and pod."""
        self._sources.expire(self.clock())
        return sorted(self._sources.entries.values(), key=lambda s: (s.namespace, s.deployment, s.pod))
