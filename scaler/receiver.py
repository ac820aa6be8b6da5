"""OTLP receivers: the gRPC MetricsService and the OTLP/HTTP ``POST /v1/metrics`` handler.

Both are thin: validate and decode the request, store it, count, and answer as OTLP clients
expect. Storing runs the native loop over the request's wire bytes (:mod:`scaler.nativeingest`)
when the extension is built, else the reference translation (:func:`scaler.otlp.translate` and
:meth:`Store.append`); either way in slices that yield to the event loop, so KEDA calls never
wait behind a large Export for long:

* some samples rejected → success with ``partial_success`` (rejected count and reasons); not
  retryable, since a retry would add delta sums twice;
* nothing stored because the store is full (the series limit) → gRPC ``RESOURCE_EXHAUSTED`` /
  HTTP 429 with a retry hint (``RetryInfo`` / ``Retry-After``): nothing was stored, so a retry
  is safe, and well-behaved exporters back off;
* an undecodable or oversized request → ``INVALID_ARGUMENT`` / 400, ``RESOURCE_EXHAUSTED`` /
  413, 415 for an unknown content type or encoding; never a 5xx.

Each stored request is recorded in the status registry with the sources of the resources it
carries (:meth:`scaler.status.Registry.exported`, :mod:`scaler.sources`): O(1) per resource,
never per sample. On the native path the resources are found in the wire bytes and named once
per distinct ``Resource``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import grpc
from fastapi import APIRouter, Request, Response
from google.protobuf import any_pb2, duration_pb2, json_format
from google.protobuf.message import DecodeError
from google.rpc import code_pb2, error_details_pb2, status_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from scaler import nativeingest, otlp, sources, status
from scaler.config import OtlpSettings
from scaler.httpbody import BodyError, read_body
from scaler.httpserver import need
from scaler.logs import RateLimitedLog
from scaler.lowpriority import LowPriority
from scaler.model import RejectReason
from scaler.selfmetrics import SelfMetrics
from scaler.store import AppendResult, Store

logger = logging.getLogger(__name__)

ExportRequest = metrics_service_pb2.ExportMetricsServiceRequest
ExportResponse = metrics_service_pb2.ExportMetricsServiceResponse


_PART_SAMPLES = 2000
"""Samples stored between yields to the event loop on the reference path (~8 ms of work)."""

NATIVE_SLICE_SAMPLES = 1000
"""Samples stored between yields on the native path: ~0.15-0.3 ms for points seen before (the
native loop counts a point it must resolve in Python as 32 samples, and 32 samples moved while a
full series is trimmed or grown as one, so such slices are not longer). Halving it from 2000 cost
~0-8 % of ingest throughput in-process; each of a KEDA call's turns of the loop waits behind at
most one slice (see ``Ingestor._storing``)."""

VALIDATE_CHUNK_BYTES = 64 * 1024
"""On the native path, protobuf validates a large request in pieces of about this size (~0.3 ms
each), yielding to the loop between them."""

SOURCE_CACHE = 4096
"""Source keys kept by the bytes of their ``Resource`` (dropped whole when full)."""

RETRY_AFTER_SECONDS = 10
"""The retry hint sent when the store is full: the retention sweep visits every series once
per 10 s, so that is when room can appear at the earliest."""

EXPORT_METHOD = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one Export request came to."""

    response: ExportResponse
    full: bool
    """Nothing was stored and the series limit turned samples away: answer "retry later"."""

    @property
    def message(self) -> str:
        return self.response.partial_success.error_message


