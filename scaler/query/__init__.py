"""Queries: a PromQL engine with Prometheus 3 semantics and the Go reference's compat form.

    from scaler import query
    expr = query.parse_promql('sum(rate(http_requests_total{job="api"}[1m]))')  # parse once
    value = query.Engine(store).instant(expr, store.now_ms())                      # run often

    q = query.parse_compat('sum(vllm:num_requests_waiting{model="m"})')
    expr = query.compat_to_expr(q, "avg", window_ms=120_000)   # same engine, same semantics

Errors of either form are :class:`QueryError` (with ``line``/``col`` for syntax errors).
"""

from scaler.query.ast import Expr
from scaler.query.compat import (
    OPERATIONS,
    CompatQuery,
    compat_lookback_ms,
    compat_to_expr,
    compat_to_promql_text,
    parse_compat,
    series_expr,
)
from scaler.query.engine import Engine, Pause, QueryLimits, Result, metric_names, selectors, turn
from scaler.query.errors import QueryError
from scaler.query.jsonast import translate_ast
from scaler.query.parser import parse_metric_selector, parse_promql
from scaler.query.printer import format_expr
from scaler.query.tokens import parse_duration_ms
from scaler.query.values import (
    Matrix,
    Sample,
    Scalar,
    String,
    TimeSeries,
    Value,
    Vector,
    format_timestamp,
    format_value,
)

__all__ = [
    "OPERATIONS",
    "CompatQuery",
    "Engine",
    "Expr",
    "Matrix",
    "Pause",
    "QueryError",
    "QueryLimits",
    "Result",
    "Sample",
    "Scalar",
    "String",
    "TimeSeries",
    "Value",
    "Vector",
    "compat_lookback_ms",
    "compat_to_expr",
    "compat_to_promql_text",
    "format_expr",
    "format_timestamp",
    "format_value",
    "metric_names",
    "parse_compat",
    "parse_duration_ms",
    "parse_metric_selector",
    "parse_promql",
    "selectors",
    "series_expr",
    "translate_ast",
    "turn",
]
