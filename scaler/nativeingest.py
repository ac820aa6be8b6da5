"""The native OTLP ingest path: ``scaler._native.otlpwire`` (C) walks the protobuf wire bytes of
an Export request and appends each data point's samples straight to the store's series; this
module is its Python half.

* The C loop caches, per data point identity (resource, metric name and kind, the point's
  attribute bytes, its bucket or quantile layout), the series the point feeds and a *plan*:
  which of the point's values goes to which series. A known point costs a dict lookup and a
  numpy store per sample; no label set, tuple or protobuf object is built.
* The first time a point is seen, :meth:`NativeIngest._resolve` computes its label sets with
  the reference translation's own functions (:mod:`scaler.otlp`) and finds or creates the
  series with :meth:`Store.resolve`, so the limits apply exactly as on the reference path.
* A series the store deletes is flagged (``Series.alive``); a cached point that meets one is
  resolved again. The cache is dropped when it outgrows the store or after many deletions, so
  it never holds much more than the live series.

The result is the reference's, sample for sample (``tests/unit/test_nativeingest.py`` checks
it on the whole OTLP test corpus, fuzz seeds included). When the extension is not built,
:data:`AVAILABLE` is False and the receivers use the reference translation; ``/info`` shows
which path is active.
"""

from __future__ import annotations

import itertools
import math
from array import array
from collections.abc import Mapping
from dataclasses import dataclass

from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from scaler import otlp, series
from scaler.model import LabelPairs, RejectReason
from scaler.store import AppendResult, Series, Store

try:
    from scaler._native import otlpwire

    AVAILABLE = True
    UNAVAILABLE_REASON = ""
except ImportError as exc:  # a source checkout that was never built: the reference path serves
    AVAILABLE = False
    UNAVAILABLE_REASON = str(exc)

START: tuple[int, int, int] = (0, 0, 0)
"""The position of a request's first metric."""

_REASONS = list(RejectReason)
_REASON_CODE = {reason: i for i, reason in enumerate(_REASONS)}
# Metric kinds: the field numbers of Metric's `data` oneof, as the C side reports them.
_GAUGE, _SUM, _HISTOGRAM, _EXPONENTIAL, _SUMMARY = 5, 7, 9, 10, 11
# Plan codes (besides indices >= 0: a cumulative bucket count, or a quantile's value).
_VALUE, _COUNT, _SUM_VALUE = -1, -2, -3
assert otlp.FROM_COUNT == _COUNT


@dataclass(slots=True)
class Slice:
    """Where one :meth:`NativeIngest.run` call stopped (its counts went into ``into``)."""

    next_pos: tuple[int, int, int] | None
    """Where the next slice starts; None when the request is done."""
    data_points: int


