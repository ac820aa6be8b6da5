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
  words) is computed only when the status is asked for, in :mod:`scaler.api_status`.
* An entry not asked about (a source: not exporting) for ``idle_seconds`` (an hour) is evicted,
  and at most ``max_triggers`` / ``max_sources`` entries are kept, the least recently touched
  evicted first: ScaledObject names and resource attributes come from clients. Every eviction
  is reported to ``on_evict`` (the app counts it in ``/metrics`` and drops the trigger's gauges).
"""

from __future__ import annotations

import math
from collections import Counter, OrderedDict
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Generic, Protocol, TypeVar, runtime_checkable

import numpy as np

from scaler import query
from scaler.model import Clock, RejectReason, is_stale
from scaler.store import SELECT_STEP, Series, Store, drain
from scaler.trigger import Reading, State, Trigger

HISTORY_POINTS = 120
"""Points of a trigger's value kept over the retention (the sparkline's resolution)."""
IDLE_SECONDS = 3600.0
"""An entry not touched for this long is evicted."""
MAX_TRIGGERS = 4096
"""Trigger entries kept at most (as many as parsed triggers are cached)."""
MAX_SOURCES = 10_000
"""Source entries kept at most."""

Key = tuple[str, str, str]
"""A trigger: (namespace, ScaledObject, metric name); a source: (namespace, deployment, pod)."""
Evicted = Callable[[str, str, Key], None]
"""``on_evict(kind, reason, key)``: kind ``trigger`` or ``source``, reason ``idle`` or ``cap``."""

SOURCE_ATTRIBUTES = {
    "namespace": ("k8s.namespace.name",),
    "deployment": ("k8s.deployment.name", "k8s.statefulset.name"),
    "pod": ("k8s.pod.name", "service.instance.id"),
}
"""The resource attributes naming a source, first present wins."""
SOURCE_ATTRIBUTE_NAMES = frozenset(a for names in SOURCE_ATTRIBUTES.values() for a in names)


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
    def metric_value(self, number: float) -> float: ...
    def is_active(self, number: float) -> bool: ...


def source_key(attributes: Mapping[str, str]) -> Key:
    """A source's key from its resource attributes ('' where none is present)."""
    found = [next((attributes[a] for a in names if attributes.get(a)), "") for names in SOURCE_ATTRIBUTES.values()]
    return found[0], found[1], found[2]


class History:
    """A trigger's value over the retention: at most ``HISTORY_POINTS + 1`` (time, value) points
    in two fixed numpy arrays (~2 KB), one per time slot; NaN where the reading had no number."""

    __slots__ = ("_t", "_v", "count", "head", "slot_s")

    def __init__(self, slot_s: float) -> None:
        self.slot_s = slot_s
        self._t = np.zeros(HISTORY_POINTS + 1)
        self._v = np.zeros(HISTORY_POINTS + 1)
        self.head = 0
        """Index of the newest point."""
        self.count = 0

    def add(self, at: float, value: float) -> None:
        size = len(self._t)
        if self.count and math.floor(at / self.slot_s) <= math.floor(self._t[self.head] / self.slot_s):
            i = self.head  # same slot (or the clock stepped back): the newer reading wins
        else:
            i = self.head = (self.head + 1) % size if self.count else 0
            self.count = min(self.count + 1, size)
        self._t[i] = at
        self._v[i] = value

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
        number = self.number
        return None if number is None or self.trigger is None else self.trigger.metric_value(number)

    @property
    def active(self) -> bool | None:
        number = self.number
        return None if number is None or self.trigger is None else self.trigger.is_active(number)

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
        number = reading.number
        entry.history.add(now, math.nan if number is None else trigger.metric_value(number))

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


# ---------------------------------------------------------------------- computed when asked


def milli(value: float) -> int:
    """``value`` as KEDA hands it to the HPA: a quantity of ``%.3f`` (milli-units)."""
    return int(Decimal(f"{value:.3f}") * 1000)