class Ingestor:
    """Translate and store one Export request; shared by both transports."""

    def __init__(
        self,
        store: Store,
        settings: OtlpSettings,
        metrics: SelfMetrics,
        native: bool = True,
        registry: status.Registry | None = None,
    ) -> None:
        self.store = store
        self.registry = registry or status.Registry(store.clock, store.limits.retention_seconds)
        """Where each request's sources are recorded (the status)."""
        self._source_keys: dict[bytes, sources.Source] = {}
        self.promotions = settings.promotions
        self.max_bytes = settings.max_otlp_message_bytes
        """Largest request after decompression (``MAX_OTLP_MESSAGE_BYTES``)."""
        self.metrics = metrics
        self.log = RateLimitedLog(logger)
        self.native = nativeingest.NativeIngest(store, self.promotions) if native and nativeingest.AVAILABLE else None
        self.turns = LowPriority()
        """Every yield between ingest slices and validation pieces: a ready KEDA step runs first."""
        self._storing = asyncio.Lock()
        """One request stores at a time, in FIFO order. Storing is CPU on the one event loop, so
        running several at once adds no throughput; but each of their slices would be queued
        before a KEDA call's every turn of the loop (a GetMetrics takes 3-4 turns)."""

    @property
    def path(self) -> str:
        """``native`` (the C loop over wire bytes) or ``python`` (the reference translation)."""
        return "python" if self.native is None else "native"

    def path_info(self) -> dict[str, str]:
        """For ``/info``: the active path, and why the native one is not."""
        if self.native is not None:
            return {"path": "native"}
        why = nativeingest.UNAVAILABLE_REASON or "disabled"
        return {"path": "python", "nativeUnavailable": why}

    async def decode_protobuf(self, data: bytes) -> ExportRequest | None:
        """Validate a protobuf request (DecodeError if protobuf rejects it). The reference path
        gets the decoded request; the native path, which reads the wire bytes, gets None, and a
        large request is validated piece by piece, yielding to the loop between pieces."""
        if self.native is None:
            return ExportRequest.FromString(data)
        try:
            pieces = self.native.pieces(data, VALIDATE_CHUNK_BYTES)
        except ValueError:  # a malformed top level: protobuf's own error names it
            return ExportRequest.FromString(data)
        for i, (start, end) in enumerate(pieces):
            if i:
                await self.turns.pause()
            ExportRequest.FromString(data[start:end])
        return None

    async def ingest(self, request: ExportRequest | None, transport: str, wire: bytes | None = None) -> Outcome:
        """Store a validated request (``wire``: its protobuf bytes, when the caller has them;
        one of the two is needed) slice by slice, yielding to the loop between slices, so a
        large request never stalls KEDA calls or StreamIsActive pushes for long."""
        if self.native is not None:
            data = wire if wire is not None else request.SerializeToString() if request is not None else b""
            async with self._storing:
                result = await self._store_native(self.native, data)
            carried = self._sources_in(data)
        else:
            request = request if request is not None else ExportRequest.FromString(wire or b"")
            async with self._storing:
                result = await self._store_reference(request)
            carried = [sources.of_resource(rm.resource) for rm in request.resource_metrics]
        self.registry.exported(carried, result.rejected)
        return self._answer(result, transport)

    def _sources_in(self, data: bytes) -> list[sources.Source]:
        """The sources of a request's resources, from its wire bytes (named once per distinct ``Resource``)."""
        return [self._source_keys.get(raw) or self._named(raw) for raw in sources.resources_in(data)]

    def _named(self, raw: bytes) -> sources.Source:
        if len(self._source_keys) >= SOURCE_CACHE:
            self._source_keys.clear()
        key = self._source_keys[raw] = sources.of_resource(Resource.FromString(raw))
        return key

    async def _store_native(self, native: nativeingest.NativeIngest, data: bytes) -> AppendResult:
        native.prune()
        now_ms = self.store.now_ms()
        result = AppendResult()
        pos: tuple[int, int, int] | None = nativeingest.START
        while pos is not None:
            if pos != nativeingest.START:
                await self.turns.pause()
            try:
                pos = native.run(data, pos, now_ms, NATIVE_SLICE_SAMPLES, result).next_pos
            except ValueError as exc:  # protobuf validated what the native reader refuses
                raise DecodeError(
                    f"{exc} (protobuf's parser accepted it; {result.accepted} samples before it were stored)"
                ) from None
        return result

    async def _store_reference(self, request: ExportRequest) -> AppendResult:
        result = AppendResult()
        parts = otlp.translate_in_parts(request, self.promotions, self.store.now_ms(), _PART_SAMPLES)
        for i, part in enumerate(parts):
            if i:
                await self.turns.pause()
            result.merge(self.store.append(part.samples))
            result.rejected.update(part.rejected)
        return result

    def _answer(self, result: AppendResult, transport: str) -> Outcome:
        self.metrics.points_received.labels(transport).inc(result.accepted)
        self.metrics.kedify.wrote(result.written)
        response = ExportResponse()
        full = not result.accepted and result.rejected[RejectReason.SERIES_LIMIT] > 0
        if result.rejected:
            for reason, count in result.rejected.items():
                self.metrics.points_rejected.labels(transport, reason.value).inc(count)
            summary = ", ".join(f"{count} {reason.value}" for reason, count in result.rejected.items())
            response.partial_success.rejected_data_points = result.rejected_total
            if full:
                response.partial_success.error_message = (
                    f"the store is full ({self.store.limits.max_series} series, MAX_SERIES): nothing stored "
                    f"({summary}); retry in {RETRY_AFTER_SECONDS}s"
                )
            else:
                response.partial_success.error_message = f"rejected samples: {summary}"
            self.log.emit("full" if full else "partial", "OTLP %s: rejected samples: %s", transport, summary)
        outcome = "throttled" if full else "partial" if result.rejected else "ok"
        self.metrics.requests.labels(transport, outcome).inc()
        return Outcome(response, full)

    def reject(self, transport: str, reason: str, detail: str) -> None:
        self.metrics.requests.labels(transport, "error").inc()
        self.metrics.points_rejected.labels(transport, reason).inc()
        self.log.emit(reason, "OTLP %s request rejected (%s): %s", transport, reason, detail)


