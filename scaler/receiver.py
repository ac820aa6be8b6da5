"""OTLP receivers: the gRPC MetricsService and the OTLP/HTTP ``POST /v1/metrics`` handler.

Both are thin: decode the request, call :func:`scaler.otlp.translate`, append to the store,
count, and answer with ``partial_success`` when points were rejected.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import zlib
from collections.abc import AsyncIterator, Mapping
from typing import Any

import grpc
from fastapi import APIRouter, Request, Response
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc

from scaler import otlp
from scaler.logs import RateLimitedLog
from scaler.selfmetrics import SelfMetrics
from scaler.store import AppendResult, Store

logger = logging.getLogger(__name__)

ExportRequest = metrics_service_pb2.ExportMetricsServiceRequest
ExportResponse = metrics_service_pb2.ExportMetricsServiceResponse


_PART_SAMPLES = 2000
"""Samples stored between yields to the event loop (~10 ms of work) while ingesting."""


class Ingestor:
    """Translate and store one Export request; shared by both transports."""

    def __init__(self, store: Store, promotions: Mapping[str, str], metrics: SelfMetrics) -> None:
        self.store = store
        self.promotions = dict(promotions)
        self.metrics = metrics
        self.log = RateLimitedLog(logger)

    async def ingest(self, request: ExportRequest, transport: str) -> ExportResponse:
        """Store a request part by part, yielding to the loop between parts, so a large
        request never stalls KEDA calls or StreamIsActive pushes for long."""
        result = AppendResult()
        parts = otlp.translate_in_parts(request, self.promotions, self.store.now_ms(), _PART_SAMPLES)
        for i, part in enumerate(parts):
            if i:
                await asyncio.sleep(0)
            result.merge(self.store.append(part.samples))
            result.rejected.update(part.rejected)
        self.metrics.points_received.labels(transport).inc(result.accepted)
        response = ExportResponse()
        if result.rejected:
            for reason, count in result.rejected.items():
                self.metrics.points_rejected.labels(transport, reason.value).inc(count)
            summary = ", ".join(f"{count} {reason.value}" for reason, count in result.rejected.items())
            response.partial_success.rejected_data_points = result.rejected_total
            response.partial_success.error_message = f"rejected samples: {summary}"
            self.log.emit("partial", "OTLP %s: rejected samples: %s", transport, summary)
        self.metrics.requests.labels(transport, "partial" if result.rejected else "ok").inc()
        return response

    def reject(self, transport: str, reason: str, detail: str) -> None:
        self.metrics.requests.labels(transport, "error").inc()
        self.metrics.points_rejected.labels(transport, reason).inc()
        self.log.emit(reason, "OTLP %s request rejected (%s): %s", transport, reason, detail)


class MetricsService(metrics_service_pb2_grpc.MetricsServiceServicer):
    """``opentelemetry.proto.collector.metrics.v1.MetricsService`` over gRPC."""

    def __init__(self, ingestor: Ingestor) -> None:
        self.ingestor = ingestor

    async def Export(  # noqa: N802 - the gRPC method name
        self, request: ExportRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> ExportResponse:
        return await self.ingestor.ingest(request, "grpc")


class BodyError(Exception):
    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


async def _read_body(chunks: AsyncIterator[bytes], encoding: str, limit: int) -> bytes:
    """Read a possibly chunked, possibly gzipped body, never holding more than ``limit``
    decompressed bytes (plus one chunk)."""
    if encoding not in ("", "identity", "gzip"):
        raise BodyError(415, "unsupported_encoding", f"unsupported Content-Encoding {encoding!r}")
    decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS) if encoding == "gzip" else None
    parts: list[bytes] = []
    size = 0
    raw_size = 0
    for_limit = limit + 1
    async for chunk in chunks:
        raw_size += len(chunk)
        if decompressor is None:
            data = chunk
        else:
            try:
                data = decompressor.decompress(chunk, for_limit - size)
            except zlib.error as exc:
                raise BodyError(400, "bad_gzip", f"invalid gzip body: {exc}") from None
            if decompressor.unconsumed_tail:
                raise BodyError(413, "too_large", f"body exceeds {limit} bytes after decompression")
        size += len(data)
        if size > limit or raw_size > limit:
            raise BodyError(413, "too_large", f"body exceeds {limit} bytes")
        parts.append(data)
    if decompressor is not None and not decompressor.eof and raw_size:
        raise BodyError(400, "bad_gzip", "truncated gzip body")
    return b"".join(parts)


def _hex_ids_to_base64(node: Any) -> Any:
    """OTLP/JSON writes trace and span ids as hex; protobuf's JSON mapping wants base64."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("traceId", "spanId", "trace_id", "span_id") and isinstance(value, str):
                try:
                    node[key] = base64.b64encode(bytes.fromhex(value)).decode()
                except ValueError as exc:
                    raise BodyError(400, "bad_json", f"{key} is not hex: {exc}") from None
            else:
                _hex_ids_to_base64(value)
    elif isinstance(node, list):
        for item in node:
            _hex_ids_to_base64(item)
    return node


def decode(body: bytes, content_type: str) -> tuple[ExportRequest, bool]:
    """Decode an OTLP/HTTP body; returns the request and whether it was JSON."""
    media = content_type.split(";", maxsplit=1)[0].strip().lower()
    request = ExportRequest()
    if media == "application/x-protobuf":
        try:
            request.ParseFromString(body)
        except DecodeError as exc:
            raise BodyError(400, "bad_protobuf", f"undecodable protobuf body: {exc}") from None
        return request, False
    if media == "application/json":
        try:
            document = json.loads(body)
            json_format.ParseDict(_hex_ids_to_base64(document), request, ignore_unknown_fields=True)
        except (ValueError, json_format.ParseError, binascii.Error) as exc:
            raise BodyError(400, "bad_json", f"undecodable JSON body: {exc}") from None
        return request, True
    raise BodyError(
        415,
        "unsupported_media_type",
        f"unsupported Content-Type {content_type!r}; use application/x-protobuf or application/json",
    )


def _reply(message: ExportResponse | None, as_json: bool, status: int = 200, error: str = "") -> Response:
    if message is None:
        # OTLP/HTTP failures carry a google.rpc.Status; we send its code-less message form.
        if as_json:
            return Response(json.dumps({"message": error}), status, media_type="application/json")
        from google.rpc import status_pb2

        return Response(
            status_pb2.Status(message=error).SerializeToString(),
            status,
            media_type="application/x-protobuf",
        )
    if as_json:
        payload = json_format.MessageToJson(message, indent=None)
        return Response(payload, status, media_type="application/json")
    return Response(message.SerializeToString(), status, media_type="application/x-protobuf")


def http_router(ingestor: Ingestor, max_bytes: int) -> APIRouter:
    router = APIRouter(tags=["otlp"])

    @router.post(
        "/v1/metrics",
        summary="OTLP/HTTP metrics export (protobuf or JSON, optionally gzip)",
        response_class=Response,
    )
    async def export(request: Request) -> Response:
        content_type = request.headers.get("content-type", "")
        as_json = content_type.split(";")[0].strip().lower() == "application/json"
        try:
            body = await _read_body(
                request.stream(), request.headers.get("content-encoding", "").strip().lower(), max_bytes
            )
            message, as_json = decode(body, content_type)
        except BodyError as exc:
            ingestor.reject("http", exc.reason, str(exc))
            return _reply(None, as_json, exc.status, str(exc))
        return _reply(await ingestor.ingest(message, "http"), as_json)

    return router
