"""Compression and size bombs (case 10 of issue 9).

The server runs with ``--max-otlp-message-bytes`` = 4 MiB, measured after decompression. A body
that inflates past it is refused with 413 (HTTP) / ``RESOURCE_EXHAUSTED`` (gRPC) quickly and
without inflating it: the RSS bound of :meth:`Hostile.check` (64 MiB) is 16x smaller than the
1 GiB the HTTP bombs inflate to."""

from __future__ import annotations

import time
import zlib
from collections.abc import Iterator

import grpc
import pytest
from opentelemetry.proto.metrics.v1 import metrics_pb2 as m

from tests.hostile.support import (
    BAD_GZIP,
    MAX_MESSAGE_BYTES,
    PROTOBUF,
    TOO_LARGE,
    Counters,
    Hostile,
    export_reply,
    otlp_status,
    raw_exchange,
)
from tests.hostile.wire import gzip_bomb, gzip_multi_member_bomb
from tests.otlpdata import gauge, now_ns, request

pytestmark = pytest.mark.timeout(60)

GZIP = {**PROTOBUF, "Content-Encoding": "gzip"}
BOMB_MIB = 1024
QUICKLY = 5.0
"""Seconds within which a bomb must be refused (reading a ~1 MB upload on loopback)."""


@pytest.fixture(scope="module")
def hostile() -> Iterator[Hostile]:
    with Hostile.running() as running:
        yield running


def assert_counted(before: Counters, after: Counters, transport: str, reason: str, status: int | None) -> None:
    def delta(name: str, **labels: str) -> float:
        return after.value(name, **labels) - before.value(name, **labels)

    assert delta("otlp_requests_total", transport=transport, outcome="error") == 1
    assert delta("otlp_points_rejected_total", transport=transport, reason=reason) == 1
    assert delta("otlp_points_received_total", transport=transport) == 0
    assert after.value("store_series") == before.value("store_series")
    if status is not None:
        assert delta("http_requests_rejected_total", path="/v1/metrics", reason=str(status)) == 1


def test_bombs_are_what_they_claim() -> None:
    """Precondition: ~1 MB on the wire for 1 GiB inflated, and valid gzip (checked by inflating
    an 8 MiB bomb built the same way; inflating the GiB here would cost seconds)."""
    assert len(gzip_bomb(BOMB_MIB)) < 1_100_000 and len(gzip_multi_member_bomb(BOMB_MIB)) < 1_100_000
    small = gzip_bomb(8)
    assert zlib.decompress(small, wbits=16 + zlib.MAX_WBITS) == bytes(8 << 20)
    assert gzip_bomb(BOMB_MIB)[-4:] == (BOMB_MIB << 20 & 0xFFFFFFFF).to_bytes(4, "little")
    multi = zlib.decompressobj(16 + zlib.MAX_WBITS)
    assert multi.decompress(gzip_multi_member_bomb(2)) == bytes(1 << 20) and multi.eof  # first member
    assert len(multi.unused_data) == len(gzip_multi_member_bomb(1))  # then another one


@pytest.mark.parametrize("shape", ["single-member", "multi-member", "chunked-stream"])
def test_http_gzip_bomb_is_413_quickly(hostile: Hostile, shape: str) -> None:
    body = gzip_multi_member_bomb(BOMB_MIB) if shape == "multi-member" else gzip_bomb(BOMB_MIB)

    def stream() -> Iterator[bytes]:
        for i in range(0, len(body), 1 << 16):
            yield body[i : i + (1 << 16)]

    before = hostile.counters()
    start = time.monotonic()
    reply = hostile.post_otlp(stream() if shape == "chunked-stream" else body, GZIP)
    assert time.monotonic() - start < QUICKLY
    assert reply.status_code == 413, (reply.status_code, reply.content[:300])
    otlp_status(reply)
    assert_counted(before, hostile.counters(), "http", TOO_LARGE, 413)


