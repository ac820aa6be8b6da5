"""The Prometheus HTTP API (``/api/v1/...``), enough for Grafana's Prometheus data source.

Same parameters, JSON and error statuses as Prometheus: ``bad_data`` → 400, ``execution`` →
422; values are strings (``"1.5"``, ``"NaN"``, ``"+Inf"``), timestamps seconds with
millisecond precision. GET takes query-string parameters; POST also accepts an
``application/x-www-form-urlencoded`` body (what Grafana sends), whose values win.

Handlers are ``async`` on purpose: the store belongs to the event loop and is never touched
from a worker thread.
"""

from __future__ import annotations

import asyncio
import functools
import json
import math
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from scaler import __version__, query
from scaler.model import LabelPairs, Matcher
from scaler.query.tokens import parse_duration_ms
from scaler.store import Series, Store

MAX_POINTS_PER_SERIES = 11_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_FORM = "application/x-www-form-urlencoded"

Params = dict[str, list[str]]
Handler = Callable[..., Awaitable[Response]]


class BadParam(ValueError):
    """A request parameter Prometheus would reject with ``bad_data``."""


def _invalid(name: str, detail: object) -> BadParam:
    return BadParam(f"invalid parameter {json.dumps(name)}: {detail}")


@functools.lru_cache(maxsize=256)
def _parse(text: str) -> query.Expr:
    return query.parse_promql(text)


def parse_time_ms(text: str) -> int:
    """Prometheus' ``parseTime``: Unix seconds (float) or RFC 3339, to milliseconds."""
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        if not math.isfinite(seconds):
            raise ValueError(f"cannot parse {json.dumps(text)} to a valid timestamp")
        whole = math.trunc(seconds)
        frac = (seconds - whole) * 1000
        return whole * 1000 + int(math.copysign(math.floor(abs(frac) + 0.5), frac))
    try:
        stamp = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(f"cannot parse {json.dumps(text)} to a valid timestamp") from None
    if stamp.tzinfo is None or "T" not in text.upper():
        raise ValueError(f"cannot parse {json.dumps(text)} to a valid timestamp")
    delta = stamp - _EPOCH
    return (delta.days * 86_400_000_000 + delta.seconds * 1_000_000 + delta.microseconds) // 1000


def parse_step_ms(text: str) -> int:
    """Prometheus' ``parseDuration``: float seconds or a duration like ``15s``/``1m``."""
    try:
        seconds = float(text)
    except ValueError:
        ms = parse_duration_ms(text)
        if ms is None:
            raise ValueError(f"cannot parse {json.dumps(text)} to a valid duration") from None
        return ms
    if not math.isfinite(seconds) or abs(seconds * 1e9) >= 2**63:
        raise ValueError(f"cannot parse {json.dumps(text)} to a valid duration. It overflows int64")
    return int(seconds * 1000)


async def _params(request: Request) -> Params:
    params: Params = {}
    if request.method == "POST" and request.headers.get("content-type", "").startswith(_FORM):
        body = (await request.body()).decode("utf-8", "replace")
        params = parse_qs(body, keep_blank_values=True)
    for key, value in request.query_params.multi_items():
        params.setdefault(key, []).append(value)
    return params


def _first(params: Params, name: str) -> str:
    values = params.get(name)
    return values[0] if values else ""


def _time(params: Params, name: str, default: int) -> int:
    text = _first(params, name)
    if not text:
        return default
    try:
        return parse_time_ms(text)
    except ValueError as exc:
        raise _invalid(name, exc) from None


def _required_time(params: Params, name: str) -> int:
    try:
        return parse_time_ms(_first(params, name))
    except ValueError as exc:
        raise _invalid(name, exc) from None


def _limit(params: Params) -> int:
    text = _first(params, "limit")
    if not text:
        return 0
    try:
        limit = int(text)
    except ValueError:
        raise _invalid("limit", f"cannot parse {json.dumps(text)} to a valid limit") from None
    if limit < 0:
        raise _invalid("limit", "limit must be non-negative")
    return limit


def _expr(params: Params) -> query.Expr:
    try:
        return _parse(_first(params, "query"))
    except query.QueryError as exc:
        raise _invalid("query", exc) from None


def _engine(store: Store, engine: query.Engine, params: Params) -> query.Engine:
    text = _first(params, "lookback_delta")
    if not text:
        return engine
    try:
        ms = parse_step_ms(text)
    except ValueError as exc:
        raise _invalid("lookback_delta", exc) from None
    return query.Engine(store, ms, engine.limits) if ms > 0 else engine


