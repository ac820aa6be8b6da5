"""A KEDA trigger, from its metadata to the number KEDA gets: the one core every surface uses.

* :func:`parse` turns ScaledObject ``triggers[].metadata`` into a validated :class:`Trigger`
  (:func:`parse_any` also into a :class:`PlannerTrigger`), one small parser per key; every
  error is a :class:`TriggerError` naming the key, so KEDA shows the user exactly what to fix.
  :class:`TriggerCache` keeps parsed triggers, so a poll does no parsing.
* :func:`compile_compat` (compat form, with its window checked against the retention) and
  :func:`compile_promql` build a :class:`Query`; ``POST /memstore/query`` calls them too. Both
  forms compile to the same PromQL AST and run through the same engine, so they cannot disagree.
* :func:`evaluate` (or :func:`evaluate_async`, which leaves the event loop to other calls
  between slices of work) reduces a query's answer to a :class:`Reading`; :func:`read` (or
  :func:`read_async`) adds the trigger's policy for "nothing found" (the warm-up hold,
  ``valueIfNotFound``, ``errIfNotFound``). A Reading is a value, a hold, not found, or invalid —
  never a sentinel — and carries Prometheus' annotations of the query.
* :meth:`Trigger.metric_value` and :meth:`Trigger.is_active` derive KEDA's two numbers, and
  :meth:`Trigger.metric_name_for` the metric name of GetMetricSpec. Where kedify/otel-add-on's
  behaviour is a choice rather than a bug, a compat-form trigger (``metricQuery``) keeps it:
  active iff the value KEDA gets is above 0 (no activation key), ``valueIfNotFound`` not
  clamped, and ``<namespace>-<name>`` of the ScaledObject as the metric name.
* A second kind, :class:`PlannerTrigger` (metadata key ``planner``, INTERFACE §8), reads the
  desired replicas of a prefill or decode Deployment from :func:`scaler.planner.plan` instead of
  a query, through the same :func:`read` with the same not-found and warm-up policy.
"""

from __future__ import annotations

import enum
import hashlib
import logging
import math
import re
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field, replace
from typing import Generic, TypeVar

from scaler import planner, query
from scaler.config import TriggerDefaults
from scaler.configvalues import parse_bool
from scaler.model import METRIC_NAME
from scaler.query.ast import BinaryExpr, Expr, VectorMatching, VectorSelector
from scaler.store import Store

logger = logging.getLogger(__name__)

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

AGGREGATES = ("sum", "avg", "max", "min")
_MAX_METRIC_NAME = 63
_K8S_NAMES = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")
"""``<namespace>-<name>`` of a ScaledObject as is (kedify/otel-add-on sends it unchanged)."""


class TriggerError(ValueError):
    """Invalid trigger metadata; ``key`` names the offending metadata key."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"metadata key {key!r}: {problem}")
        self.key = key
        self.problem = problem


# ---------------------------------------------------------------------- queries


@dataclass(frozen=True)
class Query:
    """A parsed, ready-to-run query and how to reduce its result to one number."""

    expr: query.Expr
    text: str
    """The PromQL form of the query (what actually runs)."""
    names: frozenset[str] | None
    """Metric names the query reads (None: it may read any series)."""
    aggregate: str | None = None
    lookback_ms: int | None = None
    """Instant-selector lookback, when the engine's (Prometheus' 5 m) is not right."""
    compat: query.CompatQuery | None = None
    """The compat form's parts (None for PromQL)."""
    operation: str = ""
    """The compat form's ``operationOverTime``."""
    logged: set[str] = field(default_factory=set, compare=False, hash=False, repr=False)
    """Annotations already logged for this query: each distinct one is logged once."""

    @staticmethod
    def of_compat(parsed: query.CompatQuery, operation: str, window_ms: int) -> Query:
        expr = query.compat_to_expr(parsed, operation, window_ms)
        text = query.format_expr(expr)
        return Query(expr, text, _names(expr), None, query.compat_lookback_ms(window_ms), parsed, operation)