def test_gzip_bomb_with_small_content_length_streamed_chunked(hostile: Hostile) -> None:
    """``Content-Length: 100`` *and* ``Transfer-Encoding: chunked`` (a request-smuggling shape),
    then the bomb in chunks: refused (400 for the ambiguous framing, or 413 for the size),
    never stored, never inflated."""
    body = gzip_bomb(BOMB_MIB)
    pieces = [body[i : i + 65536] for i in range(0, len(body), 65536)]
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces)
    head = (
        b"POST /v1/metrics HTTP/1.1\r\nHost: hostile\r\nContent-Type: application/x-protobuf\r\n"
        b"Content-Encoding: gzip\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    names = hostile.names()
    result = raw_exchange(hostile.server.ports.http, head + chunks + b"0\r\n\r\n", wait=QUICKLY)
    assert result.status in (400, 413), result.response[:300]
    assert hostile.names() == names


@pytest.mark.parametrize("cut", ["half", "last-byte", "header-only"])
def test_truncated_gzip_is_400(hostile: Hostile, cut: str) -> None:
    valid = zlib.compress(
        request("hostile-gzip", "pod-0", gauge("hostile_gzip_truncated", 1.0, now_ns())).SerializeToString(),
        wbits=16 + zlib.MAX_WBITS,
    )
    body = {"half": valid[: len(valid) // 2], "last-byte": valid[:-1], "header-only": valid[:10]}[cut]
    before = hostile.counters()
    reply = hostile.post_otlp(body, GZIP)
    assert reply.status_code == 400, (reply.status_code, reply.content[:300])
    otlp_status(reply)
    assert_counted(before, hostile.counters(), "http", BAD_GZIP, 400)


def test_corrupt_gzip_is_400(hostile: Hostile) -> None:
    body = bytearray(zlib.compress(b"x" * 1000, wbits=16 + zlib.MAX_WBITS))
    body[12] ^= 0xFF  # inside the deflate stream
    before = hostile.counters()
    reply = hostile.post_otlp(bytes(body), GZIP)
    assert reply.status_code == 400, (reply.status_code, reply.content[:300])
    otlp_status(reply)
    assert_counted(before, hostile.counters(), "http", BAD_GZIP, 400)


def test_gzip_body_under_the_limit_is_accepted(hostile: Hostile) -> None:
    """Control: a gzip body that inflates to just under the limit (a large description) is fine."""
    metric = gauge("hostile_gzip_large_ok", 3.0, now_ns())
    metric.description = "d" * (MAX_MESSAGE_BYTES - 4096)
    body = request("hostile-gzip", "pod-0", metric).SerializeToString()
    assert MAX_MESSAGE_BYTES - 8192 < len(body) <= MAX_MESSAGE_BYTES
    reply = export_reply(hostile.post_otlp(zlib.compress(body, wbits=16 + zlib.MAX_WBITS), GZIP))
    assert reply.partial_success.rejected_data_points == 0
    assert hostile.query_value("hostile_gzip_large_ok") == 3.0


def oversized(inflated: int) -> bytes:
    """A valid Export request of ``inflated`` bytes that gzip shrinks to almost nothing."""
    metric = m.Metric(name="hostile_grpc_bomb", description="d" * inflated)
    return request("hostile-gzip", "pod-0", metric).SerializeToString()


@pytest.mark.parametrize(
    "compression", [grpc.Compression.Gzip, grpc.Compression.NoCompression], ids=["gzip", "identity"]
)
def test_grpc_message_over_the_limit_is_resource_exhausted_and_counted(
    hostile: Hostile, compression: grpc.Compression
) -> None:
    """1.5x the limit after decompression: refused by the receiver, which counts it."""
    body = oversized(MAX_MESSAGE_BYTES * 3 // 2)
    before = hostile.counters()
    start = time.monotonic()
    call = hostile.grpc_failure(body, compression)
    assert time.monotonic() - start < QUICKLY
    assert call.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, (call.code(), call.details())
    assert call.details()
    assert_counted(before, hostile.counters(), "grpc", TOO_LARGE, None)


def test_grpc_gzip_bomb_is_resource_exhausted(hostile: Hostile) -> None:
    """8x the limit after decompression, ~30 KB on the wire: gRPC itself stops reading it."""
    body = oversized(MAX_MESSAGE_BYTES * 8)
    names = hostile.names()
    start = time.monotonic()
    call = hostile.grpc_failure(body, grpc.Compression.Gzip)
    assert time.monotonic() - start < QUICKLY
    assert call.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, (call.code(), call.details())
    assert hostile.names() == names
