"""The planner trigger over real gRPC: spec, desired replicas, activity, not found, warm-up,
bad metadata; two scaler instances fed the same data answer the same, and so does a restart
from the snapshot."""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HttpExporter

from scaler import statustable
from scaler.planner import Plan
from scaler.trigger.kinds import PlanWork
from tests.conftest import RunningService
from tests.integration.test_keda import Keda
from tests.otlpdata import DECODE, otlp_stub
from tests.planner.fleet import Fleet, Load
from tests.planner.sdkexport import sdk_sink

# a decode replica generates 5000 tokens/s (a measured hint) and starts within 60 s
PROFILE = "{base: opt125m-l4, decode_tokens_per_second: 5000, startup_seconds: 60}"
META = {
    "planner": "decode",
    "deployment": DECODE,
    "ttftTarget": "1s",
    "itlTarget": "50ms",
    "profile": PROFILE,
    "targetValue": "1",
}


def busy(running: float) -> Load:
    # each sequence gets 50 tokens/s and makes 500 tokens: running/10 requests finish per second
    return Load(running=running, generation_tokens=50 * running, requests=running / 10, itl=0.02)


Start = Callable[..., RunningService]


@pytest.fixture
def start(service_factory: Callable[..., RunningService]) -> Start:
    """Services on one shared fake clock (a fleet's): ``start(fleet.clock, **settings)``."""
    return service_factory


def _fleet(*services: RunningService, seconds: int, load: Load, fleet: Fleet | None = None) -> Fleet:
    """``fleet`` (or a new 2-pod decode fleet) runs ``seconds``, exporting to every service."""
    stubs = [otlp_stub(s.ports.otlp) for s in services]
    fleet = fleet or _decode_fleet()

    def push(request: Any) -> None:
        for stub in stubs:
            stub.Export(request)

    fleet.run(seconds, load, push)
    return fleet


def _decode_fleet() -> Fleet:
    fleet = Fleet(DECODE)
    fleet.add("pd-decode-a", "pd-decode-b")
    return fleet


@pytest.fixture
def fleet() -> Fleet:
    return _decode_fleet()


def test_the_spec_is_a_replica_count_and_metrics_are_the_desired_replicas(start: Start, fleet: Fleet) -> None:
    svc = start(fleet.clock)
    keda = Keda(svc)
    spec = keda.spec(**META)
    assert (spec.metricName, spec.targetSizeFloat, spec.targetSize) == (f"planner-decode-{DECODE}", 1.0, 1)
    assert keda.spec(**META, metricName="Decode Planner").metricName == "decode-planner"
    _fleet(svc, seconds=120, load=busy(90), fleet=fleet)
    # 2 pods × 90 sequences × 50 tokens/s = 9000 tokens/s; 5000 per replica → 2
    value = keda.metrics(**META)
    assert (value.metricValueFloat, value.metricValue) == (2.0, 2)
    assert keda.active(**META)
    # the traffic stops: nothing runs, nothing is asked for once the 300-s hold has passed
    _fleet(svc, seconds=320, load=Load(), fleet=fleet)
    assert keda.metrics(**META).metricValueFloat == 0.0
    assert not keda.active(**META)


def test_a_store_shorter_than_the_planners_history_is_warned_about_once_and_still_answered(
    start: Start, fleet: Fleet, caplog: pytest.LogCaptureFixture
) -> None:
    # the service's default 120-s retention against the 1 080 s this profile's history needs
    # (60-s start-up); the manifests' 1 500 s covers it
    short, covered = start(fleet.clock), start(fleet.clock, retention_seconds=1500.0)
    _fleet(short, covered, seconds=120, load=busy(90), fleet=fleet)
    for svc, warnings in ((short, 1), (covered, 0)):
        caplog.clear()
        keda = Keda(svc)
        with caplog.at_level("WARNING", logger="scaler.trigger"):
            for _ in range(3):
                assert keda.metrics(**META).metricValueFloat == 2.0
            assert keda.active(**META)
        said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("planner trigger decode")]
        assert len(said) == warnings
        if warnings:
            assert f"decode {DECODE}: the store keeps 120s" in said[0] and "needs 1080s" in said[0]


def test_keda_calls_are_answered_while_a_planner_decision_is_computed(start: Start, fleet: Fleet) -> None:
    # the decision runs in a worker thread, held there until released: meanwhile the event
    # loop answers another trigger, and the planner's answer comes once the decision is done
    entered, release = threading.Event(), threading.Event()

    async def gated(work: PlanWork) -> Plan | None:
        def held() -> Plan | None:
            entered.set()
            assert release.wait(30), "the test never released the decision"
            return work()

        return await asyncio.to_thread(held)

    svc = start(fleet.clock, offload=gated)
    keda = Keda(svc)
    _fleet(svc, seconds=120, load=busy(90), fleet=fleet)
    with ThreadPoolExecutor(1) as pool:
        planned = pool.submit(keda.metrics, **META)
        try:
            assert entered.wait(10)
            query = f"vllm:num_requests_running{{deployment={DECODE}}}"
            running = keda.metrics(metricQuery=query, operationOverTime="last_one", targetValue="1")
            assert running.metricValueFloat == 180  # 2 pods × 90 (the compat form sums the series)
            assert not planned.done()
        finally:
            release.set()
        assert planned.result(10).metricValueFloat == 2.0


