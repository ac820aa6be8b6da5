"""The HTTP API on port 9090: the Go reference's REST memstore API (:data:`memstore`) and
health, info, metrics and offline docs (:data:`operations`); ``/metrics`` alone on the
internal-metrics port (:data:`internal_metrics`). ``POST /memstore/query`` runs the trigger
core (:mod:`scaler.trigger`) as KEDA's calls do. OTLP/HTTP and the Prometheus API are routers
of their own; :func:`scaler.httpserver.create_app` wires them all the same way.

As in kedify/otel-add-on: sample times and ``lastUpdate`` are whole Unix seconds, ``GET /info``
starts with its flat map of strings, ``GET /`` leads to ``/swagger/index.html`` and that to the
docs (``/docs``)."""

from __future__ import annotations

import asyncio
import hmac
import importlib.resources
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.types import ASGIApp

from scaler import query, snapshot, trigger
from scaler.httpserver import need
from scaler.lowpriority import LowPriority
from scaler.model import METRIC_NAME, Matcher, MatchOp, is_stale
from scaler.promjson import json_number
from scaler.selfmetrics import SelfMetrics
from scaler.store import Series, Store

logger = logging.getLogger(__name__)

_DATA_AGGREGATES = ("last_one", "rate", "count", "avg", "min", "max")
_DOCS_ASSETS = importlib.resources.files("fastapi_offline") / "static"
"""Swagger UI 5.32.6 (renders OpenAPI 3.1, which FastAPI emits) from PyPI ``fastapi-offline``: no CDN."""
_BODY_FIELD = {"metricQuery": "query", "query": "promql"}
"""A trigger metadata key → the ``/memstore/query`` body field that carries it."""


class QueryBody(BaseModel):
    """``POST /memstore/query``: the compat form (``query``) or PromQL (``promql``)."""

    operationOverTime: str = Field("last_one", description="last_one, rate, count, avg, min, max, sum, increase")  # noqa: N815
    query: str | None = Field(None, description="compat query, e.g. vllm:num_requests_waiting{deployment=x}")
    window: str | None = Field(None, description="window for operationOverTime, e.g. 30s (default: retention)")
    promql: str | None = Field(None, description="a PromQL instant query instead of the compat form")
    aggregate: str | None = Field(None, description="sum|avg|max|min to reduce a multi-series PromQL result")


class QueryReply(BaseModel):
    ok: bool
    operation: str
    error: str
    value: float
    warnings: list[str] = Field([], description="Prometheus' warning annotations (only when there are some)")
    infos: list[str] = Field([], description="Prometheus' info annotations (only when there are some)")


@dataclass(frozen=True)
class Host:
    """What the operations endpoints need from the running service."""

    info: Callable[[], dict[str, Any]]
    ready: Callable[[], bool]
    admin_token: str


@dataclass(frozen=True)
class PeerAccess:
    """What ``GET /snapshot`` needs: who may read it, whether this replica is warm, and the store."""

    token: str
    """``PEER_TOKEN``: a peer presents it as ``Authorization: Bearer <token>``."""
    mtls: bool
    """The listener verifies client certificates (``REST_TLS_CA_FILE``): every request has one."""
    warmed: Callable[[], bool]
    capture: Callable[[], Awaitable[snapshot.Snapshot]]
    serving: asyncio.Lock = field(default_factory=asyncio.Lock)
    """One snapshot is encoded at a time, however many peers start together."""


def docs_mount() -> tuple[str, ASGIApp]:
    """Swagger UI's assets, served from the package (the cluster may have no internet)."""
    return "/docs/static", StaticFiles(directory=Path(str(_DOCS_ASSETS)))


memstore = APIRouter(prefix="/memstore", tags=["memstore"])
operations = APIRouter(tags=["operations"])
internal_metrics = APIRouter(tags=["operations"])


@memstore.get("/names", summary="Metric names in the store")
async def names(request: Request) -> list[str]:
    return need(request, Store).names()


