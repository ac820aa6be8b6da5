"""The scaler's real core, in-process, on the lab's clock: the one module that composes it.

The objects ``keda-otel-scaler serve`` builds — its composition root, :class:`scaler.app.Service`,
constructed and never started (no listener, no housekeeping task):

* OTLP requests from the simulated collectors go through :class:`scaler.receiver.Ingestor`
  (the native ingest path when it is built, else the reference translation
  :mod:`scaler.otlp`, into :class:`scaler.store.Store`), as their wire bytes;
* KEDA's calls go to the real :class:`scaler.keda.ExternalScaler` servicer — trigger
  parsing and caching, the query engine, clamping, activation, ``errIfNotFound``, the
  warm-up — called directly with a minimal ``ServicerContext`` stand-in whose ``abort``
  raises, and turned into the :class:`~scaler.sim.keda_emulator.ScalerCallError` the KEDA
  emulation expects from any transport;
* the store's clock is ``EPOCH + clock()`` (the virtual time of the run), and the warm-up
  after start (``WARMUP_SECONDS``) is counted on ``clock()`` from the scaler's creation;
* retention housekeeping (``Store.collect``) runs every 10 s of that time, as the service's
  sweep does.

Settings are the service defaults (``config.load`` with no flags and no environment, so a
run does not depend on the shell it starts in); they equal what ``manifests/scaler`` deploys.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any, NoReturn, cast

import grpc
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.metrics.v1 import metrics_pb2

from scaler import app, config, trigger
from scaler._gen import externalscaler_pb2 as pb
from scaler.sim.keda_emulator import ScalerCallError, ScalerCalls

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


class InProcessScaler(ScalerCalls):
    """The scaler's store, OTLP ingestion and KEDA servicer on a given clock.

    Implements :class:`scaler.sim.run.MetricsSink` and
    :class:`scaler.sim.keda_emulator.ExternalScalerClient`. The objects are the ones the
    service's composition root builds (:class:`scaler.app.Service`, never started: no
    listener, no housekeeping task), on the lab's clock.
    """

    def __init__(self, clock: Callable[[], float], settings: config.Settings | None = None) -> None:
        self.clock = clock
        self.service = app.Service(
            settings or config.load({}, {}), clock=lambda: EPOCH + clock(), monotonic=clock, offload=trigger.inline
        )
        self.settings = self.service.settings
        self.store = self.service.store
        self.ingestor = self.service.ingestor
        self.servicer = self.service.scaler
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

    async def _call(self, method: str, request: Any) -> Any:
        try:
            return await getattr(self.servicer, method)(request, cast(Any, _Context()))
        except _Abort as exc:
            raise ScalerCallError(exc.code.name, exc.details) from None

    async def stream_is_active(self, ref: pb.ScaledObjectRef) -> AsyncIterator[pb.IsActiveResponse]:
        stream = self.servicer.StreamIsActive(ref, cast(Any, _Context()))
        try:
            async for message in stream:
                yield message
        except _Abort as exc:
            raise ScalerCallError(exc.code.name, exc.details) from None
        finally:
            await stream.aclose()  # type: ignore[attr-defined]
