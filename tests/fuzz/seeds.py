"""Seed inputs and libFuzzer dictionaries, generated at start-up (binary seeds are never committed).

This module imports no :mod:`scaler` code: the driver process calls it, and the worker must
be the first to import scaler (under instrumentation).
"""

from __future__ import annotations

import ast
import base64
import json
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from google.protobuf import json_format
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList
from opentelemetry.proto.metrics.v1 import metrics_pb2 as m
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from tests.promql.promql_cases import EXPRESSIONS, PARSE_ERRORS, SUBQUERY_EXPRESSIONS

ROOT = Path(__file__).resolve().parents[2]
NOW_NS = 1_800_000_000 * 10**9
"""Matches ``tests.fuzz.common.NOW_S``: seed points land inside the store's window."""
_S = 10**9
_FLAG_NO_VALUE = m.DataPointFlags.DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK
_CUMULATIVE = m.AGGREGATION_TEMPORALITY_CUMULATIVE
_DELTA = m.AGGREGATION_TEMPORALITY_DELTA


# ----------------------------------------------------------------------------- OTLP builders


def any_value(value: object) -> AnyValue:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, bytes):
        return AnyValue(bytes_value=value)
    if isinstance(value, list):
        return AnyValue(array_value=ArrayValue(values=[any_value(v) for v in value]))
    if isinstance(value, dict):
        return AnyValue(kvlist_value=KeyValueList(values=[kv(k, v) for k, v in value.items()]))
    return AnyValue(string_value=str(value))


def kv(key: str, value: object) -> KeyValue:
    return KeyValue(key=key, value=any_value(value))


def attrs(values: dict[str, object]) -> list[KeyValue]:
    return [kv(k, v) for k, v in values.items()]


def number(
    value: float | int,
    t_ns: int = NOW_NS,
    flags: int = 0,
    exemplar: bool = False,
    attributes: dict[str, object] | None = None,
    **labels: object,
) -> m.NumberDataPoint:
    point = m.NumberDataPoint(time_unix_nano=t_ns, start_time_unix_nano=max(0, t_ns - 60 * _S), flags=flags)
    if isinstance(value, int):
        point.as_int = value
    else:
        point.as_double = value
    point.attributes.extend(attrs({**labels, **(attributes or {})}))
    if exemplar:
        point.exemplars.append(
            m.Exemplar(
                time_unix_nano=t_ns,
                as_double=0.5,
                trace_id=bytes(range(16)),
                span_id=bytes(range(8)),
                filtered_attributes=attrs({"user": "u-1"}),
            )
        )
    return point


def gauge(name: str, *points: m.NumberDataPoint) -> m.Metric:
    return m.Metric(name=name, gauge=m.Gauge(data_points=points))


def total(name: str, *points: m.NumberDataPoint, delta: bool = False) -> m.Metric:
    temporality = _DELTA if delta else _CUMULATIVE
    return m.Metric(name=name, sum=m.Sum(aggregation_temporality=temporality, is_monotonic=True, data_points=points))


def histogram(
    name: str,
    bounds: list[float],
    counts: list[int],
    t_ns: int = NOW_NS,
    delta: bool = False,
    flags: int = 0,
    with_sum: bool = True,
    attributes: dict[str, object] | None = None,
    **labels: object,
) -> m.Metric:
    point = m.HistogramDataPoint(
        time_unix_nano=t_ns, count=sum(counts), explicit_bounds=bounds, bucket_counts=counts, flags=flags
    )
    if with_sum:
        point.sum = 1.5 * sum(counts)
    point.attributes.extend(attrs({**labels, **(attributes or {})}))
    temporality = _DELTA if delta else _CUMULATIVE
    return m.Metric(name=name, histogram=m.Histogram(aggregation_temporality=temporality, data_points=[point]))


