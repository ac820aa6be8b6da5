"""The native OTLP ingest path against the reference translation, on the whole OTLP test corpus.

For every request of the corpus (the fuzz seeds: every point type, temporality, staleness,
malformed and odd points, attribute kinds, resources; and their OTLP/JSON forms; the requests of
``tests/unit/test_otlp.py`` are checked there) the native loop must leave exactly the store the reference path
leaves (series, timestamps, value bits, delta totals) with the same accepted count, rejections
by reason and data points: in one slice and in slices of one sample, with a roomy and a tiny
series limit, with the samples current, too old and too far in the future, again from its
cache, and after the store deleted the cached series.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator

import pytest
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.metrics.v1 import metrics_pb2 as m

from scaler import nativeingest, receiver
from scaler.config import OtlpSettings
from scaler.receiver import decode
from scaler.selfmetrics import SelfMetrics
from scaler.store import AppendResult, Store
from tests.fuzz import common, seeds


def test_the_extension_is_built() -> None:
    # make test builds it; a silent fallback to the reference would leave the native path untested
    assert nativeingest.AVAILABLE, nativeingest.UNAVAILABLE_REASON


def _corpus() -> Iterator[tuple[str, bytes]]:
    for i, data in enumerate(seeds.otlp_protobuf_seeds()):
        yield f"seed-{i}", data
    for i, document in enumerate(seeds.otlp_json_documents()):
        try:
            request, _ = decode(document, "application/json")
        except Exception:  # the JSON quirks the receiver rejects have no wire form
            continue
        yield f"json-{i}", request.SerializeToString()


CORPUS = dict(_corpus())
# The seeds' samples are at seeds.NOW_NS: "now" to the store, then 100 s later (some too old for
# the 120 s retention), then 400 s earlier (too far ahead).
CLOCKS = {"now": 0.0, "later": 100.0, "earlier": -400.0}


@pytest.mark.parametrize("name", sorted(CORPUS))
@pytest.mark.parametrize("clock", sorted(CLOCKS))
@pytest.mark.parametrize(("max_series", "budget"), [(100_000, 1_000_000), (5, 1)])
def test_native_path_stores_what_the_reference_stores(name: str, clock: str, max_series: int, budget: int) -> None:
    data = CORPUS[name]
    request = ExportMetricsServiceRequest.FromString(data)
    now_s = seeds.NOW_NS / 1e9 + CLOCKS[clock]
    common.compare_native(data, request, now_s, max_series, budget)


def test_the_corpus_covers_every_point_type_and_outcome() -> None:
    kinds: set[str | None] = set()
    for data in CORPUS.values():
        for rm in ExportMetricsServiceRequest.FromString(data).resource_metrics:
            for sm in rm.scope_metrics:
                kinds.update(metric.WhichOneof("data") for metric in sm.metrics)
    assert kinds >= {"gauge", "sum", "histogram", "exponential_histogram", "summary", None}
    assert len(CORPUS) > 40


def test_a_slice_ends_at_a_metric_and_the_next_one_resumes_there() -> None:
    data = CORPUS["seed-0"]
    clock = common.Clock(seeds.NOW_NS / 1e9)
    store = Store(clock=clock)
    native = nativeingest.NativeIngest(store, common.PROMOTIONS)
    slices = 0
    pos: tuple[int, int, int] | None = nativeingest.START
    while pos is not None:
        part = native.run(data, pos, store.now_ms(), 1, AppendResult())
        assert part.next_pos is None or part.next_pos > pos
        pos = part.next_pos
        slices += 1
    assert slices > 3
    reference = Store(clock=clock)
    common.reference_ingest(reference, ExportMetricsServiceRequest.FromString(data))
    assert common.store_state(store) == common.store_state(reference)


@pytest.mark.parametrize(
    "data",
    [b"\x0a", b"\x0a\x05\x12\x03\x12\x01", b"\x0b" * 200, b"\x0a\x02\x0b\x14", b"\xff" * 11, b"\x0a\x80"],
)
def test_malformed_bytes_raise_a_value_error_naming_the_offset(data: bytes) -> None:
    store = Store()
    native = nativeingest.NativeIngest(store, {})
    with pytest.raises(ValueError, match="malformed OTLP protobuf near byte"):
        common.native_ingest(native, data, budget=10)
    assert store.series_count == 0


def test_a_deleted_series_is_resolved_again_not_written_to() -> None:
    clock = common.Clock(seeds.NOW_NS / 1e9)
    store = Store(clock=clock)
    native = nativeingest.NativeIngest(store, common.PROMOTIONS)
    data = CORPUS["seed-0"]
    common.native_ingest(native, data, budget=100)
    before = {series.labels: series for series in store.series()}
    store.reset()
    assert all(not series.alive for series in before.values())
    common.native_ingest(native, data, budget=100)
    after = {series.labels: series for series in store.series()}
    assert after.keys() == before.keys()
    assert all(after[labels] is not before[labels] and after[labels].n == 1 for labels in after)


def test_a_large_request_validates_piece_by_piece_exactly_as_whole() -> None:
    data = b"".join(CORPUS[name] for name in sorted(CORPUS) if name.startswith("seed"))
    pieces = nativeingest.NativeIngest.pieces(data, 4096)
    assert len(pieces) > 3 and pieces[0][0] == 0 and pieces[-1][1] == len(data)
    assert all(a[1] == b[0] for a, b in itertools.pairwise(pieces))
    for start, end in pieces:
        ExportMetricsServiceRequest.FromString(data[start:end])
    bad = data.replace(b"vllm:num_requests_running", b"vllm:num_requests_\xffunning", 1)  # invalid UTF-8
    with pytest.raises(DecodeError) as whole:
        ExportMetricsServiceRequest.FromString(bad)
    errors = []
    for start, end in nativeingest.NativeIngest.pieces(bad, 4096):
        try:
            ExportMetricsServiceRequest.FromString(bad[start:end])
        except DecodeError as exc:
            errors.append(str(exc))
    assert errors == [str(whole.value)]


def _scrape(t_ns: int, i: int) -> bytes:
    """One pod's scrape at ``t_ns``: a gauge, a cumulative and a delta counter, a histogram."""
    pod: dict[str, object] = {"k8s.pod.name": "p-1", "k8s.deployment.name": "d", "k8s.namespace.name": "llm-d"}
    return seeds.export(
        seeds.resource_metrics(
            pod,
            seeds.gauge("waiting", seeds.number(float(i % 7), t_ns)),
            seeds.total("tokens_total", seeds.number(100.0 * i, t_ns)),
            seeds.total("deltas_total", seeds.number(1.5, t_ns), delta=True),
            seeds.histogram("ttft", [0.1, 1.0], [i, 2 * i, 1], t_ns),
        )
    ).SerializeToString()


