"""The HTTP listener: uvicorn with its httptools protocol hardened against slow and oversized
requests, which uvicorn alone does not bound.

* **Header timeout**: a connection must deliver a complete request head within
  ``header_timeout`` of connecting (or of the first byte of a keep-alive request); otherwise
  it gets ``408`` and is closed. Without it an idle or byte-a-second client holds a socket and
  a file descriptor forever (uvicorn arms its keep-alive timer only after a response).
* **Header size**: request line + headers over ``max_header_bytes`` get ``431`` and a close;
  llhttp itself would accept megabytes of headers.
* **Body timeout** is enforced where the body is read, by :class:`scaler.api.Guard`.

Rejections are counted in ``http_requests_rejected_total{path="(connection)", reason}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from scaler.logs import RateLimitedLog
from scaler.selfmetrics import SelfMetrics

logger = logging.getLogger(__name__)

CONNECTION_ROUTE = "(connection)"
"""The ``path`` label of rejections that happen before a request is routed."""


@dataclass(frozen=True)
class Limits:
    header_timeout: float
    max_header_bytes: int


class Server(uvicorn.Server):
    """uvicorn without its own signal handling: the app owns signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def protocol_class(limits: Limits, metrics: SelfMetrics) -> type[HttpToolsProtocol]:
    """An ``HttpToolsProtocol`` subclass bound to ``limits`` (uvicorn instantiates it)."""
    log = RateLimitedLog(logger)

    class HardenedProtocol(HttpToolsProtocol):
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
            if not self._refused and self._head_bytes > limits.max_header_bytes:
                self._refuse(431, "request_header_too_large", f"request head exceeds {limits.max_header_bytes} bytes")

        def _arm(self) -> None:
            self._disarm()
            self._head_timer = self.loop.call_later(limits.header_timeout, self._head_timed_out)

        def _disarm(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_timed_out(self) -> None:
            self._head_timer = None
            if not self.transport.is_closing():
                self._refuse(408, "header_timeout", f"request head not received within {limits.header_timeout:g}s")

        def _refuse(self, status: int, reason: str, message: str) -> None:
            self._refused = True
            self._disarm()
            metrics.http_rejected.labels(CONNECTION_ROUTE, reason).inc()
            client = f"{self.client[0]}:{self.client[1]}" if self.client else "?"
            log.emit(reason, "HTTP connection from %s refused (%d): %s", client, status, message)
            body = json.dumps({"error": message}).encode()
            phrase = {408: "Request Timeout", 431: "Request Header Fields Too Large"}[status]
            head = (
                f"HTTP/1.1 {status} {phrase}\r\ncontent-type: application/json\r\n"
                f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
            )
            self.transport.write(head.encode() + body)
            self.transport.close()

    return HardenedProtocol


def bind(address: str, port: int) -> socket.socket:
    """A listening TCP socket; ``OSError`` names the address when it cannot bind."""
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
        raise OSError(f"HTTP server cannot bind {address}:{port}: {exc.strerror}") from None
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def config(
    app: Any, limits: Limits, metrics: SelfMetrics, max_connections: int, grace: float, **extra: Any
) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        http=protocol_class(limits, metrics),
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=max(1, int(grace)),
        limit_concurrency=max_connections,
        lifespan="off",
        server_header=False,
        **extra,
    )