def exponential(
    name: str,
    scale: int,
    positive: tuple[int, list[int]],
    negative: tuple[int, list[int]] = (0, []),
    zero: int = 0,
    zero_threshold: float = 0.0,
    flags: int = 0,
    delta: bool = False,
) -> m.Metric:
    point = m.ExponentialHistogramDataPoint(
        time_unix_nano=NOW_NS,
        scale=scale,
        zero_count=zero,
        zero_threshold=zero_threshold,
        count=zero + sum(positive[1]) + sum(negative[1]),
        sum=12.5,
        flags=flags,
        positive=m.ExponentialHistogramDataPoint.Buckets(offset=positive[0], bucket_counts=positive[1]),
        negative=m.ExponentialHistogramDataPoint.Buckets(offset=negative[0], bucket_counts=negative[1]),
    )
    point.attributes.extend(attrs({"model_name": "llama"}))
    temporality = _DELTA if delta else _CUMULATIVE
    return m.Metric(
        name=name,
        exponential_histogram=m.ExponentialHistogram(aggregation_temporality=temporality, data_points=[point]),
    )


def summary(
    name: str,
    quantiles: list[tuple[float, float]],
    flags: int = 0,
    attributes: dict[str, object] | None = None,
    **labels: object,
) -> m.Metric:
    point = m.SummaryDataPoint(
        time_unix_nano=NOW_NS,
        count=42,
        sum=99.5,
        flags=flags,
        quantile_values=[m.SummaryDataPoint.ValueAtQuantile(quantile=q, value=v) for q, v in quantiles],
    )
    point.attributes.extend(attrs({**labels, **(attributes or {})}))
    return m.Metric(name=name, summary=m.Summary(data_points=[point]))


def resource_metrics(resource: dict[str, object], *metrics: m.Metric) -> m.ResourceMetrics:
    return m.ResourceMetrics(
        resource=Resource(attributes=attrs(resource)),
        scope_metrics=[m.ScopeMetrics(scope=InstrumentationScope(name="vllm", version="0.8"), metrics=list(metrics))],
    )


def export(*rms: m.ResourceMetrics) -> ExportMetricsServiceRequest:
    return ExportMetricsServiceRequest(resource_metrics=list(rms))


def _pod(role: str, pod: str) -> dict[str, object]:
    return {
        "k8s.namespace.name": "llm-d",
        "k8s.deployment.name": f"pd-llm-d-modelservice-{role}",
        "k8s.pod.name": pod,
        "service.name": "vllm",
        "service.instance.id": pod,
        "host.name": "node-1",
    }