def parse_duration(text: str) -> float:
    """A PromQL duration (``30s``, ``2m``, ``1h30m``, ``500ms``) or plain seconds (``45``,
    ``2.5``) → seconds."""
    text = text.strip()
    try:
        seconds = float(text)
    except ValueError:
        ms = query.parse_duration_ms(text)
        if ms is None:
            raise ValueError(f"invalid duration {text!r} (use e.g. 30s, 2m, 1h30m)") from None
        seconds = ms / 1000
    if not seconds > 0 or math.isinf(seconds):
        raise ValueError(f"duration {text!r} must be positive")
    return seconds


def compile_compat(metric_query: str, operation: str, window: str | None, retention_seconds: float) -> Query:
    """The compat form (``metricQuery`` + ``operationOverTime`` + ``window``, default and
    at most the retention) → a Query; raises TriggerError naming the key at fault."""
    seconds = retention_seconds
    if window is not None:
        try:
            seconds = parse_duration(window)
        except ValueError as exc:
            raise TriggerError("window", str(exc)) from None
        if seconds > retention_seconds:
            raise TriggerError("window", f"{window} is longer than the retention ({retention_seconds:g}s)")
    operation = operation.strip() or "last_one"
    if operation not in query.OPERATIONS:
        raise TriggerError(
            "operationOverTime", f"unknown operation {operation!r}; use one of {', '.join(query.OPERATIONS)}"
        )
    try:
        return Query.of_compat(query.parse_compat(metric_query), operation, int(seconds * 1000))
    except query.QueryError as exc:
        raise TriggerError("metricQuery", str(exc)) from None


def compile_promql(text: str, aggregate: str | None = None) -> Query:
    """A PromQL instant query (``aggregate`` reduces a multi-series result) → a Query."""
    if aggregate is not None and aggregate not in AGGREGATES:
        raise TriggerError("aggregate", f"must be one of {', '.join(AGGREGATES)}")
    try:
        expr = query.parse_promql(text)
    except query.QueryError as exc:
        raise TriggerError("query", str(exc)) from None
    return Query(expr, text, _names(expr), aggregate)


def _names(expr: query.Expr) -> frozenset[str] | None:
    names: set[str] = set()
    for matchers in query.selectors(expr):
        exact = [m.value for m in matchers if m.name == METRIC_NAME and m.op.value == "="]
        if not exact:
            return None
        names.add(exact[0])
    return frozenset(names)


# ---------------------------------------------------------------------- readings


class State(enum.Enum):
    VALUE = "value"
    """The query answered one number."""
    HOLD = "hold"
    """Nothing found during the warm-up: answer nothing yet, so KEDA keeps the replicas."""
    NOT_FOUND = "not_found"
    """Nothing found (no series, only stale ones, or NaN): the fallback, or an error without one."""
    INVALID = "invalid"
    """The query cannot be answered as one number (several series, an evaluation error)."""


@dataclass(frozen=True, slots=True)
class Reading:
    """What one evaluation of a query came to."""

    state: State
    raw: float | None = None
    """The query's value (VALUE only)."""
    fallback: float | None = None
    """NOT_FOUND only: the value to answer with instead (None with errIfNotFound)."""
    message: str = ""
    warnings: tuple[str, ...] = ()
    """Prometheus' warning annotations of the query (e.g. a counter function over a gauge)."""
    infos: tuple[str, ...] = ()

    @property
    def number(self) -> float | None:
        """The number this reading answers with: the value or the fallback; None if there is none."""
        return self.raw if self.state is State.VALUE else self.fallback


def evaluate(q: Query, engine: query.Engine, now_ms: int) -> Reading:
    """``q`` at ``now_ms`` as a VALUE, NOT_FOUND (without fallback) or INVALID reading."""
    try:
        result = engine.evaluate(q.expr, now_ms, lookback_ms=q.lookback_ms, text=q.text)
    except query.QueryError as exc:
        return Reading(State.INVALID, message=str(exc))
    return _noted(q, result)


