"""The two trigger kinds (a query :class:`Trigger`, a :class:`PlannerTrigger`), how each reads
(:func:`read`, :func:`read_async`: the reading with the not-found and warm-up policy) and what
KEDA gets of a reading."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace

from scaler import planner, query
from scaler.query.ast import BinaryExpr, Expr, VectorMatching, VectorSelector
from scaler.store import Store
from scaler.trigger.queries import Query
from scaler.trigger.readings import Reading, State, evaluate, evaluate_async

logger = logging.getLogger("scaler.trigger")
"""The trigger core logs under one name (the planner's decision lines, annotations)."""

_MAX_METRIC_NAME = 63
_K8S_NAMES = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")
"""``<namespace>-<name>`` of a ScaledObject as is (kedify/otel-add-on sends it unchanged)."""
_NOT_NAME = re.compile(r"[^a-z0-9]+")


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
    not_found: dict[tuple[bool, str], Reading] = field(default_factory=dict, compare=False, hash=False, repr=False)
    """Its not-found readings with the policy applied, by warm-up state and cause (:func:`read`)."""

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


PlanWork = Callable[[], planner.Plan | None]
Offload = Callable[[PlanWork], Awaitable[planner.Plan | None]]
"""How a planner decision is computed once its series are taken (:func:`scaler.planner.take`):
in a worker thread (:func:`in_thread`, the service: a decision over tens of pods takes tens of
milliseconds of numpy, and KEDA's other calls keep their latency meanwhile) or at once
(:func:`inline`, the lab: its virtual clock must not move while a decision is computed)."""


async def in_thread(work: PlanWork) -> planner.Plan | None:
    return await asyncio.to_thread(work)


async def inline(work: PlanWork) -> planner.Plan | None:
    return work()


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
    not_found: dict[tuple[bool, str], Reading] = field(default_factory=dict, compare=False, hash=False, repr=False)
    """Its not-found readings with the policy applied, by warm-up state and cause (:func:`read`)."""

    def read(self, store: Store, now_ms: int) -> Reading:
        """The plan at ``now_ms`` as a VALUE (the desired replicas) or NOT_FOUND (no pod of the
        deployment exports). Logs one line each time the answer changes."""
        return self._answer(planner.plan(store, self.spec, now_ms))

    async def read_async(self, store: Store, now_ms: int, offload: Offload) -> Reading:
        """:meth:`read`, with the series taken now and the decision computed by ``offload``."""
        snapshot = planner.take(store, self.spec, now_ms)
        return self._answer(await offload(lambda: planner.decide(snapshot)))

    def _answer(self, decision: planner.Plan | None) -> Reading:
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


def read(trigger: AnyTrigger, engine: query.Engine, now_ms: int, warming: bool) -> Reading:
    """The trigger's query (or plan) at ``now_ms`` with its not-found policy applied: during the
    warm-up (``warming``) "nothing" is "not yet" (HOLD), else the fallback or, with
    errIfNotFound, none."""
    if isinstance(trigger, PlannerTrigger):
        return _policy(trigger, trigger.read(engine.store, now_ms), warming)
    return _policy(trigger, evaluate(trigger.query, engine, now_ms), warming)


async def read_async(
    trigger: AnyTrigger, engine: query.Engine, now_ms: int, warming: bool, offload: Offload = inline
) -> Reading:
    """:func:`read` with :func:`evaluate_async`, and a planner's decision computed by ``offload``
    (what the KEDA servicer runs)."""
    if isinstance(trigger, PlannerTrigger):
        return _policy(trigger, await trigger.read_async(engine.store, now_ms, offload), warming)
    return _policy(trigger, await evaluate_async(trigger.query, engine, now_ms), warming)


def _policy(trigger: AnyTrigger, reading: Reading, warming: bool) -> Reading:
    if reading.state is not State.NOT_FOUND:
        return reading
    if reading.warnings or reading.infos:
        return _not_found(trigger, reading, warming)
    # a trigger that finds nothing is read again and again (a stream's every wake-up, every poll)
    # to the same reading: it is made once per trigger, warm-up state and cause (a handful)
    key = (warming, reading.message)
    made = trigger.not_found.get(key)
    if made is None:
        made = trigger.not_found[key] = _not_found(trigger, reading, warming)
    return made


def _not_found(trigger: AnyTrigger, reading: Reading, warming: bool) -> Reading:
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


def sanitize_metric_name(text: str) -> str:
    """A name KEDA/HPA accept: lowercase ``[a-z0-9-]``, at most 63 characters."""
    name = _NOT_NAME.sub("-", text.lower()).strip("-") or "metric"
    if len(name) > _MAX_METRIC_NAME:
        digest = hashlib.sha1(text.encode()).hexdigest()[:8]
        name = name[: _MAX_METRIC_NAME - 9].rstrip("-") + "-" + digest
    return name
