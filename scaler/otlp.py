"""OTLP metrics → store samples: a pure translation with Prometheus naming conventions.

* Gauge and Sum points become one sample; cumulative sums are counters, delta sums are
  flagged so the store accumulates them into a cumulative counter per series.
* Histogram and ExponentialHistogram points become ``<name>_bucket{le=…}`` (cumulative,
  ending with ``le="+Inf"``), ``<name>_count`` and ``<name>_sum``.
* Summary points become ``<name>_count``, ``<name>_sum`` and ``<name>{quantile=…}``.
* Resource attributes are promoted to labels by a configurable mapping; a data-point
  attribute wins over a promoted one of the same name.
* Series from distinct resources never merge: when a series' labels do not carry every
  attribute of its resource (one is not promoted, lost to another for its label, is empty, or a
  point attribute overrode it), the series also gets the resource-hash label, a hash of all the
  resource's attributes (:class:`ResourceLabels`). Both ingest paths build labels here.
* A point flagged "no recorded value" yields staleness markers for all its series.
"""

from __future__ import annotations

import base64
import bisect
import functools
import hashlib
import itertools
import json
import math
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2

from scaler.model import METRIC_NAME, STALE_NAN, LabelPairs, RejectReason, Sample

_NO_RECORDED_VALUE = metrics_pb2.DataPointFlags.DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK
_DELTA = metrics_pb2.AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA

FROM_COUNT = -2
"""In :func:`bucket_sources`: the bucket takes the point's ``count`` (a ``+Inf`` bucket the bounds lack)."""


@dataclass(slots=True)
class Translation:
    """The samples of one Export request, and the data points that could not be used."""

    samples: list[Sample] = field(default_factory=list)
    rejected: Counter[RejectReason] = field(default_factory=Counter)
    data_points: int = 0


def format_float(value: float) -> str:
    """Render a bound or attribute like Go's ``FormatFloat(v, 'f', -1, 64)`` (``1``, ``0.005``,
    ``+Inf``, ``-0``), which is how the collector and Prometheus spell ``le`` and ``quantile``."""
    if value == 0:  # outside the cache: -0.0 == 0.0 there, and the first one seen would win
        return "-0" if math.copysign(1.0, value) < 0 else "0"
    return _format_nonzero(value)


