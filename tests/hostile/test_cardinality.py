"""A cardinality burst past the series limit (case 11 of issue 9), on a server of its own with
``--max-series 2000`` (sentinel included).

* New series are admitted until the store holds the limit; a request of which some samples were
  stored and some refused answers success with ``partial_success`` naming ``series_limit``.
* A request of which nothing was stored because the store is full answers "retry later":
  HTTP 429 with an integer ``Retry-After`` and a ``google.rpc.Status`` body, gRPC
  ``RESOURCE_EXHAUSTED`` with a ``google.rpc.Status`` carrying ``RetryInfo`` in
  ``grpc-status-details-bin``.
* Samples of existing series are still accepted while the store is full.
* Every refused sample is counted with reason ``series_limit``; ``store_series`` never exceeds
  the limit, even after 5x the limit of distinct series were offered.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import httpx
import pytest
from google.protobuf import json_format
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.metrics.v1 import metrics_pb2 as m

from scaler.model import RejectReason
from tests.hostile.support import JSON, PROTOBUF, Counters, Hostile, export_reply, otlp_status, strict_json
from tests.otlpdata import kv, now_ns, request

pytestmark = pytest.mark.timeout(60)

LIMIT = 2000
SERIES_LIMIT = RejectReason.SERIES_LIMIT.value
FIRST = 1000
"""New series of the first request (all fit)."""
SECOND = 1500
"""New series of the second request (only the rest of the room fits)."""
BURST = 5 * LIMIT
"""Distinct series offered in all, by the end of the module."""


class Ids:
    """Series ids handed out so far: every new id is a series never offered before."""

    def __init__(self) -> None:
        self.offered = 0

    def take(self, n: int) -> list[int]:
        start, self.offered = self.offered, self.offered + n
        return list(range(start, self.offered))


IDS = Ids()


@dataclass
class Fill:
    """What filling the store came to."""

    sentinel_series: int
    first: ExportMetricsServiceResponse
    second: ExportMetricsServiceResponse
    second_fit: int
    before: Counters
    after: Counters


@pytest.fixture(scope="module")
def hostile() -> Iterator[Hostile]:
    with Hostile.running(max_series=LIMIT) as running:
        yield running


def batch(
    n: int, t_ns: int, value: float = 1.0, ids: list[int] | None = None
) -> tuple[ExportMetricsServiceRequest, list[int]]:
    """One gauge with ``n`` points, each a series of its own (attribute ``id``): new ids unless
    ``ids`` names existing ones."""
    chosen = ids if ids is not None else IDS.take(n)
    data = [m.NumberDataPoint(time_unix_nano=t_ns, as_double=value, attributes=[kv("id", str(i))]) for i in chosen]
    metric = m.Metric(name="hostile_cardinality", gauge=m.Gauge(data_points=data))
    return request("hostile-cardinality", "pod-0", metric), chosen


def assert_at_limit(hostile: Hostile) -> None:
    assert hostile.series_count() == LIMIT


@pytest.fixture(scope="module")
def filled(hostile: Hostile) -> Fill:
    sentinel_series = hostile.series_count()
    before = hostile.counters()
    first = export_reply(hostile.post_otlp(batch(FIRST, now_ns())[0].SerializeToString(), PROTOBUF))
    assert hostile.series_count() == sentinel_series + FIRST
    second = hostile.grpc_export(batch(SECOND, now_ns())[0].SerializeToString())
    after = hostile.counters()
    return Fill(sentinel_series, first, second, LIMIT - sentinel_series - FIRST, before, after)


def test_new_series_are_admitted_up_to_the_limit_then_partial_success(hostile: Hostile, filled: Fill) -> None:
    assert filled.first.partial_success.rejected_data_points == 0
    assert filled.first.partial_success.error_message == ""
    partial = filled.second.partial_success
    assert partial.rejected_data_points == SECOND - filled.second_fit > 0
    assert SERIES_LIMIT in partial.error_message, partial.error_message

    def delta(name: str, **labels: str) -> float:
        return filled.after.value(name, **labels) - filled.before.value(name, **labels)

    assert delta("otlp_points_received_total", transport="http") == FIRST
    assert delta("otlp_points_received_total", transport="grpc") == filled.second_fit
    assert delta("otlp_points_rejected_total", transport="grpc", reason=SERIES_LIMIT) == SECOND - filled.second_fit
    assert delta("otlp_requests_total", transport="grpc", outcome="partial") == 1
    assert filled.after.value("store_series") == LIMIT
    assert_at_limit(hostile)


def assert_refused_when_full(before: Counters, after: Counters, transport: str, samples: int) -> None:
    def delta(name: str, **labels: str) -> float:
        return after.value(name, **labels) - before.value(name, **labels)

    assert delta("otlp_points_rejected_total", transport=transport, reason=SERIES_LIMIT) == samples
    assert delta("otlp_points_rejected_total", transport=transport) == samples
    assert delta("otlp_points_received_total", transport=transport) == 0
    assert delta("otlp_requests_total", transport=transport, outcome="ok") == 0
    assert delta("otlp_requests_total", transport=transport, outcome="partial") == 0
    assert after.value("store_series") == LIMIT


def assert_http_429(reply: httpx.Response, as_json: bool) -> None:
    assert reply.status_code == 429, (reply.status_code, reply.content[:300])
    retry_after = reply.headers.get("retry-after", "")
    assert retry_after.isdigit() and int(retry_after) > 0, f"Retry-After: {retry_after!r}"
    otlp_status(reply, as_json)


@pytest.mark.parametrize("encoding", ["protobuf", "json"])
def test_only_new_series_when_full_is_http_429(hostile: Hostile, filled: Fill, encoding: str) -> None:
    req, _ = batch(500, now_ns())
    before = hostile.counters()
    if encoding == "json":
        reply = hostile.post_otlp(json.dumps(json_format.MessageToDict(req)).encode(), JSON)
    else:
        reply = hostile.post_otlp(req.SerializeToString(), PROTOBUF)
    assert_http_429(reply, encoding == "json")
    assert_refused_when_full(before, hostile.counters(), "http", 500)
    assert_at_limit(hostile)


def retry_info(call: grpc.Call) -> tuple[status_pb2.Status, error_details_pb2.RetryInfo]:
    """The ``google.rpc.Status`` of ``grpc-status-details-bin`` and its ``RetryInfo`` detail."""
    details = [value for key, value in call.trailing_metadata() or () if key == "grpc-status-details-bin"]
    assert len(details) == 1, f"no grpc-status-details-bin in {call.trailing_metadata()}"
    assert isinstance(details[0], bytes)
    status = status_pb2.Status.FromString(details[0])
    infos = []
    for detail in status.details:
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            detail.Unpack(info)
            infos.append(info)
    assert len(infos) == 1, status
    return status, infos[0]


def test_only_new_series_when_full_is_grpc_resource_exhausted_with_retry_info(hostile: Hostile, filled: Fill) -> None:
    req, _ = batch(500, now_ns())
    before = hostile.counters()
    call = hostile.grpc_failure(req.SerializeToString())
    assert call.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, (call.code(), call.details())
    assert call.details()
    status, info = retry_info(call)
    assert status.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
    assert status.message
    delay = info.retry_delay.seconds + info.retry_delay.nanos / 1e9
    assert delay > 0, info
    assert_refused_when_full(before, hostile.counters(), "grpc", 500)
    assert_at_limit(hostile)


@pytest.mark.parametrize("transport", ["grpc", "http"])
def test_existing_series_are_still_accepted_when_full(hostile: Hostile, filled: Fill, transport: str) -> None:
    existing = list(range(0, FIRST, 7))  # ids of the first request, all stored
    value = 42.0 if transport == "grpc" else 43.0
    req, _ = batch(0, now_ns(), value, ids=existing)
    before = hostile.counters()
    if transport == "grpc":
        reply = hostile.grpc_export(req.SerializeToString())
    else:
        reply = export_reply(hostile.post_otlp(req.SerializeToString(), PROTOBUF))
    assert reply.partial_success.rejected_data_points == 0, reply
    after = hostile.counters()
    assert after.value("otlp_points_received_total", transport=transport) - before.value(
        "otlp_points_received_total", transport=transport
    ) == len(existing)
    for i in (existing[0], existing[-1]):
        assert hostile.query_value(f'hostile_cardinality{{id="{i}"}}') == value
    assert_at_limit(hostile)


@pytest.mark.parametrize("transport", ["grpc", "http"])
def test_existing_and_new_series_when_full_is_partial_success(hostile: Hostile, filled: Fill, transport: str) -> None:
    existing = list(range(3, 103))
    new = IDS.take(250)
    req, _ = batch(0, now_ns(), 5.0, ids=existing + new)
    before = hostile.counters()
    if transport == "grpc":
        reply = hostile.grpc_export(req.SerializeToString())
    else:
        reply = export_reply(hostile.post_otlp(req.SerializeToString(), PROTOBUF))
    assert reply.partial_success.rejected_data_points == len(new), reply
    assert SERIES_LIMIT in reply.partial_success.error_message
    after = hostile.counters()

    def delta(name: str, **labels: str) -> float:
        return after.value(name, **labels) - before.value(name, **labels)

    assert delta("otlp_points_received_total", transport=transport) == len(existing)
    assert delta("otlp_points_rejected_total", transport=transport, reason=SERIES_LIMIT) == len(new)
    assert delta("otlp_requests_total", transport=transport, outcome="partial") == 1
    assert hostile.query_value(f'hostile_cardinality{{id="{new[0]}"}}') is None
    assert_at_limit(hostile)


def test_burst_of_five_times_the_limit_never_grows_the_store(hostile: Hostile, filled: Fill) -> None:
    """Offer new series until 5x the limit were offered in all, alternating transports; every
    request is refused as a whole and counted, and the store stays at the limit."""
    before = hostile.counters()
    refused = {"grpc": 0, "http": 0}
    for transport in itertools.cycle(["grpc", "http"]):
        remaining = BURST - IDS.offered
        if remaining <= 0:
            break
        req, ids = batch(min(1000, remaining), now_ns())
        if transport == "grpc":
            call = hostile.grpc_failure(req.SerializeToString())
            assert call.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, (call.code(), call.details())
        else:
            assert_http_429(hostile.post_otlp(req.SerializeToString(), PROTOBUF), as_json=False)
        refused[transport] += len(ids)
        assert_at_limit(hostile)
    assert IDS.offered >= BURST
    after = hostile.counters()
    for transport, count in refused.items():
        assert count > 0
        assert_refused_when_full(before, after, transport, count)
    series = strict_json(hostile.http.get("/api/v1/series", params={"match[]": "hostile_cardinality"}).text)
    assert len(series["data"]) == LIMIT - filled.sentinel_series
