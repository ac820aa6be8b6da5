"""Peer warm start: a replica that starts empty fetches the store snapshot of a Ready peer
(``GET /snapshot`` on the peer's HTTP port) instead of waiting for the collectors.

* **Peers** (``PEERS``): base URLs, or ``dns+http(s)://NAME:PORT`` whose every address is a
  peer (a headless Service; the replica's own address is among them and refuses, not being
  warm yet). They are tried in random order, so restarts spread over the peers, until one
  delivers; the whole attempt ends after ``PEER_TIMEOUT_SECONDS``.
* **Authentication**: ``Authorization: Bearer PEER_TOKEN``; over ``https`` the peer's
  certificate is verified (``PEER_CA_FILE``, else ``REST_TLS_CA_FILE``, else the system's
  CAs) and, when the REST listener runs mTLS, this replica's REST certificate is presented.
* **Transfer**: HTTP/1.1 (``h11``) over asyncio streams, the body streamed into memory and
  cut at ``PEER_SNAPSHOT_MAX_BYTES``; then checked whole by :func:`scaler.snapshot.decode`
  (magic, version, sizes, CRC-32) in a worker thread. Any failure — unreachable, refused,
  not ready, too large, damaged — is logged with its reason, counted in
  ``peer_fetches_total{outcome}``, and the next peer is tried; with none left the caller
  falls back to the local snapshot and the warm-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import ssl
import time
from dataclasses import dataclass

import h11

from scaler import snapshot
from scaler.config import PeerSettings, PeerSource, TLSFiles
from scaler.selfmetrics import SelfMetrics

logger = logging.getLogger(__name__)

_HEAD_LIMIT = 64 * 1024
_READ_CHUNK = 256 * 1024
_STALL_SECONDS = 5.0
"""A peer that sends nothing for this long is given up (the next one is tried)."""


@dataclass(frozen=True)
class Endpoint:
    """One peer to ask: where to connect, and the name it is known by (Host header and TLS SNI)."""

    source: PeerSource
    address: str

    @property
    def label(self) -> str:
        """``http://10.1.2.3:9090`` (``via dns+http://NAME:9090`` for a resolved one), for logs."""
        host = f"[{self.address}]" if ":" in self.address else self.address
        url = f"{self.source.scheme}://{host}:{self.source.port}"
        return f"{url} (via {self.source})" if self.source.resolve else url


class PeerError(Exception):
    """A peer could not give a usable snapshot; ``outcome`` is the counter label."""

    def __init__(self, outcome: str, message: str) -> None:
        super().__init__(message)
        self.outcome = outcome


@dataclass(frozen=True)
class Fetched:
    snapshot: snapshot.Snapshot
    peer: str
    size: int
    seconds: float


