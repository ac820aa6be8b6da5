"""Fuzz target ``otlp_protobuf``: protobuf bytes → ExportMetricsServiceRequest → translation → store.

An undecodable body is an expected outcome (the receivers answer 400). Anything that decodes
must translate without raising, into canonical samples (see :func:`common.check_samples`),
and the store must stay sorted and within its series limit whatever it is fed.
"""

from __future__ import annotations

import contextlib

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from tests.fuzz import common, protomutate
from tests.fuzz.common import atheris

with atheris.instrument_imports(include=["scaler"]):
    from scaler import nativeingest, otlp, sources
    from scaler.config import Settings

PROMOTIONS = Settings().otlp.promotions
custom_mutator = protomutate.mutator(ExportMetricsServiceRequest)


def translate_and_store(request: ExportMetricsServiceRequest, data: bytes | None = None) -> None:
    """The checks shared with ``otlp_json``: whole and in parts, the same samples, all canonical;
    then into a fresh store with a fixed clock; then, over ``data`` (the request's wire bytes, or
    its serialization), the resources the status walk finds against protobuf's, and the native
    path against the reference, in small slices."""
    whole = otlp.translate(request, PROMOTIONS, common.NOW_MS)
    parts = list(otlp.translate_in_parts(request, PROMOTIONS, common.NOW_MS, part_samples=3))
    if not common.same_samples([s for p in parts for s in p.samples], whole.samples):
        common.fail("translate_in_parts disagrees with translate")
    if sum(p.data_points for p in parts) != whole.data_points:
        common.fail("translate_in_parts counts other data points than translate")
    common.check_samples(whole.samples)
    if any(n < 0 for n in whole.rejected.values()) or whole.rejected.total() > whole.data_points:
        common.fail("more points rejected than received", whole.rejected, whole.data_points)
    clock = common.Clock()
    common.append_and_check(common.new_store(clock), whole.samples, clock)
    wire = request.SerializeToString() if data is None else data
    found = [Resource.FromString(raw) for raw in sources.resources_in(wire)]
    if found != [rm.resource for rm in request.resource_metrics]:
        common.fail("the status' walk of the wire bytes finds other resources than protobuf", found)
    common.compare_native(wire, request, common.NOW_S, common.MAX_SERIES, budget=3)


def test_one_input(data: bytes) -> None:
    request = ExportMetricsServiceRequest()
    try:
        request.ParseFromString(data)
    except DecodeError:
        native_on_hostile_bytes(data)
        return
    translate_and_store(request, data)


def native_on_hostile_bytes(data: bytes) -> None:
    """The native loop reads what protobuf rejected (the receivers never let it): it must stop
    with an exception naming the problem, never crash, hang or corrupt the store."""
    clock = common.Clock()
    store = common.new_store(clock)
    native = nativeingest.NativeIngest(store, PROMOTIONS)
    with contextlib.suppress(ValueError, DecodeError):
        common.native_ingest(native, data, budget=3)
    common.check_store(store)