async def evaluate_async(q: Query, engine: query.Engine, now_ms: int) -> Reading:
    """:func:`evaluate` in slices that leave the event loop to other calls between them."""
    try:
        # the parsed tree, not the text: the engine's parse cache holds 512 queries, and
        # thousands of triggers (one stream each) would each be parsed again at every evaluation
        result = await engine.evaluate_async(q.expr, now_ms, lookback_ms=q.lookback_ms, text=q.text)
    except query.QueryError as exc:
        return Reading(State.INVALID, message=str(exc))
    return _noted(q, result)


def _noted(q: Query, result: query.Result) -> Reading:
    """The reading of ``result`` with its annotations, each distinct one logged once per query."""
    for text in (*result.warnings, *result.infos):
        if text not in q.logged:
            q.logged.add(text)
            logger.warning("query %r: %s", q.text, text)
    reading = _reduced(q, result.value)
    if not result.warnings and not result.infos:
        return reading  # the common case: no copy
    return replace(reading, warnings=result.warnings, infos=result.infos)


def _reduced(q: Query, result: query.Value) -> Reading:
    if isinstance(result, query.Scalar):
        value = result.value
    elif isinstance(result, query.Vector):
        values = [s.value for s in result.samples]
        if not values:
            return Reading(State.NOT_FOUND, message="Metric not found")
        if len(values) == 1:
            value = values[0]
        elif q.aggregate is None:
            return Reading(
                State.INVALID,
                message=f"query returned {len(values)} series; wrap it in sum(...)/max(...) or set "
                "the trigger's aggregate: sum|avg|max|min",
            )
        else:
            value = _reduce(q.aggregate, values)
    else:
        return Reading(State.INVALID, message=f"query must return a scalar or an instant vector, got {result.kind}")
    if math.isnan(value):
        return Reading(State.NOT_FOUND, message="query result is NaN (no data in the window)")
    return Reading(State.VALUE, raw=value)


def _reduce(aggregate: str, values: list[float]) -> float:
    if aggregate == "sum":
        return math.fsum(values)
    if aggregate == "avg":
        return math.fsum(values) / len(values)
    if aggregate == "max":
        return max(values)
    return min(values)


def read(trigger: AnyTrigger, engine: query.Engine, now_ms: int, warming: bool) -> Reading:
    """The trigger's query (or plan) at ``now_ms`` with its not-found policy applied: during the
    warm-up (``warming``) "nothing" is "not yet" (HOLD), else the fallback or, with
    errIfNotFound, none."""
    if isinstance(trigger, PlannerTrigger):
        return _policy(trigger, trigger.read(engine.store, now_ms), warming)
    return _policy(trigger, evaluate(trigger.query, engine, now_ms), warming)


async def read_async(trigger: AnyTrigger, engine: query.Engine, now_ms: int, warming: bool) -> Reading:
    """:func:`read` with :func:`evaluate_async` (what the KEDA servicer runs)."""
    if isinstance(trigger, PlannerTrigger):
        return read(trigger, engine, now_ms, warming)
    return _policy(trigger, await evaluate_async(trigger.query, engine, now_ms), warming)


def _policy(trigger: AnyTrigger, reading: Reading, warming: bool) -> Reading:
    if reading.state is not State.NOT_FOUND:
        return reading
    text = trigger.text
    if warming:
        return replace(
            reading,
            state=State.HOLD,
            message=f"no data yet for {text!r}: the scaler is warming up after a start (WARMUP_SECONDS), "
            "so it does not answer 'not found'; KEDA keeps the current replicas",
        )
    if trigger.error_if_not_found:
        return replace(reading, message=f"no series matches {text!r} (errIfNotFound is set)")
    return replace(reading, fallback=trigger.value_if_not_found, message=f"no series matches {text!r}")


# ---------------------------------------------------------------------- triggers


KEDA_VALUE_LIMIT = 9e15
"""The largest metric value KEDA can carry, rounded down: it passes values on as int64
milli-units (at most ~9.22e15)."""


def keda_bounded(value: float) -> float:
    """``value`` within ``±KEDA_VALUE_LIMIT``, what KEDA can carry."""
    return min(max(value, -KEDA_VALUE_LIMIT), KEDA_VALUE_LIMIT)


