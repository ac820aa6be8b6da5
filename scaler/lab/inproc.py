"""The scaler's real core, in-process, on the lab's clock: the one module that composes it.

The same objects ``keda-otel-scaler serve`` builds (:mod:`scaler.app`), without its servers:

* OTLP requests from the simulated collectors go through :class:`scaler.receiver.Ingestor`
  (the real translation, :mod:`scaler.otlp`, into :class:`scaler.store.Store`);
* KEDA's calls go to the real :class:`scaler.keda.ExternalScaler` servicer — trigger
  parsing and caching, the query engine, clamping, activation, ``errIfNotFound``, the
  warm-up — called directly with a minimal ``ServicerContext`` stand-in whose ``abort``
  raises, and turned into the :class:`~scaler.sim.keda_emulator.ScalerCallError` the KEDA
  emulation expects from any transport;
* the store's clock is ``EPOCH + clock()`` (the virtual time of the run), and so is the
  warm-up after start (``WARMUP_SECONDS``, counted from virtual time 0);
* retention housekeeping (``Store.collect``) runs every 10 s of that time, as the service's
  sweep does.

Settings are the service defaults (``config.load`` with no flags and no environment, so a
run does not depend on the shell it starts in); they equal what ``manifests/scaler`` deploys.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, NoReturn, cast

import grpc
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.metrics.v1 import metrics_pb2

from scaler import config, query, receiver
from scaler._gen import externalscaler_pb2 as pb
from scaler.keda import ExternalScaler
from scaler.selfmetrics import SelfMetrics
from scaler.sim.keda_emulator import ScalerCallError
from scaler.store import Store
from scaler.trigger import Defaults, TriggerCache

EPOCH = 1_767_225_600.0
"""Virtual time 0 as a Unix time (2026-01-01T00:00:00Z): fixed, so runs are reproducible."""

GC_SECONDS = 10.0


class _Abort(Exception):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details


class _Context:
    """What the servicer uses of ``grpc.aio.ServicerContext``."""

    async def abort(self, code: grpc.StatusCode, details: str = "", trailing_metadata: Any = ()) -> NoReturn:
        raise _Abort(code, details)

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return ()

    def peer(self) -> str:
        return "lab"

    def set_trailing_metadata(self, metadata: Any) -> None:
        return None

    def cancelled(self) -> bool:
        return False

    def done(self) -> bool:
        return False

    def time_remaining(self) -> float | None:
        return None


class InProcessScaler:
    """The scaler's store, OTLP ingestion and KEDA servicer on a given clock.

    Implements :class:`scaler.sim.run.MetricsSink` and
    :class:`scaler.sim.keda_emulator.ExternalScalerClient`.
    """

    def __init__(self, clock: Callable[[], float], settings: config.Settings | None = None) -> None:
        s = settings or config.load({}, {})
        self.settings = s
        self.clock = clock
        self.store = Store(s.limits, lambda: EPOCH + clock())
        self.engine = query.Engine(self.store)
        self.metrics = SelfMetrics(lambda: self.store.series_count)
        self.ingestor = receiver.Ingestor(self.store, s.promotions, self.metrics)
        self.triggers = TriggerCache(Defaults(s.retention_seconds, s.value_if_not_found, s.error_if_not_found))
        warm_until = clock() + s.warmup_seconds
        self.servicer = ExternalScaler(
            self.store, self.engine, self.triggers, self.metrics, warming=lambda: clock() < warm_until
        )
        self.rejected = 0
        """Samples the store turned away (a healthy run has none)."""
        self._collected_at = clock()

    # ------------------------------------------------------------------ OTLP (MetricsSink)

    async def export(self, resources: list[metrics_pb2.ResourceMetrics]) -> None:
        request = ExportMetricsServiceRequest(resource_metrics=resources)
        outcome = await self.ingestor.ingest(request, "grpc")
        self.rejected += outcome.response.partial_success.rejected_data_points
        if self.clock() - self._collected_at >= GC_SECONDS:
            self._collected_at = self.clock()
            self.store.collect()

    # ------------------------------------------------------------------ KEDA (ExternalScalerClient)

    async def _call(self, method: Callable[[Any, Any], Awaitable[Any]], request: Any) -> Any:
        try:
            return await method(request, cast(Any, _Context()))
        except _Abort as exc:
            raise ScalerCallError(exc.code.name, exc.details) from None

    async def get_metric_spec(self, ref: pb.ScaledObjectRef) -> pb.GetMetricSpecResponse:
        reply: pb.GetMetricSpecResponse = await self._call(self.servicer.GetMetricSpec, ref)
        return reply

    async def get_metrics(self, request: pb.GetMetricsRequest) -> pb.GetMetricsResponse:
        reply: pb.GetMetricsResponse = await self._call(self.servicer.GetMetrics, request)
        return reply

    async def is_active(self, ref: pb.ScaledObjectRef) -> pb.IsActiveResponse:
        reply: pb.IsActiveResponse = await self._call(self.servicer.IsActive, ref)
        return reply

    async def stream_is_active(self, ref: pb.ScaledObjectRef) -> AsyncIterator[pb.IsActiveResponse]:
        stream = self.servicer.StreamIsActive(ref, cast(Any, _Context()))
        try:
            async for message in stream:
                yield message
        except _Abort as exc:
            raise ScalerCallError(exc.code.name, exc.details) from None
        finally:
            await stream.aclose()  # type: ignore[attr-defined]
