"""KEDA trigger metadata (ScaledObject ``triggers[].metadata``) → a validated Trigger.

Parsing is strict and every error names the offending key, so KEDA shows the user exactly
what to fix. Parsed triggers are cached by their metadata, so a poll does no parsing.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

from scaler import query
from scaler.config import parse_bool
from scaler.triggerquery import TriggerQuery, parse_duration

logger = logging.getLogger(__name__)

KEDA_KEYS = frozenset({"scalerAddress", "enableTLS", "unsafeSsl", "caCert", "tlsClientCert", "tlsClientKey"})
"""Keys KEDA itself puts in the metadata; we ignore them."""

OUR_KEYS = frozenset(
    {
        "metricQuery",
        "operationOverTime",
        "query",
        "aggregate",
        "targetValue",
        "threshold",
        "activationThreshold",
        "activationTargetValue",
        "window",
        "clampMin",
        "clampMax",
        "valueIfNotFound",
        "errIfNotFound",
        "metricName",
    }
)

_MAX_METRIC_NAME = 63


class TriggerError(ValueError):
    """Invalid trigger metadata; ``key`` names the offending metadata key."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"metadata key {key!r}: {problem}")
        self.key = key


@dataclass(frozen=True)
class Defaults:
    """Service-wide defaults a trigger may override."""

    retention_seconds: float = 120.0
    value_if_not_found: float = 0.0
    error_if_not_found: bool = False


@dataclass(frozen=True)
class Trigger:
    """One validated trigger: what to evaluate and how to turn it into KEDA's answers."""

    query: TriggerQuery
    metric_name: str
    target: float
    activation: float
    clamp_min: float | None
    clamp_max: float | None
    value_if_not_found: float
    error_if_not_found: bool

    def clamp(self, value: float) -> float:
        if self.clamp_min is not None and value < self.clamp_min:
            value = self.clamp_min
        if self.clamp_max is not None and value > self.clamp_max:
            value = self.clamp_max
        return value


def _float(metadata: Mapping[str, str], *keys: str, positive: bool = False) -> float | None:
    for key in keys:
        raw = metadata.get(key)
        if raw is None:
            continue
        try:
            value = float(raw)
        except ValueError:
            raise TriggerError(key, f"{raw!r} is not a number") from None
        if not math.isfinite(value):
            raise TriggerError(key, f"{raw!r} must be finite")
        if positive and value <= 0:
            raise TriggerError(key, f"{raw!r} must be greater than 0")
        return value
    return None


def sanitize_metric_name(text: str) -> str:
    """A name KEDA/HPA accept: lowercase ``[a-z0-9-]``, at most 63 characters."""
    name = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "metric"
    if len(name) > _MAX_METRIC_NAME:
        digest = hashlib.sha1(text.encode()).hexdigest()[:8]
        name = name[: _MAX_METRIC_NAME - 9].rstrip("-") + "-" + digest
    return name


def parse_trigger(metadata: Mapping[str, str], defaults: Defaults) -> Trigger:
    """Validate trigger metadata; raises TriggerError naming the key at fault."""
    unknown = set(metadata) - OUR_KEYS - KEDA_KEYS
    if unknown:
        logger.debug("ignoring unknown trigger metadata keys: %s", ", ".join(sorted(unknown)))
    target = _float(metadata, "targetValue", "threshold", positive=True)
    if target is None:
        raise TriggerError("targetValue", "required (a number > 0; alias 'threshold')")
    activation = _float(metadata, "activationThreshold", "activationTargetValue")
    clamp_min = _float(metadata, "clampMin")
    clamp_max = _float(metadata, "clampMax")
    if clamp_min is not None and clamp_max is not None and clamp_min > clamp_max:
        raise TriggerError("clampMin", f"{clamp_min:g} is greater than clampMax {clamp_max:g}")
    value_if_not_found = _float(metadata, "valueIfNotFound")
    error_if_not_found = defaults.error_if_not_found
    if "errIfNotFound" in metadata:
        try:
            error_if_not_found = parse_bool(metadata["errIfNotFound"])
        except ValueError:
            raise TriggerError("errIfNotFound", f"{metadata['errIfNotFound']!r} is not true/false") from None
    compiled = _query(metadata, defaults)
    metric_name = metadata.get("metricName", "").strip()
    if metric_name:
        metric_name = sanitize_metric_name(metric_name)
    else:
        metric_name = sanitize_metric_name(metadata.get("metricQuery") or metadata.get("query", ""))
    return Trigger(
        query=compiled,
        metric_name=metric_name,
        target=target,
        activation=activation if activation is not None else 0.0,
        clamp_min=clamp_min,
        clamp_max=clamp_max,
        value_if_not_found=value_if_not_found if value_if_not_found is not None else defaults.value_if_not_found,
        error_if_not_found=error_if_not_found,
    )


def _query(metadata: Mapping[str, str], defaults: Defaults) -> TriggerQuery:
    compat = metadata.get("metricQuery", "").strip()
    promql = metadata.get("query", "").strip()
    if compat and promql:
        raise TriggerError("query", "set exactly one of 'metricQuery' (compat form) and 'query' (PromQL)")
    if not compat and not promql:
        raise TriggerError("metricQuery", "required: set 'metricQuery' (compat form) or 'query' (PromQL)")
    if promql:
        for key in ("operationOverTime", "window"):
            if key in metadata:
                raise TriggerError(key, "only applies to 'metricQuery'; in PromQL use a range selector")
        aggregate = metadata.get("aggregate", "").strip() or None
        try:
            return TriggerQuery.promql(promql, aggregate)
        except query.QueryError as exc:
            raise TriggerError("query", str(exc)) from None
        except ValueError as exc:
            raise TriggerError("aggregate", str(exc)) from None
    window = defaults.retention_seconds
    if "window" in metadata:
        try:
            window = parse_duration(metadata["window"])
        except ValueError as exc:
            raise TriggerError("window", str(exc)) from None
        if window > defaults.retention_seconds:
            raise TriggerError(
                "window", f"{metadata['window']} is longer than the retention ({defaults.retention_seconds:g}s)"
            )
    operation = metadata.get("operationOverTime", "last_one").strip() or "last_one"
    if operation not in query.OPERATIONS:
        raise TriggerError(
            "operationOverTime", f"unknown operation {operation!r}; use one of {', '.join(query.OPERATIONS)}"
        )
    try:
        return TriggerQuery.compat(compat, operation, window)
    except query.QueryError as exc:
        raise TriggerError("metricQuery", str(exc)) from None


class TriggerCache:
    """LRU cache of parsed triggers keyed by their metadata (bad metadata is cached too)."""

    def __init__(self, defaults: Defaults, size: int = 4096) -> None:
        self.defaults = defaults
        self.size = size
        self._entries: OrderedDict[frozenset[tuple[str, str]], Trigger | TriggerError] = OrderedDict()

    def get(self, metadata: Mapping[str, str]) -> Trigger:
        key = frozenset(metadata.items())
        entry = self._entries.get(key)
        if entry is None:
            try:
                entry = parse_trigger(metadata, self.defaults)
            except TriggerError as exc:
                entry = exc
            self._entries[key] = entry
            if len(self._entries) > self.size:
                self._entries.popitem(last=False)
        else:
            self._entries.move_to_end(key)
        if isinstance(entry, TriggerError):
            raise entry
        return entry