def _timeout(params: Params, engine: query.Engine) -> float:
    """Prometheus' ``timeout`` parameter, capped by the server's query timeout."""
    text = _first(params, "timeout")
    if not text:
        return engine.limits.timeout_s
    try:
        ms = parse_step_ms(text)
    except ValueError as exc:
        raise _invalid("timeout", exc) from None
    if ms <= 0:
        raise _invalid("timeout", "timeout must be positive")
    return min(ms / 1000, engine.limits.timeout_s)


def _matchers(params: Params) -> list[tuple[Matcher, ...]]:
    sets: list[tuple[Matcher, ...]] = []
    for text in params.get("match[]", []):
        try:
            matchers = query.parse_metric_selector(text)
        except query.QueryError as exc:
            raise _invalid("match[]", exc) from None
        if all(m.matches_empty for m in matchers):
            raise _invalid("match[]", "match[] must contain at least one non-empty matcher")
        sets.append(matchers)
    return sets


def _ok(data_json: str, warnings: Iterable[str] = (), infos: Iterable[str] = ()) -> Response:
    body = '{"status":"success","data":' + data_json
    for key, items in (("warnings", list(warnings)), ("infos", list(infos))):
        if items:
            body += f',"{key}":' + json.dumps(items, ensure_ascii=False)
    return Response(body + "}", media_type="application/json")


def _error(kind: str, message: str, status: int) -> JSONResponse:
    return JSONResponse({"status": "error", "errorType": kind, "error": message}, status_code=status)


def _query_error(exc: query.QueryError) -> JSONResponse:
    if exc.kind == "execution":
        return _error("execution", str(exc), 422)
    if exc.kind == "timeout":
        return _error("timeout", str(exc), 503)
    return _error("bad_data", str(exc), 400)


_RENDER_SLICE = 1000


async def _result(result: query.Result) -> Response:
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
    return _ok(data, result.warnings, result.infos)


def _metric(labels: LabelPairs) -> str:
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
            + ",".join(f'{{"metric":{_metric(s.labels)},"value":{_point(t, s.value)}}}' for s in value.samples)
            + "]"
        )
    else:
        kind = "matrix"
        result = (
            "["
            + ",".join(
                f'{{"metric":{_metric(s.labels)},"values":['
                + ",".join(_point(t, v) for t, v in zip(s.timestamps, s.values, strict=True))
                + "]}"
                for s in value.series
            )
            + "]"
        )
    return f'{{"resultType":"{kind}","result":{result}}}'


def _selected(store: Store, sets: list[tuple[Matcher, ...]], start: int | None, end: int | None) -> list[Series]:
    seen: dict[LabelPairs, Series] = {}
    for matchers in sets:
        for s in store.select(matchers):
            if s.labels in seen:
                continue
            if start is not None and end is not None and not len(s.window(start - 1, end)[0]):
                continue
            seen[s.labels] = s
    return [seen[k] for k in sorted(seen)]


def _truncate(items: list[Any], limit: int) -> tuple[list[Any], list[str]]:
    if limit and len(items) > limit:
        return items[:limit], ["results truncated due to limit"]
    return items, []