@functools.lru_cache(maxsize=4096)
def _format_nonzero(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    return np.format_float_positional(value, trim="-")


def any_value_str(value: AnyValue) -> str:
    """The string form of an attribute value (``7``, ``true``, ``0.5``)."""
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return "true" if value.bool_value else "false"
    if kind == "int_value":
        return str(value.int_value)
    if kind == "double_value":
        return format_float(value.double_value)
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode()
    if kind in ("array_value", "kvlist_value"):
        return json.dumps(_nested(value))
    return ""


def _nested(value: AnyValue) -> object:
    """An array or kvlist as a JSON structure (scalars in their string form). Nested values
    are nested, not JSON strings inside JSON: escaping every level would double the size per
    level, 2**40 bytes for a 40-level attribute that protobuf accepts."""
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_nested(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _nested(kv.value) for kv in value.kvlist_value.values}
    return any_value_str(value)


def translate(request: ExportMetricsServiceRequest, promotions: Mapping[str, str], now_ms: int) -> Translation:
    """Translate one Export request. ``now_ms`` stamps points that carry no timestamp."""
    (out,) = translate_in_parts(request, promotions, now_ms, part_samples=None)
    return out


def translate_in_parts(
    request: ExportMetricsServiceRequest, promotions: Mapping[str, str], now_ms: int, part_samples: int | None
) -> Iterator[Translation]:
    """Translate one Export request in parts of about ``part_samples`` samples (whole metrics;
    None: one part), so a caller on an event loop can store and yield between parts."""
    out = Translation()
    for resource_metrics in request.resource_metrics:
        resource = ResourceLabels.of(resource_metrics.resource.attributes, promotions)
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                _translate_metric(metric, resource, now_ms, out)
                if part_samples is not None and len(out.samples) >= part_samples:
                    yield out
                    out = Translation()
    yield out


def _translate_metric(metric: metrics_pb2.Metric, resource: ResourceLabels, now_ms: int, out: Translation) -> None:
    kind = metric.WhichOneof("data")
    name = metric.name
    if kind is None:
        return
    points = getattr(metric, kind).data_points
    out.data_points += len(points)
    if not name:
        out.rejected[RejectReason.INVALID_NAME] += len(points)
        return
    if kind in ("gauge", "sum"):
        delta = kind == "sum" and metric.sum.aggregation_temporality == _DELTA
        for p in points:
            value = p.as_double if p.WhichOneof("value") == "as_double" else float(p.as_int)
            _emit_number(out, name, resource, p, value, delta, now_ms)
    elif kind == "histogram":
        delta = metric.histogram.aggregation_temporality == _DELTA
        for p in points:
            bounds = list(p.explicit_bounds)
            counts = list(p.bucket_counts)
            if counts and len(counts) != len(bounds) + 1:
                out.rejected[RejectReason.UNSUPPORTED] += 1
                continue
            buckets = list(zip([*bounds, math.inf], counts, strict=False)) if counts else []
            _emit_histogram(out, name, resource, p, buckets, p.count, p.sum, delta, now_ms)
    elif kind == "exponential_histogram":
        delta = metric.exponential_histogram.aggregation_temporality == _DELTA
        for p in points:
            _emit_histogram(out, name, resource, p, exponential_buckets(p), p.count, p.sum, delta, now_ms)
    elif kind == "summary":
        for p in points:
            _emit_summary(out, name, resource, p, now_ms)
    else:  # pragma: no cover - a future OTLP point type
        out.rejected[RejectReason.UNSUPPORTED] += len(points)


class ResourceLabels:
    """The promoted labels of one ResourceMetrics, and the label bases built from them so far
    (the points of one resource mostly repeat a few attribute sets).

    Where two attributes map to one label, the first in the promotion order wins. ``identity``
    is the resource-hash label and its value when some attribute of the resource does not reach
    the labels as promoted (``partial``); a point attribute that overrides a promoted label with
    another value has the same effect for that point's series. So two resources that differ in
    any attribute never share a series."""

    __slots__ = ("bases", "identity", "partial", "promoted")

    def __init__(
        self, promoted: dict[str, str], identity: tuple[str, str] | None = None, partial: bool = False
    ) -> None:
        self.promoted = promoted
        self.identity = identity
        self.partial = partial
        self.bases: dict[tuple[tuple[str, str], ...], list[tuple[str, str]]] = {}

    @staticmethod
    def of(attributes: Iterable[KeyValue], promotions: Mapping[str, str]) -> ResourceLabels:
        pairs = [(kv.key, any_value_str(kv.value)) for kv in attributes]
        rank = getattr(promotions, "rank", None) or {a: i for i, a in enumerate(promotions)}
        promoted: dict[str, str] = {}
        winner: dict[str, int] = {}
        partial = False
        for key, value in pairs:
            label = promotions.get(key)
            if label is None:
                partial = True
            elif rank[key] < winner.get(label, len(rank)):
                promoted[label] = value
                winner[label] = rank[key]
        hash_label = getattr(promotions, "hash_label", None)
        if not hash_label or not pairs:
            return ResourceLabels(promoted)
        # an empty value, or one that lost its label to an attribute listed before it, is lost too
        partial = partial or any(not v or promoted.get(promotions.get(k, "")) != v for k, v in pairs)
        return ResourceLabels(promoted, (hash_label, resource_hash(pairs)), partial)

    def base(self, point_attributes: Iterable[KeyValue]) -> list[tuple[str, str]]:
        """The sorted label pairs shared by every series of one data point (no ``__name__``)."""
        attrs = tuple([(kv.key, any_value_str(kv.value)) for kv in point_attributes])
        found = self.bases.get(attrs)
        if found is None:
            labels = dict(self.promoted)
            labels.update(attrs)
            identity = self.identity
            if identity is not None and (self.partial or any(labels[k] != v for k, v in self.promoted.items())):
                labels.setdefault(*identity)  # a point attribute of that name wins, as over promoted labels
            labels.pop(METRIC_NAME, None)
            labels.pop("", None)  # an attribute without a key cannot be a label (Prometheus rejects it)
            if "" in labels.values():  # an empty label value means "no such label", as in Prometheus
                labels = {k: v for k, v in labels.items() if v}
            found = self.bases[attrs] = sorted(labels.items())
        return found


def resource_hash(pairs: Iterable[tuple[str, str]]) -> str:
    """16 hex digits identifying a resource by all its attributes (order does not matter)."""
    text = repr(sorted(pairs))  # unambiguous: every key and value quoted and escaped
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()


def number_labels(name: str, base: list[tuple[str, str]]) -> LabelPairs:
    """The series of a Gauge or Sum point."""
    return _labels(name, base)


def _labels(name: str, base: list[tuple[str, str]], extra: tuple[str, str] | None = None) -> LabelPairs:
    """``base`` plus ``__name__`` (and ``extra``), still sorted: an insertion, not a re-sort."""
    items = base.copy()
    bisect.insort(items, (METRIC_NAME, name))
    if extra is not None:
        _put(items, extra)
    return tuple(items)


def _put(items: list[tuple[str, str]], pair: tuple[str, str]) -> None:
    """Insert ``pair`` into the sorted ``items``, replacing an attribute of the same name: the
    ``quantile`` the translation generates wins over an attribute (as in Prometheus)."""
    i = bisect.bisect_left(items, (pair[0],))  # (name,) sorts before every (name, value)
    if i < len(items) and items[i][0] == pair[0]:
        items[i] = pair
    else:
        items.insert(i, pair)


def _ts(point: metrics_pb2.NumberDataPoint | metrics_pb2.HistogramDataPoint, now_ms: int) -> int:
    return point.time_unix_nano // 1_000_000 if point.time_unix_nano else now_ms


def _emit_number(
    out: Translation,
    name: str,
    resource: ResourceLabels,
    p: metrics_pb2.NumberDataPoint,
    value: float,
    delta: bool,
    now_ms: int,
) -> None:
    labels = number_labels(name, resource.base(p.attributes))
    if p.flags & _NO_RECORDED_VALUE:
        out.samples.append((labels, _ts(p, now_ms), STALE_NAN, False))
    else:
        out.samples.append((labels, _ts(p, now_ms), value, delta))


def _emit_histogram(
    out: Translation,
    name: str,
    resource: ResourceLabels,
    p: metrics_pb2.HistogramDataPoint | metrics_pb2.ExponentialHistogramDataPoint,
    buckets: list[tuple[float, int]],
    count: int,
    total: float,
    delta: bool,
    now_ms: int,
) -> None:
    ts = p.time_unix_nano // 1_000_000 if p.time_unix_nano else now_ms
    stale = bool(p.flags & _NO_RECORDED_VALUE)
    sources = bucket_sources([bound for bound, _ in buckets])
    has_sum = p.HasField("sum") if isinstance(p, metrics_pb2.HistogramDataPoint) else True
    cumulative = list(itertools.accumulate(bucket_count for _, bucket_count in buckets))
    values = [float(count) if i == FROM_COUNT else float(cumulative[i]) for i in sources.values()]
    values.append(float(count))
    if has_sum:
        values.append(total)
    is_delta = delta and not stale
    labels = histogram_series(name, resource.base(p.attributes), sources, has_sum)
    out.samples.extend(
        (series, ts, STALE_NAN if stale else value, is_delta) for series, value in zip(labels, values, strict=True)
    )


def bucket_sources(bounds: Sequence[float]) -> dict[str, int]:
    """The ``le`` of each bucket series of a histogram with these upper bounds, in output order,
    with the index of the bucket whose cumulative count it takes (:data:`FROM_COUNT`: the
    point's count, for a ``+Inf`` bucket the bounds lack).

    One sample per distinct ``le``: a malformed point that repeats a bound (or lists +Inf among
    its explicit bounds) must not give one series two samples at one timestamp, which a delta
    histogram would add up twice. The later (larger) cumulative count wins.
    """
    by_le: dict[str, int] = {}
    for i, bound in enumerate(bounds):
        by_le[format_float(bound)] = i
    if bounds and "+Inf" not in by_le:
        by_le["+Inf"] = FROM_COUNT
    return by_le


def histogram_series(name: str, base: list[tuple[str, str]], les: Iterable[str], has_sum: bool) -> list[LabelPairs]:
    """The series of a histogram point: ``<name>_bucket`` for each ``le``, ``_count``, ``_sum``."""
    bucket_base = base.copy()
    bisect.insort(bucket_base, (METRIC_NAME, name + "_bucket"))
    i = bisect.bisect_left(bucket_base, ("le",))
    if i < len(bucket_base) and bucket_base[i][0] == "le":
        del bucket_base[i]  # the generated le wins over an attribute of that name (as in Prometheus)
    out: list[LabelPairs] = []
    for le in les:
        items = bucket_base.copy()
        bisect.insort(items, ("le", le))
        out.append(tuple(items))
    out.append(_labels(name + "_count", base))
    if has_sum:
        out.append(_labels(name + "_sum", base))
    return out


def exponential_buckets(p: metrics_pb2.ExponentialHistogramDataPoint) -> list[tuple[float, int]]:
    """Exponential buckets as ``(upper_bound, count)`` pairs in ascending bound order.

    Bucket ``i`` of scale ``s`` covers ``(base**i, base**(i+1)]`` with ``base = 2**2**-s``;
    negative buckets mirror that below zero and the zero bucket ends at ``zero_threshold``.
    The last pair is always the ``+Inf`` bucket. Bounds beyond the float range (extreme scales
    or offsets) are ±Inf, and buckets that end up with the same bound are merged.
    """
    counts = exponential_counts(p)
    out: list[tuple[float, int]] = []
    start = 0
    for bound, end in exponential_layout(p):
        out.append((bound, sum(counts[start : end + 1])))
        start = end + 1
    return out


def exponential_counts(p: metrics_pb2.ExponentialHistogramDataPoint) -> list[int]:
    """The bucket counts in bound order: negative buckets from the highest index down, the zero
    bucket, positive buckets, and 0 for the ``+Inf`` bucket."""
    return [*reversed(p.negative.bucket_counts), p.zero_count, *p.positive.bucket_counts, 0]


def exponential_layout(p: metrics_pb2.ExponentialHistogramDataPoint) -> list[tuple[float, int]]:
    """The merged buckets as ``(upper_bound, index of the last count of exponential_counts() it
    covers)``: buckets with the same bound (at extreme scales or offsets) are one."""
    base = _power(2.0, _power(2.0, -p.scale))
    bounds: list[float] = []
    negative, offset = len(p.negative.bucket_counts), p.negative.offset
    for i in range(negative - 1, -1, -1):
        # bucket index offset+i covers [-base**(idx+1), -base**idx): its upper bound is -base**idx
        bounds.append(-_power(base, offset + i))
    bounds.append(p.zero_threshold)
    offset = p.positive.offset
    bounds.extend(_power(base, offset + i + 1) for i in range(len(p.positive.bucket_counts)))
    bounds.append(math.inf)
    merged: list[tuple[float, int]] = []
    for i, bound in enumerate(bounds):
        if merged and bound == merged[-1][0]:
            merged[-1] = (bound, i)
        else:
            merged.append((bound, i))
    return merged


def _power(x: float, y: float) -> float:
    """``x ** y``, +Inf where that overflows the float range (Python raises instead)."""
    try:
        return math.pow(x, y)
    except OverflowError:
        return math.inf


def _emit_summary(
    out: Translation,
    name: str,
    resource: ResourceLabels,
    p: metrics_pb2.SummaryDataPoint,
    now_ms: int,
) -> None:
    ts = p.time_unix_nano // 1_000_000 if p.time_unix_nano else now_ms
    stale = bool(p.flags & _NO_RECORDED_VALUE)
    labels = summary_series(name, resource.base(p.attributes), [q.quantile for q in p.quantile_values])
    values = [*(q.value for q in p.quantile_values), float(p.count), p.sum]
    out.samples.extend(
        (series, ts, STALE_NAN if stale else value, False) for series, value in zip(labels, values, strict=True)
    )


def summary_series(name: str, base: list[tuple[str, str]], quantiles: Iterable[float]) -> list[LabelPairs]:
    """The series of a summary point: ``<name>{quantile}`` for each quantile, ``_count``, ``_sum``."""
    out = [_labels(name, base, ("quantile", format_float(q))) for q in quantiles]
    out.append(_labels(name + "_count", base))
    out.append(_labels(name + "_sum", base))
    return out