@dataclass(frozen=True)
class Trigger:
    """One validated trigger: what to evaluate and how to turn it into KEDA's answers."""

    query: Query
    metric_name: str
    """``metricName``, else derived from the query (see :meth:`metric_name_for`)."""
    target: float
    activation: float
    """``activationThreshold`` (0 when the metadata has no activation key)."""
    clamp_min: float | None
    clamp_max: float | None
    value_if_not_found: float
    error_if_not_found: bool
    named: bool = False
    """The metadata sets ``metricName``."""
    activation_given: bool = False
    """The metadata has an activation key (``activationThreshold`` or its alias)."""

    @property
    def compat(self) -> bool:
        """The compat form (``metricQuery``): kedify/otel-add-on's choices apply."""
        return self.query.compat is not None

    def clamp(self, value: float) -> float:
        if self.clamp_min is not None and value < self.clamp_min:
            value = self.clamp_min
        if self.clamp_max is not None and value > self.clamp_max:
            value = self.clamp_max
        return value

    def metric_value(self, reading: Reading) -> float:
        """GetMetrics' value for a reading with a number: the value clamped; the fallback
        (``valueIfNotFound``) clamped too for PromQL, as is for the compat form (as kedify).
        Bounded to what KEDA can carry (``±KEDA_VALUE_LIMIT``): KEDA turns the value into a
        milli-unit int64, where ``+Inf`` or ``1e300`` would wrap around to a negative number and
        scale the fleet down; bounded, they ask for ``maxReplicaCount``."""
        number = reading.number
        assert number is not None, "a reading without a number is answered with a gRPC status"
        return keda_bounded(self.clamp(number) if reading.state is State.VALUE or not self.compat else number)

    def is_active(self, reading: Reading) -> bool:
        """IsActive for a reading with a number: the unclamped number above ``activationThreshold``
        (default 0); for the compat form without an activation key, the value KEDA gets
        (:meth:`metric_value`, so clamped) above 0, as kedify/otel-add-on decides."""
        if self.compat and not self.activation_given:
            return self.metric_value(reading) > 0
        number = reading.number
        assert number is not None, "a reading without a number is answered with a gRPC status"
        return number > self.activation

    def metric_name_for(self, namespace: str, name: str) -> str:
        """GetMetricSpec's metric name for the ScaledObject ``namespace/name``: ``metricName``;
        else, for the compat form, kedify/otel-add-on's ``<namespace>-<name>``; else the name
        derived from the query."""
        if self.named or not self.compat or not name:
            return self.metric_name
        joined = f"{namespace}-{name}" if namespace else name
        return joined if _K8S_NAMES.fullmatch(joined) else sanitize_metric_name(joined)

    @property
    def text(self) -> str:
        """What the trigger reads, for messages."""
        return self.query.text

    @property
    def expr(self) -> Expr:
        """What the trigger selects (a stream waits for new samples of it)."""
        return self.query.expr


@dataclass(frozen=True)
class PlannerTrigger:
    """A planner trigger: the desired replicas of one role, as a number for KEDA."""

    spec: planner.PlannerSpec
    metric_name: str
    value_if_not_found: float
    error_if_not_found: bool
    target: float = 1.0
    """GetMetricSpec's target: with AverageValue the HPA runs ceil(desired / 1) replicas."""
    last: list[planner.Plan] = field(default_factory=list, compare=False, hash=False, repr=False)
    """The latest decision (at most one), for logs and the status API; it does not feed back."""

    def read(self, store: Store, now_ms: int) -> Reading:
        """The plan at ``now_ms`` as a VALUE (the desired replicas) or NOT_FOUND (no pod of the
        deployment exports). Logs one line each time the answer changes."""
        decision = planner.plan(store, self.spec, now_ms)
        if decision is None:
            return Reading(State.NOT_FOUND, message="no pod exports")
        if not self.last or self.last[0].desired != decision.desired:
            logger.info("%s", decision.line())
        self.last[:] = [decision]
        return Reading(State.VALUE, raw=float(decision.desired))

    def metric_value(self, reading: Reading) -> float:
        """The desired replicas (or the fallback), as they are."""
        number = reading.number
        assert number is not None, "a reading without a number is answered with a gRPC status"
        return keda_bounded(number)

    def is_active(self, reading: Reading) -> bool:
        """Active iff at least one replica is wanted (scale to zero where the ScaledObject allows)."""
        return self.metric_value(reading) > 0

    def metric_name_for(self, namespace: str, name: str) -> str:
        return self.metric_name

    def explain(self) -> dict[str, object] | None:
        """The latest decision, grouped (:meth:`scaler.planner.Plan.explain`), for the status API."""
        return self.last[0].explain() if self.last else None

    @property
    def text(self) -> str:
        return f"the {self.spec.role} planner of deployment {self.spec.deployment!r}"

    @property
    def expr(self) -> Expr:
        """Every series the plan reads, as one selector per metric (a stream waits for them)."""
        first, *rest = [VectorSelector(m[0].value, m) for m in planner.watched(self.spec.deployment)]
        out: Expr = first
        for selector in rest:
            out = BinaryExpr("or", out, selector, VectorMatching("many-to-many"))
        return out