def otlp_requests() -> Iterator[ExportMetricsServiceRequest]:
    """Realistic and malformed Export requests covering every point type and quirk."""
    prefill, decode = _pod("prefill", "p-1"), _pod("decode", "d-1")
    buckets = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0]
    counts = [0, 1, 4, 9, 3, 2, 1, 0, 1]
    # a vLLM scrape, as the collector's Prometheus receiver forwards it
    yield export(
        resource_metrics(
            prefill,
            gauge("vllm:num_requests_waiting", number(3, model_name="llama"), number(4.0, model_name="opt")),
            gauge("vllm:num_requests_running", number(1.0, model_name="llama")),
            gauge("vllm:gpu_cache_usage_perc", number(0.25, model_name="llama")),
            total("vllm:prompt_tokens_total", number(12345.0, model_name="llama", exemplar=True)),
            total("vllm:generation_tokens_total", number(999, model_name="llama")),
            histogram("vllm:time_to_first_token_seconds", buckets, counts, model_name="llama"),
            histogram("vllm:e2e_request_latency_seconds", [1.0, 2.5, 5.0], [1, 2, 3, 4], model_name="llama"),
        ),
        resource_metrics(decode, gauge("vllm:num_requests_waiting", number(0, model_name="llama"))),
    )
    # delta sums and delta histograms, several points per series, out of order
    yield export(
        resource_metrics(
            decode,
            total(
                "http.server.request.count",
                number(5, t_ns=NOW_NS - 2 * _S, route="/v1"),
                number(3, t_ns=NOW_NS - 4 * _S, route="/v1"),
                number(7, t_ns=NOW_NS, route="/v1"),
                delta=True,
            ),
            histogram("http.server.duration", [0.1, 1.0], [1, 1, 1], delta=True, route="/v1"),
        )
    )
    # malformed histograms: counts that do not fit the bounds, no buckets, +Inf and NaN bounds
    yield export(
        resource_metrics(
            prefill,
            histogram("bad_short", [1.0, 2.0, 3.0], [1, 2]),
            histogram("bad_long", [1.0], [1, 2, 3, 4]),
            histogram("no_buckets", [], [], with_sum=False),
            histogram("only_bounds", [1.0, 2.0], []),
            histogram("inf_bound", [1.0, math.inf], [1, 2, 3]),
            histogram("nan_bound", [math.nan, -math.inf, 0.0], [1, 2, 3, 4]),
            histogram("unsorted", [5.0, 1.0, 3.0], [1, 1, 1, 1]),
        )
    )
    # exponential histograms: typical, extreme scales and offsets, zero bucket only
    yield export(
        resource_metrics(
            decode,
            exponential("exp_typical", 3, (-2, [1, 2, 3, 4]), (1, [5, 6]), zero=2, zero_threshold=1e-9),
            exponential("exp_max_scale", 20, (1_000_000, [1, 1])),
            exponential("exp_min_scale", -10, (0, [1, 1]), (0, [1])),
            exponential("exp_far_offset", 0, (1020, [1, 1, 1, 1, 1, 1])),
            exponential("exp_negative_offset", 2, (-5000, [1])),
            exponential("exp_zero_only", 0, (0, []), zero=9),
            exponential("exp_delta", 1, (0, [1, 2]), delta=True),
        )
    )
    # summaries, including odd quantiles
    yield export(
        resource_metrics(
            prefill,
            summary("rpc_duration_seconds", [(0.5, 0.1), (0.9, 0.4), (0.99, 1.2)], method="Get"),
            summary("odd_quantiles", [(math.nan, 1.0), (-1.0, 2.0), (2.0, math.inf), (0.5, math.nan)]),
            summary("no_quantiles", []),
        )
    )
    # special values, staleness, timestamps: NaN, ±Inf, -0, stale flags on every point type
    yield export(
        resource_metrics(
            prefill,
            gauge(
                "special_values",
                number(math.nan, kind="nan"),
                number(math.inf, kind="inf"),
                number(-math.inf, kind="-inf"),
                number(-0.0, kind="-0"),
                number(5e-324, kind="denormal"),
                number(-(2**63), kind="min_int"),
                number(2**63 - 1, kind="max_int"),
            ),
            gauge("stale_gauge", number(1.0, flags=_FLAG_NO_VALUE), number(2.0, t_ns=NOW_NS - _S)),
            total("stale_delta", number(1.0, flags=_FLAG_NO_VALUE), delta=True),
            histogram("stale_histogram", [1.0], [1, 1], flags=_FLAG_NO_VALUE, delta=True),
            exponential("stale_exponential", 0, (0, [1]), flags=_FLAG_NO_VALUE),
            summary("stale_summary", [(0.5, 1.0)], flags=_FLAG_NO_VALUE),
            gauge(
                "timestamps",
                number(1.0, t_ns=0, at="zero"),
                number(2.0, t_ns=2**64 - 1, at="max"),
                number(3.0, t_ns=1, at="one"),
                number(4.0, t_ns=NOW_NS + 299 * _S, at="future"),
                number(5.0, t_ns=NOW_NS + 301 * _S, at="too_far"),
                number(6.0, t_ns=NOW_NS - 121 * _S, at="too_old"),
                number(7.0, t_ns=NOW_NS + 1, at="same_ms"),
            ),
        )
    )
    # attribute values of every type, odd keys, and resource attributes promoted to labels
    odd: dict[str, object] = {
        "int": 7,
        "bool": True,
        "double": 0.1,
        "bytes": b"\x00\xff",
        "array": [1, "a", [True, 2.5]],
        "kvlist": {"k": "v", "n": {"deep": [1]}},
        "empty": "",
        "unicode": "é☃\U0001f600",
        "": "empty-key",
        "__name__": "hijack",
        "le": "attr-le",
        "quantile": "attr-q",
        "a.b/c-d": "punct",
    }
    yield export(
        resource_metrics(
            {**prefill, "k8s.pod.name": 12, "service.name": ["a", "b"], "k8s.namespace.name": ""},
            gauge("attrs.gauge", number(1.0, attributes=odd)),
            histogram("attrs_histogram", [0.5], [1, 1], attributes=odd),
            summary("attrs_summary", [(0.5, 1.0)], attributes=odd),
        ),
        resource_metrics({}, gauge("no_resource", number(1.0))),
        resource_metrics({"k8s.pod.name": "dup"}, gauge("dup", number(1.0, pod="point-wins"), number(2.0))),
    )
    # points without values / names / data, and many series (beyond the harness' series limit)
    yield export(
        resource_metrics(
            decode,
            m.Metric(name="no_data"),
            gauge("", number(1.0)),
            gauge("no_value", m.NumberDataPoint(time_unix_nano=NOW_NS)),
            gauge("many", *(number(float(i), pod=f"p-{i}") for i in range(70))),
        )
    )


