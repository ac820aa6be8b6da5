"""Hostile bodies that must not decode: garbage and truncated protobuf, wrong content types and
encodings, invalid UTF-8 and lone surrogates, deep nesting (cases 1, 2, 3 and 9 of issue 9).

Each is answered 400 / ``INVALID_ARGUMENT`` (415 for an unknown type or encoding) with a message,
is counted, stores nothing, and leaves the server and its sentinel intact."""

from __future__ import annotations

import json
import random
import re
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1 import trace_pb2

from tests.hostile.support import (
    BAD_JSON,
    BAD_PROTOBUF,
    JSON,
    PROTOBUF,
    UNSUPPORTED_ENCODING,
    UNSUPPORTED_MEDIA_TYPE,
    Counters,
    Hostile,
    export_reply,
    otlp_status,
    strict_json,
)
from tests.hostile.wire import wire_gauge_request, wire_nested_attribute_request
from tests.otlpdata import counter, gauge, histogram, now_ns, request

pytestmark = pytest.mark.timeout(60)

TRANSPORTS = ["grpc", "http"]
DECODE_MESSAGE = re.compile(r"decod", re.IGNORECASE)
"""A gRPC rejection of an undecodable request says so ("could not be decoded", "undecodable")."""


@pytest.fixture(scope="module")
def hostile() -> Iterator[Hostile]:
    with Hostile.running() as running:
        yield running


# ---------------------------------------------------------------------------------- helpers


def assert_rejected(
    hostile: Hostile, transport: str, body: bytes, reason: str, *, as_json: bool = False, status: int = 400
) -> str:
    """Send ``body``; assert it is refused as undecodable, counted once, and stores nothing.
    Returns the error message."""
    before = hostile.counters()
    if transport == "grpc":
        call = hostile.grpc_failure(body)
        assert call.code() == grpc.StatusCode.INVALID_ARGUMENT, (call.code(), call.details())
        message = call.details() or ""
        assert DECODE_MESSAGE.search(message), message
    else:
        reply = hostile.post_otlp(body, JSON if as_json else PROTOBUF)
        assert reply.status_code == status, (reply.status_code, reply.content[:300])
        message = otlp_status(reply, as_json)
    after = hostile.counters()
    assert_counted(before, after, transport, reason, status)
    return message


def assert_counted(before: Counters, after: Counters, transport: str, reason: str, status: int = 400) -> None:
    """One request refused as a whole: counted as an error with ``reason``, nothing stored."""

    def delta(name: str, **labels: str) -> float:
        return after.value(name, **labels) - before.value(name, **labels)

    assert delta("otlp_requests_total", transport=transport, outcome="error") == 1
    assert delta("otlp_points_rejected_total", transport=transport, reason=reason) == 1
    assert delta("otlp_points_rejected_total", transport=transport) == 1  # no other reason
    assert delta("otlp_points_received_total", transport=transport) == 0
    assert after.value("store_series") == before.value("store_series")
    if transport == "http":
        assert delta("http_requests_rejected_total", path="/v1/metrics", reason=str(status)) == 1


def valid_request() -> ExportMetricsServiceRequest:
    t = now_ns()
    return request(
        "hostile-decode",
        "pod-0",
        gauge("hostile_decode_gauge", 1.0, t, k="v"),
        counter("hostile_decode_total", 2.0, t),
        histogram("hostile_decode_seconds", [1.0], [1, 1], 3.0, t),
    )


def otlp_json(req: ExportMetricsServiceRequest) -> dict[str, Any]:
    return json_format.MessageToDict(req)


# ---------------------------------------------------------------------------------- case 1


