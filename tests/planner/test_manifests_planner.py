"""manifests/keda-planner: the planner's ScaledObjects and the scaler overlay they need."""

from __future__ import annotations

from typing import Any

import pytest

from scaler import planner
from scaler.planner import selection
from tests.manifests.test_manifests import (
    SCALER_HOST,
    TARGETS,
    by_kind,
    collector_keeps,
    render,
    scaler_env,
    service_port,
)

Doc = dict[str, Any]


def _planner_objects() -> dict[str, Doc]:
    sos = {so["spec"]["scaleTargetRef"]["name"]: so for so in by_kind(render("keda-planner"), "ScaledObject")}
    assert set(sos) == set(TARGETS.values())
    return {role: sos[target] for role, target in TARGETS.items()}


@pytest.mark.parametrize("role", sorted(TARGETS))
def test_each_role_has_one_planner_trigger_the_scaler_accepts(role: str) -> None:
    so = _planner_objects()[role]
    (trigger,) = so["spec"]["triggers"]
    meta = trigger["metadata"]
    assert trigger["type"] == "external" and trigger["metricType"] == "AverageValue"
    assert meta["targetValue"] == "1"  # HPA: ceil(desired / 1) = desired
    assert all(isinstance(v, str) for v in meta.values())
    host, _, port = meta["scalerAddress"].rpartition(":")
    assert (host, int(port)) == (SCALER_HOST, service_port("keda"))
    spec = planner.parse_spec(meta)
    assert spec.role == role and spec.deployment == so["spec"]["scaleTargetRef"]["name"]
    assert spec.profile is not None and spec.profile.name in planner.BUILTIN


def test_the_hpa_applies_the_planners_answer_and_leaves_hysteresis_to_it() -> None:
    for so in _planner_objects().values():
        behavior = so["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
        assert behavior["scaleUp"]["stabilizationWindowSeconds"] == 0
        assert behavior["scaleDown"]["stabilizationWindowSeconds"] == 0
        assert so["spec"]["fallback"]["behavior"] == "currentReplicasIfHigher"


def test_the_scaler_overlay_keeps_the_history_every_builtin_profile_needs() -> None:
    env = scaler_env("keda-planner/scaler")
    retention = float(env["METRIC_STORE_RETENTION_SECONDS"])
    tuning = planner.Tuning()
    for profile in planner.BUILTIN.values():
        # the windows the replayed history's first instant reads back (the mean lengths'),
        # its alignment, then the longest hold, then one start-up of asks before it
        hold = max(tuning.recur_hold_s, tuning.min_hold_s, profile.startup_max_s)
        warm = max(tuning.window_ms, tuning.latency_window_ms, tuning.long_window_ms) + tuning.origin_ms
        needed = warm / 1000 + hold + profile.startup_max_s
        assert retention >= needed, profile.name
        meta = {"planner": "decode", "deployment": "d", "ttftTarget": "1s", "itlTarget": "50ms"}
        spec = planner.parse_spec(meta | {"profile": profile.name})
        assert planner.history_needed_s(spec) == needed  # what the trigger warns against
    # everything else is the scaler's own deployment
    base = scaler_env()
    assert {k: v for k, v in env.items() if k != "METRIC_STORE_RETENTION_SECONDS"} == {
        k: v for k, v in base.items() if k != "METRIC_STORE_RETENTION_SECONDS"
    }


@pytest.mark.parametrize("role", sorted(TARGETS))
def test_the_collectors_keep_every_vllm_metric_the_planner_reads_under_its_current_name(role: str) -> None:
    kept = collector_keeps(role)
    current = [
        selection.RUNNING, selection.WAITING, selection.KV_USAGE, selection.PROMPT_TOKENS,
        selection.GENERATION_TOKENS, selection.REQUESTS, selection.PREFIX_QUERIES, selection.PREFIX_HITS,
        selection.TTFT, selection.ITL, selection.QUEUE,
    ]  # fmt: skip
    assert {names[0] for names in current} <= kept
