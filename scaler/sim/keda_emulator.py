"""KEDA's operator and metrics path plus the HPA, driving a scale target through "the scaler".

Per ScaledObject, as KEDA 2.x does for ``external``/``external-push`` triggers
(``pkg/scalers/external_scaler.go``, ``pkg/scaling``):

* **Operator loop** every ``pollingInterval``: per trigger ``GetMetricSpec``, ``GetMetrics``
  then ``IsActive``; the ScaledObject is active if any trigger is. Then KEDA's
  ``RequestScale``: active at 0 replicas → ``max(minReplicaCount, 1)``; inactive with
  ``minReplicaCount: 0`` → 0 (or ``idleReplicaCount``) once ``cooldownPeriod`` has passed
  since the last active poll (``initialCooldownPeriod`` after creation); below
  ``minReplicaCount`` → ``minReplicaCount``; inactive with a failing trigger past the
  fallback threshold → the fallback replicas.
* **Metrics path** (what the HPA reads through KEDA's metrics server) every HPA sync:
  per trigger ``GetMetricSpec`` (target = ``targetSizeFloat``, metric ``s<i>-<metricName>``),
  ``GetMetrics`` and ``IsActive``. A gRPC error counts a failure for the trigger (a success
  resets it); after more than ``fallback.failureThreshold`` failures the metric becomes
  ``fallback replicas × target`` (``behavior``: static, currentReplicas,
  currentReplicasIfHigher, currentReplicasIfLower), otherwise the metric is invalid for the HPA.
* **HPA** (``scaler.sim.hpa``) with ``minReplicas = max(minReplicaCount, 1)``,
  ``maxReplicaCount`` and ``advanced.horizontalPodAutoscalerConfig.behavior``.
* **external-push**: a ``StreamIsActive`` stream per trigger; each message is handed to
  ``RequestScale`` at once (as KEDA's push-scaler loop does). Broken streams reconnect with
  KEDA's backoff (2 s doubling to 60 s).

The emulator is independent of the transport and of wall time. "The scaler" is an
:class:`ExternalScalerClient`: :class:`GrpcScaler` talks to a running scaler over real gRPC
(the demo); the evaluation lab passes an in-process one. Time is the running event loop's
(``loop.time()`` for the periodic loops, ``clock`` for events and cooldowns), which is the
wall clock in the demo and a virtual clock in the lab.

``time_scale`` multiplies every timer (HPA sync period, pollingInterval, cooldown, the
HPA's stabilization windows and policy periods, the stream backoff); it is the demo's
compression, 1 (real Kubernetes timings) in the lab. Not emulated: KEDA's
metric caching (``useCachedMetrics``), scaling modifiers, paused annotations, the HPA's
CPU-initialization/readiness handling (not used for external metrics), per-HPA tolerance
overrides, and the API server's write latency (a new replica count applies at once).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import grpc

from scaler._gen import externalscaler_pb2 as pb
from scaler._gen import externalscaler_pb2_grpc as pb_grpc
from scaler.sim.hpa import Hpa, Reading, parse_behavior
from scaler.sim.manifests import ScaledObject, ScaledTrigger

logger = logging.getLogger(__name__)


class ScaleTarget(Protocol):
    """The scale subresource of the Deployments (``spec``/``status`` replicas)."""

    def spec_replicas(self, name: str) -> int: ...
    def status_replicas(self, name: str) -> int: ...
    def ready_replicas(self, name: str) -> int: ...
    def scale(self, name: str, replicas: int) -> None: ...


class ScalerCallError(Exception):
    """A call to the scaler failed with a gRPC status (``code`` is its name, e.g. ``NOT_FOUND``)."""

    def __init__(self, code: str, details: str) -> None:
        super().__init__(f"{code}: {details}")
        self.code = code
        self.details = details


class ExternalScalerClient(Protocol):
    """KEDA's side of ``externalscaler.ExternalScaler``; failures raise :class:`ScalerCallError`."""

    async def get_metric_spec(self, ref: pb.ScaledObjectRef) -> pb.GetMetricSpecResponse: ...
    async def get_metrics(self, request: pb.GetMetricsRequest) -> pb.GetMetricsResponse: ...
    async def is_active(self, ref: pb.ScaledObjectRef) -> pb.IsActiveResponse: ...
    def stream_is_active(self, ref: pb.ScaledObjectRef) -> AsyncIterator[pb.IsActiveResponse]: ...


