"""``keda-otel-scaler status``: the JSON of ``GET /api/v1/scaledobjects`` as terminal tables.

Pure text from the decoded JSON (no import of the service), so it renders whatever a running
scaler of this version answers: one block per ScaledObject with the replicas the HPA asks for,
a row per trigger followed by the reason in words, then the sources.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def render(status: Mapping[str, Any]) -> str:
    now = float(status["now"])
    lines: list[str] = []
    if status.get("warmupRemainingSeconds"):
        lines.append(
            f"Warming up for {status['warmupRemainingSeconds']:.0f} s more: a trigger without data answers "
            "UNAVAILABLE, so KEDA keeps the current replicas.\n"
        )
    objects = status["scaledObjects"]
    if not objects:
        lines.append(
            "No ScaledObject has asked this scaler yet (KEDA's first GetMetricSpec/GetMetrics/IsActive adds it)."
        )
    for so in objects:
        lines.extend(_object(so, now))
        lines.append("")
    lines.extend(_sources(status["sources"], float(status["retentionSeconds"])))
    triggers = [t for so in objects for t in so["triggers"]]
    erroring = sum(1 for t in triggers if t["erroring"])
    lines.append(
        f"\n{_plural(len(objects), 'ScaledObject')}, {_plural(len(triggers), 'trigger')} "
        f"({erroring} erroring); {_plural(len(status['sources']), 'source')}."
    )
    return "\n".join(lines)


def _object(so: Mapping[str, Any], now: float) -> list[str]:
    title = f"{so['namespace']}/{so['name']}"
    if so["replicas"] is None:
        decision = "no trigger answers a value"
    else:
        decision = f"the HPA asks for {_plural(so['replicas'], 'replica')} (largest: {so['replicasFrom']})"
    header = ["TRIGGER", "STATE", "VALUE", "TARGET", "REPLICAS", "LAST CALL", "CALLS", "ERRORS", "SERIES"]
    rows = [header] + [_trigger_row(t, now) for t in so["triggers"]]
    table = _table(rows)
    out = [f"{title}: {decision}", "  " + table[0]]
    for trigger, row in zip(so["triggers"], table[1:], strict=True):
        out.append("  " + row)
        out.append(f"      why: {trigger['reason']}")
        last = trigger["errors"]["last"]
        if last is not None and not trigger["erroring"]:
            out.append(
                f"      last error {_age(now - last['at'])} ({last['method']} {last['code']}): {last['message']}"
            )
    return out


def _trigger_row(trigger: Mapping[str, Any], now: float) -> list[str]:
    calls: Mapping[str, Mapping[str, Any]] = trigger["rpcs"]
    latest = max(calls, key=lambda method: float(calls[method]["last"]), default=None)
    errors = trigger["errors"]
    return [
        trigger["metricName"],
        _state(trigger),
        _number(trigger["value"]),
        _number(trigger["target"]),
        _number(trigger["replicas"]),
        "-" if latest is None else f"{latest} {_age(now - calls[latest]['last'])}",
        str(sum(c["count"] for c in calls.values())),
        ", ".join(f"{n} {code}" for code, n in errors["byCode"].items()) or "0",
        _series(trigger["series"], trigger.get("planner")),
    ]


def _state(trigger: Mapping[str, Any]) -> str:
    if trigger["erroring"]:
        return "ERROR"
    if trigger["warmingUp"]:
        return "warming up"
    if trigger["state"] == "unread":
        return "spec only"
    label = "active" if trigger["active"] else "inactive"
    return label + (" (fallback)" if trigger["state"] == "fallback" else "")


def _series(series: Mapping[str, Any] | None, planner: Mapping[str, Any] | None) -> str:
    if planner is not None:
        # the planner's explanation: figures, or groups of them (the result first)
        leaves = [kv for k, v in planner.items() for kv in (v.items() if isinstance(v, Mapping) else [(k, v)])]
        return "planner: " + ", ".join(f"{k}={_number(v)}" for k, v in leaves[:4])
    if series is None:
        return "-"
    if not series["count"]:
        return "no live series"
    return (
        f"{_plural(series['count'], 'series', 'series')}, {_plural(series['podCount'], 'pod')}, "
        f"newest {_age(series['newestSampleAgeSeconds'])}"
    )


def _sources(sources: Sequence[Mapping[str, Any]], retention: float) -> list[str]:
    if not sources:
        return ["No OTLP export received yet."]
    header = ["NAMESPACE", "DEPLOYMENT", "POD", "LAST EXPORT", "SERIES", "EXPORTS", "REJECTED"]
    rows = [header]
    for s in sources:
        rejected = ", ".join(f"{n} {reason}" for reason, n in s["rejectedByReason"].items()) or "0"
        if s["sharedRejectedPoints"]:
            rejected += f" (+{s['sharedRejectedPoints']} in shared requests)"
        stale = " (stale)" if s["lastExportAgeSeconds"] > retention else ""
        rows.append(
            [
                s["namespace"] or "-",
                s["deployment"] or "-",
                s["pod"] or "-",
                _age(s["lastExportAgeSeconds"]) + stale,
                _number(s["series"]),
                str(s["exports"]),
                rejected,
            ]
        )
    return ["Sources (OTLP exporters)"] + ["  " + line for line in _table(rows)]


def _table(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]


def _number(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 90:
        return f"{seconds:.1f} s ago" if seconds < 10 else f"{seconds:.0f} s ago"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"


def _plural(n: int, word: str, plural: str = "") -> str:
    return f"{n} {word if n == 1 else plural or word + 's'}"