@memstore.get("/data", summary="Every series with its samples and aggregates over the retention")
async def data(request: Request, name: str | None = None) -> dict[str, list[dict[str, Any]]]:
    store, engine = need(request, Store), need(request, query.Engine)
    now = store.now_ms()
    lo = store.cutoff_ms(now)
    series_list = store.select([Matcher.of(METRIC_NAME, MatchOp.EQ, name)]) if name else list(store.series())
    by_name: dict[str, list[Series]] = {}
    for series in series_list:
        by_name.setdefault(series.name, []).append(series)
    out: dict[str, list[dict[str, Any]]] = {}
    for metric, group in by_name.items():
        label_names = {k for s in group for k, _ in s.labels}
        for series in group:
            ts, vals = series.window(lo, now)
            if len(ts):
                absent = sorted(label_names - {k for k, _ in series.labels})
                entry = _series_json(store, engine, series, absent, ts.tolist(), vals.tolist(), now)
                out.setdefault(metric, []).append(entry)
    return out


@memstore.post("/query", summary="Evaluate a compat (or PromQL) query to one number", response_model=QueryReply)
async def run_query(body: QueryBody, request: Request) -> JSONResponse:
    store, metrics = need(request, Store), need(request, SelfMetrics)
    try:
        if body.promql is not None:
            compiled = trigger.compile_promql(body.promql, body.aggregate)
        elif body.query is not None:
            retention = store.limits.retention_seconds
            compiled = trigger.compile_compat(body.query, body.operationOverTime, body.window or None, retention)
        else:
            raise ValueError("the body needs 'query' (compat form) or 'promql'")
    except trigger.TriggerError as exc:
        metrics.queries.labels("rest", "bad_query").inc()
        return JSONResponse({"error": f"{_BODY_FIELD.get(exc.key, exc.key)}: {exc.problem}"}, status_code=400)
    except ValueError as exc:
        metrics.queries.labels("rest", "bad_query").inc()
        return JSONResponse({"error": str(exc)}, status_code=400)
    engine, turns = need(request, query.Engine), need(request, LowPriority)
    reading = await trigger.evaluate_async(compiled, engine, store.now_ms(), turns.pause)
    metrics.kedify.read_compat(compiled, reading)
    notes = {k: list(v) for k, v in (("warnings", reading.warnings), ("infos", reading.infos)) if v}
    if reading.state is trigger.State.NOT_FOUND:
        metrics.queries.labels("rest", "not_found").inc()
        return JSONResponse({"ok": True, "operation": "query", "error": "Metric not found", "value": -1, **notes})
    if reading.raw is None:
        metrics.queries.labels("rest", "error").inc()
        return JSONResponse({"error": reading.message}, status_code=400)
    metrics.queries.labels("rest", "ok").inc()
    reply = {"ok": True, "operation": "query", "error": "", "value": json_number(reading.raw), **notes}
    return JSONResponse(reply)


@memstore.post("/reset", summary="Delete all data (needs ADMIN_TOKEN)")
async def reset(request: Request) -> dict[str, Any]:
    token = need(request, Host).admin_token
    if not token:
        raise HTTPException(403, "reset is disabled: start the server with ADMIN_TOKEN to enable it")
    supplied = request.headers.get("authorization", "")
    if not hmac.compare_digest(supplied.encode(), f"Bearer {token}".encode()):
        need(request, SelfMetrics).http_rejected.labels("/memstore/reset", "unauthorized").inc()
        raise HTTPException(401, "missing or wrong 'Authorization: Bearer <ADMIN_TOKEN>'")
    need(request, Store).reset()
    return {"ok": True, "operation": "reset", "error": ""}


