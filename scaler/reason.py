"""What the status records mean: KEDA's replica arithmetic, the reason a trigger answers what it
answers (in words), the series its selectors match and a source's series in the store. Computed
only when the status is asked for (``GET /api/v1/scaledobjects``, ``/ui``, ``status``), never on
KEDA's calls or on ingest; the selection runs in the store's steps, so a caller on the event loop
can give other calls their turn.
"""

from __future__ import annotations

import math
from collections.abc import Generator, Mapping
from dataclasses import dataclass
from decimal import Decimal

from scaler import query
from scaler.model import is_stale
from scaler.status import Answering, SourceStatus, TriggerStatus
from scaler.store import SELECT_STEP, Series, Store, drain
from scaler.trigger import State, Trigger


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
    metric_value = trigger.metric_value(reading)
    value, target, raw = number_text(metric_value), number_text(trigger.target), number_text(number)
    replicas = replicas_for(metric_value, trigger.target)
    asks = "no replica count" if replicas is None else f"{replicas} replica{'' if replicas == 1 else 's'}"
    clamped = f" (clamped from {raw})" if metric_value != number else ""
    parts.append(f"{value}{clamped} against target {target} asks for {asks} (AverageValue)")
    # a compat trigger without an activation key is active on the value KEDA gets (as kedify decides)
    on_value = isinstance(trigger, Trigger) and trigger.compat and not trigger.activation_given
    compared = value if on_value else raw
    threshold = number_text(trigger.activation if isinstance(trigger, Trigger) else 0.0)
    if trigger.is_active(reading):
        parts.append(f"active ({compared} > activation {threshold})")
    else:
        zero = "with minReplicaCount 0 KEDA scales to zero after cooldownPeriod"
        parts.append(f"inactive ({compared} ≤ activation {threshold}): {zero}")
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