def test_series_grow_trim_and_shrink_exactly_as_the_reference() -> None:
    # Series arrays start at 8 samples, double when full, are trimmed to the 120 s retention
    # when full, and halve when a trim leaves them under a quarter full; the native loop does
    # all of that in C. Samples 1 s apart (growth to 128, then trims), then a 100 s gap (a trim
    # that shrinks), then late and repeated timestamps (Series.append's insert and overwrite).
    clock = common.Clock(seeds.NOW_NS / 1e9)
    reference, twin = Store(clock=clock), Store(clock=clock)
    native = nativeingest.NativeIngest(twin, common.PROMOTIONS)
    steps = [*range(300), *range(400, 420), 410, 410, 405, 419]
    capacities: list[int] = []
    for i, second in enumerate(steps):
        t_s = seeds.NOW_NS / 1e9 + second
        clock.now_s = max(clock.now_s, t_s)
        data = _scrape(int(t_s * 1e9), i)
        expected, _ = common.reference_ingest(reference, ExportMetricsServiceRequest.FromString(data))
        got, _ = common.native_ingest(native, data, budget=1 + i % 5)
        assert (got.accepted, +got.rejected) == (expected.accepted, +expected.rejected), second
        assert common.store_state(twin) == common.store_state(reference), second
        capacities.append(max(len(s.ts) for s in twin.series()))
    assert capacities[0] == 8 and max(capacities) == 128 and capacities[-1] < 128  # grew, then shrank


def test_a_request_the_native_reader_refuses_half_way_is_a_decode_error_not_a_crash() -> None:
    # Should the native reader ever refuse a request protobuf validated (it did once: field 0
    # inside an unknown group, see tests/fuzz/test_regressions.py), the receivers answer 400 /
    # INVALID_ARGUMENT naming the offset and what was already stored, never a 500.
    class RefusesTheSecondSlice(nativeingest.NativeIngest):
        def run(
            self, data: bytes, pos: tuple[int, int, int], now_ms: int, budget: int, into: AppendResult
        ) -> nativeingest.Slice:
            if pos != nativeingest.START:
                raise ValueError("malformed OTLP protobuf near byte 7")
            return super().run(data, pos, now_ms, 1, into)

    store = Store(clock=lambda: common.NOW_S)
    ingestor = receiver.Ingestor(store, OtlpSettings(), SelfMetrics(lambda: 0))
    ingestor.native = RefusesTheSecondSlice(store, ingestor.promotions)
    point = m.NumberDataPoint(time_unix_nano=common.NOW_MS * 10**6, as_double=1.0)
    metrics = [m.Metric(name=name, gauge=m.Gauge(data_points=[point])) for name in ("a", "b")]
    data = ExportMetricsServiceRequest(
        resource_metrics=[m.ResourceMetrics(scope_metrics=[m.ScopeMetrics(metrics=metrics)])]
    ).SerializeToString()
    stored = r"near byte 7 \(protobuf's parser accepted it; 1 samples before it were stored\)"
    with pytest.raises(DecodeError, match=stored):
        asyncio.run(ingestor.ingest(None, "grpc", data))