def create_router(store: Store, engine: query.Engine | None = None) -> APIRouter:
    """The ``/api/v1`` routes over ``store`` (Prometheus' 5 minute lookback by default)."""
    engine = engine or query.Engine(store)
    router = APIRouter(prefix="/api/v1", tags=["prometheus"])

    def get_and_post(path: str, summary: str) -> Callable[[Handler], Handler]:
        """Register for GET and POST with distinct OpenAPI operation ids."""

        def register(handler: Handler) -> Handler:
            for method in ("GET", "POST"):
                router.add_api_route(
                    path,
                    handler,
                    methods=[method],
                    summary=summary,
                    operation_id=f"prometheus_{handler.__name__}_{method.lower()}",
                )
            return handler

        return register

    @get_and_post("/query", "PromQL instant query")
    async def instant_query(request: Request) -> Response:
        params = await _params(request)
        try:
            t = _time(params, "time", store.now_ms())
            _expr(params)
            eng = _engine(store, engine, params)
            timeout = _timeout(params, engine)
        except BadParam as exc:
            return _error("bad_data", str(exc), 400)
        try:
            return await _result(await eng.evaluate_async(_first(params, "query"), t, timeout_s=timeout))
        except query.QueryError as exc:
            return _query_error(exc)

    @get_and_post("/query_range", "PromQL range query")
    async def range_query(request: Request) -> Response:
        params = await _params(request)
        try:
            start = _required_time(params, "start")
            end = _required_time(params, "end")
            if end < start:
                raise BadParam("end timestamp must not be before start time")
            try:
                step = parse_step_ms(_first(params, "step"))
            except ValueError as exc:
                raise _invalid("step", exc) from None
            if step <= 0:
                raise BadParam("zero or negative query resolution step widths are not accepted. Try a positive integer")
            if (end - start) // step > MAX_POINTS_PER_SERIES:
                raise BadParam(
                    "exceeded maximum resolution of 11,000 points per timeseries. "
                    "Try decreasing the query resolution (?step=XX)"
                )
            expr = _expr(params)
            eng = _engine(store, engine, params)
            timeout = _timeout(params, engine)
            if expr.type.value not in ("scalar", "instant vector"):
                raise _invalid(
                    "query",
                    f'invalid expression type "{expr.type.value}" for range query, must be Scalar or instant Vector',
                )
        except BadParam as exc:
            return _error("bad_data", str(exc), 400)
        try:
            return await _result(await eng.evaluate_async(_first(params, "query"), start, end, step, timeout_s=timeout))
        except query.QueryError as exc:
            return _query_error(exc)

    @get_and_post("/format_query", "PromQL text in Prometheus' canonical formatting")
    async def format_query(request: Request) -> Response:
        params = await _params(request)
        try:
            expr = _expr(params)
        except BadParam as exc:
            return _error("bad_data", str(exc), 400)
        return _ok(json.dumps(query.format_expr(expr), ensure_ascii=False))

    @get_and_post("/parse_query", "PromQL syntax tree as JSON (Prometheus' shape)")
    async def parse_query(request: Request) -> Response:
        params = await _params(request)
        try:
            expr = _expr(params)
        except BadParam as exc:
            return _error("bad_data", str(exc), 400)
        return _ok(json.dumps(query.translate_ast(expr), ensure_ascii=False))

    @get_and_post("/series", "Series matching selectors")
    async def series(request: Request) -> Response:
        params = await _params(request)
        try:
            if not params.get("match[]"):
                raise BadParam("no match[] parameter provided")
            sets = _matchers(params)
            start = _time(params, "start", -(2**62))
            end = _time(params, "end", 2**62)
            limit = _limit(params)
        except BadParam as exc:
            return _error("bad_data", str(exc), 400)
        found, warnings = _truncate(_selected(store, sets, start, end), limit)
        return _ok("[" + ",".join(_metric(s.labels) for s in found) + "]", warnings)

    @get_and_post("/labels", "Label names")
    async def labels(request: Request) -> Response:
        params = await _params(request)
        try:
            sets = _matchers(params)
            limit = _limit(params)
        except BadParam as exc:
            return _error("bad_data", str(exc), 400)
        if sets:
            names = sorted({k for s in _selected(store, sets, None, None) for k, _ in s.labels})
        else:
            names = store.label_names()
        names, warnings = _truncate(names, limit)
        return _ok(json.dumps(names, ensure_ascii=False), warnings)

    @router.get("/label/{name}/values", summary="Values of one label")
    async def label_values(name: str, request: Request) -> Response:
        params = await _params(request)
        if not name:
            return _error("bad_data", f"invalid label name: {json.dumps(name)}", 400)
        try:
            sets = _matchers(params)
            limit = _limit(params)
        except BadParam as exc:
            return _error("bad_data", str(exc), 400)
        if sets:
            values = sorted({v for s in _selected(store, sets, None, None) for k, v in s.labels if k == name})
        else:
            values = store.label_values(name)
        values, warnings = _truncate(values, limit)
        return _ok(json.dumps(values, ensure_ascii=False), warnings)

    @router.get("/status/buildinfo", summary="Version information (read by Grafana)")
    async def buildinfo() -> Response:
        return _ok(
            json.dumps(
                {
                    "version": __version__,
                    "revision": "",
                    "branch": "",
                    "buildUser": "",
                    "buildDate": "",
                    "goVersion": "",
                }
            )
        )

    @router.get("/metadata", summary="Metric metadata (types are not tracked: unknown)")
    async def metadata(request: Request) -> Response:
        params = await _params(request)
        metric = _first(params, "metric")
        known = store.names()
        names = [metric] if metric in known else ([] if metric else known)
        entries = {n: [{"type": "unknown", "help": "", "unit": ""}] for n in names}
        return _ok(json.dumps(entries, ensure_ascii=False))

    @router.get("/status/config", summary="Configuration (there is no scrape config)")
    async def config() -> Response:
        return _ok(json.dumps({"yaml": "global:\n  evaluation_interval: 1m\n"}))

    @router.get("/status/flags", summary="Flags (lookback only)")
    async def flags() -> Response:
        return _ok(json.dumps({"query.lookback-delta": f"{engine.lookback_ms // 1000}s"}))

    @get_and_post("/query_exemplars", "Exemplars (none)")
    async def exemplars() -> Response:
        return _ok("[]")

    @router.get("/rules", summary="Recording and alerting rules (none)")
    async def rules() -> Response:
        return _ok('{"groups":[]}')

    @router.get("/alerts", summary="Active alerts (none)")
    async def alerts() -> Response:
        return _ok('{"alerts":[]}')

    return router