class NativeIngest:
    """The native translate + append loop over one store, with its point cache."""

    CACHE_SLACK = 4096
    """The cache may exceed twice the live series by this many points before it is dropped."""

    def __init__(self, store: Store, promotions: Mapping[str, str]) -> None:
        if not AVAILABLE:
            raise RuntimeError(f"the native OTLP extension is not built: {UNAVAILABLE_REASON}")
        self.store = store
        self.promotions = promotions
        self._ingest: otlpwire.Ingest = otlpwire.Ingest(
            self._new_resource, self._resolve, Series, series.INITIAL_CAPACITY, series.NO_SAMPLE
        )
        self._deletions_seen = store.deletions

    @staticmethod
    def pieces(data: bytes, chunk: int) -> list[tuple[int, int]]:
        """``(start, end)`` of consecutive pieces of a request, about ``chunk`` bytes each, cut at
        top-level fields: each piece is itself an ``ExportMetricsServiceRequest``, so protobuf
        validates the request piece by piece exactly as whole (ValueError: malformed top level)."""
        offsets = otlpwire.chunks(data, chunk)
        return list(itertools.pairwise(offsets))

    def prune(self) -> None:
        """Drop the cache when it outgrows the store or the store deleted many series since it was
        last dropped (their entries would keep dead series alive). Call between requests."""
        cached = self._ingest.cached_points
        deleted = self.store.deletions - self._deletions_seen
        if cached > 2 * self.store.series_count + self.CACHE_SLACK or deleted > max(self.CACHE_SLACK, cached // 4):
            self._ingest.clear()
            self._deletions_seen = self.store.deletions

    def run(self, data: bytes, pos: tuple[int, int, int], now_ms: int, budget: int, into: AppendResult) -> Slice:
        """Append the samples of the request ``data`` from ``pos`` until about ``budget`` samples
        are handled (whole metrics), adding what happened to ``into`` (one per request: the
        counts by metric name are added to in C, not merged per slice). ``now_ms`` stamps points
        without a timestamp; the retention and skew limits are taken from the store's clock now,
        as :meth:`Store.append` does."""
        now = self.store.now_ms()
        cutoff = self.store.cutoff_ms(now)
        horizon = now + int(self.store.limits.max_future_skew_seconds * 1000)
        next_pos, accepted, data_points, rejected, touched, series_touched = self._ingest.run(
            data, pos, now_ms, cutoff, horizon, budget, self.store.watched, into.written
        )
        self.store.notify(touched, series_touched)
        into.accepted += accepted
        if any(rejected):
            for reason, count in zip(_REASONS, rejected, strict=True):
                if count:
                    into.rejected[reason] += count
        return Slice(next_pos, data_points)

    # ----------------------------------------------------------------- called by the C loop

    def _new_resource(self, raw: bytes) -> otlp.ResourceLabels:
        return otlp.ResourceLabels.of(Resource.FromString(raw).attributes, self.promotions)

    def _resolve(
        self, resource: otlp.ResourceLabels, kind: int, name: str, point: bytes, want_series: bool
    ) -> tuple[bytes, tuple[Series | int, ...] | None]:
        """The plan of a data point and, with ``want_series``, its series (or the code of the
        reason one cannot be stored) in the reference translation's sample order."""
        labels, codes = _plan(resource, kind, name, point)
        plan = array("i", codes).tobytes()
        if not want_series:
            return plan, None
        targets: list[Series | int] = []
        for pairs in labels:
            found = self.store.resolve(pairs)
            targets.append(found if isinstance(found, Series) else _REASON_CODE[found])
        return plan, tuple(targets)


def _plan(resource: otlp.ResourceLabels, kind: int, name: str, point: bytes) -> tuple[list[LabelPairs], list[int]]:
    if kind in (_GAUGE, _SUM):
        number = metrics_pb2.NumberDataPoint.FromString(point)
        return [otlp.number_labels(name, resource.base(number.attributes))], [_VALUE]
    if kind == _HISTOGRAM:
        hist = metrics_pb2.HistogramDataPoint.FromString(point)
        bounds = [*hist.explicit_bounds, math.inf] if hist.bucket_counts else []
        sources = otlp.bucket_sources(bounds)
        has_sum = hist.HasField("sum")
        codes = [*sources.values(), _COUNT] + ([_SUM_VALUE] if has_sum else [])
        return otlp.histogram_series(name, resource.base(hist.attributes), sources, has_sum), codes
    if kind == _EXPONENTIAL:
        exp = metrics_pb2.ExponentialHistogramDataPoint.FromString(point)
        layout = otlp.exponential_layout(exp)
        sources = otlp.bucket_sources([bound for bound, _ in layout])
        codes = [_COUNT if i == _COUNT else layout[i][1] for i in sources.values()] + [_COUNT, _SUM_VALUE]
        return otlp.histogram_series(name, resource.base(exp.attributes), sources, True), codes
    if kind == _SUMMARY:
        summary = metrics_pb2.SummaryDataPoint.FromString(point)
        quantiles = [q.quantile for q in summary.quantile_values]
        codes = [*range(len(quantiles)), _COUNT, _SUM_VALUE]
        return otlp.summary_series(name, resource.base(summary.attributes), quantiles), codes
    raise ValueError(f"unknown metric kind {kind}")
