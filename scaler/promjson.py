"""The Prometheus HTTP API's JSON, exactly as Prometheus writes it: ``{"status": "success",
"data": …, "warnings": …, "infos": …}``, error bodies and statuses, and query values (strings for
sample values: ``"1.5"``, ``"NaN"``, ``"+Inf"``; timestamps in seconds with millisecond precision)."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Iterable

from fastapi import Response
from fastapi.responses import JSONResponse

from scaler import query
from scaler.model import LabelPairs


def json_number(value: float) -> float | str:
    """A number for JSON, which has no NaN/Inf: those are sent as strings, as Prometheus does."""
    if math.isfinite(value):
        return value
    return "NaN" if math.isnan(value) else ("+Inf" if value > 0 else "-Inf")


def ok(data_json: str, warnings: Iterable[str] = (), infos: Iterable[str] = ()) -> Response:
    body = '{"status":"success","data":' + data_json
    for key, items in (("warnings", list(warnings)), ("infos", list(infos))):
        if items:
            body += f',"{key}":' + json.dumps(items, ensure_ascii=False)
    return Response(body + "}", media_type="application/json")


def error(kind: str, message: str, status: int) -> JSONResponse:
    return JSONResponse({"status": "error", "errorType": kind, "error": message}, status_code=status)


def query_error(exc: query.QueryError) -> JSONResponse:
    if exc.kind == "execution":
        return error("execution", str(exc), 422)
    if exc.kind == "timeout":
        return error("timeout", str(exc), 503)
    return error("bad_data", str(exc), 400)


_RENDER_SLICE = 1000


async def result_response(result: query.Result) -> Response:
    """The JSON answer, rendered in slices of series with the event loop's turn between them:
    rendering 40k series takes ~0.3 s, which would hold up every KEDA call meanwhile. (A worker
    thread would contend for the GIL with the loop and slow every call instead.)"""
    value = result.value
    if isinstance(value, (query.Vector, query.Matrix)) and len(value) > _RENDER_SLICE:
        parts: list[str] = []
        items = value.samples if isinstance(value, query.Vector) else value.series
        for a in range(0, len(items), _RENDER_SLICE):
            chunk = items[a : a + _RENDER_SLICE]
            part = render(query.Vector(value.t_ms, chunk) if isinstance(value, query.Vector) else query.Matrix(chunk))  # type: ignore[arg-type]
            parts.append(part[part.index('"result":[') + 10 : -2])
            await asyncio.sleep(0)
        kind = "vector" if isinstance(value, query.Vector) else "matrix"
        data = f'{{"resultType":"{kind}","result":[' + ",".join(p for p in parts if p) + "]}"
    else:
        data = render(value)
    return ok(data, result.warnings, result.infos)


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
