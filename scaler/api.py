"""The HTTP API on port 9090: the Go reference's REST memstore API, health, info, metrics,
OpenAPI and offline docs. OTLP/HTTP and the Prometheus API are mounted by the app."""

from __future__ import annotations

import asyncio
import hmac
import importlib.resources
import json
import logging
import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from scaler import __version__, query
from scaler.logs import RateLimitedLog
from scaler.model import METRIC_NAME, Matcher, MatchOp, is_stale
from scaler.selfmetrics import SelfMetrics
from scaler.store import Series, Store
from scaler.triggerquery import NotFound, TriggerQuery, WideResult, parse_duration

logger = logging.getLogger(__name__)

_DATA_AGGREGATES = ("last_one", "rate", "count", "avg", "min", "max")
_DOCS_ASSETS = importlib.resources.files("fastapi_offline") / "static"
"""Swagger UI 5.32.6 (renders OpenAPI 3.1, which FastAPI emits) from PyPI ``fastapi-offline``: no CDN."""


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


class ApiContext:
    """What the HTTP handlers need from the running service."""

    def __init__(
        self,
        store: Store,
        engine: query.Engine,
        metrics: SelfMetrics,
        admin_token: str,
        info: Callable[[], dict[str, Any]],
        ready: Callable[[], bool],
        body_timeout: float = 30.0,
    ) -> None:
        self.store = store
        self.engine = engine
        self.metrics = metrics
        self.admin_token = admin_token
        self.info = info
        self.ready = ready
        self.body_timeout = body_timeout


MAX_API_BODY_BYTES = 1024 * 1024
"""Largest body accepted by the query/admin endpoints (OTLP/HTTP has its own, larger limit)."""