def _series_json(
    store: Store,
    engine: query.Engine,
    series: Series,
    absent: list[str],
    ts: list[int],
    vals: list[float],
    now: int,
) -> dict[str, Any]:
    labels = {k: v for k, v in series.labels if k != METRIC_NAME}
    points = [{"value": json_number(v), "time": t // 1000} for t, v in zip(ts, vals, strict=True) if not is_stale(v)]
    aggregates: dict[str, Any] = {}
    lookback = query.compat_lookback_ms(store.retention_ms)
    for op in _DATA_AGGREGATES:
        try:
            expr = query.series_expr(series.labels, absent, op, store.retention_ms)
            result = engine.instant(expr, now, lookback)
            samples = result.samples if isinstance(result, query.Vector) else []
            aggregates[op] = json_number(samples[0].value) if samples else None
        except query.QueryError:
            aggregates[op] = None
    return {"labels": labels, "data": points, "aggregatesOverTime": aggregates, "lastUpdate": series.last_ts // 1000}


@operations.get("/healthz", summary="Liveness")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@operations.get("/readyz", summary="Readiness: every listener is bound (with PEERS: and the replica is warmed)")
async def readyz(request: Request) -> JSONResponse:
    if need(request, Host).ready():
        return JSONResponse({"status": "ready"})
    return JSONResponse({"status": "starting"}, status_code=503)


@operations.get(
    "/snapshot",
    summary="The store as a snapshot, for a peer's warm start (PEER_TOKEN bearer, or a client certificate under mTLS)",
    response_class=Response,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
async def store_snapshot(request: Request) -> Response:
    access, metrics = need(request, PeerAccess), need(request, SelfMetrics)
    if not access.token and not access.mtls:
        metrics.peer_snapshot_requests.labels("disabled").inc()
        raise HTTPException(403, "the snapshot is served only to peers: set PEER_TOKEN (or REST_TLS_CA_FILE for mTLS)")
    if not access.mtls:
        supplied = request.headers.get("authorization", "")
        if not hmac.compare_digest(supplied.encode(), f"Bearer {access.token}".encode()):
            metrics.peer_snapshot_requests.labels("unauthorized").inc()
            raise HTTPException(401, "missing or wrong 'Authorization: Bearer <PEER_TOKEN>'")
    if not access.warmed():
        metrics.peer_snapshot_requests.labels("not_ready").inc()
        return JSONResponse({"error": "not warmed up yet: ask another peer"}, status_code=503)
    async with access.serving:
        taken = await access.capture()
        data = await asyncio.to_thread(snapshot.encode, taken)
    metrics.peer_snapshot_requests.labels("ok").inc()
    return Response(data, media_type="application/octet-stream", headers={"Cache-Control": "no-store"})


@operations.get(
    "/info", summary="kedify/otel-add-on's flat strings, then version, configuration, bound ports, store statistics"
)
async def info(request: Request) -> dict[str, Any]:
    return need(request, Host).info()


@operations.get("/metrics", summary="Self-metrics in Prometheus text format", response_class=PlainTextResponse)
@internal_metrics.get("/metrics", summary="Self-metrics in Prometheus text format", response_class=PlainTextResponse)
async def metrics(request: Request) -> PlainTextResponse:
    text = need(request, SelfMetrics).render()
    return PlainTextResponse(text, media_type="text/plain; version=0.0.4; charset=utf-8")


@operations.get("/", include_in_schema=False)
async def root() -> RedirectResponse:
    return RedirectResponse("/swagger/index.html", status_code=308)


@operations.get("/swagger/index.html", include_in_schema=False)
async def swagger() -> RedirectResponse:
    """kedify/otel-add-on's Swagger UI address: the same docs, served at ``/docs``."""
    return RedirectResponse("/docs", status_code=308)


@operations.get("/docs", include_in_schema=False)
async def docs() -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="keda-otel-scaler API",
        swagger_js_url="/docs/static/swagger-ui-bundle.js",
        swagger_css_url="/docs/static/swagger-ui.css",
        swagger_favicon_url="/docs/static/favicon.png",
    )