AnyTrigger = Trigger | PlannerTrigger

_QUERY_ONLY = frozenset({"metricQuery", "operationOverTime", "window", "query", "aggregate"})
_QUERY_ONLY |= {"activationThreshold", "activationTargetValue", "clampMin", "clampMax", "threshold"}


def _planner(metadata: Mapping[str, str], defaults: TriggerDefaults) -> PlannerTrigger:
    for key in sorted(_QUERY_ONLY & metadata.keys()):
        raise TriggerError(key, "does not apply to a planner trigger (it answers the desired replica count)")
    target = _number(metadata, "targetValue", positive=True)
    if target is not None and target != 1:
        raise TriggerError("targetValue", f"{target:g}: a planner trigger answers replicas, so it must be 1")
    try:
        spec = planner.parse_spec(metadata)
    except planner.SpecError as exc:
        raise TriggerError(exc.key, exc.problem) from None
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
        return _planner(metadata, defaults)
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


def sanitize_metric_name(text: str) -> str:
    """A name KEDA/HPA accept: lowercase ``[a-z0-9-]``, at most 63 characters."""
    name = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "metric"
    if len(name) > _MAX_METRIC_NAME:
        digest = hashlib.sha1(text.encode()).hexdigest()[:8]
        name = name[: _MAX_METRIC_NAME - 9].rstrip("-") + "-" + digest
    return name


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


K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class _Lru(Generic[K, V]):
    """At most ``size`` results of a parse or compile by their input, least recently used out
    first; an error (TriggerError) is kept and raised again like a result."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: OrderedDict[K, V | TriggerError] = OrderedDict()

    def get(self, key: K, make: Callable[[], V]) -> V:
        entry = self._entries.get(key)
        if entry is None:
            try:
                entry = make()
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

    def __len__(self) -> int:
        return len(self._entries)


Queries = _Lru[tuple[str | None, ...], Query]
"""Compiled queries by the metadata they compile from (``metricQuery`` with
``operationOverTime`` and ``window``, or ``query`` with ``aggregate``)."""


class TriggerCache:
    """LRU cache of parsed triggers keyed by their metadata (bad metadata is cached too), and of
    their compiled queries keyed by the query's own metadata, so that triggers that differ only
    elsewhere (``targetValue``, ``metricName``, …: several ScaledObjects or triggers on one
    query) share one compiled Query. Both hold at most ``size`` entries: the service sizes it
    ``max(4096, MAX_STREAMS)``, a trigger per open stream (~2.6 KB each with its Query)."""

    def __init__(self, defaults: TriggerDefaults, retention_seconds: float, size: int = 4096) -> None:
        self.defaults = defaults
        self.retention_seconds = retention_seconds
        self.size = size
        self._entries: _Lru[frozenset[tuple[str, str]], AnyTrigger] = _Lru(size)
        self.queries: Queries = _Lru(size)

    def get(self, metadata: Mapping[str, str]) -> AnyTrigger:
        return self._entries.get(
            frozenset(metadata.items()),
            lambda: parse_any(metadata, self.defaults, self.retention_seconds, self.queries),
        )

    def __len__(self) -> int:
        """Triggers cached."""
        return len(self._entries)