def _garbage() -> dict[str, bytes]:
    rng = random.Random(20_240_9)
    valid = valid_request().SerializeToString()
    span = trace_pb2.Span(trace_id=b"\x80" * 16, span_id=b"\x81" * 8, name="GET /")
    trace = ExportTraceServiceRequest(
        resource_spans=[trace_pb2.ResourceSpans(scope_spans=[trace_pb2.ScopeSpans(spans=[span])])]
    )
    response = ExportMetricsServiceResponse()
    response.partial_success.rejected_data_points = 5
    response.partial_success.error_message = "x"
    bodies = {
        "random-64": rng.randbytes(64),
        "random-4096": rng.randbytes(4096),
        "ff00-garbage": b"\xff\x00garbage",
        "text": b"hello, this is not protobuf",
        "wrong-type-trace-request": trace.SerializeToString(),
        "wrong-type-export-response": response.SerializeToString(),
        "unterminated-varint": b"\x0a\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff",
        "length-past-end": b"\x0a\xff\xff\xff\x7f" + b"\x00" * 16,
    }
    # A valid request is one length-delimited field: a cut anywhere inside it is undecodable.
    for offset in (1, 2, 7, len(valid) // 3, len(valid) // 2, len(valid) - 1):
        bodies[f"truncated-at-{offset}-of-{len(valid)}"] = valid[:offset]
    return bodies


GARBAGE = _garbage()


def test_garbage_is_really_undecodable() -> None:
    """Precondition of the garbage cases: our own protobuf library refuses every body."""
    decodable = []
    for name, body in GARBAGE.items():
        try:
            ExportMetricsServiceRequest.FromString(body)
        except DecodeError:
            continue
        decodable.append(name)
    assert not decodable


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("case", sorted(GARBAGE))
def test_garbage_and_truncated_protobuf_are_rejected(hostile: Hostile, transport: str, case: str) -> None:
    assert_rejected(hostile, transport, GARBAGE[case], BAD_PROTOBUF)


JSON_GARBAGE = {
    "unterminated": b'{"resourceMetrics": [',
    "not-json": b"{not json",
    "binary": b"\x00\x01\x02\x03",
    "null": b"null",
    "true": b"true",
    "array": b"[]",
    "string": b'"resourceMetrics"',
    "number": b"5",
    "wrong-field-type": b'{"resourceMetrics": 5}',
    "wrong-nested-type": b'{"resourceMetrics": [{"scopeMetrics": [{"metrics": [{"name": {"a": 1}}]}]}]}',
    "bad-double": b'{"resourceMetrics": [{"scopeMetrics": [{"metrics": [{"name": "x", "gauge": {"dataPoints": '
    b'[{"asDouble": "lots"}]}}]}]}]}',
    "bad-trace-id": b'{"resourceMetrics": [{"scopeMetrics": [{"metrics": [{"name": "x", "gauge": {"dataPoints": '
    b'[{"asDouble": 1, "exemplars": [{"traceId": "zz"}]}]}}]}]}]}',
    "trailing-garbage": b"{} {}",
}


@pytest.mark.parametrize("case", sorted(JSON_GARBAGE))
def test_garbage_json_is_rejected(hostile: Hostile, case: str) -> None:
    assert_rejected(hostile, "http", JSON_GARBAGE[case], BAD_JSON, as_json=True)


# ---------------------------------------------------------------------------------- case 2


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/xml", None, "application/x-www-form-urlencoded", "application/grpc"]
)
def test_unknown_content_type_is_415(hostile: Hostile, content_type: str | None) -> None:
    headers = {} if content_type is None else {"Content-Type": content_type}
    before = hostile.counters()
    reply = hostile.post_otlp(valid_request().SerializeToString(), headers)
    assert reply.status_code == 415, (reply.status_code, reply.content[:300])
    assert_counted(before, hostile.counters(), "http", UNSUPPORTED_MEDIA_TYPE, 415)


@pytest.mark.parametrize("encoding", ["br", "deflate", "zstd", "compress"])
def test_unknown_content_encoding_is_415(hostile: Hostile, encoding: str) -> None:
    before = hostile.counters()
    reply = hostile.post_otlp(valid_request().SerializeToString(), {**PROTOBUF, "Content-Encoding": encoding})
    assert reply.status_code == 415, (reply.status_code, reply.content[:300])
    otlp_status(reply)  # the request said protobuf: so does the answer
    assert_counted(before, hostile.counters(), "http", UNSUPPORTED_ENCODING, 415)


