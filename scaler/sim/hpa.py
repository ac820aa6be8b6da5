"""The Kubernetes HPA controller's replica algorithm for external metrics (autoscaling/v2).

A transcription of ``pkg/controller/podautoscaler`` (``horizontal.go``,
``replica_calculator.go``) for the parts KEDA's HPAs use, with time as a parameter:

* per metric, ``AverageValue`` (KEDA's default for external metrics; the value is a fleet
  total): ``ratio = value / (target × statusReplicas)``; within the tolerance (±10 %) keep
  ``statusReplicas``, else ``ceil(value / target)``. ``Value``: ``ratio = value / target``;
  within tolerance keep ``specReplicas``, else ``ceil(ratio × readyPods)``
  (``ceil(ratio)`` at zero replicas). Values are compared in milli-units, as the
  external-metrics API carries them.
* the maximum over metrics; if every metric failed — or some failed and the rest would
  scale down — no change this sync.
* outside ``[minReplicas, maxReplicas]`` the HPA first moves back inside.
* ``behavior``: stabilization windows (the lowest recommendation of the scale-up window
  and the highest of the scale-down window bound the new one; the initial recommendation
  is the current size), then rate limits from the policies (``Pods``/``Percent`` per
  ``periodSeconds``, ``selectPolicy`` ``Max``/``Min``/``Disabled``) measured from the
  replicas at the start of each period, using the controller's record of its own scale
  events. Missing fields get the API defaults (scale-up: 0 s window, max of +4 pods and
  +100 % per 15 s; scale-down: 300 s window, −100 % per 15 s). An HPA without
  ``behavior`` uses the same defaults here (the controller's legacy path is equivalent).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

TOLERANCE = 0.1

PolicyType = Literal["Pods", "Percent"]
SelectPolicy = Literal["Max", "Min", "Disabled"]
MetricType = Literal["AverageValue", "Value"]


class BehaviorError(ValueError):
    """Invalid ``behavior``; the message names the field."""


@dataclass(frozen=True)
class Policy:
    type: PolicyType
    value: int
    period_seconds: float


@dataclass(frozen=True)
class Rules:
    stabilization_window_seconds: float
    select_policy: SelectPolicy
    policies: tuple[Policy, ...]

    def scaled(self, factor: float) -> Rules:
        return Rules(
            self.stabilization_window_seconds * factor,
            self.select_policy,
            tuple(replace(p, period_seconds=p.period_seconds * factor) for p in self.policies),
        )


DEFAULT_SCALE_UP = Rules(0, "Max", (Policy("Pods", 4, 15), Policy("Percent", 100, 15)))
DEFAULT_SCALE_DOWN = Rules(300, "Max", (Policy("Percent", 100, 15),))


@dataclass(frozen=True)
class Behavior:
    scale_up: Rules = DEFAULT_SCALE_UP
    scale_down: Rules = DEFAULT_SCALE_DOWN

    def scaled(self, factor: float) -> Behavior:
        """Every window and period multiplied by ``factor`` (the demo's time compression)."""
        return Behavior(self.scale_up.scaled(factor), self.scale_down.scaled(factor))


def _rules(raw: Mapping[str, Any] | None, default: Rules, where: str) -> Rules:
    if raw is None:
        return default
    select = raw.get("selectPolicy", "Max")
    if select not in ("Max", "Min", "Disabled"):
        raise BehaviorError(f"{where}.selectPolicy: {select!r} is not Max, Min or Disabled")
    policies = []
    for i, p in enumerate(raw.get("policies") or []):
        if p.get("type") not in ("Pods", "Percent"):
            raise BehaviorError(f"{where}.policies[{i}].type: {p.get('type')!r} is not Pods or Percent")
        value, period = int(p["value"]), int(p["periodSeconds"])
        if value <= 0 or not 0 < period <= 1800:
            raise BehaviorError(f"{where}.policies[{i}]: value must be > 0 and periodSeconds in (0, 1800]")
        policies.append(Policy(p["type"], value, float(period)))
    window = raw.get("stabilizationWindowSeconds", default.stabilization_window_seconds)
    return Rules(float(window), select, tuple(policies) or default.policies)


def parse_behavior(raw: Mapping[str, Any] | None) -> Behavior:
    """``spec.behavior`` of an autoscaling/v2 HPA, with the API server's defaults filled in."""
    raw = raw or {}
    return Behavior(
        _rules(raw.get("scaleUp"), DEFAULT_SCALE_UP, "behavior.scaleUp"),
        _rules(raw.get("scaleDown"), DEFAULT_SCALE_DOWN, "behavior.scaleDown"),
    )


def milli(value: float) -> int:
    """A float as the external-metrics API's milli-quantity (KEDA truncates ``value*1000``)."""
    return int(value * 1000)


def _within(ratio: float, tolerance: float) -> bool:
    return 1.0 - tolerance <= ratio <= 1.0 + tolerance


def per_pod_replicas(status_replicas: int, value: float, target: float, tolerance: float = TOLERANCE) -> int:
    """``GetExternalPerPodMetricReplicas``: an AverageValue target."""
    usage, per_pod = milli(value), max(1, milli(target))
    if status_replicas > 0 and _within(usage / (per_pod * status_replicas), tolerance):
        return status_replicas
    return math.ceil(usage / per_pod)


def value_replicas(
    spec_replicas: int, ready_pods: int, value: float, target: float, tolerance: float = TOLERANCE
) -> int:
    """``GetExternalMetricReplicas``: a Value target."""
    ratio = milli(value) / max(1, milli(target))
    if spec_replicas == 0:
        return math.ceil(ratio)
    if _within(ratio, tolerance):
        return spec_replicas
    return math.ceil(ratio * ready_pods)


@dataclass(frozen=True)
class Reading:
    """One metric as the HPA sees it: KEDA's value and the GetMetricSpec target."""

    value: float
    target: float
    metric_type: MetricType = "AverageValue"


@dataclass(frozen=True)
class Decision:
    desired: int
    """The replicas the HPA leaves in ``spec.replicas`` after this sync."""
    rescale: bool
    proposal: int | None
    """The largest per-metric proposal before stabilization and limits (None: not computed)."""
    per_metric: tuple[int | None, ...] = ()
    reason: str = ""


@dataclass
class Hpa:
    """One HorizontalPodAutoscaler; ``reconcile`` is one controller sync."""

    min_replicas: int
    max_replicas: int
    behavior: Behavior = field(default_factory=Behavior)
    tolerance: float = TOLERANCE
    recommendations: list[tuple[float, int]] = field(default_factory=list)
    up_events: list[tuple[float, int]] = field(default_factory=list)
    down_events: list[tuple[float, int]] = field(default_factory=list)

    def proposal(self, reading: Reading, spec: int, status: int, ready: int) -> int:
        if reading.metric_type == "AverageValue":
            return per_pod_replicas(status, reading.value, reading.target, self.tolerance)
        return value_replicas(spec, ready, reading.value, reading.target, self.tolerance)

    def reconcile(self, now: float, spec: int, status: int, ready: int, readings: Sequence[Reading | None]) -> Decision:
        current = spec
        if not self.recommendations:
            self.recommendations.append((now, current))
        if current == 0 and self.min_replicas != 0:
            return Decision(0, False, None, reason="scaling is disabled since the replica count of the target is zero")
        per_metric: tuple[int | None, ...] = ()
        proposal: int | None = None
        if current > self.max_replicas:
            desired, reason = self.max_replicas, "current replicas above maxReplicas"
        elif current < self.min_replicas:
            desired, reason = self.min_replicas, "current replicas below minReplicas"
        else:
            per_metric = tuple(None if r is None else self.proposal(r, spec, status, ready) for r in readings)
            valid = [p for p in per_metric if p is not None]
            invalid = len(per_metric) - len(valid)
            proposal = max(valid) if valid else None
            if proposal is None or (invalid and proposal < spec):
                return Decision(current, False, proposal, per_metric, f"{invalid} invalid metric(s): no change")
            desired = self._normalize(now, current, proposal)
            reason = "above target" if desired > current else "below target" if desired < current else "at target"
        rescale = desired != current
        if rescale:
            self._store_event(now, current, desired)
        return Decision(desired, rescale, proposal, per_metric, reason)

    # ------------------------------------------------------------------ behavior

    def _normalize(self, now: float, current: int, desired: int) -> int:
        return self._rate_limit(now, current, self._stabilize(now, current, desired))

    def _stabilize(self, now: float, current: int, desired: int) -> int:
        up_cutoff = now - self.behavior.scale_up.stabilization_window_seconds
        down_cutoff = now - self.behavior.scale_down.stabilization_window_seconds
        up, down = desired, desired
        old: int | None = None
        for i, (ts, rec) in enumerate(self.recommendations):
            if ts > up_cutoff:
                up = min(rec, up)
            if ts > down_cutoff:
                down = max(rec, down)
            if ts < up_cutoff and ts < down_cutoff:
                old = i
        recommendation = min(max(current, up), down)
        if old is not None:
            self.recommendations[old] = (now, desired)
        else:
            self.recommendations.append((now, desired))
        return recommendation

    @staticmethod
    def _changed(events: list[tuple[float, int]], period: float, now: float) -> int:
        return sum(change for ts, change in events if ts > now - period)

    def _limit(self, now: float, current: int, rules: Rules, up: bool) -> float:
        if rules.select_policy == "Disabled":
            return current
        # For scale-up "Max" means the highest limit; for scale-down the lowest.
        pick_high = (rules.select_policy == "Max") == up
        result = -math.inf if pick_high else math.inf
        for p in rules.policies:
            start = current - self._changed(self.up_events, p.period_seconds, now)
            start += self._changed(self.down_events, p.period_seconds, now)
            if up:
                proposed = start + p.value if p.type == "Pods" else math.ceil(start * (1 + p.value / 100))
            else:
                proposed = start - p.value if p.type == "Pods" else int(start * (1 - p.value / 100))
            result = max(result, proposed) if pick_high else min(result, proposed)
        return result

    def _rate_limit(self, now: float, current: int, desired: int) -> int:
        if desired > current:
            limit = max(self._limit(now, current, self.behavior.scale_up, up=True), current)
            return int(min(desired, self.max_replicas, limit))
        if desired < current:
            limit = min(self._limit(now, current, self.behavior.scale_down, up=False), current)
            return int(max(desired, self.min_replicas, limit))
        return desired

    def _store_event(self, now: float, previous: int, new: int) -> None:
        rules = self.behavior.scale_up if new > previous else self.behavior.scale_down
        longest = max((p.period_seconds for p in rules.policies), default=0.0)
        events = self.up_events if new > previous else self.down_events
        events[:] = [(ts, c) for ts, c in events if ts > now - longest]
        events.append((now, abs(new - previous)))