class Guard:
    """ASGI middleware for bad input on the HTTP API.

    * Answers 413 once a request body outgrows its limit, chunked or not, so no endpoint ever
      buffers an unbounded body. Paths whose limit is None (OTLP/HTTP, which enforces and counts
      its own limit after decompression) pass through.
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


def create_app(ctx: ApiContext, routers: list[APIRouter]) -> FastAPI:
    app = FastAPI(
        title="keda-otel-scaler",
        version=__version__,
        description="OTLP metrics in, KEDA scaling decisions out. Prefill and decode scale independently.",
        docs_url=None,
        redoc_url=None,
    )
    app.add_middleware(
        Guard,
        limits=lambda path: None if path == "/v1/metrics" else MAX_API_BODY_BYTES,
        metrics=ctx.metrics,
        documented_paths=lambda: app.openapi()["paths"],
        body_timeout=ctx.body_timeout,
    )
    app.mount("/docs/static", StaticFiles(directory=Path(str(_DOCS_ASSETS))), name="docs-static")

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        # Logged with its traceback by the server; the client gets no internals.
        ctx.metrics.http_internal_errors.inc()
        return JSONResponse({"error": "internal error; see the server log"}, status_code=500)

    @app.exception_handler(RequestValidationError)
    async def invalid_body(request: Request, exc: RequestValidationError) -> JSONResponse:
        ctx.metrics.http_rejected.labels(request.url.path, "invalid_body").inc()
        problems = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}" for e in exc.errors())
        return JSONResponse({"error": f"invalid request: {problems}"}, status_code=400)

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="keda-otel-scaler API",
            swagger_js_url="/docs/static/swagger-ui-bundle.js",
            swagger_css_url="/docs/static/swagger-ui.css",
            swagger_favicon_url="/docs/static/favicon.png",
        )

    app.include_router(_memstore(ctx))
    app.include_router(_operations(ctx))
    for router in routers:
        app.include_router(router)
    return app


def _memstore(ctx: ApiContext) -> APIRouter:
    router = APIRouter(prefix="/memstore", tags=["memstore"])

    @router.get("/names", summary="Metric names in the store")
    async def names() -> list[str]:
        return ctx.store.names()

    @router.get("/data", summary="Every series with its samples and aggregates over the retention")
    async def data(name: str | None = None) -> dict[str, list[dict[str, Any]]]:
        now = ctx.store.now_ms()
        lo = now - ctx.store.retention_ms
        if name:
            series_list = ctx.store.select([Matcher.of(METRIC_NAME, MatchOp.EQ, name)])
        else:
            series_list = list(ctx.store.series())
        out: dict[str, list[dict[str, Any]]] = {}
        for series in series_list:
            ts, vals = series.window(lo, now)
            if not len(ts):
                continue
            out.setdefault(series.name, []).append(_series_json(ctx, series, ts.tolist(), vals.tolist(), now))
        return out

    @router.post("/query", summary="Evaluate a compat (or PromQL) query to one number", response_model=QueryReply)
    async def run_query(body: QueryBody) -> JSONResponse:
        try:
            if body.promql is not None:
                compiled = TriggerQuery.promql(body.promql, body.aggregate)
            elif body.query is not None:
                window = parse_duration(body.window) if body.window else ctx.store.limits.retention_seconds
                if window > ctx.store.limits.retention_seconds:
                    raise ValueError(
                        f"window {body.window} is longer than the retention ({ctx.store.limits.retention_seconds:g}s)"
                    )
                compiled = TriggerQuery.compat(body.query, body.operationOverTime, window)
            else:
                raise ValueError("the body needs 'query' (compat form) or 'promql'")
        except (ValueError, query.QueryError) as exc:
            ctx.metrics.queries.labels("rest", "bad_query").inc()
            return JSONResponse({"error": str(exc)}, status_code=400)
        notes: dict[str, list[str]] = {}
        try:
            result = await ctx.engine.evaluate_async(
                compiled.text, ctx.store.now_ms(), lookback_ms=compiled.lookback_ms
            )
            notes = {k: list(v) for k, v in (("warnings", result.warnings), ("infos", result.infos)) if v}
            value = compiled.reduce(result.value)
        except NotFound:
            ctx.metrics.queries.labels("rest", "not_found").inc()
            return JSONResponse({"ok": True, "operation": "query", "error": "Metric not found", "value": -1, **notes})
        except (WideResult, query.QueryError) as exc:
            ctx.metrics.queries.labels("rest", "error").inc()
            return JSONResponse({"error": str(exc)}, status_code=400)
        ctx.metrics.queries.labels("rest", "ok").inc()
        return JSONResponse({"ok": True, "operation": "query", "error": "", "value": _json_number(value), **notes})

    @router.post("/reset", summary="Delete all data (needs ADMIN_TOKEN)")
    async def reset(request: Request) -> dict[str, Any]:
        if not ctx.admin_token:
            raise HTTPException(403, "reset is disabled: start the server with ADMIN_TOKEN to enable it")
        supplied = request.headers.get("authorization", "")
        expected = f"Bearer {ctx.admin_token}"
        if not hmac.compare_digest(supplied.encode(), expected.encode()):
            ctx.metrics.http_rejected.labels("/memstore/reset", "unauthorized").inc()
            raise HTTPException(401, "missing or wrong 'Authorization: Bearer <ADMIN_TOKEN>'")
        ctx.store.reset()
        return {"ok": True, "operation": "reset", "error": ""}

    return router


def _series_json(ctx: ApiContext, series: Series, ts: list[int], vals: list[float], now: int) -> dict[str, Any]:
    labels = {k: v for k, v in series.labels if k != METRIC_NAME}
    points = [{"value": _json_number(v), "time": t / 1000} for t, v in zip(ts, vals, strict=True) if not is_stale(v)]
    window_s = ctx.store.limits.retention_seconds
    aggregates: dict[str, Any] = {}
    exact = query.CompatQuery(series.name, tuple((k, v) for k, v in series.labels if k != METRIC_NAME))
    for op in _DATA_AGGREGATES:
        try:
            window_ms = int(window_s * 1000)
            expr = query.compat_to_expr(exact, op, window_ms)
            result = ctx.engine.instant(expr, now, query.compat_lookback_ms(window_ms))
            samples = result.samples if isinstance(result, query.Vector) else []
            aggregates[op] = _json_number(samples[0].value) if samples else None
        except query.QueryError:
            aggregates[op] = None
    return {"labels": labels, "data": points, "aggregatesOverTime": aggregates, "lastUpdate": series.last_ts / 1000}


def _json_number(value: float) -> float | str:
    """JSON has no NaN/Inf: send them as strings, as Prometheus does."""
    if math.isfinite(value):
        return value
    return "NaN" if math.isnan(value) else ("+Inf" if value > 0 else "-Inf")


def _operations(ctx: ApiContext) -> APIRouter:
    router = APIRouter(tags=["operations"])

    @router.get("/healthz", summary="Liveness")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz", summary="Readiness: every listener is bound")
    async def readyz() -> JSONResponse:
        if ctx.ready():
            return JSONResponse({"status": "ready"})
        return JSONResponse({"status": "starting"}, status_code=503)

    @router.get("/info", summary="Version, effective configuration, bound ports, store statistics")
    async def info() -> dict[str, Any]:
        return ctx.info()

    @router.get("/metrics", summary="Self-metrics in Prometheus text format", response_class=PlainTextResponse)
    async def metrics() -> PlainTextResponse:
        return PlainTextResponse(ctx.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    return router