def _hex_ids(node: Any) -> Any:
    """protobuf's JSON writes bytes as base64; OTLP/JSON writes trace and span ids as hex."""
    if isinstance(node, dict):
        return {
            k: base64.b64decode(v).hex() if k in ("traceId", "spanId") and isinstance(v, str) else _hex_ids(v)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_hex_ids(v) for v in node]
    return node


def otlp_json_documents() -> Iterator[bytes]:
    for req in otlp_requests():
        document = _hex_ids(json_format.MessageToDict(req))
        yield json.dumps(document, indent=1).encode()
        yield json_format.MessageToJson(req, preserving_proto_field_name=True).encode()  # snake_case keys
    point = {"timeUnixNano": str(NOW_NS), "asInt": "9007199254740993", "attributes": []}
    quirks: list[object] = [
        # int64s as JSON numbers instead of strings, enums as numbers and as names
        {"resourceMetrics": [{"scopeMetrics": [{"metrics": [{"name": "n", "sum": {
            "aggregationTemporality": 1, "isMonotonic": True,
            "dataPoints": [{"timeUnixNano": NOW_NS, "asInt": 5}]}}]}]}]},
        {"resourceMetrics": [{"scopeMetrics": [{"metrics": [{"name": "n", "sum": {
            "aggregationTemporality": "AGGREGATION_TEMPORALITY_DELTA", "dataPoints": [point]}}]}]}]},
        # special floats as strings, hex ids in exemplars, unknown fields
        {"resourceMetrics": [{"scopeMetrics": [{"metrics": [{"name": "g", "unknownField": {"x": 1}, "gauge": {
            "dataPoints": [
                {"timeUnixNano": str(NOW_NS), "asDouble": "NaN"},
                {"timeUnixNano": str(NOW_NS), "asDouble": "-Infinity", "flags": 1},
                {"timeUnixNano": str(NOW_NS), "asDouble": 1e308, "exemplars": [
                    {"traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174", "asDouble": 1}]},
            ]}}]}]}]},
        # nested attribute values
        {"resourceMetrics": [{"resource": {"attributes": [{"key": "k8s.pod.name", "value": _nested(40)}]},
            "scopeMetrics": [{"metrics": [{"name": "nested", "gauge": {"dataPoints": [
                {"asDouble": 1, "attributes": [{"key": "deep", "value": _nested(20)}]}]}}]}]}]},
        # odd but valid documents
        {},
        {"resourceMetrics": []},
        {"resourceMetrics": [{}]},
        {"resourceMetrics": [{"scopeMetrics": [{"metrics": [{"name": "empty_histogram", "histogram": {}}]}]}]},
    ]  # fmt: skip
    for document in quirks:
        yield json.dumps(document).encode()
    yield b"[" * 30 + b"]" * 30
    yield b'{"resourceMetrics": [{"scopeMetrics": [{"metrics": [{"name": "x", "gauge": {"dataPoints": [{"asDouble":'


