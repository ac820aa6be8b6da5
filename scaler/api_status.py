"""Why a role scaled or did not, on the HTTP port: ``GET /api/v1/scaledobjects`` (JSON) and
``GET /ui`` (one self-contained page that polls it).

The JSON is built from the status registry (:mod:`scaler.status`) when asked for: the series a
trigger matches, a source's series in the store and the reason in words (:mod:`scaler.reason`)
are computed then, not on KEDA's calls. The store's selection runs in steps with the event loop's
turn between them (and every few entries), and the JSON is rendered on a worker thread.

``/ui`` is ``scaler/ui/index.html``, package data with its script and style inline: no CDN, no
font, nothing fetched but this API. It is served with a Content-Security-Policy that allows
only that script and style (by their SHA-256) and connections to this origin, so the browser
itself refuses anything else — a ScaledObject name or a query shown on the page is text, never
markup, and could not load or run anything even if it were.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import importlib.resources
import json
import math
import re
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any, TypeVar

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from scaler import reason, sources, status
from scaler.httpserver import need
from scaler.promjson import json_number
from scaler.status import Explains, Registry, SourceStatus, TriggerStatus
from scaler.store import Store
from scaler.trigger import State, Trigger

T = TypeVar("T")

_YIELD_EVERY = 32
"""Entries described between turns of the event loop."""
_MAX_PODS = 50
"""Pods listed per trigger (the count covers them all)."""


@dataclass(frozen=True)
class StatusView:
    """What the status endpoints need from the running service."""

    registry: Registry
    labels: Mapping[str, str]
    """Source field (``namespace``, ``pod``) → the label its resource attribute is promoted to."""
    warmup_remaining: Callable[[], float]

    @staticmethod
    def of(registry: Registry, promotions: Mapping[str, str], warmup_remaining: Callable[[], float]) -> StatusView:
        labels = {
            field: next((promotions[a] for a in names if a in promotions), "")
            for field, names in sources.ATTRIBUTES.items()
        }
        return StatusView(registry, labels, warmup_remaining)


router = APIRouter(tags=["status"])


@router.get(
    "/api/v1/scaledobjects",
    summary="Every ScaledObject trigger KEDA asked about, what it was answered and why; the exporting sources",
    description=(
        "Per ScaledObject (from KEDA's scaledObjectRef) and trigger: the effective PromQL, the last value and "
        "target, the replicas KEDA and the HPA derive from them (ceil(value/target) under AverageValue), "
        "activity, the RPCs seen, errors with the last one, the warm-up state, the matched series and the "
        "reason in words; planner internals for a planner trigger. Then every source (namespace, deployment, "
        "pod) with its last export, series and rejected points. `history=true` adds each trigger's value over "
        "the retention. Entries not asked about (or not exporting) for an hour are evicted."
    ),
)
async def scaledobjects(
    request: Request,
    namespace: str | None = Query(None, description="only this namespace"),
    name: str | None = Query(None, description="only ScaledObjects of this name"),
    history: bool = Query(False, description="add each trigger's value over the retention"),
) -> Response:
    view, store = need(request, StatusView), need(request, Store)
    registry = view.registry
    now = registry.clock()
    objects: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for i, entry in enumerate(registry.triggers()):
        if (namespace is not None and entry.namespace != namespace) or (name is not None and entry.name != name):
            continue
        if i and i % _YIELD_EVERY == 0:
            await asyncio.sleep(0)
        series = await _stepwise(reason.matched_steps(store, entry.trigger, view.labels.get("pod") or "pod"))
        described = _trigger(entry, series, now, history)
        objects.setdefault((entry.namespace, entry.name), []).append(described)
    sources = []
    for i, source in enumerate(registry.sources()):
        if namespace is not None and source.namespace != namespace:
            continue
        if i and i % _YIELD_EVERY == 0:
            await asyncio.sleep(0)
        sources.append(_source(source, store, view, now))
    body = {
        "now": now,
        "retentionSeconds": registry.retention_seconds,
        "warmupRemainingSeconds": round(view.warmup_remaining(), 3),
        "scaledObjects": [_object(ns, so, triggers) for (ns, so), triggers in objects.items()],
        "sources": sources,
    }
    # built from copies, so it renders on a worker thread (thousands of entries are megabytes)
    return Response(await asyncio.to_thread(_json, body), media_type="application/json")


def _json(body: dict[str, Any]) -> bytes:
    return json.dumps(body, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


def _object(namespace: str, name: str, triggers: list[dict[str, Any]]) -> dict[str, Any]:
    """A ScaledObject: the HPA follows the trigger asking for the most replicas."""
    asking = [t for t in triggers if isinstance(t["replicas"], int)]
    top = max(asking, key=lambda t: t["replicas"], default=None)
    return {
        "namespace": namespace,
        "name": name,
        "replicas": None if top is None else top["replicas"],
        "replicasFrom": None if top is None else top["metricName"],
        "active": any(t["active"] for t in triggers),
        "erroring": any(t["erroring"] for t in triggers),
        "triggers": triggers,
    }


async def _stepwise(steps: Generator[None, None, T]) -> T:
    """Run a stepwise computation (see :func:`scaler.store.drain`), giving the event loop a turn
    between its steps."""
    result: list[T] = []

    def kept() -> Generator[None, None, None]:
        result.append((yield from steps))

    for _ in kept():
        await asyncio.sleep(0)
    return result[0]


def _trigger(entry: TriggerStatus, found: reason.Matched | None, now: float, history: bool) -> dict[str, Any]:
    trigger, reading = entry.trigger, entry.reading
    value = entry.value
    out: dict[str, Any] = {
        "metricName": entry.metric,
        "kind": _kind(entry),
        "query": trigger.query.text if isinstance(trigger, Trigger) else None,
        "target": None if trigger is None else trigger.target,
        "activationThreshold": trigger.activation if isinstance(trigger, Trigger) else None,
        "state": _state(entry),
        "value": None if value is None else json_number(value),
        "queryValue": None if reading is None or reading.raw is None else json_number(reading.raw),
        "replicas": None if value is None or trigger is None else reason.replicas_for(value, trigger.target),
        "active": entry.active,
        "warmingUp": entry.warming,
        "erroring": entry.erroring,
        "reason": reason.reason(entry),
        "message": entry.refused or (reading.message if reading is not None else ""),
        "warnings": list(reading.warnings) if reading is not None else [],
        "readAt": entry.read_at or None,
        "firstAsked": entry.first_asked,
        "lastAsked": max((c.last for c in entry.calls.values()), default=None),
        "rpcs": {method: {"count": c.count, "last": c.last} for method, c in sorted(entry.calls.items())},
        "errors": _errors(entry),
        "series": _series(found, now),
    }
    if isinstance(trigger, Explains):
        explained = trigger.explain()
        out["planner"] = None if explained is None else {k: _plain(v) for k, v in explained.items()}
    if history:
        since = now - entry.history.slot_s * status.HISTORY_POINTS
        out["history"] = [[t, None if math.isnan(v) else json_number(v)] for t, v in entry.history.points(since)]
    return out


def _plain(value: object) -> object:
    """A value of a trigger's explanation, with JSON's numbers (no NaN or Inf)."""
    return json_number(value) if isinstance(value, float) else value


def _kind(entry: TriggerStatus) -> str:
    if entry.trigger is None:
        return "invalid" if entry.refused else "unknown"
    if isinstance(entry.trigger, Trigger):
        return "query"
    return re.sub(r"trigger$", "", type(entry.trigger).__name__.lower()) or "other"


def _state(entry: TriggerStatus) -> str:
    """``refused`` (bad metadata), ``unread`` (spec only), ``value``, ``fallback`` (nothing found,
    valueIfNotFound answered), ``hold`` (warm-up), ``not_found`` or ``invalid`` (an error to KEDA)."""
    if entry.refused:
        return "refused"
    if entry.reading is None:
        return "unread"
    if entry.reading.state is State.NOT_FOUND and entry.reading.number is not None:
        return "fallback"
    return entry.reading.state.value


def _errors(entry: TriggerStatus) -> dict[str, Any]:
    last = entry.last_error
    return {
        "count": sum(entry.errors.values()),
        "byCode": dict(entry.errors),
        "last": None
        if last is None
        else {"at": last.at, "method": last.method, "code": last.code, "message": last.message},
    }


def _series(found: reason.Matched | None, now: float) -> dict[str, Any] | None:
    if found is None:
        return None
    return {
        "count": found.series,
        "pods": list(found.pods[:_MAX_PODS]),
        "podCount": len(found.pods),
        "newestSampleAgeSeconds": None if found.newest_ms is None else _age(now, found.newest_ms / 1000),
        "oldestSampleAgeSeconds": None if found.oldest_ms is None else _age(now, found.oldest_ms / 1000),
    }


def _source(source: SourceStatus, store: Store, view: StatusView, now: float) -> dict[str, Any]:
    return {
        "namespace": source.namespace,
        "deployment": source.deployment,
        "pod": source.pod,
        "lastExport": source.touched,
        "lastExportAgeSeconds": _age(now, source.touched),
        "firstExport": source.first_export,
        "exports": source.exports,
        "series": reason.source_series(store, source, view.labels),
        "rejectedPoints": sum(source.rejected.values()),
        "rejectedByReason": dict(source.rejected),
        "sharedRejectedPoints": source.shared_rejected,
    }


def _age(now: float, then: float) -> float:
    """Seconds from ``then`` to ``now``; 0 for what happened while the answer was being built."""
    return round(max(0.0, now - then), 3)


# ---------------------------------------------------------------------- the page


@router.get("/ui", include_in_schema=False)
async def ui() -> HTMLResponse:
    page, policy = _page()
    headers = {
        "Content-Security-Policy": policy,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-cache",
    }
    return HTMLResponse(page, headers=headers)


@cache
def _page() -> tuple[str, str]:
    """The page and its Content-Security-Policy: its own inline script and style by hash,
    connections to this origin only, nothing else."""
    page = (importlib.resources.files("scaler") / "ui" / "index.html").read_text(encoding="utf-8")
    scripts = " ".join(_hash(s) for s in re.findall(r"<script>(.*?)</script>", page, re.S))
    styles = " ".join(_hash(s) for s in re.findall(r"<style>(.*?)</style>", page, re.S))
    policy = (
        f"default-src 'none'; script-src {scripts}; style-src {styles}; connect-src 'self'; "
        "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
    return page, policy


def _hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"