class ScalerCalls:
    """The three unary calls of :class:`ExternalScalerClient`, typed, over one ``_call``."""

    async def _call(self, method: str, request: Any) -> Any:
        raise NotImplementedError

    async def get_metric_spec(self, ref: pb.ScaledObjectRef) -> pb.GetMetricSpecResponse:
        reply: pb.GetMetricSpecResponse = await self._call("GetMetricSpec", ref)
        return reply

    async def get_metrics(self, request: pb.GetMetricsRequest) -> pb.GetMetricsResponse:
        reply: pb.GetMetricsResponse = await self._call("GetMetrics", request)
        return reply

    async def is_active(self, ref: pb.ScaledObjectRef) -> pb.IsActiveResponse:
        reply: pb.IsActiveResponse = await self._call("IsActive", ref)
        return reply


class GrpcScaler(ScalerCalls):
    """:class:`ExternalScalerClient` over a gRPC channel to a running scaler."""

    def __init__(self, channel: grpc.aio.Channel, timeout: float = 3.0) -> None:
        self.stub: Any = pb_grpc.ExternalScalerStub(channel)
        self.timeout = timeout

    async def _call(self, method: str, request: Any) -> Any:
        try:
            return await getattr(self.stub, method)(request, timeout=self.timeout)
        except grpc.aio.AioRpcError as exc:
            raise ScalerCallError(exc.code().name, exc.details() or "") from None

    async def stream_is_active(self, ref: pb.ScaledObjectRef) -> AsyncIterator[pb.IsActiveResponse]:
        try:
            async for message in self.stub.StreamIsActive(ref):
                yield message
        except grpc.aio.AioRpcError as exc:
            raise ScalerCallError(exc.code().name, exc.details() or "") from None


@dataclass
class TriggerState:
    trigger: ScaledTrigger
    metadata: dict[str, str]
    metric_name: str = ""
    target: float | None = None
    failures: int = 0
    value: float | None = None
    """The last value GetMetrics returned (what the report plots)."""
    active: bool | None = None
    error: str = ""


@dataclass
class Event:
    t: float
    scaled_object: str
    message: str