class PeerClient:
    """Fetches a snapshot from the first peer that gives a good one (see the module docstring)."""

    def __init__(self, settings: PeerSettings, rest_tls: TLSFiles, metrics: SelfMetrics) -> None:
        self.sources = settings.sources
        self.token = settings.peer_token.get_secret_value()
        self.max_bytes = settings.peer_snapshot_max_bytes
        self.timeout = settings.peer_timeout_seconds
        self.ca_file = settings.peer_ca_file or rest_tls.ca_file
        self.client_cert = (rest_tls.cert_file, rest_tls.key_file) if rest_tls.ca_file else None
        self.metrics = metrics

    @property
    def configured(self) -> bool:
        return bool(self.sources)

    async def warm_start(self) -> Fetched | None:
        """The first good snapshot among the peers, or None (each failure logged and counted)."""
        try:
            return await asyncio.wait_for(self._first_good(), self.timeout)
        except TimeoutError:
            self.metrics.peer_fetches.labels("timeout").inc()
            logger.warning("peer warm start: no usable snapshot within %.1fs: starting without one", self.timeout)
            return None

    async def _first_good(self) -> Fetched | None:
        endpoints = await self.endpoints()
        random.shuffle(endpoints)
        for endpoint in endpoints:
            started = time.perf_counter()
            try:
                data = await self.fetch(endpoint)
                taken = await asyncio.to_thread(snapshot.decode, data)
            except PeerError as exc:
                self.metrics.peer_fetches.labels(exc.outcome).inc()
                logger.warning("peer %s: no snapshot (%s): %s", endpoint.label, exc.outcome, exc)
                continue
            except snapshot.SnapshotError as exc:
                self.metrics.peer_fetches.labels("corrupt").inc()
                logger.error("peer %s: snapshot rejected (corrupt): %s", endpoint.label, exc)
                continue
            self.metrics.peer_fetches.labels("ok").inc()
            return Fetched(taken, endpoint.label, len(data), time.perf_counter() - started)
        if not endpoints:
            logger.warning("peer warm start: no peer address found in PEERS=%s", ",".join(map(str, self.sources)))
        return None

    async def endpoints(self) -> list[Endpoint]:
        """Every peer address: base URLs as given, ``dns+`` names resolved (a failure is logged)."""
        out: list[Endpoint] = []
        loop = asyncio.get_running_loop()
        for source in self.sources:
            if not source.resolve:
                out.append(Endpoint(source, source.host))
                continue
            try:
                infos = await loop.getaddrinfo(source.host, source.port, type=socket.SOCK_STREAM)
            except OSError as exc:
                self.metrics.peer_fetches.labels("unresolved").inc()
                logger.warning("peer %s: cannot resolve %s: %s", source, source.host, exc)
                continue
            addresses = dict.fromkeys(str(info[4][0]) for info in infos)
            out.extend(Endpoint(source, address) for address in addresses)
        return out

    def _ssl(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.ca_file or None)
        if self.client_cert is not None:
            context.load_cert_chain(*self.client_cert)
        return context

    async def fetch(self, endpoint: Endpoint) -> bytes:
        """``GET /snapshot`` from one peer: the body, or :class:`PeerError`."""
        source = endpoint.source
        tls = self._ssl() if source.scheme == "https" else None
        try:
            reader, writer = await asyncio.open_connection(
                endpoint.address, source.port, ssl=tls, server_hostname=source.host if tls else None
            )
        except (OSError, ssl.SSLError) as exc:
            raise PeerError("unreachable", str(exc) or type(exc).__name__) from None
        try:
            return await self._exchange(reader, writer, source)
        except (OSError, ssl.SSLError, h11.ProtocolError) as exc:
            raise PeerError("error", f"transfer failed: {exc or type(exc).__name__}") from None
        finally:
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError):
                await writer.wait_closed()

    async def _exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, source: PeerSource) -> bytes:
        conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=_HEAD_LIMIT)
        host = f"[{source.host}]" if ":" in source.host else source.host
        headers = [("Host", f"{host}:{source.port}"), ("Accept", "application/octet-stream"), ("Connection", "close")]
        if self.token:
            headers.append(("Authorization", f"Bearer {self.token}"))
        writer.write(conn.send(h11.Request(method="GET", target="/snapshot", headers=headers)) or b"")
        writer.write(conn.send(h11.EndOfMessage()) or b"")
        await writer.drain()
        response = await _next_event(conn, reader)
        if not isinstance(response, h11.Response):
            raise PeerError("error", f"unexpected answer {type(response).__name__}")
        if response.status_code != 200:
            detail = (await _body(conn, reader, _HEAD_LIMIT, truncate=True)).decode(errors="replace")[:300]
            outcome = {401: "refused", 403: "refused", 503: "not_ready"}.get(response.status_code, "error")
            raise PeerError(outcome, f"HTTP {response.status_code}: {detail}")
        declared = dict(response.headers).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            raise PeerError("too_large", f"{int(declared)} bytes > PEER_SNAPSHOT_MAX_BYTES={self.max_bytes}")
        return await _body(conn, reader, self.max_bytes)


async def _next_event(conn: h11.Connection, reader: asyncio.StreamReader) -> object:
    while True:
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            return event
        try:
            conn.receive_data(await asyncio.wait_for(reader.read(_READ_CHUNK), _STALL_SECONDS))
        except TimeoutError:
            raise PeerError("stalled", f"nothing received for {_STALL_SECONDS:g}s") from None


async def _body(conn: h11.Connection, reader: asyncio.StreamReader, limit: int, truncate: bool = False) -> bytes:
    """The response body, at most ``limit`` bytes (more: :class:`PeerError`, or cut when ``truncate``)."""
    parts: list[bytes] = []
    size = 0
    while True:
        event = await _next_event(conn, reader)
        if isinstance(event, h11.Data):
            size += len(event.data)
            if size > limit:
                if truncate:
                    return b"".join(parts)
                raise PeerError("too_large", f"more than PEER_SNAPSHOT_MAX_BYTES={limit} bytes")
            parts.append(bytes(event.data))
        elif isinstance(event, h11.EndOfMessage):
            return b"".join(parts)
        elif isinstance(event, h11.ConnectionClosed):
            raise PeerError("error", f"connection closed after {size} bytes of the body")
