"""Composition root: one asyncio loop hosting the OTLP gRPC server, the KEDA gRPC server,
uvicorn, and the retention/TLS housekeeping task (:mod:`scaler.housekeeping`), after the
replica's warm start (:mod:`scaler.warmup`).

``Service`` is usable in-process (tests): ``async with Service(settings) as svc`` binds every
listener (ports may be 0) and exposes the bound ports; ``run`` is the CLI's blocking entry
point with SIGTERM/SIGINT → graceful stop → exit 0. Here the settings become components and
servers, which :mod:`scaler.listeners` binds, watches and stops. Every server is watched after
start: a listener that stops by itself is logged at once and stops the service (exit 1).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import time
from dataclasses import asdict, dataclass
from types import TracebackType
from typing import Any

import grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2

from scaler import __version__, api, api_prom, api_status, gctune, httpserver, peers, query, receiver, status
from scaler._gen import externalscaler_pb2, externalscaler_pb2_grpc
from scaler.config import Settings
from scaler.housekeeping import Housekeeping
from scaler.keda import ExternalScaler
from scaler.listeners import Listeners
from scaler.model import Clock
from scaler.persistence import Persistence
from scaler.selfmetrics import SelfMetrics, runtime_info
from scaler.store import Store
from scaler.streams import StreamHub
from scaler.tls import ReloadingSSLContext
from scaler.trigger import Offload, TriggerCache, in_thread
from scaler.warmup import WarmUp

logger = logging.getLogger(__name__)

_KEDA_MAX_MESSAGE_BYTES = 1 << 20
"""KEDA sends a ScaledObjectRef with its trigger metadata: a few KB."""
_KEDA_MIN_PENDING_CALLS = 4096
"""KEDA calls gRPC may queue before the service accepts them (at least; 2 × MAX_STREAMS)."""
_READY_POLL_SECONDS = 0.05
"""How soon after the first data (or the warm-up's end) a warming replica turns Ready."""


@dataclass(frozen=True)
class BoundPorts:
    """The ports the listeners got (the configured ones, or the free ones picked for 0)."""

    otlp: int
    keda: int
    http: int
    metrics: int
    """The internal-metrics port (kedify/otel-add-on's 8080): ``/metrics`` only, plain HTTP."""


class ServiceFailed(RuntimeError):
    """A listener stopped by itself after start."""


class Service:
    """The running scaler. See the module docstring."""

    def __init__(
        self,
        settings: Settings,
        clock: Clock = time.time,
        monotonic: Clock = time.monotonic,
        offload: Offload = in_thread,
    ) -> None:
        """``clock`` is the store's (Unix seconds); ``monotonic`` times the warm-up and the query
        engine's slices and timeouts (the evaluation lab injects its virtual time into both, so
        where a query lets the event loop run does not depend on the machine's load).
        ``offload`` computes planner decisions: in a worker thread, or inline in the lab (a
        thread would let its virtual clock run on while a decision is computed)."""
        self.settings = settings
        self.store = Store(settings.store, clock)
        q = settings.query
        self.engine = query.Engine(
            self.store,
            limits=query.QueryLimits(
                timeout_s=q.query_timeout_seconds,
                max_samples=q.query_max_samples,
                evaluation_interval_ms=round(q.evaluation_interval_seconds * 1000),
            ),
            clock=monotonic,
        )
        self.metrics = SelfMetrics(lambda: self.store.series_count, self.store.names)
        # a parsed trigger and a status entry per open stream stay kept (the stream holds the
        # trigger anyway), so KEDA's polls of that many ScaledObjects do not parse again
        per_trigger = status.trigger_capacity(settings.keda.max_streams)
        self.status = status.Registry(
            clock, settings.store.retention_seconds, max_triggers=per_trigger, on_evict=self.metrics.status_evicted
        )
        self.ingestor = receiver.Ingestor(self.store, settings.otlp, self.metrics, registry=self.status)
        self.triggers = TriggerCache(settings.triggers, settings.store.retention_seconds, size=per_trigger)
        self.persistence = Persistence(settings.snapshot.path, self.store, self.metrics)
        self.peers = peers.PeerClient(settings.peer, settings.rest_tls, self.metrics)
        self.warmup = WarmUp(self.store, self.persistence, self.peers, settings.triggers.warmup_seconds, monotonic)
        polling_ms = settings.keda.is_active_polling_interval_ms
        self.streams = StreamHub(self.store, settings.keda.max_streams)
        self.scaler = ExternalScaler(
            self.store,
            self.engine,
            self.triggers,
            self.metrics,
            warming=self.warmup.warming,
            heartbeat_seconds=None if polling_ms is None else polling_ms / 1000,
            status=self.status,
            streams=self.streams,
            offload=offload,
        )
        self.ports: BoundPorts | None = None
        """Set once every listener serves."""
        self._bound: BoundPorts | None = None
        """Set once every listener is bound (``/info`` may be asked in between)."""
        self.started_at = time.time()
        self.failed = asyncio.Event()
        """Set when a listener stops by itself after start (see :meth:`_failed`)."""
        self.listeners = Listeners(on_failure=self._failed)
        self.housekeeping = Housekeeping(
            self.store, self.persistence, settings.snapshot.interval_seconds, self.ingestor.turns
        )
        self._housekeeping_task: asyncio.Task[None] | None = None
        self._readiness: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> BoundPorts:
        """Bind and start every listener; on failure, stop what was started and re-raise."""
        try:
            return await self._start()
        except BaseException:
            await self.stop(grace=0)
            raise

    async def _start(self) -> BoundPorts:
        s, listen = self.settings, self.settings.listeners
        await self.warmup.warm_start()
        # gRPC reads messages up to twice the limit (after decompression) and the receiver
        # rejects and counts those over it; gRPC itself cuts larger ones while reading.
        read_limit = min(2 * self.ingestor.max_bytes, 2**31 - 1)
        otlp_server = grpc.aio.server(
            options=[("grpc.max_receive_message_length", read_limit), ("grpc.so_reuseport", 0)]
        )
        otlp_server.add_generic_rpc_handlers((receiver.MetricsService(self.ingestor).handler(),))
        otlp_port = await self.listeners.add_grpc(
            otlp_server,
            listen.otlp_address,
            listen.otlp_receiver_port,
            s.otlp_tls,
            "OTLP",
            metrics_service_pb2.DESCRIPTOR.services_by_name["MetricsService"].full_name,
        )
        # gRPC Python accepts calls one at a time; core queues the rest and past 1000 of them
        # starts cancelling new ones at random, uncounted (issue 20: 1,800 streams served of
        # 2,000). Room for a burst of every stream KEDA may open, so the service decides.
        pending = max(_KEDA_MIN_PENDING_CALLS, 2 * s.keda.max_streams)
        keda_server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", _KEDA_MAX_MESSAGE_BYTES),
                ("grpc.so_reuseport", 0),
                ("grpc.server.max_pending_requests", pending),
                ("grpc.server.max_pending_requests_hard_limit", pending),
            ]
        )
        externalscaler_pb2_grpc.add_ExternalScalerServicer_to_server(self.scaler, keda_server)
        keda_port = await self.listeners.add_grpc(
            keda_server,
            listen.keda_address,
            listen.keda_external_scaler_port,
            s.keda_tls,
            "KEDA",
            externalscaler_pb2.DESCRIPTOR.services_by_name["ExternalScaler"].full_name,
        )
        sockets = self._bind_http()
        http_port, metrics_port = (int(sock.getsockname()[1]) for sock in sockets)
        self._bound = BoundPorts(otlp_port, keda_port, http_port, metrics_port)
        self.metrics.kedify.info = self.kedify_info()
        await self._start_http(*sockets)
        self.ports = self._bound
        if self.ready():
            await self._mark_ready()
        else:
            self._readiness = asyncio.create_task(self._serve_when_ready(), name="readiness")
        self._housekeeping_task = asyncio.create_task(self.housekeeping.run(), name="housekeeping")
        logger.info(
            "keda-otel-scaler %s ready: otlp-grpc=%d keda-grpc=%d%s http=%d internal-metrics=%d "
            "(bound to %s, %s, %s, %s)",
            __version__,
            otlp_port,
            keda_port,
            " (TLS)" if s.keda_tls.active else "",
            http_port,
            metrics_port,
            listen.otlp_address,
            listen.keda_address,
            listen.rest_address,
            listen.listen_address,
        )
        return self.ports

    async def _serve_when_ready(self) -> None:
        """Turn the gRPC health SERVING once :meth:`ready` (with PEERS: data or the warm-up's end)."""
        while not self.ready():
            await asyncio.sleep(_READY_POLL_SECONDS)
        await self._mark_ready()

    async def _mark_ready(self) -> None:
        self.metrics.ready.set(1)
        await self.listeners.mark_serving()
        logger.info("ready: %s", self.warmup.reason())

    def _bind_http(self) -> tuple[socket.socket, socket.socket]:
        """The sockets of the HTTP API and of the internal-metrics listener."""
        listen = self.settings.listeners
        http_sock = httpserver.bind(listen.rest_address, listen.rest_api_port)
        try:
            return http_sock, httpserver.bind(
                listen.listen_address, listen.internal_metrics_port, "internal-metrics HTTP"
            )
        except OSError:
            http_sock.close()
            raise

    async def _start_http(self, http_sock: socket.socket, metrics_sock: socket.socket) -> None:
        """Serve the HTTP API and, on the internal-metrics port, ``/metrics`` alone."""
        s = self.settings
        app = httpserver.create_app(
            [api.memstore, api.operations, api_prom.router, api_status.router, receiver.router],
            [
                self.store,
                self.engine,
                self.ingestor,
                self.ingestor.turns,
                api.Host(self.info, self.ready, s.access.admin_token.get_secret_value()),
                api.PeerAccess(
                    s.peer.peer_token.get_secret_value(),
                    bool(s.rest_tls.ca_file),
                    self.warmup.warmed,
                    self.persistence.capture,
                ),
                api_status.StatusView.of(self.status, s.otlp.promotions, self.warmup.remaining),
            ],
            self.metrics,
            s.http,
            mounts=[api.docs_mount()],
        )
        reloading = ReloadingSSLContext(s.rest_tls) if s.rest_tls.active else None
        self.housekeeping.ssl = reloading
        await self._serve_http(
            app,
            http_sock,
            "http",
            ssl_context_factory=None if reloading is None else (lambda _config, _default: reloading.context),
        )
        internal = httpserver.create_app([api.internal_metrics], [], self.metrics, s.http)
        await self._serve_http(internal, metrics_sock, "internal-metrics")

    async def _serve_http(self, app: Any, sock: socket.socket, name: str, **extra: Any) -> None:
        config = httpserver.config(
            app, self.settings.http, self.metrics, self.settings.listeners.shutdown_grace_seconds, **extra
        )
        await self.listeners.add_http(config, sock, name)

    def _failed(self, task: asyncio.Task[Any]) -> None:
        """A server task that ended while the service was not stopping has failed: log it at
        once (with its exception) and set :attr:`failed`, which stops the service."""
        error = None if task.cancelled() else task.exception()
        logger.error("the %s server stopped unexpectedly: %s", task.get_name(), error or "no error given")
        self.failed.set()

    async def stop(self, grace: float | None = None) -> None:
        grace = self.settings.listeners.shutdown_grace_seconds if grace is None else grace
        logger.info("stopping: finishing in-flight calls (grace %.1fs)", grace)
        await self.listeners.enter_graceful_shutdown()
        self.metrics.ready.set(0)
        for task in (self._housekeeping_task, self._readiness):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self.streams.aclose()
        await self.listeners.stop(grace)
        if self.ports is not None:  # never overwrite a snapshot when start-up failed
            await self.persistence.save()
        logger.info("stopped")

    async def __aenter__(self) -> Service:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop(grace=1.0)

    # ------------------------------------------------------------------ introspection

    def ready(self) -> bool:
        """Every listener bound; with ``PEERS`` (the HA layout, where collectors reach every replica
        whether it is Ready or not) also :meth:`warmed`, so KEDA's Service sends no call to a
        replica that would answer from an incomplete store."""
        listening = self.ports is not None and self.listeners.http_started
        return listening and (not self.peers.configured or self.warmed())

    def warmed(self) -> bool:
        """:meth:`WarmUp.warmed <scaler.warmup.WarmUp.warmed>`."""
        return self.warmup.warmed()

    def restore_from_peer(self, fetched: peers.Fetched) -> None:
        """:meth:`WarmUp.restore_from_peer <scaler.warmup.WarmUp.restore_from_peer>` (the
        evaluation lab's restarted replicas call it)."""
        self.warmup.restore_from_peer(fetched)

    def kedify_info(self) -> dict[str, str]:
        """kedify/otel-add-on's ``/info``: a flat map of strings (also its runtime-info labels)."""
        ports = asdict(self._bound) if self._bound else {"otlp": 0, "keda": 0, "http": 0, "metrics": 0}
        return runtime_info(self.settings.store.retention_seconds, ports)

    def info(self) -> dict[str, Any]:
        """kedify/otel-add-on's flat string fields, then ours."""
        return {
            **self.kedify_info(),
            "version": __version__,
            "startedAt": self.started_at,
            "ports": asdict(self.ports) if self.ports else None,
            "config": self.settings.public(),
            "store": {
                "series": self.store.series_count,
                "samples": self.store.sample_count(),
                "metricNames": len(self.store.names()),
            },
            "ingest": self.ingestor.path_info(),
            "warmupRemainingSeconds": round(self.warmup.remaining(), 3),
            "snapshot": self.persistence.status,
            "ready": self.ready(),
            "warmed": self.warmed(),
            "peers": self.warmup.peer_status,
        }


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    """Run until ``stop`` is set (or a listener fails: :class:`ServiceFailed`), then stop gracefully."""
    await serve_until(Service(settings), stop)


async def serve_until(service: Service, stop: asyncio.Event) -> None:
    """Start ``service``, wait for ``stop`` or a failed listener, stop it; a failure raises
    :class:`ServiceFailed` once the service has stopped."""
    await service.start()
    try:
        waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(service.failed.wait())]
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
    finally:
        await service.stop()
    if service.failed.is_set():
        raise ServiceFailed("a listener stopped unexpectedly (see the log above)")


def run(settings: Settings) -> int:
    """Blocking entry point for ``keda-otel-scaler serve``; returns the exit code."""
    gctune.install()  # short GC pauses however big the store grows (scaler/gctune.py)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, _on_signal, stop, sig)
        await serve(settings, stop)

    try:
        asyncio.run(main())
    except OSError as exc:
        logger.error("cannot start: %s", exc)
        return 1
    except ServiceFailed as exc:
        logger.error("stopped: %s", exc)
        return 1
    return 0


def _on_signal(stop: asyncio.Event, sig: signal.Signals) -> None:
    logger.info("received %s", sig.name)
    stop.set()