@dataclass
class ScaledObjectEmulator:
    so: ScaledObject
    scaler: ExternalScalerClient
    target: ScaleTarget
    clock: Callable[[], float]
    scaler_address: str
    time_scale: float = 1.0
    hpa_sync_seconds: float = 15.0
    events: list[Event] = field(default_factory=list)
    triggers: list[TriggerState] = field(init=False)
    hpa: Hpa = field(init=False)
    last_active: float | None = None
    hpa_desired: int | None = None

    def __post_init__(self) -> None:
        self.triggers = [
            TriggerState(t, dict(t.metadata) | {"scalerAddress": self.scaler_address}) for t in self.so.triggers
        ]
        self.hpa = Hpa(
            max(self.so.min_replicas, 1), self.so.max_replicas, parse_behavior(self.so.behavior).scaled(self.time_scale)
        )
        self._created = self.clock()
        self._lock = asyncio.Lock()

    # ------------------------------------------------------------------ the scaler

    def _ref(self, state: TriggerState) -> pb.ScaledObjectRef:
        return pb.ScaledObjectRef(name=self.so.name, namespace=self.so.namespace, scalerMetadata=state.metadata)

    async def _read(self, state: TriggerState) -> tuple[float, bool] | None:
        """GetMetricSpec, GetMetrics, IsActive for one trigger; None (and a failure) on error."""
        ref = self._ref(state)
        try:
            spec = await self.scaler.get_metric_spec(ref)
            metric = spec.metricSpecs[0]
            state.metric_name = metric.metricName
            state.target = metric.targetSizeFloat if metric.targetSizeFloat > 0 else float(metric.targetSize)
            request = pb.GetMetricsRequest(
                scaledObjectRef=ref, metricName=f"s{state.trigger.index}-{metric.metricName}"
            )
            reply = await self.scaler.get_metrics(request)
            mv = reply.metricValues[0]
            value = mv.metricValueFloat if mv.metricValueFloat > 0 else float(mv.metricValue)
            active = (await self.scaler.is_active(ref)).result
        except (ScalerCallError, IndexError) as exc:
            state.failures += 1
            state.error = str(exc) if isinstance(exc, ScalerCallError) else "EMPTY_REPLY: no metric in the reply"
            state.value = None
            return None
        state.failures, state.error, state.value, state.active = 0, "", value, active
        return value, active

    def _fallback_replicas(self) -> int:
        fb = self.so.fallback
        assert fb is not None
        current = self.target.spec_replicas(self.so.target)
        return {
            "currentReplicas": current,
            "currentReplicasIfHigher": max(current, fb.replicas),
            "currentReplicasIfLower": min(current, fb.replicas),
        }.get(fb.behavior, fb.replicas)

    def _in_fallback(self, state: TriggerState) -> bool:
        fb = self.so.fallback
        return fb is not None and state.trigger.metric_type == "AverageValue" and state.failures > fb.failure_threshold

    def _set(self, replicas: int, why: str) -> None:
        current = self.target.spec_replicas(self.so.target)
        if replicas != current:
            self.target.scale(self.so.target, replicas)
            self.events.append(Event(self.clock(), self.so.name, f"{current} → {replicas} ({why})"))

    # ------------------------------------------------------------------ operator loop

    async def check(self) -> None:
        """One KEDA operator poll: read every trigger, then RequestScale."""
        results = [await self._read(s) for s in self.triggers]
        active = any(r is not None and r[1] for r in results)
        error = any(r is None for r in results)
        self.request_scale(active, error)

    def request_scale(self, active: bool, error: bool) -> None:
        so, now = self.so, self.clock()
        current = self.target.spec_replicas(so.target)
        if active:
            self.last_active = now
            if current == 0 or (so.idle_replica_count is not None and current < so.min_replicas):
                self._set(max(so.min_replicas, 1), "KEDA: a trigger is active")
            return
        if error and so.fallback is not None and any(self._in_fallback(s) for s in self.triggers):
            self._set(self._fallback_replicas(), "KEDA fallback: trigger failing")
        elif (so.idle_replica_count is not None and current > so.idle_replica_count) or (
            current > 0 and so.min_replicas == 0
        ):
            since = self.last_active if self.last_active is not None else self._created
            wait = (
                so.cooldown_period if self.last_active is not None else so.initial_cooldown_period
            ) * self.time_scale
            if now - since >= wait:
                self._set(so.idle_replica_count or 0, "KEDA: no trigger active for cooldownPeriod")
        elif current < so.min_replicas and so.idle_replica_count is None:
            self._set(so.min_replicas, "KEDA: below minReplicaCount")

    # ------------------------------------------------------------------ metrics path + HPA

    async def hpa_sync(self) -> None:
        readings: list[Reading | None] = []
        for state in self.triggers:
            result = await self._read(state)
            if result is not None and state.target is not None:
                readings.append(Reading(result[0], state.target, state.trigger.metric_type))
            elif self._in_fallback(state) and state.target is not None:
                readings.append(Reading(self._fallback_replicas() * state.target, state.target))
            else:
                readings.append(None)
        name = self.so.target
        decision = self.hpa.reconcile(
            self.clock(),
            self.target.spec_replicas(name),
            self.target.status_replicas(name),
            self.target.ready_replicas(name),
            readings,
        )
        self.hpa_desired = decision.proposal
        if decision.rescale:
            self._set(decision.desired, f"HPA: {decision.reason}")

    # ------------------------------------------------------------------ loops

    async def _every(self, period: float, action: Callable[[], Awaitable[None]], stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while not stop.is_set():
            async with self._lock:
                await action()
            next_at += period
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), max(0.0, next_at - loop.time()))

    async def _stream(self, state: TriggerState, stop: asyncio.Event) -> None:
        backoff = 2.0
        while not stop.is_set():
            try:
                async for message in self.scaler.stream_is_active(self._ref(state)):
                    backoff = 2.0
                    async with self._lock:
                        self.request_scale(message.result, False)
            except ScalerCallError as exc:
                if stop.is_set():
                    return
                logger.info("StreamIsActive %s/%s: %s; reconnecting", self.so.name, state.trigger.name, exc.code)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), backoff * self.time_scale)
            backoff = min(backoff * 2, 60.0)

    async def run(self, stop: asyncio.Event) -> None:
        tasks = [
            asyncio.create_task(self._every(self.so.polling_interval * self.time_scale, self.check, stop)),
            asyncio.create_task(self._every(self.hpa_sync_seconds * self.time_scale, self.hpa_sync, stop)),
        ]
        tasks += [
            asyncio.create_task(self._stream(s, stop)) for s in self.triggers if s.trigger.type == "external-push"
        ]
        try:
            await stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def values(self) -> dict[str, float | None]:
        return {s.metric_name or s.trigger.name: s.value for s in self.triggers}
