"""ScaledObject ``triggers[].metadata`` → a validated trigger: one small parser per key, every
error a :class:`TriggerError` naming the key."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping

from scaler import planner
from scaler.config import TriggerDefaults
from scaler.configvalues import parse_bool
from scaler.trigger.kinds import AnyTrigger, PlannerTrigger, Trigger, sanitize_metric_name
from scaler.trigger.queries import Queries, Query, TriggerError, compile_compat, compile_promql

logger = logging.getLogger("scaler.trigger")
"""The trigger core logs under one name (the planner's decision lines, annotations)."""

KEDA_KEYS = frozenset({"scalerAddress", "enableTLS", "unsafeSsl", "caCert", "tlsClientCert", "tlsClientKey"})
"""Keys KEDA itself puts in the metadata; we ignore them."""

OUR_KEYS = frozenset(
    {
        "metricQuery",
        "operationOverTime",
        "window",
        "query",
        "aggregate",
        "targetValue",
        "threshold",
        "activationThreshold",
        "activationTargetValue",
        "clampMin",
        "clampMax",
        "valueIfNotFound",
        "errIfNotFound",
        "metricName",
    }
)


_QUERY_ONLY = frozenset({"metricQuery", "operationOverTime", "window", "query", "aggregate"})
_QUERY_ONLY |= {"activationThreshold", "activationTargetValue", "clampMin", "clampMax", "threshold"}


def _planner(metadata: Mapping[str, str], defaults: TriggerDefaults, retention_seconds: float) -> PlannerTrigger:
    for key in sorted(_QUERY_ONLY & metadata.keys()):
        raise TriggerError(key, "does not apply to a planner trigger (it answers the desired replica count)")
    target = _number(metadata, "targetValue", positive=True)
    if target is not None and target != 1:
        raise TriggerError("targetValue", f"{target:g}: a planner trigger answers replicas, so it must be 1")
    try:
        spec = planner.parse_spec(metadata)
    except planner.SpecError as exc:
        raise TriggerError(exc.key, exc.problem) from None
    needed = planner.history_needed_s(spec)
    if retention_seconds < needed:
        # a trigger is parsed once per distinct metadata (the trigger cache), so once per trigger
        logger.warning(
            "planner trigger %s %s: the store keeps %gs of samples (METRIC_STORE_RETENTION_SECONDS) and the "
            "planner's history needs %gs (its recurring levels and holds look back that far; "
            "the overlay manifests/keda-planner/scaler keeps enough for every built-in profile): it plans on the "
            "shorter history",
            spec.role,
            spec.deployment,
            retention_seconds,
            needed,
        )
    value_if_not_found = _number(metadata, "valueIfNotFound")
    return PlannerTrigger(
        spec=spec,
        metric_name=metric_name_of(metadata),
        value_if_not_found=defaults.value_if_not_found if value_if_not_found is None else value_if_not_found,
        error_if_not_found=_error_if_not_found(metadata, defaults),
    )


def parse_any(
    metadata: Mapping[str, str], defaults: TriggerDefaults, retention_seconds: float, queries: Queries | None = None
) -> AnyTrigger:
    """A planner trigger (metadata key ``planner``) or a query trigger; raises TriggerError."""
    if "planner" in metadata:
        return _planner(metadata, defaults, retention_seconds)
    return parse(metadata, defaults, retention_seconds, queries)


def parse(
    metadata: Mapping[str, str], defaults: TriggerDefaults, retention_seconds: float, queries: Queries | None = None
) -> Trigger:
    """Validate a query trigger's metadata; raises TriggerError naming the key at fault.
    ``queries``: compiled queries to share with other triggers of the same query."""
    unknown = set(metadata) - OUR_KEYS - KEDA_KEYS - planner.KEYS
    if unknown:
        logger.debug("ignoring unknown trigger metadata keys: %s", ", ".join(sorted(unknown)))
    target = _number(metadata, "targetValue", "threshold", positive=True)
    if target is None:
        raise TriggerError("targetValue", "required (a number > 0; alias 'threshold')")
    activation = _number(metadata, "activationThreshold", "activationTargetValue")
    clamp_min, clamp_max = _clamps(metadata)
    value_if_not_found = _number(metadata, "valueIfNotFound")
    error_if_not_found = _error_if_not_found(metadata, defaults)
    return Trigger(
        query=_query(metadata, retention_seconds, queries),
        metric_name=metric_name_of(metadata),
        target=target,
        activation=0.0 if activation is None else activation,
        clamp_min=clamp_min,
        clamp_max=clamp_max,
        value_if_not_found=defaults.value_if_not_found if value_if_not_found is None else value_if_not_found,
        error_if_not_found=error_if_not_found,
        named=bool(metadata.get("metricName", "").strip()),
        activation_given=activation is not None,
    )


def _number(metadata: Mapping[str, str], *keys: str, positive: bool = False) -> float | None:
    """The first of ``keys`` (a key and its aliases) present, as a finite number."""
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


def _clamps(metadata: Mapping[str, str]) -> tuple[float | None, float | None]:
    low, high = _number(metadata, "clampMin"), _number(metadata, "clampMax")
    if low is not None and high is not None and low > high:
        raise TriggerError("clampMin", f"{low:g} is greater than clampMax {high:g}")
    return low, high


def _error_if_not_found(metadata: Mapping[str, str], defaults: TriggerDefaults) -> bool:
    raw = metadata.get("errIfNotFound")
    if raw is None:
        return defaults.error_if_not_found
    try:
        return parse_bool(raw)
    except ValueError:
        raise TriggerError("errIfNotFound", f"{raw!r} is not true/false") from None


def metric_name_of(metadata: Mapping[str, str]) -> str:
    """A trigger's metric name: ``metricName``, else derived from its query (also for metadata
    that does not parse, so its status entry is the one the fixed trigger will use)."""
    given = metadata.get("metricName", "").strip()
    if not given and "planner" in metadata:
        given = f"planner-{metadata['planner']}-{metadata.get('deployment', '')}"
    return sanitize_metric_name(given or metadata.get("metricQuery") or metadata.get("query", ""))


def _query(metadata: Mapping[str, str], retention_seconds: float, queries: Queries | None) -> Query:
    compat = metadata.get("metricQuery", "").strip()
    promql = metadata.get("query", "").strip()
    if compat and promql:
        raise TriggerError("query", "set exactly one of 'metricQuery' (compat form) and 'query' (PromQL)")
    if promql:
        for key in ("operationOverTime", "window"):
            if key in metadata:
                raise TriggerError(key, "only applies to 'metricQuery'; in PromQL use a range selector")
        aggregate = metadata.get("aggregate", "").strip() or None
        if queries is None:
            return compile_promql(promql, aggregate)
        return queries.get(("query", promql, aggregate), lambda: compile_promql(promql, aggregate))
    if not compat:
        raise TriggerError("metricQuery", "required: set 'metricQuery' (compat form) or 'query' (PromQL)")
    operation, window = metadata.get("operationOverTime", ""), metadata.get("window")
    if queries is None:
        return compile_compat(compat, operation, window, retention_seconds)
    return queries.get(
        ("metricQuery", compat, operation, window), lambda: compile_compat(compat, operation, window, retention_seconds)
    )