class MetricsService:
    """``opentelemetry.proto.collector.metrics.v1.MetricsService`` over gRPC.

    Registered with a raw-bytes deserializer so that an undecodable request is answered
    ``INVALID_ARGUMENT`` with the reason and counted, instead of grpc's uncounted
    ``INTERNAL: Exception deserializing request``.
    """

    def __init__(self, ingestor: Ingestor) -> None:
        self.ingestor = ingestor
        self.max_bytes = ingestor.max_bytes

    def handler(self) -> grpc.GenericRpcHandler:
        export: grpc.RpcMethodHandler[bytes, ExportResponse] = grpc.unary_unary_rpc_method_handler(
            self.export, request_deserializer=None, response_serializer=ExportResponse.SerializeToString
        )
        service = EXPORT_METHOD.split("/")[1]
        return grpc.method_handlers_generic_handler(service, {"Export": export})

    async def export(self, data: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> ExportResponse:
        if len(data) > self.max_bytes:
            message = f"request of {len(data)} bytes exceeds MAX_OTLP_MESSAGE_BYTES ({self.max_bytes})"
            self.ingestor.reject("grpc", "too_large", message)
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, message)
        try:
            outcome = await self.ingestor.ingest(await self.ingestor.decode_protobuf(data), "grpc", data)
        except DecodeError as exc:
            self.ingestor.reject("grpc", "bad_protobuf", str(exc))
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"undecodable ExportMetricsServiceRequest: {exc}")
        if outcome.full:
            status = retry_status(code_pb2.RESOURCE_EXHAUSTED, outcome.message)
            # The standard status details (read by the collector's Go exporter) and the bare
            # RetryInfo the OpenTelemetry Python/Java SDKs read.
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                outcome.message,
                trailing_metadata=(
                    ("grpc-status-details-bin", status.SerializeToString()),
                    ("google.rpc.retryinfo-bin", status.details[0].value),
                ),
            )
        return outcome.response


def retry_status(code: int, message: str) -> status_pb2.Status:
    """A ``google.rpc.Status`` carrying ``RetryInfo`` (how OTLP servers ask for a later retry)."""
    detail = any_pb2.Any()
    detail.Pack(error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=RETRY_AFTER_SECONDS)))
    return status_pb2.Status(code=code, message=message, details=[detail])


