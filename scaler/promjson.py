"""The Prometheus HTTP API's JSON, exactly as Prometheus writes it: ``{"status": "success",
"data": …, "warnings": …, "infos": …}``, error bodies and statuses, and query values (strings for
sample values: ``"1.5"``, ``"NaN"``, ``"+Inf"``; timestamps in seconds with millisecond precision)."""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator, Iterable

from fastapi import Response
from fastapi.responses import JSONResponse, StreamingResponse

from scaler import query
from scaler.model import LabelPairs


def json_number(value: float) -> float | str:
    """A number for JSON, which has no NaN/Inf: those are sent as strings, as Prometheus does."""
    if math.isfinite(value):
        return value
    return "NaN" if math.isnan(value) else ("+Inf" if value > 0 else "-Inf")


def ok(data_json: str, warnings: Iterable[str] = (), infos: Iterable[str] = ()) -> Response:
    body = '{"status":"success","data":' + data_json + _annotations_json(warnings, infos) + "}"
    return Response(body, media_type="application/json")


def _annotations_json(warnings: Iterable[str], infos: Iterable[str]) -> str:
    out = ""
    for key, items in (("warnings", list(warnings)), ("infos", list(infos))):
        if items:
            out += f',"{key}":' + json.dumps(items, ensure_ascii=False)
    return out


def error(kind: str, message: str, status: int) -> JSONResponse:
    return JSONResponse({"status": "error", "errorType": kind, "error": message}, status_code=status)


def query_error(exc: query.QueryError) -> JSONResponse:
    if exc.kind == "execution":
        return error("execution", str(exc), 422)
    if exc.kind == "timeout":
        return error("timeout", str(exc), 503)
    return error("bad_data", str(exc), 400)


_RENDER_SLICE = 250
"""Series rendered and sent between two turns of the event loop (~2 ms)."""


async def result_response(result: query.Result, pause: query.Pause = query.turn) -> Response:
    """The JSON answer. A vector or matrix of more than ``_RENDER_SLICE`` series is streamed
    (chunked): rendered a slice at a time with the event loop's turn between slices, and each
    slice sent as it is made, so neither rendering (~0.3 s for 40k series) nor copying one
    ~15 MB body into the socket buffer holds up KEDA's calls. (A worker thread would contend for
    the GIL with the loop and slow every call instead.)"""
    value = result.value
    if isinstance(value, (query.Vector, query.Matrix)) and len(value) > _RENDER_SLICE:
        kind = "vector" if isinstance(value, query.Vector) else "matrix"
        head = f'{{"status":"success","data":{{"resultType":"{kind}","result":['
        tail = "]}" + _annotations_json(result.warnings, result.infos) + "}"
        return StreamingResponse(_slices(value, head, tail, pause), media_type="application/json")
    return ok(render(value), result.warnings, result.infos)


async def _slices(value: query.Vector | query.Matrix, head: str, tail: str, pause: query.Pause) -> AsyncIterator[bytes]:
    yield head.encode()
    items = value.samples if isinstance(value, query.Vector) else value.series
    for a in range(0, len(items), _RENDER_SLICE):
        chunk = items[a : a + _RENDER_SLICE]
        part = render(query.Vector(value.t_ms, chunk) if isinstance(value, query.Vector) else query.Matrix(chunk))  # type: ignore[arg-type]
        body = part[part.index('"result":[') + 10 : -2]
        yield (body if a == 0 else "," + body).encode()
        # the socket may take it all without a pause: the loop's turn (other ready work first)
        await pause()
    yield tail.encode()


def metric_json(labels: LabelPairs) -> str:
    return json.dumps(dict(labels), ensure_ascii=False, separators=(",", ":"))


def _point(t_ms: int, value: float) -> str:
    return f'[{query.format_timestamp(t_ms)},"{query.format_value(value)}"]'


def render(value: query.Value) -> str:
    """``{"resultType": ..., "result": ...}`` exactly as Prometheus writes it."""
    if isinstance(value, query.Scalar):
        kind, result = "scalar", _point(value.t_ms, value.value)
    elif isinstance(value, query.String):
        kind, result = "string", f"[{query.format_timestamp(value.t_ms)},{json.dumps(value.value)}]"
    elif isinstance(value, query.Vector):
        t = value.t_ms
        kind = "vector"
        result = (
            "["
            + ",".join(f'{{"metric":{metric_json(s.labels)},"value":{_point(t, s.value)}}}' for s in value.samples)
            + "]"
        )
    else:
        kind = "matrix"
        result = (
            "["
            + ",".join(
                f'{{"metric":{metric_json(s.labels)},"values":['
                + ",".join(_point(t, v) for t, v in zip(s.timestamps, s.values, strict=True))
                + "]}"
                for s in value.series
            )
            + "]"
        )
    return f'{{"resultType":"{kind}","result":{result}}}'
