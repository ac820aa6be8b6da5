"""The status registry (pure): what it keeps per trigger and source, how it stays bounded (an
injected clock drives the hour of idleness); and what the records mean (:mod:`scaler.reason`):
KEDA's replica arithmetic, the reason in words, the matched series."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

import pytest

from scaler.config import StoreLimits, TriggerDefaults
from scaler.model import STALE_NAN, RejectReason, make_labels
from scaler.reason import matched, number_text, reason, replicas_for, source_series
from scaler.sources import key_of as source_key
from scaler.status import HISTORY_POINTS, MAX_TRIGGERS, History, Key, Registry, trigger_capacity
from scaler.store import Store
from scaler.trigger import Reading, State, Trigger, parse


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class Evictions:
    seen: list[tuple[str, str, Key]] = field(default_factory=list)

    def __call__(self, kind: str, reason: str, key: Key) -> None:
        self.seen.append((kind, reason, key))


def trigger(**metadata: str) -> Trigger:
    return parse({"targetValue": "2", "metricQuery": "waiting", **metadata}, TriggerDefaults(), 120.0)


VALUE = Reading(State.VALUE, raw=5.0)


def test_history_keeps_one_point_per_slot_over_the_retention() -> None:
    history = History(slot_s=1.0)
    history.add(10.2, 1.0)
    history.add(10.9, 2.0)  # the same slot: the newer reading wins
    history.add(11.0, math.nan)
    assert history.points(0) == [(10.9, 2.0), (11.0, pytest.approx(math.nan, nan_ok=True))]
    for i in range(500):
        history.add(20.0 + i, float(i))
    points = history.points(0)
    assert len(points) == HISTORY_POINTS + 1
    assert points[0] == (20.0 + 499 - HISTORY_POINTS, float(499 - HISTORY_POINTS)) and points[-1] == (519.0, 499.0)
    assert [t for t, _ in history.points(500.0)] == [float(t) for t in range(500, 520)]
    history.add(100.0, 7.0)  # the clock stepped back: it replaces the newest point, never reorders
    assert history.points(0)[-1] == (100.0, 7.0) and len(history.points(0)) == HISTORY_POINTS + 1


def test_history_grows_as_points_arrive_and_keeps_the_same_points_as_a_full_ring() -> None:
    """It starts small and doubles (a registry holds an entry per open stream); whatever the
    sizes it passed through, its points are those of a list keeping the last ``HISTORY_POINTS
    + 1`` slots, the newer reading winning in a slot."""
    rng = random.Random(20)
    for _ in range(50):
        history, model = History(slot_s=1.0), list[tuple[float, float]]()
        at = 0.0
        for i in range(rng.randrange(1, 400)):
            at += rng.choice((0.3, 1.0, 2.5, -0.5))  # the same slot, the next, a gap, a step back
            history.add(at, float(i))
            if model and math.floor(at) <= math.floor(model[-1][0]):
                model[-1] = (at, float(i))
            else:
                model = [*model, (at, float(i))][-(HISTORY_POINTS + 1) :]
            assert history.points(-math.inf) == model
    small = History(slot_s=1.0)
    small.add(1.0, 1.0)
    assert small.points(0) == [(1.0, 1.0)] and small.nbytes < History.full_nbytes() // 10


def test_a_reading_is_recorded_with_what_keda_gets() -> None:
    clock = Clock()
    registry = Registry(clock, retention_seconds=120.0)
    t = trigger(clampMax="4", activationThreshold="6", metricName="decode")
    registry.asked("llm-d", "pd-decode", t, "GetMetrics")
    registry.read("llm-d", "pd-decode", t, VALUE)
    clock.now += 3
    registry.asked("llm-d", "pd-decode", t, "GetMetrics")
    registry.asked("llm-d", "pd-decode", t, "IsActive")
    (entry,) = registry.triggers()
    assert (entry.namespace, entry.name, entry.metric) == ("llm-d", "pd-decode", "decode")
    assert entry.value == 4.0 and entry.number == 5.0 and entry.active is False  # clamped; activation unclamped
    assert (entry.calls["GetMetrics"].count, entry.calls["GetMetrics"].last) == (2, clock.now)
    assert entry.calls["IsActive"].count == 1 and entry.first_asked == clock.now - 3
    assert entry.history.points(0) == [(clock.now - 3, 4.0)]
    assert not entry.erroring and not entry.warming


def test_errors_and_refused_metadata_are_counted_and_cleared_by_the_next_answer() -> None:
    clock = Clock()
    registry = Registry(clock, 120.0)
    registry.refused("ns", "so", "decode", "GetMetrics", "metadata key 'targetValue': required")
    registry.failed("ns", "so", "decode", "GetMetrics", "INVALID_ARGUMENT", "ScaledObject ns/so: …")
    (entry,) = registry.triggers()
    assert entry.erroring and entry.trigger is None and entry.value is None
    assert entry.last_error is not None and entry.last_error.code == "INVALID_ARGUMENT"
    assert "KEDA gets INVALID_ARGUMENT" in reason(entry) and "targetValue" in reason(entry)

    t = trigger(metricName="decode", errIfNotFound="true")
    registry.asked("ns", "so", t, "GetMetrics")  # the ScaledObject was fixed: same entry
    registry.read("ns", "so", t, Reading(State.NOT_FOUND, message="no series matches 'x' (errIfNotFound is set)"))
    registry.failed("ns", "so", "decode", "GetMetrics", "NOT_FOUND", "no series")
    (entry,) = registry.triggers()
    assert entry.erroring and not entry.refused and entry.errors == {"INVALID_ARGUMENT": 1, "NOT_FOUND": 1}
    assert reason(entry).startswith("KEDA gets NOT_FOUND: no series matches 'x'")

    clock.now += 1
    registry.read("ns", "so", t, VALUE)
    (entry,) = registry.triggers()
    assert not entry.erroring and entry.value == 5.0 and sum(entry.errors.values()) == 2
    values = [v for _, v in entry.history.points(0)]  # the refusal and the not-found share a slot
    assert len(values) == 2 and math.isnan(values[0]) and values[1] == 5.0


def test_a_warm_up_hold_is_not_an_error() -> None:
    registry = Registry(Clock(), 120.0)
    t = trigger()
    registry.read("ns", "so", t, Reading(State.HOLD, message="warming up"))
    (entry,) = registry.triggers()
    assert entry.warming and not entry.erroring and entry.value is None
    assert reason(entry).startswith("warming up after a start")


@pytest.mark.parametrize(
    ("value", "target", "replicas"),
    [(1.4, 0.7, 2), (0.1 * 3, 0.1, 3), (7, 2, 4), (0, 2, 0), (8, 2, 4), (2.0004, 1, 2), (2.0006, 1, 3), (-1.5, 1, -1)],
)
def test_replicas_are_keda_s_ceiling_in_milli_units(value: float, target: float, replicas: int) -> None:
    assert replicas_for(value, target) == replicas


def test_replicas_need_finite_numbers_and_a_target_keda_can_represent() -> None:
    assert replicas_for(math.inf, 1) is None and replicas_for(math.nan, 1) is None
    assert replicas_for(5, 0.0001) is None  # 0.000 in KEDA's milli-units: the HPA would divide by zero


def test_reasons_in_words() -> None:
    registry = Registry(Clock(), 120.0)

    def said(t: Trigger, reading: Reading | None) -> str:
        if reading is None:
            registry.asked("ns", "so", t, "GetMetricSpec")
        else:
            registry.read("ns", "so", t, reading)
        (entry,) = (e for e in registry.triggers() if e.metric == t.metric_name)
        return reason(entry)

    unread = said(trigger(metricName="a"), None)
    assert unread == "KEDA has read the metric spec (target 2) but not asked for a value yet"
    value = said(trigger(metricName="b"), VALUE)
    assert value == "5 against target 2 asks for 3 replicas (AverageValue); active (5 > activation 0)"
    clamped = said(trigger(metricName="c", clampMax="4"), VALUE)
    assert clamped.startswith("4 (clamped from 5) against target 2 asks for 2 replicas")
    inactive = said(trigger(metricName="d", activationThreshold="5"), VALUE)
    scale_to_zero = "with minReplicaCount 0 KEDA scales to zero after cooldownPeriod"
    assert inactive.endswith(f"; inactive (5 ≤ activation 5): {scale_to_zero}")
    fallback = said(trigger(metricName="e"), Reading(State.NOT_FOUND, fallback=0.0, message="no series matches 'x'"))
    assert fallback.startswith("no series matches 'x', so it answers valueIfNotFound 0; 0 against target 2 asks for 0")
    invalid = said(trigger(metricName="f"), Reading(State.INVALID, message="query returned 2 series; wrap it"))
    assert invalid == "KEDA gets INVALID_ARGUMENT: query returned 2 series; wrap it"


def test_an_entry_not_asked_about_for_an_hour_is_evicted_and_counted() -> None:
    clock, evicted = Clock(), Evictions()
    registry = Registry(clock, 120.0, on_evict=evicted)
    old, kept = trigger(metricName="old"), trigger(metricName="kept")
    registry.asked("ns", "so", old, "GetMetrics")
    registry.asked("ns", "so", kept, "GetMetrics")
    registry.exported([("ns", "dep", "pod-a")], {})
    clock.now += 1800
    registry.asked("ns", "so", kept, "IsActive")  # asked again: its hour starts over
    registry.exported([("ns", "dep", "pod-b")], {})
    clock.now += 1799.9
    assert [e.metric for e in registry.triggers()] == ["kept", "old"] and len(registry.sources()) == 2
    clock.now += 0.1
    assert [e.metric for e in registry.triggers()] == ["kept"]
    assert [s.pod for s in registry.sources()] == ["pod-b"]
    assert evicted.seen == [("trigger", "idle", ("ns", "so", "old")), ("source", "idle", ("ns", "dep", "pod-a"))]
    clock.now += 1800
    assert registry.triggers() == [] and registry.sources() == []
    assert len(evicted.seen) == 4


def test_past_the_cap_the_least_recently_touched_entry_goes() -> None:
    clock, evicted = Clock(), Evictions()
    registry = Registry(clock, 120.0, max_triggers=3, max_sources=2, on_evict=evicted)
    for name in "abc":
        registry.asked("ns", name, trigger(), "GetMetrics")
        clock.now += 1
    registry.read("ns", "a", trigger(), VALUE)  # a is touched again: b is now the oldest
    registry.asked("ns", "d", trigger(), "GetMetrics")
    assert [e.name for e in registry.triggers()] == ["a", "c", "d"]
    for pod in ("p1", "p2", "p3"):
        registry.exported([("ns", "dep", pod)], {})
    assert [s.pod for s in registry.sources()] == ["p2", "p3"]
    assert evicted.seen == [("trigger", "cap", ("ns", "b", "waiting")), ("source", "cap", ("ns", "dep", "p1"))]


def test_the_trigger_cap_holds_an_entry_per_open_stream() -> None:
    """With MAX_STREAMS above the default cap, every open stream keeps its entry: past the cap,
    each stream's reading would evict another's (and drop its gauges)."""
    clock, evicted = Clock(), Evictions()
    streams = MAX_TRIGGERS + 500
    registry = Registry(clock, 120.0, max_triggers=trigger_capacity(streams), on_evict=evicted)
    for i in range(streams):
        registry.asked("ns", f"so-{i}", trigger(), "StreamIsActive")
        registry.read("ns", f"so-{i}", trigger(), VALUE)
    assert len(registry.triggers()) == streams and evicted.seen == []
    registry.asked("ns", "one-more", trigger(), "GetMetrics")
    assert evicted.seen == [("trigger", "cap", ("ns", "so-0", "waiting"))]
    assert trigger_capacity(10) == MAX_TRIGGERS


def test_a_source_counts_its_exports_and_its_rejections_or_shared_ones() -> None:
    clock = Clock()
    registry = Registry(clock, 120.0)
    alone, other = ("llm-d", "pd-decode", "pod-a"), ("llm-d", "pd-decode", "pod-b")
    registry.exported([alone], {RejectReason.TOO_OLD: 2})
    clock.now += 5
    registry.exported([alone], {RejectReason.TOO_OLD: 1, RejectReason.SERIES_LIMIT: 3, RejectReason.INVALID_VALUE: 0})
    registry.exported([alone, other], {RejectReason.TOO_OLD: 4})  # whose they are is not known
    registry.exported([other], {})
    a, b = registry.sources()
    assert (a.exports, a.touched, a.first_export) == (3, clock.now, clock.now - 5)
    assert (a.rejected, a.shared_rejected) == ({"too_old": 3, "series_limit": 3}, 4)
    assert (b.exports, b.rejected, b.shared_rejected) == (2, {}, 4)


def test_a_source_is_named_by_its_kubernetes_resource_attributes() -> None:
    attributes = {"k8s.namespace.name": "llm-d", "k8s.deployment.name": "dep", "k8s.pod.name": "p", "x": "y"}
    assert source_key(attributes) == ("llm-d", "dep", "p")
    assert source_key({"k8s.statefulset.name": "sts", "service.instance.id": "i-1"}) == ("", "sts", "i-1")
    assert source_key({}) == ("", "", "")


def test_matched_series_and_a_source_s_series_come_from_the_store() -> None:
    now_s = 1_000.0
    store = Store(StoreLimits(), clock=lambda: now_s)
    rows = [("a", "llm-d", 1.0, 990.0), ("a", "llm-d", 1.0, 999.0), ("b", "llm-d", 2.0, 995.0)]
    rows.append(("c", "other", 3.0, 998.0))
    for pod, ns, value, t in rows:
        store.append([(make_labels("waiting", {"pod": pod, "namespace": ns}), int(t * 1000), value, False)])
    store.append([(make_labels("waiting", {"pod": "gone", "namespace": "llm-d"}), 996_000, STALE_NAN, False)])
    store.append([(make_labels("waiting", {"pod": "nan", "namespace": "x"}), 996_000, math.nan, False)])
    store.append([(make_labels("other_metric", {"pod": "a", "namespace": "llm-d"}), 999_000, 1.0, False)])
    found = matched(store, trigger(metricQuery='waiting{namespace="llm-d"}'), "pod")
    assert found is not None and (found.series, found.pods) == (2, ("a", "b"))
    assert (found.newest_ms, found.oldest_ms) == (999_000, 990_000)
    nan = matched(store, trigger(metricQuery="waiting{pod=nan}"), "pod")
    assert nan is not None and nan.series == 1  # a NaN value is not a staleness marker
    assert matched(store, None, "pod") is None

    registry = Registry(lambda: now_s, 120.0)
    registry.exported([("llm-d", "dep", "a"), ("", "dep", "")], {})
    with_pod, without = sorted(registry.sources(), key=lambda s: s.pod, reverse=True)
    assert source_series(store, with_pod, {"pod": "pod", "namespace": "namespace"}) == 2
    assert source_series(store, with_pod, {"pod": "pod"}) == 2
    assert source_series(store, with_pod, {"namespace": "namespace"}) is None  # k8s.pod.name not promoted
    assert source_series(store, without, {"pod": "pod", "namespace": "namespace"}) is None


@pytest.mark.parametrize(
    ("value", "text"),
    [(14791.0, "14,790"), (0.928832, "0.9288"), (250.0, "250"), (-1234.5, "-1,234"), (2.0, "2"), (math.inf, "+Inf")],
)
def test_numbers_read_as_the_page_shows_them(value: float, text: str) -> None:
    assert number_text(value) == text