def test_the_decision_is_explained_once_per_change(
    start: Start, fleet: Fleet, caplog: pytest.LogCaptureFixture
) -> None:
    svc = start(fleet.clock)
    keda = Keda(svc)
    _fleet(svc, seconds=120, load=busy(90), fleet=fleet)
    with caplog.at_level("INFO", logger="scaler.trigger"):
        for _ in range(3):
            keda.metrics(**META)
        keda.active(**META)
        lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("planner decode")]
        assert len(lines) == 1
        assert lines[0].startswith(f"planner decode {DECODE}: desired=2 (pods=2 pending=0")
        for part in (
            "demand=9000 generated tokens/s",
            "capacity/replica=5000",
            "forecast=9000",
            "over 65s",
            "rising 0s",
        ):
            assert part in lines[0]
        # the load triples: the answer changes, and so one more line says why
        _fleet(svc, seconds=60, load=busy(270), fleet=fleet)
        assert keda.metrics(**META).metricValueFloat > 2
        keda.metrics(**META)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("planner decode")]
    assert len(lines) == 2 and "desired=2 " not in lines[1]


def test_the_status_api_shows_the_planners_state_grouped(start: Start, fleet: Fleet) -> None:
    svc = start(fleet.clock)
    keda = Keda(svc)
    _fleet(svc, seconds=120, load=busy(90), fleet=fleet)
    keda.metrics(**META)
    reply = httpx.get(svc.http + "/api/v1/scaledobjects")
    assert reply.status_code == 200, reply.text
    (so,) = reply.json()["scaledObjects"]
    (trigger,) = so["triggers"]
    assert (trigger["kind"], trigger["metricName"], trigger["value"], trigger["replicas"]) == (
        "planner",
        f"planner-decode-{DECODE}",
        2,
        2,
    )
    state = trigger["planner"]
    assert list(state) == [
        *("result", "inputs", "capacity", "correction", "forecast", "pending", "hysteresis"),
        *("role", "deployment", "atMs"),
    ]
    assert state["result"] == {"desired": 2, "need": 2, "drain": 2}
    assert (state["inputs"]["pods"], state["inputs"]["demand"], state["inputs"]["unit"]) == (
        2,
        9000.0,
        "generated tokens/s",
    )
    assert state["capacity"]["perReplica"] == 5000.0 and state["capacity"]["seed"] == 5000.0
    # a measured hint holds no batch, so no slots cap it: the need rises at the whole capacity
    assert state["capacity"]["scaleUpShare"] == 1.0
    assert state["forecast"] == {
        "level": 9000.0,
        "surging": False,
        "demand": 9000.0,
        "slopePerSecond": 0.0,
        "risingSeconds": 0.0,
        "horizonSeconds": 65.0,
    }
    assert state["pending"] == {"asked": 2, "pending": 0, "projectedBacklog": 0.0, "arrivalSeconds": 60.0}
    assert state["hysteresis"] == {"holdSeconds": 60.0, "recurring": False, "fused": False, "band": 0.1}
    assert (state["role"], state["deployment"], state["atMs"]) == ("decode", DECODE, fleet.now_ms)
    # `keda-otel-scaler status` shows the result and the inputs it came from
    assert "planner: desired=2, need=2, drain=2, pods=2" in statustable.render(reply.json())


def test_a_deployment_with_no_exporting_pod_follows_the_not_found_policy(start: Start, fleet: Fleet) -> None:
    svc = start(fleet.clock)
    keda = Keda(svc)
    assert keda.metrics(**META).metricValueFloat == 0.0  # METRIC_STORE_VALUE_IF_NOT_FOUND
    assert not keda.active(**META)
    assert keda.metrics(**META, valueIfNotFound="3").metricValueFloat == 3.0
    with pytest.raises(grpc.RpcError) as info:
        keda.metrics(**META, errIfNotFound="true")
    assert info.value.code() is grpc.StatusCode.NOT_FOUND
    assert f"the decode planner of deployment {DECODE!r}" in str(info.value.details())
    warming = start(fleet.clock, warmup_seconds=60.0)
    with pytest.raises(grpc.RpcError) as info:
        Keda(warming).metrics(**META)
    assert info.value.code() is grpc.StatusCode.UNAVAILABLE