@pytest.mark.parametrize(
    "content_type",
    [
        "application/x-protobuf; charset=foo",
        "Application/X-Protobuf",
        "application/x-protobuf ; proto=opentelemetry.proto.collector.metrics.v1.ExportMetricsServiceRequest",
        "application/json; charset=utf-8",
    ],
)
def test_matching_media_type_with_parameters_is_accepted(hostile: Hostile, content_type: str) -> None:
    """Media types compare case-insensitively and without their parameters."""
    value = float(len(content_type))
    t = now_ns()
    req = request("hostile-ct", "pod-0", gauge("hostile_ct_accepted", value, t, ct=content_type))
    is_json = content_type.startswith("application/json")
    body = json.dumps(otlp_json(req)).encode() if is_json else req.SerializeToString()
    reply = hostile.post_otlp(body, {"Content-Type": content_type})
    assert reply.status_code == 200, (reply.status_code, reply.content[:300])
    assert hostile.query_value(f'hostile_ct_accepted{{ct="{content_type}"}}') == value


# ---------------------------------------------------------------------------------- case 3

INVALID_UTF8 = [
    b"\xff",  # never valid
    b"\xc3\x28",  # a lead byte without its continuation
    b"\xed\xa0\x80",  # U+D800 encoded (CESU-8): surrogates are not UTF-8
    b"\xc0\xaf",  # overlong "/"
    b"\xf4\x90\x80\x80",  # past U+10FFFF
    b"ok\x80",  # a stray continuation byte at the end
]
PLACES = ["metric-name", "label-key", "label-value", "resource-attribute"]


def wire_request(place: str, text: bytes) -> bytes:
    """A one-point gauge with ``text`` at ``place`` and valid strings elsewhere."""
    name, key, value, resource_value = b"hostile_utf8", b"label", b"value", b"pod-0"
    if place == "metric-name":
        name = b"hostile_utf8_" + text
    elif place == "label-key":
        key = b"key_" + text
    elif place == "label-value":
        value = b"value_" + text
    else:
        resource_value = b"pod_" + text
    return wire_gauge_request(name, [(key, value)], [(b"k8s.pod.name", resource_value)], now_ns(), 7.0)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_hand_built_request_with_valid_utf8_is_accepted(hostile: Hostile, transport: str) -> None:
    """Control for the invalid UTF-8 cases: the same hand-written bytes with valid UTF-8
    (here "é", two bytes) decode to what protobuf itself builds, and are stored."""
    body = wire_request("label-value", f"{transport}-é".encode())
    parsed = ExportMetricsServiceRequest.FromString(body)
    point = parsed.resource_metrics[0].scope_metrics[0].metrics[0].gauge.data_points[0]
    assert point.attributes[0].value.string_value == f"value_{transport}-é"
    reply = hostile.grpc_export(body) if transport == "grpc" else export_reply(hostile.post_otlp(body, PROTOBUF))
    assert reply.partial_success.rejected_data_points == 0
    assert hostile.query_value(f'hostile_utf8{{label="value_{transport}-é", pod="pod-0"}}') == 7.0


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("place", PLACES)
def test_invalid_utf8_in_protobuf_strings_is_undecodable(hostile: Hostile, transport: str, place: str) -> None:
    names_before = hostile.names()
    for sequence in INVALID_UTF8:
        body = wire_request(place, sequence)
        with pytest.raises(DecodeError):  # precondition: protobuf itself refuses the bytes
            ExportMetricsServiceRequest.FromString(body)
        assert_rejected(hostile, transport, body, BAD_PROTOBUF)
    assert hostile.names() == names_before


def json_body_with(place: str, placeholder: str = "PLACEHOLDER") -> str:
    """OTLP/JSON of a one-point gauge with ``placeholder`` at ``place``, to be replaced by raw
    bytes or escapes that no JSON encoder would write."""
    name, key, value, pod = "hostile_json_utf8", "label", "value", "pod-0"
    if place == "metric-name":
        name += placeholder
    elif place == "label-key":
        key += placeholder
    elif place == "label-value":
        value += placeholder
    else:
        pod += placeholder
    req = request("hostile-json", pod, gauge(name, 3.0, now_ns(), **{key: value}))
    text = json.dumps(otlp_json(req))
    assert text.count(placeholder) == 1
    return text


@pytest.mark.parametrize("place", PLACES)
def test_invalid_utf8_bytes_in_json_are_400(hostile: Hostile, place: str) -> None:
    for sequence in INVALID_UTF8:
        body = json_body_with(place).encode().replace(b"PLACEHOLDER", sequence)
        assert_rejected(hostile, "http", body, BAD_JSON, as_json=True)