def _nested(depth: int) -> dict[str, object]:
    value: dict[str, object] = {"stringValue": "leaf"}
    for i in range(depth):
        value = (
            {"arrayValue": {"values": [value]}}
            if i % 2
            else {"kvlistValue": {"values": [{"key": "k", "value": value}]}}
        )
    return value


# ----------------------------------------------------------------------------- query texts


def _test_strings(path: Path, accept: Callable[[str], bool]) -> Iterator[str]:
    """String literals of a test module that look like queries."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and accept(node.value):
            yield node.value


def _query_like(text: str) -> bool:
    return 0 < len(text) <= 400 and "\n\n" not in text and not text.startswith(("test_", "Parser", "The "))


def promql_texts() -> list[str]:
    texts = [*EXPRESSIONS, *SUBQUERY_EXPRESSIONS, *PARSE_ERRORS]
    for path in sorted((ROOT / "tests" / "query").glob("test_*.py")):
        if path.name != "test_compat.py":
            texts.extend(_test_strings(path, _query_like))
    texts += [
        "sum by (role) (rate(vllm:prompt_tokens_total[1m]))",
        "histogram_quantile(0.9, sum by (le, role) "
        '(rate(vllm:time_to_first_token_seconds_bucket{role="prefill"}[5m])))',
        'max(vllm:num_requests_waiting{role="decode"}) / on() group_left count(up)',
        "topk(1e300, vllm:num_requests_waiting)",
        "bottomk(-1, weird_values) or absent(nope)",
        "vllm:num_requests_waiting[1000000y]",
        "rate(vllm:prompt_tokens_total[5m] offset -1h @ end())",
        "vllm:num_requests_waiting @ 1800000000.123 offset 1y2w3d4h5m6s7ms",
        'label_replace(up, "dst", "$1-${2}x$$", "pod", "(p)-(.*)")',
        'label_join(weird_values, "all", ",", "pod", "__name__")',
        'count_values("v", weird_values)',
        "quantile_over_time(0.5, weird_values[10m]) + predict_linear(stale_gauge[5m], 60)",
        '{"http.server.duration", "http.method"="GET"}',
        'sum by ("k8s.pod.name") ({__name__=~"http.server.*"})',
        "day_of_week() + days_in_month(vector(time())) + hour(timestamp(up))",
        "max_over_time(sum(rate(vllm:prompt_tokens_total[1m]))[5m:30s] offset (1m+30s) @ end())",
        "rate(sum_over_time(weird_values[30s:10s])[1m:])[5m:1m]",
        "vllm:num_requests_waiting[2m*(10+5) % 7m:((8 - 2) / 3) * 7s] offset -(2 ^ 3)",
        "vllm:num_requests_waiting offset -(1m)-(2 ^ 3) + up offset (1m)-(2^3) > up offset +(1m+1m)^2",
        'vllm:num_requests_waiting{model_name="\\xc3\\xa9\\303\\251\\u00e9\\U0001F600\\xff"}',
        "histogram_fraction(0, 0.5, vllm:time_to_first_token_seconds_bucket) + histogram_count(up)",
        "vllm:num_requests_waiting[1000000y:1ms]",
        "1 + 2 * 3 ^ -4 ^ 5 % atan2(6, 7) - -8 == bool 9",
        "0x1F + 010 + 1_000 + .5e-3 + Inf + -NaN",
        "x{a=~'\\\\d+\\x41\\u00e9\\U0001F600\\101'}",
        "sum(x) without (a, b,)",
        "(((((((((((((((((((((((((((((((((1)))))))))))))))))))))))))))))))))",
        "-" * 40 + "1",
        " + ".join(["x"] * 40),
        "2 ^ " * 40 + "2",
        # deeper than the parser allows: must be a QueryError, never a RecursionError
        "(" * 5000 + "1" + ")" * 5000,
        "-" * 5000 + "1",
        "abs(" * 200 + "x" + ")" * 200,
        "+".join(["x"] * 1000),
        "sum(" * 127 + "rate(vllm:prompt_tokens_total[5m])" + ")" * 127,
    ]
    return list(dict.fromkeys(texts))


def compat_texts() -> list[str]:
    path = ROOT / "tests" / "query" / "test_compat.py"
    texts = list(_test_strings(path, _query_like))
    texts += [
        "sum(vllm:num_requests_waiting)",
        'avg(vllm:num_requests_waiting{model_name="llama", role=prefill})',
        "max ( http.server.duration { http.method = GET , k8s.pod.name='p-1' , } )",
        "count(weird_values{pod=w-1})",
        'min(stale_gauge{pod="s-1"})',
        'vllm:time_to_first_token_seconds_bucket{le="+Inf",role=decode}',
    ]
    return list(dict.fromkeys(texts))


_TRIGGER_METADATA: list[dict[str, str]] = [
    {"targetValue": "5"},
    {"targetValue": "2.5", "operationOverTime": "avg", "window": "1m", "activationThreshold": "1"},
    {"threshold": "10", "operationOverTime": "rate", "window": "90", "clampMin": "0", "clampMax": "100"},
    {"targetValue": "1", "valueIfNotFound": "-1", "errIfNotFound": "true", "metricName": "Waiting Requests!"},
    {"targetValue": "0", "window": "0s"},
    {"targetValue": "nan", "window": "1h"},
    {"targetValue": "1e309", "clampMin": "3", "clampMax": "2", "errIfNotFound": "maybe"},
    {"targetValue": "3", "operationOverTime": "increase", "window": "1m30s500ms", "scalerAddress": "x:1"},
    {"targetValue": "3", "operationOverTime": "bogus"},
]
_PROMQL_TRIGGERS: list[dict[str, str]] = [
    {"query": "sum(rate(vllm:prompt_tokens_total[1m]))", "targetValue": "100"},
    {"query": "vllm:num_requests_waiting", "aggregate": "max", "targetValue": "4"},
    {"query": "vllm:num_requests_waiting", "aggregate": "median", "targetValue": "4"},
    {"query": "vllm:num_requests_waiting[1m]", "targetValue": "4", "window": "1m"},
    {"query": "up", "metricQuery": "up", "targetValue": "1"},
    {"query": 'scalar(sum(weird_values{pod="w-1"}))', "targetValue": "1", "activationTargetValue": "-Inf"},
]


def compat_inputs() -> list[str]:
    """The compat target's format: the compat query on the first line, then ``key=value``
    trigger metadata lines (``\\n`` in a value is a newline)."""
    texts = compat_texts()
    out = [_escape_newlines(text) for text in texts]
    for i, metadata in enumerate(_TRIGGER_METADATA):
        out.append("\n".join([_escape_newlines(texts[i % len(texts)]), *(f"{k}={v}" for k, v in metadata.items())]))
    for metadata in _PROMQL_TRIGGERS:
        out.append("\n".join(["", *(f"{k}={_escape_newlines(v)}" for k, v in metadata.items())]))
    return out


def _escape_newlines(text: str) -> str:
    return text.replace("\n", "\\n")


# ----------------------------------------------------------------------------- dictionaries


def _words(text: str) -> list[str]:
    return text.split()


_PROMQL_WORDS = [
    *_words("sum avg count min max group stddev stdvar topk bottomk count_values quantile limitk limit_ratio"),
    *_words("by without on ignoring group_left group_right bool offset and or unless atan2 start() end()"),
    *_words("rate irate increase delta idelta deriv predict_linear resets changes histogram_quantile"),
    *_words("avg_over_time min_over_time max_over_time sum_over_time count_over_time last_over_time"),
    *_words("stddev_over_time stdvar_over_time quantile_over_time present_over_time absent_over_time"),
    *_words("abs absent ceil floor exp ln log2 log10 sqrt sgn sort sort_desc timestamp clamp clamp_min"),
    *_words("clamp_max round scalar vector time pi label_replace label_join day_of_month day_of_week"),
    *_words("day_of_year days_in_month hour minute month year acos acosh asin asinh atan atanh cos cosh"),
    *_words("sin sinh tan tanh deg rad histogram_avg info subquery Inf NaN 0x 1e 1_0"),
    *_words("histogram_fraction histogram_count histogram_sum histogram_stddev first_over_time step() min("),
    *_words("[5m:30s] [1m:] [30:10] [26m+4m] [2m*(10+5)] offset (100 + 2) offset -(1m) % ^ \\303 \\xff"),
    *_words("vllm:num_requests_waiting vllm:prompt_tokens_total vllm:time_to_first_token_seconds_bucket"),
    *_words("weird_values stale_gauge http.server.duration __name__ le role pod model_name"),
    *_words("( ) { } [ ] , = != =~ !~ == <= >= < > + - * / % ^ @ : # \" ' ` \\"),
    *_words("[5m] [1m:] [0s] [1y] [1e400] offset -1h @ 1e18 @ -1e18 '+Inf' \\u \\x \\U .* .+ (?i) (((("),
]
_JSON_WORDS = [
    *_words("resourceMetrics scopeMetrics metrics name unit description gauge sum histogram"),
    *_words("exponentialHistogram summary dataPoints asDouble asInt timeUnixNano startTimeUnixNano"),
    *_words("attributes key value stringValue intValue doubleValue boolValue bytesValue arrayValue"),
    *_words("kvlistValue values resource aggregationTemporality isMonotonic bucketCounts explicitBounds"),
    *_words("count scale zeroCount zeroThreshold positive negative offset quantileValues quantile"),
    *_words("flags exemplars traceId spanId filteredAttributes NaN Infinity -Infinity true false null"),
    *_words("AGGREGATION_TEMPORALITY_DELTA AGGREGATION_TEMPORALITY_CUMULATIVE 18446744073709551615"),
    *_words("k8s.pod.name k8s.namespace.name k8s.deployment.name service.name le __name__"),
]
_COMPAT_WORDS = [
    *_words("sum( avg( min( max( count( { } , = \" ' \\ ( ) != =~ \\n"),
    *_words("metricQuery= query= operationOverTime= window= targetValue= threshold= activationThreshold="),
    *_words("activationTargetValue= clampMin= clampMax= valueIfNotFound= errIfNotFound= metricName= aggregate="),
    *_words("last_one rate count avg min max sum increase true false 1e309 nan inf -0 0x10 30s 2m 1h30m 500ms"),
    *_words("vllm:num_requests_waiting role=prefill k8s.pod.name weird_values stale_gauge"),
]


def dictionary(words: list[str]) -> str:
    """libFuzzer's dictionary format: one quoted token a line."""
    lines = []
    for word in dict.fromkeys(words):
        escaped = "".join(c if 0x20 <= ord(c) < 0x7F and c not in '"\\' else _escape(c) for c in word)
        lines.append(f'"{escaped}"')
    return "\n".join(lines) + "\n"


def _escape(c: str) -> str:
    return "".join(f"\\x{b:02X}" for b in c.encode())


def otlp_protobuf_seeds() -> Iterator[bytes]:
    for req in otlp_requests():
        yield req.SerializeToString()
        for rm in req.resource_metrics:  # each resource alone: smaller inputs mutate faster
            yield export(rm).SerializeToString()


SEEDS: dict[str, Callable[[], Iterator[bytes]]] = {
    "otlp_protobuf": otlp_protobuf_seeds,
    "otlp_json": otlp_json_documents,
    "promql": lambda: (text.encode() for text in promql_texts()),
    "compat": lambda: (text.encode() for text in compat_inputs()),
}
DICTIONARIES: dict[str, list[str]] = {
    "otlp_protobuf": [],
    "otlp_json": _JSON_WORDS,
    "promql": _PROMQL_WORDS,
    "compat": _COMPAT_WORDS,
}
