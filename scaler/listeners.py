"""The service's listeners: gRPC servers (with the health and reflection services, plain or TLS)
and uvicorn servers on sockets bound beforehand; each watched once started, marked serving
together, and stopped gracefully together.

Which servers there are, what they serve and with which options is the composition root's
choice (:mod:`scaler.app`); here is how any of them is bound, started, watched and stopped.
A server whose task ends while the listeners are not stopping is reported to ``on_failure``.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import uvicorn
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from scaler import httpserver
from scaler.config import TLSFiles
from scaler.tls import grpc_credentials

__all__ = ["Listeners"]

logger = logging.getLogger(__name__)


class Listeners:
    """The started servers of one service. See the module docstring."""

    def __init__(self, on_failure: Callable[[asyncio.Task[Any]], None]) -> None:
        """``on_failure`` gets the task of a server that stopped by itself after start."""
        self.grpc: list[grpc.aio.Server] = []
        self.http: list[tuple[httpserver.Server, asyncio.Task[None]]] = []
        self._health: list[health.aio.HealthServicer] = []
        self._health_names: dict[health.aio.HealthServicer, tuple[str, ...]] = {}
        self._watchers: list[asyncio.Task[Any]] = []
        self._on_failure = on_failure
        self._stopping = False

    async def add_grpc(
        self, server: grpc.aio.Server, host: str, port: int, tls: TLSFiles, listener: str, service_name: str
    ) -> int:
        """Add the health (NOT_SERVING until :meth:`mark_serving`) and reflection services to
        ``server``, bind it, start it and watch it; returns the bound port."""
        health_servicer = health.aio.HealthServicer()
        await health_servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
        await health_servicer.set(service_name, health_pb2.HealthCheckResponse.NOT_SERVING)
        self._health_names[health_servicer] = (service_name,)
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        reflection.enable_server_reflection(
            (service_name, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
            server,
        )
        address = f"{_grpc_host(host)}:{port}"
        try:
            if tls.active:
                bound = server.add_secure_port(address, grpc_credentials(tls, listener))
            else:
                bound = server.add_insecure_port(address)
        except RuntimeError:  # grpc's way of saying the port is taken or the address is bad
            bound = 0
        if bound == 0:
            raise OSError(f"{listener} gRPC server cannot bind {address} (port in use or address invalid)")
        await server.start()
        self.grpc.append(server)
        self._health.append(health_servicer)
        watcher = asyncio.create_task(server.wait_for_termination(), name=f"{listener} gRPC")
        watcher.add_done_callback(self._watch)
        self._watchers.append(watcher)
        return bound

    async def add_http(self, config: uvicorn.Config, sock: socket.socket, name: str) -> None:
        """Serve ``config``'s app on ``sock`` (bound already); returns once uvicorn has started,
        and watches it from then on."""
        server = httpserver.Server(config)
        task = asyncio.create_task(server.serve(sockets=[sock]), name=name)
        self.http.append((server, task))
        while not server.started:
            if task.done():
                task.result()
                raise OSError(f"{name} HTTP server stopped during start-up")
            await asyncio.sleep(0.01)
        task.add_done_callback(self._watch)

    @property
    def http_started(self) -> bool:
        """Every HTTP server added has started (and there is at least one)."""
        return bool(self.http) and all(server.started for server, _ in self.http)

    def _watch(self, task: asyncio.Task[Any]) -> None:
        if not self._stopping:
            self._on_failure(task)

    async def mark_serving(self) -> None:
        """Turn every gRPC health status SERVING (the server's and its service's)."""
        for servicer in self._health:
            await servicer.set("", health_pb2.HealthCheckResponse.SERVING)
            for name in self._health_names[servicer]:
                await servicer.set(name, health_pb2.HealthCheckResponse.SERVING)

    async def enter_graceful_shutdown(self) -> None:
        """From now on a server that ends is no failure; the health services answer NOT_SERVING."""
        self._stopping = True
        for servicer in self._health:
            await servicer.enter_graceful_shutdown()

    async def stop(self, grace: float) -> None:
        """Stop every server, letting in-flight calls finish within ``grace`` seconds."""
        self._stopping = True
        stops: list[Awaitable[Any]] = [server.stop(grace) for server in self.grpc]
        for http_server, task in self.http:
            http_server.should_exit = True
            stops.append(task)
        await asyncio.gather(*stops, return_exceptions=True)
        self.grpc.clear()
        for watcher in self._watchers:
            watcher.cancel()
        self._watchers.clear()


def _grpc_host(address: str) -> str:
    return f"[{address}]" if ":" in address and not address.startswith("[") else address
