"""KEDA ``externalscaler.ExternalScaler`` servicer: a thin adapter over triggers and queries.

* ``GetMetricSpec`` reads only the (cached) metadata.
* Every RPC reads the trigger through :func:`scaler.trigger.read_async` and only maps the
  :class:`~scaler.trigger.Reading` to a reply (:meth:`Trigger.metric_value`,
  :meth:`Trigger.is_active`) or, through :func:`answer_of`, to a gRPC status.
* During the warm-up after start (``WARMUP_SECONDS``), a query that finds no data answers
  ``UNAVAILABLE`` instead of "not found": the collectors have not pushed yet, and a 0 would
  make the HPA scale down. KEDA/HPA hold the current replicas on an error. StreamIsActive
  sends nothing for such a trigger until data arrives or the warm-up ends.
* ``StreamIsActive`` sends the current state, then re-evaluates only when the store ingests
  samples the query may select (plus a slow recheck so windows that age out without new data
  still flip), and sends a message when the state changes; with
  ``IS_ACTIVE_POLLING_INTERVAL_MS`` (kedify/otel-add-on's chart sets 500) it also repeats the
  state so that no two messages are further apart than that. :mod:`scaler.streams` decides
  whom an append wakes and refuses a stream past ``MAX_STREAMS`` (``RESOURCE_EXHAUSTED``,
  counted in ``keda_streams_refused_total``).
* Compat-form readings also feed kedify/otel-add-on's self-metrics (``keda_otel_scaler_*``).
* ``StreamMetricSpec`` sends the spec once (it changes only with the metadata, and KEDA opens
  a new stream when the ScaledObject changes) and holds the stream open.
* Every call, reading and error is recorded in the :class:`scaler.status.Registry` (O(1) each),
  per ScaledObject and trigger: what ``GET /api/v1/scaledobjects`` and ``/ui`` show.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, NoReturn

import grpc

from scaler import query
from scaler._gen import externalscaler_pb2 as pb
from scaler._gen import externalscaler_pb2_grpc as pb_grpc
from scaler.logs import RateLimitedLog
from scaler.selfmetrics import SelfMetrics, go_labels
from scaler.status import Registry
from scaler.store import Store
from scaler.streams import StreamHub, StreamsExhausted
from scaler.trigger import (
    AnyTrigger,
    Offload,
    Reading,
    State,
    Trigger,
    TriggerCache,
    TriggerError,
    inline,
    metric_name_of,
    read_async,
)

logger = logging.getLogger(__name__)

Context = grpc.aio.ServicerContext[Any, Any]
_METHODS = ("IsActive", "GetMetricSpec", "GetMetrics", "StreamIsActive")
"""The methods whose latency ``keda_request_duration_seconds`` records."""


@dataclass(frozen=True, slots=True)
class Status:
    """A gRPC error to answer with instead of a number."""

    code: grpc.StatusCode
    message: str


def answer_of(ref: pb.ScaledObjectRef, reading: Reading) -> float | Status:
    """What a reading is answered with: its number (the value, or the fallback when nothing
    was found), or the gRPC status that tells KEDA why there is none."""
    if reading.number is not None:
        return reading.number
    if reading.state is State.HOLD:
        return Status(grpc.StatusCode.UNAVAILABLE, f"{_who(ref)}: {reading.message}")
    if reading.state is State.INVALID:
        return Status(grpc.StatusCode.INVALID_ARGUMENT, f"{_who(ref)}: metadata key 'query': {reading.message}")
    return Status(grpc.StatusCode.NOT_FOUND, f"{_who(ref)}: {reading.message}")


class ExternalScaler(pb_grpc.ExternalScalerServicer):
    def __init__(
        self,
        store: Store,
        engine: query.Engine,
        triggers: TriggerCache,
        metrics: SelfMetrics,
        recheck_seconds: float = 5.0,
        warming: Callable[[], bool] = lambda: False,
        heartbeat_seconds: float | None = None,
        status: Registry | None = None,
        streams: StreamHub | None = None,
        offload: Offload = inline,
    ) -> None:
        self.store = store
        self.offload = offload
        """How a planner trigger's decision is computed (:data:`scaler.trigger.Offload`)."""
        self.engine = engine
        self.triggers = triggers
        self.metrics = metrics
        self.warming = warming
        self.heartbeat_seconds = heartbeat_seconds
        """The longest gap between two StreamIsActive messages (None: send on changes only)."""
        self.status = status or Registry(store.clock, store.limits.retention_seconds)
        self.streams = streams or StreamHub(store, max_streams=20_000, recheck_seconds=recheck_seconds)
        self._log = RateLimitedLog(logger)
        self._latency = {method: metrics.keda_latency.labels(method) for method in _METHODS}
        """The latency histogram's child per method, bound once (``labels()`` locks and validates)."""

    @property
    def recheck_seconds(self) -> float:
        """A stream not evaluated this long is evaluated again (:class:`StreamHub`)."""
        return self.streams.recheck_seconds

    @recheck_seconds.setter
    def recheck_seconds(self, seconds: float) -> None:
        self.streams.recheck_seconds = seconds

    # ------------------------------------------------------------------ helpers

    async def _fail(
        self, context: Context, ref: pb.ScaledObjectRef, metric: str, method: str, status: Status
    ) -> NoReturn:
        self.metrics.keda_errors.labels(method, status.code.name).inc()
        self.status.failed(ref.namespace, ref.name, metric, method, status.code.name, status.message)
        await context.abort(status.code, status.message)
        raise AssertionError("unreachable")  # pragma: no cover - abort raises

    async def _trigger(self, ref: pb.ScaledObjectRef, context: Context, method: str) -> AnyTrigger:
        try:
            trigger = self.triggers.get(ref.scalerMetadata)
        except TriggerError as exc:
            metric = metric_name_of(ref.scalerMetadata)
            self.status.refused(ref.namespace, ref.name, metric, method, str(exc))
            status = Status(grpc.StatusCode.INVALID_ARGUMENT, f"{_who(ref)}: {exc}")
            await self._fail(context, ref, metric, method, status)
        self.status.asked(ref.namespace, ref.name, trigger, method)
        return trigger

    async def _read(self, ref: pb.ScaledObjectRef, trigger: AnyTrigger) -> Reading:
        """Every evaluation of a trigger goes through here (one place to observe readings)."""
        reading = await read_async(trigger, self.engine, self.store.now_ms(), self.warming(), self.offload)
        if isinstance(trigger, Trigger):
            self.metrics.kedify.read_compat(trigger.query, reading)
        self.status.read(ref.namespace, ref.name, trigger, reading)
        return reading

    async def _reading(self, ref: pb.ScaledObjectRef, trigger: AnyTrigger, context: Context, method: str) -> Reading:
        """A reading with a number, or the call fails with the status that says why there is none."""
        reading = await self._read(ref, trigger)
        answer = answer_of(ref, reading)
        if isinstance(answer, Status):
            await self._fail(context, ref, trigger.metric_name, method, answer)
        return reading

    def _record(self, ref: pb.ScaledObjectRef, trigger: AnyTrigger, value: float | None, active: bool | None) -> None:
        # the trigger's own name (metricName, else from its query): a ScaledObject's compat triggers all
        # answer GetMetricSpec with <namespace>-<name>, and the status registry evicts by this key
        labels = (ref.namespace, ref.name, trigger.metric_name)
        if value is not None:
            self.metrics.trigger_value.labels(*labels).set(value)
            self.metrics.trigger_target.labels(*labels).set(trigger.target)
            if isinstance(trigger, Trigger) and (compat := trigger.query.compat) is not None:
                self.metrics.kedify.answered(
                    compat.name,
                    go_labels(compat.labels),
                    trigger.query.operation,
                    compat.aggregation,
                    (ref.name, ref.namespace),
                    value,
                )
        if active is not None:
            self.metrics.trigger_active.labels(*labels).set(1.0 if active else 0.0)

    # ------------------------------------------------------------------ RPCs

    async def IsActive(self, request: pb.ScaledObjectRef, context: Context) -> pb.IsActiveResponse:  # noqa: N802
        with self._latency["IsActive"].time():
            trigger = await self._trigger(request, context, "IsActive")
            active = trigger.is_active(await self._reading(request, trigger, context, "IsActive"))
            self._record(request, trigger, None, active)
            return pb.IsActiveResponse(result=active)

    async def GetMetricSpec(self, request: pb.ScaledObjectRef, context: Context) -> pb.GetMetricSpecResponse:  # noqa: N802
        with self._latency["GetMetricSpec"].time():
            trigger = await self._trigger(request, context, "GetMetricSpec")
            return _spec(request, trigger)

    async def GetMetrics(self, request: pb.GetMetricsRequest, context: Context) -> pb.GetMetricsResponse:  # noqa: N802
        with self._latency["GetMetrics"].time():
            ref = request.scaledObjectRef
            trigger = await self._trigger(ref, context, "GetMetrics")
            value = trigger.metric_value(await self._reading(ref, trigger, context, "GetMetrics"))
            self._record(ref, trigger, value, None)
            return pb.GetMetricsResponse(
                metricValues=[
                    pb.MetricValue(
                        metricName=request.metricName or trigger.metric_name_for(ref.namespace, ref.name),
                        metricValue=math.ceil(value),
                        metricValueFloat=value,
                    )
                ]
            )

    async def StreamIsActive(  # noqa: N802
        self, request: pb.ScaledObjectRef, context: Context
    ) -> AsyncIterator[pb.IsActiveResponse]:
        trigger = await self._trigger(request, context, "StreamIsActive")
        try:
            watch = self.streams.open(trigger.expr)
        except StreamsExhausted as exc:
            self.metrics.streams_refused.labels("max_streams").inc()
            self._log.emit("streams", "StreamIsActive refused for %s: %s", _who(request), exc)
            refused = Status(grpc.StatusCode.RESOURCE_EXHAUSTED, f"{_who(request)}: {exc}")
            await self._fail(context, request, trigger.metric_name, "StreamIsActive", refused)
        self.metrics.streams.inc()
        heartbeat = self.heartbeat_seconds
        try:
            last: bool | None = None
            sent = -math.inf
            while True:
                watch.begin()
                started = time.perf_counter()
                reading = await self._read(request, trigger)
                answer = answer_of(request, reading)
                if isinstance(answer, Status):
                    if reading.state is not State.HOLD:  # a hold sends nothing until data arrives
                        await self._fail(context, request, trigger.metric_name, "StreamIsActive", answer)
                elif (active := trigger.is_active(reading)) != last or (
                    heartbeat is not None and time.monotonic() - sent >= heartbeat
                ):
                    if active != last:
                        self._record(request, trigger, None, active)
                    last, sent = active, time.monotonic()
                    self._latency["StreamIsActive"].observe(time.perf_counter() - started)
                    yield pb.IsActiveResponse(result=active)
                if heartbeat is None:
                    await watch.wait()
                else:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(watch.wait(), max(0.0, sent + heartbeat - time.monotonic()))
        finally:
            watch.close()
            self.metrics.streams.dec()

    async def StreamMetricSpec(  # noqa: N802
        self, request: pb.ScaledObjectRef, context: Context
    ) -> AsyncIterator[pb.GetMetricSpecResponse]:
        trigger = await self._trigger(request, context, "StreamMetricSpec")
        yield _spec(request, trigger)
        await asyncio.Event().wait()  # the spec only changes with the metadata: hold until cancelled


def _spec(ref: pb.ScaledObjectRef, trigger: AnyTrigger) -> pb.GetMetricSpecResponse:
    return pb.GetMetricSpecResponse(
        metricSpecs=[
            pb.MetricSpec(
                metricName=trigger.metric_name_for(ref.namespace, ref.name),
                targetSize=math.ceil(trigger.target),
                targetSizeFloat=trigger.target,
            )
        ]
    )


def _who(ref: pb.ScaledObjectRef) -> str:
    return f"ScaledObject {ref.namespace}/{ref.name}" if ref.name else "ScaledObject"
