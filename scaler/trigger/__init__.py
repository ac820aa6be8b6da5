"""A KEDA trigger, from its metadata to the number KEDA gets: the one core every surface uses.
Modules: ``metadata`` (parse), ``queries`` (compile), ``readings`` (evaluate), ``kinds`` (the two
trigger kinds, their not-found policy and KEDA's numbers), ``cache`` (:class:`TriggerCache`); every
public name is importable from here.

* :func:`parse` turns ScaledObject ``triggers[].metadata`` into a validated :class:`Trigger`
  (:func:`parse_any` also into a :class:`PlannerTrigger`), one small parser per key; every
  error is a :class:`TriggerError` naming the key, so KEDA shows the user exactly what to fix.
  :class:`TriggerCache` keeps parsed triggers, so a poll does no parsing, and compiled queries,
  so triggers of one query share it.
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

from scaler.trigger.cache import TriggerCache
from scaler.trigger.kinds import (
    KEDA_VALUE_LIMIT,
    AnyTrigger,
    Offload,
    PlannerTrigger,
    Trigger,
    in_thread,
    inline,
    keda_bounded,
    read,
    read_async,
    sanitize_metric_name,
)
from scaler.trigger.metadata import KEDA_KEYS, OUR_KEYS, metric_name_of, parse, parse_any
from scaler.trigger.queries import (
    AGGREGATES,
    Queries,
    Query,
    TriggerError,
    compile_compat,
    compile_promql,
    parse_duration,
)
from scaler.trigger.readings import Reading, State, evaluate, evaluate_async

__all__ = [
    "AGGREGATES",
    "KEDA_KEYS",
    "KEDA_VALUE_LIMIT",
    "OUR_KEYS",
    "AnyTrigger",
    "Offload",
    "PlannerTrigger",
    "Queries",
    "Query",
    "Reading",
    "State",
    "Trigger",
    "TriggerCache",
    "TriggerError",
    "compile_compat",
    "compile_promql",
    "evaluate",
    "evaluate_async",
    "in_thread",
    "inline",
    "keda_bounded",
    "metric_name_of",
    "parse",
    "parse_any",
    "parse_duration",
    "read",
    "read_async",
    "sanitize_metric_name",
]