LONE_SURROGATES = [r"\ud800", r"\udfff", r"\udc00\ud800", r"a\ud83db", r"\ud83d"]


def assert_read_api_is_valid_json(hostile: Hostile) -> None:
    """Every read endpoint still answers 200 with strict, UTF-8-encodable JSON."""
    for path, params in (
        ("/memstore/names", {}),
        ("/memstore/data", {}),
        ("/api/v1/labels", {}),
        ("/api/v1/label/__name__/values", {}),
        ("/api/v1/label/label/values", {}),
        ("/api/v1/series", {"match[]": '{__name__=~"hostile_json.*"}'}),
        ("/api/v1/query", {"query": '{__name__=~"hostile_json.*"}'}),
    ):
        reply = hostile.http.get(path, params=params)
        assert reply.status_code == 200, (path, reply.status_code, reply.text[:300])
        strict_json(reply.text)


@pytest.mark.parametrize("place", PLACES)
def test_lone_surrogate_escapes_in_json_are_400_and_never_stored(hostile: Hostile, place: str) -> None:
    for escape in LONE_SURROGATES:
        body = json_body_with(place).replace("PLACEHOLDER", escape).encode()
        message = assert_rejected(hostile, "http", body, BAD_JSON, as_json=True)
        assert message
    assert_read_api_is_valid_json(hostile)


def test_valid_surrogate_pair_escape_in_json_is_accepted(hostile: Hostile) -> None:
    """Control for the lone surrogates: a proper pair is a valid character (U+1F600)."""
    body = json_body_with("label-value").replace("PLACEHOLDER", r"\ud83d\ude00").encode()
    reply = hostile.post_otlp(body, JSON)
    assert reply.status_code == 200, reply.text
    assert hostile.query_value('hostile_json_utf8{label="value\U0001f600"}') == 3.0
    assert_read_api_is_valid_json(hostile)


# ---------------------------------------------------------------------------------- case 9

DEPTH = 100_000


def _nested_attribute_json(depth: int, kind: str) -> bytes:
    """OTLP/JSON with one attribute nested ``depth`` AnyValue levels deep."""
    if kind == "array":
        opening, closing = '{"arrayValue":{"values":[', "]}}"
    else:
        opening, closing = '{"kvlistValue":{"values":[{"key":"k","value":', "}]}}"
    value = opening * depth + '{"stringValue":"leaf"}' + closing * depth
    return (
        '{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"hostile_deep_json","gauge":{"dataPoints":'
        '[{"asDouble":1,"attributes":[{"key":"deep","value":' + value + "}]}]}}]}]}]}"
    ).encode()


DEEP_JSON = {
    "brackets": b"[" * DEPTH,
    "objects": b'{"a":' * DEPTH,
    "closed-brackets": b"[" * DEPTH + b"]" * DEPTH,
    "array-value-100000": _nested_attribute_json(DEPTH, "array"),
    "kvlist-value-50000": _nested_attribute_json(DEPTH // 2, "kvlist"),
    "array-value-200": _nested_attribute_json(200, "array"),  # shallow enough for json.loads
    "kvlist-value-200": _nested_attribute_json(200, "kvlist"),
}


@pytest.mark.parametrize("case", sorted(DEEP_JSON))
def test_deeply_nested_json_is_400_quickly(hostile: Hostile, case: str) -> None:
    body = DEEP_JSON[case]
    assert len(body) < 4 << 20  # under the size limit: this is about depth, not size
    start = time.monotonic()
    assert_rejected(hostile, "http", body, BAD_JSON, as_json=True)
    assert time.monotonic() - start < 5


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("kind", ["array", "kvlist"])
@pytest.mark.parametrize("depth", [200, 10_000])
def test_deeply_nested_protobuf_attribute_is_undecodable(
    hostile: Hostile, transport: str, kind: str, depth: int
) -> None:
    body = wire_nested_attribute_request(depth, kind, now_ns())
    start = time.monotonic()
    assert_rejected(hostile, transport, body, BAD_PROTOBUF)
    assert time.monotonic() - start < 5
