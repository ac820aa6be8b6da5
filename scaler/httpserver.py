"""The HTTP edge: the listener, the bounds on a request's head and on connections, the app and
its wiring. Request bodies are bounded, and 4xx answers counted, by :mod:`scaler.httpbody`.

uvicorn alone does not bound slow or oversized requests; here:

* **Header timeout** (:func:`protocol_class`): a connection must deliver a complete request
  head within ``header_timeout_seconds`` of connecting (or of the first byte of a keep-alive
  request); otherwise it gets ``408`` and is closed. Without it an idle or byte-a-second client
  holds a socket and a file descriptor forever (uvicorn arms its keep-alive timer only after a
  response).
* **Header size**: request line + headers over ``max_header_bytes`` get ``431`` and a close;
  llhttp itself would accept megabytes of headers. Both refusals are counted in
  ``http_requests_rejected_total{path="(connection)", reason}`` with a rate-limited log.
* **Connections**: at most ``max_connections`` (uvicorn answers 503 past it).

Routers are wired one way (:func:`create_app`): each surface module (``api``, ``api_prom``,
``receiver``) declares a module-level ``APIRouter`` whose handlers take what they need with
:func:`need` from the objects the app was given; the app runs behind
:class:`~scaler.httpbody.BodyGuard`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
from collections.abc import Generator, Iterable, Sequence
from typing import Any, ClassVar, TypeVar

import uvicorn
from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from scaler import __version__
from scaler.config import HttpLimits
from scaler.httpbody import BodyGuard
from scaler.logs import RateLimitedLog
from scaler.selfmetrics import SelfMetrics

logger = logging.getLogger(__name__)

CONNECTION_ROUTE = "(connection)"
"""The ``path`` label of rejections that happen before a request is routed."""

MAX_API_BODY_BYTES = 1024 * 1024
"""Largest body accepted by the query/admin endpoints (OTLP/HTTP has its own, larger limit)."""

T = TypeVar("T")


class Server(uvicorn.Server):
    """uvicorn without its own signal handling: the app owns signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class HardenedProtocol(HttpToolsProtocol):
    """httptools' protocol with the head limits; :func:`protocol_class` binds it to the settings."""

    limits: ClassVar[HttpLimits]
    metrics: ClassVar[SelfMetrics]
    log: ClassVar[RateLimitedLog]
    _head_timer: asyncio.TimerHandle | None = None
    _head_bytes = 0
    _refused = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if self._head_timer is None and (self.cycle is None or self.cycle.response_complete):
            self._arm()  # the first byte of a keep-alive request starts its header clock
        super().data_received(data)

    def on_message_begin(self) -> None:
        self._head_bytes = 0
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)
        if not self._refused:
            super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._disarm()
        if self._refused:
            return
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if not self._refused:
            super().on_message_complete()

    def _count(self, size: int) -> None:
        self._head_bytes += size
        if not self._refused and self._head_bytes > self.limits.max_header_bytes:
            self._refuse(431, "request_header_too_large", f"request head exceeds {self.limits.max_header_bytes} bytes")

    def _arm(self) -> None:
        self._disarm()
        self._head_timer = self.loop.call_later(self.limits.header_timeout_seconds, self._head_timed_out)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            self._refuse(
                408, "header_timeout", f"request head not received within {self.limits.header_timeout_seconds:g}s"
            )

    def _refuse(self, status: int, reason: str, message: str) -> None:
        self._refused = True
        self._disarm()
        self.metrics.http_rejected.labels(CONNECTION_ROUTE, reason).inc()
        client = f"{self.client[0]}:{self.client[1]}" if self.client else "?"
        self.log.emit(reason, "HTTP connection from %s refused (%d): %s", client, status, message)
        body = json.dumps({"error": message}).encode()
        phrase = {408: "Request Timeout", 431: "Request Header Fields Too Large"}[status]
        head = (
            f"HTTP/1.1 {status} {phrase}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
        )
        self.transport.write(head.encode() + body)
        self.transport.close()


def protocol_class(limits: HttpLimits, metrics: SelfMetrics) -> type[HttpToolsProtocol]:
    """:class:`HardenedProtocol` bound to ``limits`` (uvicorn instantiates it per connection)."""
    bound = {"limits": limits, "metrics": metrics, "log": RateLimitedLog(logger)}
    return type("HardenedProtocol", (HardenedProtocol,), bound)


def bind(address: str, port: int, listener: str = "HTTP") -> socket.socket:
    """A listening TCP socket; ``OSError`` names the listener and address when it cannot bind."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    # IPPROTO_TCP, not 0: accepted sockets inherit it, and asyncio turns Nagle off
    # (TCP_NODELAY) only for proto == IPPROTO_TCP. With proto 0 every keep-alive response
    # after the first waits ~40 ms for the client's delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((address, port))
    except OSError as exc:
        sock.close()
        raise OSError(f"{listener} server cannot bind {address}:{port}: {exc.strerror}") from None
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def config(app: Any, limits: HttpLimits, metrics: SelfMetrics, grace: float, **extra: Any) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        http=protocol_class(limits, metrics),
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=max(1, int(grace)),
        limit_concurrency=limits.max_connections,
        lifespan="off",
        server_header=False,
        **extra,
    )


# ---------------------------------------------------------------------- the app


def create_app(
    routers: Sequence[APIRouter],
    services: Iterable[object],
    metrics: SelfMetrics,
    limits: HttpLimits,
    mounts: Sequence[tuple[str, ASGIApp]] = (),
) -> FastAPI:
    """The FastAPI app: ``routers`` (each a module-level router), ``services`` for :func:`need`,
    the body guard and the error handlers (a 500 never shows internals; a bad body is a counted 400)."""
    app = FastAPI(
        title="keda-otel-scaler",
        version=__version__,
        description="OTLP metrics in, KEDA scaling decisions out. Prefill and decode scale independently.",
        docs_url=None,
        redoc_url=None,
    )
    app.state.services = {type(s): s for s in (*services, metrics)}
    app.add_middleware(
        BodyGuard,
        limits=lambda path: None if path == "/v1/metrics" else MAX_API_BODY_BYTES,
        metrics=metrics,
        documented_paths=lambda: app.openapi()["paths"],
        body_timeout=limits.body_timeout_seconds,
    )

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        # Logged with its traceback by the server; the client gets no internals.
        metrics.http_internal_errors.inc()
        return JSONResponse({"error": "internal error; see the server log"}, status_code=500)

    @app.exception_handler(RequestValidationError)
    async def invalid_body(request: Request, exc: RequestValidationError) -> JSONResponse:
        metrics.http_rejected.labels(request.url.path, "invalid_body").inc()
        problems = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}" for e in exc.errors())
        return JSONResponse({"error": f"invalid request: {problems}"}, status_code=400)

    for path, mounted in mounts:
        app.mount(path, mounted)
    for router in routers:
        app.include_router(router)
    return app


def provide(app: FastAPI, *services: object) -> None:
    """Make ``services`` available to :func:`need` (for an app not built by :func:`create_app`)."""
    registry: dict[type, object] = getattr(app.state, "services", {})
    registry.update({type(s): s for s in services})
    app.state.services = registry


def need(request: Request, kind: type[T]) -> T:
    """The app's one object of type ``kind`` (what a handler depends on)."""
    found = request.app.state.services[kind]
    assert isinstance(found, kind)
    return found
