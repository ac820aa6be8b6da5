"""The HPA algorithm against hand-computed cases (Kubernetes podautoscaler semantics)."""

from __future__ import annotations

import pytest

from scaler.sim.hpa import (
    DEFAULT_SCALE_DOWN,
    DEFAULT_SCALE_UP,
    Behavior,
    BehaviorError,
    Hpa,
    Policy,
    Reading,
    Rules,
    parse_behavior,
    per_pod_replicas,
    value_replicas,
)

# The repository's ScaledObjects (manifests/keda): up = max(+100 %, +2 pods) per 15 s, no window;
# down = 1 pod per 60 s (Min), 120 s window.
MANIFEST = parse_behavior(
    {
        "scaleUp": {
            "stabilizationWindowSeconds": 0,
            "selectPolicy": "Max",
            "policies": [
                {"type": "Percent", "value": 100, "periodSeconds": 15},
                {"type": "Pods", "value": 2, "periodSeconds": 15},
            ],
        },
        "scaleDown": {
            "stabilizationWindowSeconds": 120,
            "selectPolicy": "Min",
            "policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}],
        },
    }
)
NO_LIMITS = Behavior(Rules(0, "Max", (Policy("Percent", 1000, 15),)), Rules(0, "Max", (Policy("Percent", 100, 15),)))


def av(value: float, target: float) -> Reading:
    return Reading(value, target, "AverageValue")


# ---------------------------------------------------------------------------- per metric


def test_average_value_is_ceil_of_total_over_target() -> None:
    # 450 / (200 x 2) = 1.125 > 1.1 -> ceil(450 / 200) = 3
    assert per_pod_replicas(2, 450, 200) == 3
    # 1000 / 200 = 5 exactly
    assert per_pod_replicas(1, 1000, 200) == 5
    # 0.8 total KV usage / 0.7 per pod = 1.14 -> 2 (from 1 replica: ratio 1.14 > 1.1)
    assert per_pod_replicas(1, 0.8, 0.7) == 2


def test_tolerance_keeps_the_current_count() -> None:
    assert per_pod_replicas(2, 420, 200) == 2  # ratio 1.05
    assert per_pod_replicas(2, 440, 200) == 2  # ratio 1.10: the bound is inclusive
    assert per_pod_replicas(2, 441, 200) == 3  # ratio 1.1025
    assert per_pod_replicas(3, 545, 200) == 3  # ratio 0.908
    assert per_pod_replicas(3, 530, 200) == 3  # ratio 0.883 -> ceil(2.65) = 3 anyway
    assert per_pod_replicas(4, 530, 200) == 3  # ratio 0.66


def test_value_target_scales_the_ready_pods() -> None:
    # ratio 300 / 100 = 3, 2 ready pods -> 6
    assert value_replicas(2, 2, 300, 100) == 6
    # not-ready pods are not multiplied: 3 spec, 1 ready -> ceil(3 x 1) = 3
    assert value_replicas(3, 1, 300, 100) == 3
    assert value_replicas(4, 4, 105, 100) == 4  # within tolerance: keep spec
    assert value_replicas(0, 0, 250, 100) == 3  # at zero: ceil(ratio)


def test_values_are_compared_in_milli_units() -> None:
    # KEDA sends 0.7004 -> 700 milli; 700/700 = 1.0 within tolerance.
    assert per_pod_replicas(1, 0.7004, 0.7) == 1
    assert per_pod_replicas(5, 0.0, 0.7) == 0


# ---------------------------------------------------------------------------- controller


def test_max_over_metrics_and_min_max_bounds() -> None:
    hpa = Hpa(1, 4, NO_LIMITS)
    d = hpa.reconcile(0, spec=1, status=1, ready=1, readings=[av(150, 200), av(900, 200)])
    assert (d.per_metric, d.proposal, d.desired, d.rescale) == ((1, 5), 5, 4, True)
    d = Hpa(2, 4, NO_LIMITS).reconcile(0, spec=3, status=3, ready=3, readings=[av(0, 200)])
    assert d.desired == 2  # never below minReplicas


def test_out_of_bounds_current_is_corrected_first() -> None:
    assert Hpa(1, 4).reconcile(0, 6, 6, 6, [av(10_000, 1)]).desired == 4
    assert Hpa(2, 4).reconcile(0, 1, 1, 1, [av(0, 1)]).desired == 2


def test_zero_replicas_disable_the_hpa() -> None:
    d = Hpa(1, 4).reconcile(0, 0, 0, 0, [av(10_000, 1)])
    assert (d.desired, d.rescale) == (0, False)


def test_invalid_metrics() -> None:
    hpa = Hpa(1, 10, NO_LIMITS)
    assert not hpa.reconcile(0, 3, 3, 3, [None, None]).rescale
    # one failing metric and the other would scale down: no change
    assert not hpa.reconcile(1, 3, 3, 3, [None, av(100, 200)]).rescale
    # one failing metric but the other scales up: scale up
    assert hpa.reconcile(2, 3, 3, 3, [None, av(1000, 200)]).desired == 5