def replicas_for(value: float, target: float) -> int | None:
    """``ceil(value / target)``, the replicas the HPA derives from one trigger under
    ``AverageValue`` (before its 10 % tolerance, behavior policies and min/max), computed in
    the milli-units KEDA passes on, so 1.4 against 0.7 is 2, not 3."""
    if not (math.isfinite(value) and math.isfinite(target)) or milli(target) <= 0:
        return None
    return -(-milli(value) // milli(target))


def number_text(value: float) -> str:
    """A number as the page shows it: four significant digits, thousands separated (14,790)."""
    if not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("+Inf" if value > 0 else "-Inf")
    rounded = float(f"{value:.4g}")
    return f"{rounded:,.0f}" if abs(rounded) >= 1000 else f"{rounded:g}"


def reason(entry: TriggerStatus) -> str:
    """Why the trigger answers what it answers, and what KEDA and the HPA make of it, in words."""
    trigger, reading = entry.trigger, entry.reading
    if entry.refused:
        return f"KEDA gets INVALID_ARGUMENT: the trigger's {entry.refused}; fix the ScaledObject"
    if trigger is None or reading is None:
        target = "" if trigger is None else f" (target {number_text(trigger.target)})"
        return f"KEDA has read the metric spec{target} but not asked for a value yet"
    if reading.state is State.HOLD:
        return "warming up after a start with no data yet: KEDA gets UNAVAILABLE and keeps the current replicas"
    number = reading.number
    if number is None:
        if reading.state is State.NOT_FOUND:
            return (
                f"KEDA gets NOT_FOUND: {reading.message}; the HPA does not scale down on a missing metric, and "
                "the ScaledObject's fallback applies after failureThreshold failed polls"
            )
        return f"KEDA gets INVALID_ARGUMENT: {reading.message}"
    parts = []
    if reading.state is State.NOT_FOUND:
        parts.append(f"{reading.message}, so it answers valueIfNotFound {number_text(number)}")
    value, target, raw = number_text(trigger.metric_value(number)), number_text(trigger.target), number_text(number)
    replicas = replicas_for(trigger.metric_value(number), trigger.target)
    asks = "no replica count" if replicas is None else f"{replicas} replica{'' if replicas == 1 else 's'}"
    clamped = f" (clamped from {raw})" if trigger.metric_value(number) != number else ""
    parts.append(f"{value}{clamped} against target {target} asks for {asks} (AverageValue)")
    threshold = number_text(trigger.activation if isinstance(trigger, Trigger) else 0.0)
    if trigger.is_active(number):
        parts.append(f"active ({raw} > activation {threshold})")
    else:
        zero = "with minReplicaCount 0 KEDA scales to zero after cooldownPeriod"
        parts.append(f"inactive ({raw} ≤ activation {threshold}): {zero}")
    return "; ".join(parts)


@dataclass(frozen=True, slots=True)
class Matched:
    """The live series a query trigger's selectors match in the store now."""

    series: int
    pods: tuple[str, ...]
    newest_ms: int | None
    oldest_ms: int | None


def matched(store: Store, trigger: Answering | None, pod_label: str) -> Matched | None:
    """The series the trigger's selectors match (None for a kind that has no selectors). A
    series whose newest sample is a staleness marker (its pod went away) is not counted."""
    return drain(matched_steps(store, trigger, pod_label))


def matched_steps(store: Store, trigger: Answering | None, pod_label: str) -> Generator[None, None, Matched | None]:
    """:func:`matched` in steps (the store's selection steps, then one per ``SELECT_STEP``
    series), so a caller on the event loop can give other calls their turn between them."""
    if not isinstance(trigger, Trigger):
        return None
    found: dict[int, Series] = {}
    for matchers in query.selectors(trigger.query.expr):
        for i, series in enumerate((yield from store.select_steps(matchers)), 1):
            if series.n and not is_stale(series.last_value):
                found[series.id] = series
            if i % SELECT_STEP == 0:
                yield
    live = found.values()
    pods = sorted({p for p in (s.label(pod_label) for s in live) if p})
    return Matched(
        len(found),
        tuple(pods),
        max((s.last_ts for s in live), default=None),
        min((s.first_ts for s in live), default=None),
    )


def source_series(store: Store, source: SourceStatus, labels: Mapping[str, str]) -> int | None:
    """Series in the store carrying the source's pod (and namespace) label; None when the pod
    is unknown or its attribute is not promoted to a label (``RESOURCE_LABELS``)."""
    pod_label = labels.get("pod")
    if not source.pod or not pod_label:
        return None
    pairs = [(pod_label, source.pod)]
    if source.namespace and labels.get("namespace"):
        pairs.append((labels["namespace"], source.namespace))
    return store.count_matching(pairs)
