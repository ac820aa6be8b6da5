"""KEDA emulation against a fake scaler client: activation, cooldown, fallback, HPA path, push streams."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from typing import Any

import grpc
import pytest

from scaler._gen import externalscaler_pb2 as pb
from scaler.sim.keda_emulator import ScaledObjectEmulator, ScalerCallError
from scaler.sim.manifests import Fallback, ScaledObject, ScaledTrigger

TRIGGER = ScaledTrigger(
    0, "external", "queue", "AverageValue", {"query": "q", "targetValue": "4", "scalerAddress": "x:1"}
)
SO = ScaledObject(
    name="so", namespace="ns", target="dep", min_replicas=0, max_replicas=10, polling_interval=5,
    cooldown_period=60, initial_cooldown_period=0, idle_replica_count=None, fallback=None, behavior=None,
    triggers=(TRIGGER,), source="test",
)  # fmt: skip


def rpc_error(code: grpc.StatusCode) -> ScalerCallError:
    return ScalerCallError(code.name, "boom")


@dataclass
class FakeScaler:
    value: float = 0.0
    error: grpc.StatusCode | None = None
    calls: list[tuple[str, Any]] = field(default_factory=list)
    stream: list[bool] = field(default_factory=list)

    async def get_metric_spec(self, ref: pb.ScaledObjectRef) -> pb.GetMetricSpecResponse:
        self.calls.append(("GetMetricSpec", dict(ref.scalerMetadata)))
        return pb.GetMetricSpecResponse(
            metricSpecs=[pb.MetricSpec(metricName="queue", targetSize=4, targetSizeFloat=4)]
        )

    async def get_metrics(self, req: pb.GetMetricsRequest) -> pb.GetMetricsResponse:
        self.calls.append(("GetMetrics", req.metricName))
        if self.error is not None:
            raise rpc_error(self.error)
        return pb.GetMetricsResponse(
            metricValues=[pb.MetricValue(metricName=req.metricName, metricValueFloat=self.value)]
        )

    async def is_active(self, ref: pb.ScaledObjectRef) -> pb.IsActiveResponse:
        self.calls.append(("IsActive", None))
        return pb.IsActiveResponse(result=self.value > 0)

    async def stream_is_active(self, ref: pb.ScaledObjectRef) -> AsyncIterator[pb.IsActiveResponse]:
        for result in self.stream:
            yield pb.IsActiveResponse(result=result)
        raise rpc_error(grpc.StatusCode.UNAVAILABLE)


@dataclass
class Target:
    spec: int = 0
    scaled: list[int] = field(default_factory=list)

    def spec_replicas(self, name: str) -> int:
        return self.spec

    def status_replicas(self, name: str) -> int:
        return self.spec

    def ready_replicas(self, name: str) -> int:
        return self.spec

    def scale(self, name: str, replicas: int) -> None:
        self.spec = replicas
        self.scaled.append(replicas)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def emulator(so: ScaledObject = SO, spec: int = 0, **kw: Any) -> tuple[ScaledObjectEmulator, FakeScaler, Target, Clock]:
    stub, target, clock = FakeScaler(**kw), Target(spec), Clock()
    emu = ScaledObjectEmulator(so, stub, target, clock, "127.0.0.1:4318")
    return emu, stub, target, clock


def test_calls_look_like_kedas() -> None:
    emu, stub, _, _ = emulator(spec=1, value=3)
    asyncio.run(emu.check())
    assert [c[0] for c in stub.calls] == ["GetMetricSpec", "GetMetrics", "IsActive"]
    assert stub.calls[0][1]["scalerAddress"] == "127.0.0.1:4318"  # rewritten to the local scaler
    assert stub.calls[1][1] == "s0-queue"  # KEDA's HPA metric name
    assert emu.values() == {"queue": 3.0}


def test_activation_from_zero_and_cooldown_back_to_zero() -> None:
    emu, stub, target, clock = emulator(value=0)
    asyncio.run(emu.check())
    assert target.scaled == []  # inactive at zero: nothing to do
    stub.value = 2
    asyncio.run(emu.check())
    assert target.spec == 1  # 0 -> max(minReplicaCount, 1)
    stub.value = 0
    clock.now = 30
    asyncio.run(emu.check())
    assert target.spec == 1  # cooldownPeriod (60 s) not over
    clock.now = 61
    asyncio.run(emu.check())
    assert target.scaled == [1, 0]


def test_time_scale_compresses_the_cooldown() -> None:
    emu, stub, target, clock = emulator(value=1)
    emu.time_scale = 0.1
    asyncio.run(emu.check())
    stub.value = 0
    clock.now = 6.5
    asyncio.run(emu.check())
    assert target.spec == 0


def test_below_min_replica_count_is_raised() -> None:
    emu, _, target, _ = emulator(replace(SO, min_replicas=2), spec=1, value=0)
    asyncio.run(emu.check())
    assert target.spec == 2


def test_hpa_path_scales_on_the_metric() -> None:
    emu, _, target, _ = emulator(spec=1, value=10)  # ceil(10 / 4) = 3
    asyncio.run(emu.hpa_sync())
    assert target.spec == 3 and emu.hpa_desired == 3


@pytest.mark.parametrize(("behavior", "expected"), [("static", 2), ("currentReplicasIfHigher", 5)])
def test_fallback_after_the_failure_threshold(behavior: str, expected: int) -> None:
    no_window = {"scaleDown": {"stabilizationWindowSeconds": 0}}
    so = replace(SO, min_replicas=1, fallback=Fallback(2, 2, behavior), behavior=no_window)
    emu, _, target, _ = emulator(so, spec=5, error=grpc.StatusCode.NOT_FOUND)
    for _ in range(2):
        asyncio.run(emu.hpa_sync())
    assert target.scaled == []  # 2 failures: the metric is invalid, the HPA keeps its size
    asyncio.run(emu.hpa_sync())  # 3 > failureThreshold: fallback value = replicas x target
    assert target.spec == expected
    assert emu.triggers[0].error.startswith("NOT_FOUND")


def test_push_stream_messages_request_scaling_at_once() -> None:
    so = replace(SO, triggers=(replace(TRIGGER, type="external-push"),))
    emu, _, target, _ = emulator(so, stream=[False, True])

    async def run() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(emu._stream(emu.triggers[0], stop))
        for _ in range(50):
            await asyncio.sleep(0.01)
            if target.spec:
                break
        stop.set()
        await task

    asyncio.run(run())
    assert target.scaled == [1]