# ---------------------------------------------------------------------------- behavior


def test_default_behavior_scale_up_limit() -> None:
    # default scale-up: max(+4 pods, +100 %) per 15 s -> from 1: max(5, 2) = 5
    hpa = Hpa(1, 100)
    assert hpa.reconcile(0, 1, 1, 1, [av(10_000, 1)]).desired == 5
    # 10 s later the period still holds the +4 event: start = 1 -> limit 5
    assert hpa.reconcile(10, 5, 5, 5, [av(10_000, 1)]).desired == 5
    # after 15 s the period is clear: from 5, max(9, 10) = 10
    assert hpa.reconcile(16, 5, 5, 5, [av(10_000, 1)]).desired == 10


def test_manifest_scale_up_doubles_or_adds_two() -> None:
    hpa = Hpa(1, 4, MANIFEST)
    assert hpa.reconcile(0, 1, 1, 1, [av(2000, 200)]).desired == 3  # max(2, 1+2)
    assert hpa.reconcile(5, 3, 3, 1, [av(2000, 200)]).desired == 3  # same period: start 1
    assert hpa.reconcile(15.5, 3, 3, 3, [av(2000, 200)]).desired == 4  # new period; capped by max


def test_scale_down_stabilization_window_and_pods_policy() -> None:
    hpa = Hpa(1, 4, MANIFEST)
    hpa.reconcile(0, 4, 4, 4, [av(800, 200)])  # recommendation 4 at t=0
    d = hpa.reconcile(60, 4, 4, 4, [av(10, 200)])  # wants 1; 4 is within the 120 s window
    assert (d.proposal, d.desired, d.rescale) == (1, 4, False)
    d = hpa.reconcile(121, 4, 4, 4, [av(10, 200)])  # t=0 left the window; Pods 1 per 60 s
    assert d.desired == 3
    assert hpa.reconcile(150, 3, 3, 3, [av(10, 200)]).desired == 3  # still inside the 60 s period
    assert hpa.reconcile(182, 3, 3, 3, [av(10, 200)]).desired == 2


def test_scale_up_window_takes_the_lowest_recent_recommendation() -> None:
    hpa = Hpa(1, 10, Behavior(Rules(30, "Max", (Policy("Percent", 1000, 15),)), DEFAULT_SCALE_DOWN))
    hpa.reconcile(0, 2, 2, 2, [av(400, 200)])  # recommendation 2
    assert hpa.reconcile(10, 2, 2, 2, [av(1000, 200)]).desired == 2  # min(2, 5) within 30 s
    assert hpa.reconcile(31, 2, 2, 2, [av(1000, 200)]).desired == 5


def test_select_policy_min_and_disabled_and_percent_truncation() -> None:
    down = Rules(0, "Max", (Policy("Percent", 50, 60),))
    hpa = Hpa(1, 10, Behavior(DEFAULT_SCALE_UP, down))
    assert hpa.reconcile(0, 5, 5, 5, [av(0, 1)]).desired == 2  # int(5 x 0.5) = 2
    up_min = Rules(0, "Min", (Policy("Pods", 1, 60), Policy("Percent", 100, 60)))
    assert Hpa(1, 10, Behavior(up_min, DEFAULT_SCALE_DOWN)).reconcile(0, 2, 2, 2, [av(10_000, 1)]).desired == 3
    up_off = Rules(0, "Disabled", (Policy("Pods", 4, 15),))
    assert not Hpa(1, 10, Behavior(up_off, DEFAULT_SCALE_DOWN)).reconcile(0, 2, 2, 2, [av(10_000, 1)]).rescale
    down_min = Rules(0, "Min", (Policy("Pods", 1, 60), Policy("Percent", 50, 60)))
    assert Hpa(1, 10, Behavior(DEFAULT_SCALE_UP, down_min)).reconcile(0, 6, 6, 6, [av(0, 1)]).desired == 5


def test_parse_behavior_defaults_and_errors() -> None:
    assert parse_behavior(None) == Behavior(DEFAULT_SCALE_UP, DEFAULT_SCALE_DOWN)
    partial = parse_behavior({"scaleDown": {"policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}]}})
    assert partial.scale_up == DEFAULT_SCALE_UP
    assert partial.scale_down.stabilization_window_seconds == 300
    assert partial.scale_down.select_policy == "Max"
    assert MANIFEST.scaled(0.1).scale_down == Rules(12, "Min", (Policy("Pods", 1, 6),))
    with pytest.raises(BehaviorError, match="selectPolicy"):
        parse_behavior({"scaleUp": {"selectPolicy": "Sometimes"}})
    with pytest.raises(BehaviorError, match=r"policies\[0\]\.type"):
        parse_behavior({"scaleUp": {"policies": [{"type": "Nodes", "value": 1, "periodSeconds": 1}]}})
