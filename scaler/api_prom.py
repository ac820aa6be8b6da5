"""The Prometheus HTTP API (``/api/v1/...``), enough for Grafana's Prometheus data source.

Same parameters, JSON and error statuses as Prometheus: ``bad_data`` → 400, ``execution`` →
422; values are strings (``"1.5"``, ``"NaN"``, ``"+Inf"``), timestamps seconds with
millisecond precision. GET takes query-string parameters; POST also accepts an
``application/x-www-form-urlencoded`` body (what Grafana sends), whose values win.

Handlers are ``async`` on purpose: the store belongs to the event loop and is never touched
from a worker thread. They use the service's one :class:`~scaler.query.Engine` (``need``).
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Request, Response

from scaler import __version__, query
from scaler.httpserver import need
from scaler.lowpriority import LowPriority
from scaler.model import LabelPairs, Matcher
from scaler.promjson import error, metric_json, ok, query_error, result_response
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
        ms = query.parse_duration_ms(text)
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


def _lookback_ms(params: Params) -> int | None:
    """The ``lookback_delta`` parameter in ms; None (the engine's) when absent or not positive."""
    text = _first(params, "lookback_delta")
    if not text:
        return None
    try:
        ms = parse_step_ms(text)
    except ValueError as exc:
        raise _invalid("lookback_delta", exc) from None
    return ms if ms > 0 else None


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


router = APIRouter(prefix="/api/v1", tags=["prometheus"])


def _get_and_post(path: str, summary: str) -> Callable[[Handler], Handler]:
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


@_get_and_post("/query", "PromQL instant query")
async def instant_query(request: Request) -> Response:
    params = await _params(request)
    engine = need(request, query.Engine)
    try:
        t = _time(params, "time", engine.store.now_ms())
        _expr(params)
        lookback = _lookback_ms(params)
        timeout = _timeout(params, engine)
    except BadParam as exc:
        return error("bad_data", str(exc), 400)
    try:
        text = _first(params, "query")
        pause = need(request, LowPriority).pause
        result = await engine.evaluate_async(text, t, lookback_ms=lookback, timeout_s=timeout, pause=pause)
        return await result_response(result, pause)
    except query.QueryError as exc:
        return query_error(exc)


@_get_and_post("/query_range", "PromQL range query")
async def range_query(request: Request) -> Response:
    params = await _params(request)
    engine = need(request, query.Engine)
    try:
        start, end, step = _range(params)
        expr = _expr(params)
        lookback = _lookback_ms(params)
        timeout = _timeout(params, engine)
        if expr.type.value not in ("scalar", "instant vector"):
            raise _invalid(
                "query",
                f'invalid expression type "{expr.type.value}" for range query, must be Scalar or instant Vector',
            )
    except BadParam as exc:
        return error("bad_data", str(exc), 400)
    try:
        text = _first(params, "query")
        pause = need(request, LowPriority).pause
        result = await engine.evaluate_async(
            text, start, end, step, lookback_ms=lookback, timeout_s=timeout, pause=pause
        )
        return await result_response(result, pause)
    except query.QueryError as exc:
        return query_error(exc)


def _range(params: Params) -> tuple[int, int, int]:
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
    return start, end, step


@_get_and_post("/format_query", "PromQL text in Prometheus' canonical formatting")
async def format_query(request: Request) -> Response:
    return await _shown(request, query.format_expr)


@_get_and_post("/parse_query", "PromQL syntax tree as JSON (Prometheus' shape)")
async def parse_query(request: Request) -> Response:
    return await _shown(request, query.translate_ast)


async def _shown(request: Request, show: Callable[[query.Expr], object]) -> Response:
    """``/format_query`` and ``/parse_query``: the ``query`` parameter, parsed, shown as JSON."""
    params = await _params(request)
    try:
        expr = _expr(params)
    except BadParam as exc:
        return error("bad_data", str(exc), 400)
    return ok(json.dumps(show(expr), ensure_ascii=False))


@_get_and_post("/series", "Series matching selectors")
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
        return error("bad_data", str(exc), 400)
    found, warnings = _truncate(_selected(need(request, Store), sets, start, end), limit)
    return ok("[" + ",".join(metric_json(s.labels) for s in found) + "]", warnings)


@_get_and_post("/labels", "Label names")
async def labels(request: Request) -> Response:
    return await _listing(request, lambda s: (k for k, _ in s.labels), Store.label_names)


@router.get("/label/{name}/values", summary="Values of one label")
async def label_values(name: str, request: Request) -> Response:
    if not name:
        return error("bad_data", f"invalid label name: {json.dumps(name)}", 400)
    return await _listing(request, lambda s: (v for k, v in s.labels if k == name), lambda st: st.label_values(name))


async def _listing(
    request: Request, of_series: Callable[[Series], Iterable[str]], everything: Callable[[Store], list[str]]
) -> Response:
    """``/labels`` and ``/label/<name>/values``: from the series matching ``match[]``, else all."""
    params = await _params(request)
    store = need(request, Store)
    try:
        sets = _matchers(params)
        limit = _limit(params)
    except BadParam as exc:
        return error("bad_data", str(exc), 400)
    found = sorted({x for s in _selected(store, sets, None, None) for x in of_series(s)}) if sets else everything(store)
    items, warnings = _truncate(found, limit)
    return ok(json.dumps(items, ensure_ascii=False), warnings)


@router.get("/status/buildinfo", summary="Version information (read by Grafana)")
async def buildinfo() -> Response:
    info = {"version": __version__, "revision": "", "branch": "", "buildUser": "", "buildDate": "", "goVersion": ""}
    return ok(json.dumps(info))


@router.get("/metadata", summary="Metric metadata (types are not tracked: unknown)")
async def metadata(request: Request) -> Response:
    params = await _params(request)
    metric = _first(params, "metric")
    known = need(request, Store).names()
    names = [metric] if metric in known else ([] if metric else known)
    entries = {n: [{"type": "unknown", "help": "", "unit": ""}] for n in names}
    return ok(json.dumps(entries, ensure_ascii=False))


@router.get("/status/config", summary="Configuration (there is no scrape config)")
async def config() -> Response:
    return ok(json.dumps({"yaml": "global:\n  evaluation_interval: 1m\n"}))


@router.get("/status/flags", summary="Flags (lookback only)")
async def flags(request: Request) -> Response:
    return ok(json.dumps({"query.lookback-delta": f"{need(request, query.Engine).lookback_ms // 1000}s"}))


@_get_and_post("/query_exemplars", "Exemplars (none)")
async def exemplars() -> Response:
    return ok("[]")


@router.get("/rules", summary="Recording and alerting rules (none)")
async def rules() -> Response:
    return ok('{"groups":[]}')


@router.get("/alerts", summary="Active alerts (none)")
async def alerts() -> Response:
    return ok('{"alerts":[]}')