def _hex_ids_to_base64(node: Any) -> Any:
    """OTLP/JSON writes trace and span ids as hex; protobuf's JSON mapping wants base64. On the
    way, a key that is not valid UTF-8 (an unpaired surrogate escape such as ``"\\ud83d"``) is
    refused: protobuf's field lookup fails on it with a SystemError, which would be a 500."""
    if isinstance(node, dict):
        for key, value in node.items():
            if not key.isascii() and not _utf8(key):
                raise BodyError(400, "bad_json", f"undecodable JSON body: the key {key!r} is not valid UTF-8")
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


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def decode(body: bytes, content_type: str) -> tuple[ExportRequest, bool]:
    """Decode (and so validate) an OTLP/HTTP body; returns the request and whether it was JSON."""
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
            if not isinstance(document, dict):
                raise BodyError(400, "bad_json", f"the JSON body must be an object, not {type(document).__name__}")
            json_format.ParseDict(_hex_ids_to_base64(document), request, ignore_unknown_fields=True)
        except RecursionError:
            raise BodyError(400, "bad_json", "undecodable JSON body: nested too deeply") from None
        except (ValueError, json_format.ParseError, binascii.Error) as exc:
            # ParseError also covers unpaired surrogates (\ud800) in names and labels
            raise BodyError(400, "bad_json", f"undecodable JSON body: {exc}") from None
        return request, True
    raise BodyError(
        415,
        "unsupported_media_type",
        f"unsupported Content-Type {content_type!r}; use application/x-protobuf or application/json",
    )


def _reply(
    message: ExportResponse | status_pb2.Status,
    as_json: bool,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """An OTLP/HTTP answer in the request's encoding: the ExportMetricsServiceResponse, or on
    failure a ``google.rpc.Status``."""
    if as_json:
        payload = json_format.MessageToJson(message, indent=None)
        return Response(payload, status, headers=headers, media_type="application/json")
    return Response(message.SerializeToString(), status, headers=headers, media_type="application/x-protobuf")


router = APIRouter(tags=["otlp"])


@router.post(
    "/v1/metrics",
    summary="OTLP/HTTP metrics export (protobuf or JSON, optionally gzip)",
    response_class=Response,
)
async def export(request: Request) -> Response:
    ingestor = need(request, Ingestor)
    content_type = request.headers.get("content-type", "")
    as_json = content_type.split(";")[0].strip().lower() == "application/json"
    try:
        encoding = request.headers.get("content-encoding", "").strip().lower()
        body = await read_body(request.stream(), encoding, ingestor.max_bytes)
        message: ExportRequest | None
        if content_type.split(";")[0].strip().lower() == "application/x-protobuf":
            try:
                message, as_json = await ingestor.decode_protobuf(body), False
            except DecodeError as exc:
                raise BodyError(400, "bad_protobuf", f"undecodable protobuf body: {exc}") from None
        else:
            message, as_json = decode(body, content_type)
    except BodyError as exc:
        ingestor.reject("http", exc.reason, str(exc))
        code = code_pb2.RESOURCE_EXHAUSTED if exc.status == 413 else code_pb2.INVALID_ARGUMENT
        return _reply(status_pb2.Status(code=code, message=str(exc)), as_json, exc.status)
    try:
        outcome = await ingestor.ingest(message, "http", None if as_json else body)
    except DecodeError as exc:
        ingestor.reject("http", "bad_protobuf", str(exc))
        return _reply(
            status_pb2.Status(code=code_pb2.INVALID_ARGUMENT, message=f"undecodable protobuf body: {exc}"), False, 400
        )
    if outcome.full:
        status = retry_status(code_pb2.RESOURCE_EXHAUSTED, outcome.message)
        return _reply(status, as_json, 429, {"Retry-After": str(RETRY_AFTER_SECONDS)})
    return _reply(outcome.response, as_json)
