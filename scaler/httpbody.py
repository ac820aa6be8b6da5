"""Request bodies at the HTTP edge: bounded in size and in time, read (and gunzipped) in a
stream, and every 4xx answer counted.

* **Body size and stalls** (:class:`BodyGuard`, the ASGI middleware every app of
  :func:`scaler.httpserver.create_app` runs behind): 413 once a body outgrows its path's
  limit, 408 + close when it stalls for ``body_timeout_seconds``.
* **Streaming reads** (:func:`read_body`): a (gzipped) body read chunk by chunk and stopped at
  a limit measured after decompression, so a gzip bomb costs at most that limit of memory.
* **4xx counting**: every 4xx answer is counted in ``http_requests_rejected_total{path,
  reason}`` (path = route template) with a rate-limited log.
"""

from __future__ import annotations

import asyncio
import json
import logging
import zlib
from collections.abc import AsyncIterator, Callable, Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from scaler.logs import RateLimitedLog
from scaler.selfmetrics import SelfMetrics

__all__ = ["BodyError", "BodyGuard", "read_body"]

logger = logging.getLogger(__name__)


class BodyGuard:
    """ASGI middleware for request bodies and 4xx counting.

    * Answers 413 once a request body outgrows its limit, chunked or not, so no endpoint ever
      buffers an unbounded body. Paths whose limit is None (OTLP/HTTP, which enforces and counts
      its own limit after decompression with :func:`read_body`) pass through.
    * Answers 408 and closes the connection when a request body stalls for ``body_timeout``.
    * Counts every 4xx answer in ``http_requests_rejected_total{path, reason}`` (path = the
      route template, so unknown paths cannot grow the label set) with a rate-limited log line.

    Its own 408/413 answers are sent directly; the application then reads a disconnect and
    whatever it still tries to send is dropped, so the client sees exactly one response.
    """

    def __init__(
        self,
        app: ASGIApp,
        limits: Callable[[str], int | None],
        metrics: SelfMetrics,
        documented_paths: Callable[[], Iterable[str]],
        body_timeout: float = 30.0,
    ) -> None:
        self.app = app
        self.documented_paths = documented_paths
        self._fixed_paths: frozenset[str] | None = None
        self.limits = limits
        self.metrics = metrics
        self.body_timeout = body_timeout
        self.log = RateLimitedLog(logger)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limits(scope["path"])
        if limit is not None:
            declared = dict(scope["headers"]).get(b"content-length")
            if declared is not None and declared.isdigit() and int(declared) > limit:
                await self._refuse(scope, send, 413, "too_large", f"request body exceeds {limit} bytes")
                return
        seen = 0
        body_done = False
        refused = False

        async def guarded() -> Message:
            nonlocal seen, body_done, refused
            if refused:
                return {"type": "http.disconnect"}
            if body_done:
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), self.body_timeout)
            except TimeoutError:
                refused = True
                await self._refuse(scope, send, 408, "body_timeout", f"request body stalled for {self.body_timeout:g}s")
                return {"type": "http.disconnect"}
            if message["type"] == "http.request":
                body_done = not message.get("more_body", False)
                seen += len(message.get("body", b""))
                if limit is not None and seen > limit:
                    refused = True
                    await self._refuse(scope, send, 413, "too_large", f"request body exceeds {limit} bytes")
                    return {"type": "http.disconnect"}
            return message

        async def observed(message: Message) -> None:
            if refused:
                return
            if message["type"] == "http.response.start" and 400 <= message["status"] < 500:
                route = self._route(scope)
                self.metrics.http_rejected.labels(route, str(message["status"])).inc()
                self.log.emit(route, "HTTP %s %s answered %d", scope["method"], route, message["status"])
            await send(message)

        try:
            await self.app(scope, guarded, observed)
        except Exception:
            if not refused:
                raise
            # the application failed on the disconnect it read after our answer: nothing to do

    def _route(self, scope: Scope) -> str:
        """The matched route's template (``/api/v1/label/{name}/values``); before routing, the
        path if it is a fixed route; else ``other``."""
        path = getattr(scope.get("route"), "path", None)
        if isinstance(path, str):
            return path
        if self._fixed_paths is None:
            self._fixed_paths = frozenset(p for p in self.documented_paths() if "{" not in p)
        return scope["path"] if scope["path"] in self._fixed_paths else "other"

    async def _refuse(self, scope: Scope, send: Send, status: int, reason: str, message: str) -> None:
        route = self._route(scope)
        self.metrics.http_rejected.labels(route, reason).inc()
        self.log.emit(reason, "HTTP %s %s answered %d: %s", scope["method"], route, status, message)
        body = json.dumps({"error": message}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        if status == 408:
            headers.append((b"connection", b"close"))  # the rest of the body may still arrive
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


class BodyError(Exception):
    """A request body that cannot be accepted: HTTP status, counter reason, message."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


class _Gunzip:
    """Streaming gzip decoder that stops at a size limit and reads every member of a
    multi-member body (as gzip(1) and Go's reader do), so no concatenated data is lost."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.size = 0
        self._d = zlib.decompressobj(16 + zlib.MAX_WBITS)

    def feed(self, data: bytes) -> bytes:
        out: list[bytes] = []
        while data:
            try:
                chunk = self._d.decompress(data, self.limit + 1 - self.size)
            except zlib.error as exc:
                raise BodyError(400, "bad_gzip", f"invalid gzip body: {exc}") from None
            self.size += len(chunk)
            out.append(chunk)
            if self.size > self.limit or self._d.unconsumed_tail:
                raise BodyError(413, "too_large", f"body exceeds {self.limit} bytes after decompression")
            data = self._d.unused_data if self._d.eof else b""
            if data:
                self._d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        return b"".join(out)

    @property
    def complete(self) -> bool:
        return self._d.eof


async def read_body(chunks: AsyncIterator[bytes], encoding: str, limit: int) -> bytes:
    """Read a possibly chunked, possibly gzipped body, never holding more than ``limit``
    decompressed bytes (plus one chunk): a gzip bomb costs at most ``limit`` of memory."""
    if encoding not in ("", "identity", "gzip"):
        raise BodyError(415, "unsupported_encoding", f"unsupported Content-Encoding {encoding!r}")
    gunzip = _Gunzip(limit) if encoding == "gzip" else None
    parts: list[bytes] = []
    size = 0
    raw_size = 0
    async for chunk in chunks:
        raw_size += len(chunk)
        if raw_size > limit:
            raise BodyError(413, "too_large", f"body exceeds {limit} bytes")
        data = chunk if gunzip is None else gunzip.feed(chunk)
        size += len(data)
        if size > limit:
            raise BodyError(413, "too_large", f"body exceeds {limit} bytes")
        parts.append(data)
    if gunzip is not None and raw_size and not gunzip.complete:
        raise BodyError(400, "bad_gzip", "truncated gzip body")
    return b"".join(parts)