@pytest.mark.parametrize(
    ("change", "key", "problem"),
    [
        ({"planner": "both"}, "planner", "'both' is not a role; use prefill or decode"),
        ({"deployment": ""}, "deployment", "required"),
        ({"ttftTarget": None}, "ttftTarget", "required"),
        ({"ttftTarget": "fast"}, "ttftTarget", "'fast' is not a duration"),
        ({"itlTarget": "-50ms"}, "itlTarget", "not a duration"),
        ({"itlTarget": "0"}, "itlTarget", "must be a positive duration"),
        ({"profile": "h100-fast"}, "profile", "neither a built-in profile"),
        ({"profile": "{base: llama8b-h100, decode: {d_ms: fast}}"}, "profile", "decode.d_ms: 'fast' is not a number"),
        ({"targetValue": "2"}, "targetValue", "must be 1"),
        ({"query": "sum(x)"}, "query", "does not apply to a planner trigger"),
        ({"errIfNotFound": "maybe"}, "errIfNotFound", "'maybe' is not true/false"),
    ],
)
def test_bad_metadata_is_invalid_argument_naming_the_scaled_object_and_the_key(
    start: Start, fleet: Fleet, change: dict[str, str | None], key: str, problem: str
) -> None:
    keda = Keda(start(fleet.clock))
    metadata = {k: v for k, v in (META | change).items() if v is not None}
    for call in (keda.spec, keda.metrics, keda.active):
        with pytest.raises(grpc.RpcError) as info:
            call(**metadata)
        assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        details = str(info.value.details())
        assert details.startswith(f"ScaledObject llm-d/pd-decode: metadata key {key!r}: "), details
        assert problem in details


def test_stream_is_active_sends_the_planners_activity(start: Start, fleet: Fleet) -> None:
    svc = start(fleet.clock)
    assert svc.service is not None
    # no idle recheck within the test: only data the planner reads can wake the stream
    svc.service.scaler.recheck_seconds = 3600.0
    _fleet(svc, seconds=60, load=busy(40), fleet=fleet)
    keda = Keda(svc)
    stream = keda.stub.StreamIsActive(keda.ref(**META), timeout=60)
    try:
        replies = iter(stream)
        assert next(replies).result is True
        # the traffic stops: the pods' exports wake the stream (it waits on every series the
        # planner reads), and once the hold has passed it sends the change
        _fleet(svc, seconds=120, load=Load(), fleet=fleet)
        assert next(replies).result is False
    finally:
        stream.cancel()


def test_two_scaler_instances_fed_the_same_data_answer_the_same(start: Start, fleet: Fleet) -> None:
    """Each instance gets every pod's export through one of the OpenTelemetry SDK's exporters
    (one over gRPC, one over HTTP); both answer the same, down to every figure of the plan."""
    one, two = start(fleet.clock), start(fleet.clock)
    exporters = [
        GrpcExporter(endpoint=f"127.0.0.1:{one.ports.otlp}", insecure=True),
        HttpExporter(endpoint=f"{two.http}/v1/metrics"),
    ]
    sinks = [sdk_sink(e) for e in exporters]

    def both(request: Any) -> None:
        for sink in sinks:
            sink(request)

    keda_one, keda_two = Keda(one), Keda(two)
    answers: list[tuple[float, float]] = []
    try:
        # a load that rises, holds and falls: the answer moves through several values
        for running in itertools.chain(range(40, 200, 40), [240, 240, 120, 60, 20]):
            fleet.run(45, busy(running), both)
            answers.append((keda_one.metrics(**META).metricValueFloat, keda_two.metrics(**META).metricValueFloat))
            explained = [_planner_state(svc) for svc in (one, two)]
            assert explained[0] == explained[1]  # every input, bound and intermediate figure
    finally:
        for exporter in exporters:
            exporter.shutdown()
    assert all(a == b for a, b in answers), answers
    assert len({a for a, _ in answers}) >= 3, answers  # the load moved the answer


def _planner_state(svc: RunningService) -> dict[str, Any]:
    reply = httpx.get(svc.http + "/api/v1/scaledobjects")
    assert reply.status_code == 200, reply.text
    (so,) = reply.json()["scaledObjects"]
    (trigger,) = so["triggers"]
    state: dict[str, Any] = trigger["planner"]
    assert state["result"]["desired"] == trigger["value"]
    return state


def test_a_restart_from_the_snapshot_answers_the_same(start: Start, fleet: Fleet, tmp_path: Path) -> None:
    snapshot = str(tmp_path / "store.snap")
    settings = {"snapshot_path": snapshot, "retention_seconds": 900.0}
    before = start(fleet.clock, **settings)
    _fleet(before, seconds=90, load=busy(60), fleet=fleet)
    _fleet(before, seconds=90, load=busy(180), fleet=fleet)
    answer = Keda(before).metrics(**META).metricValueFloat
    assert answer >= 2.0  # 18000 tokens/s at 5000-9000 per replica (hint and learned capacity)
    before.stop()  # SIGTERM's path: the snapshot is written
    after = start(fleet.clock, **settings)
    assert Keda(after).metrics(**META).metricValueFloat == answer
