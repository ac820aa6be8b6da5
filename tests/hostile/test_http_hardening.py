"""HTTP hardening of the REST port (case 12 of issue 9): oversized headers, slowloris headers,
stalled bodies, oversized API bodies, garbage on the wire.

The server runs with ``--http-header-timeout-seconds 2`` and ``--http-body-timeout-seconds 2``,
so a slow client is cut off within ~2 s (asserted within 5 s)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.hostile.support import Hostile, RawExchange, raw_exchange, trickle

pytestmark = pytest.mark.timeout(60)

HEADER_TIMEOUT = 2.0
BODY_TIMEOUT = 2.0
CUT_OFF_WITHIN = 5.0
"""A slow client must be cut off within this many seconds (the timeouts are 2 s)."""
HEAD_BYTES = 200 * 1024


@pytest.fixture(scope="module")
def hostile() -> Iterator[Hostile]:
    flags = ["--http-header-timeout-seconds", str(HEADER_TIMEOUT), "--http-body-timeout-seconds", str(BODY_TIMEOUT)]
    with Hostile.running(flags) as running:
        yield running


def assert_refused_without_5xx(result: RawExchange, expected: int) -> None:
    """Answered ``expected``, or the connection closed without an answer; never a 2xx or 5xx,
    never left hanging."""
    if result.status is None:
        assert result.closed, f"no answer and the connection is still open after {result.elapsed:.1f}s"
        assert not result.response, result.response[:300]
    else:
        assert result.status == expected, result.response[:300]


def get_with_head(extra_headers: bytes) -> bytes:
    return b"GET /readyz HTTP/1.1\r\nHost: hostile\r\n" + extra_headers + b"Connection: close\r\n\r\n"


def test_many_headers_totalling_200_kib_are_431(hostile: Hostile) -> None:
    line = b"X-Hostile-%04d: " + b"v" * 180 + b"\r\n"  # 198 bytes
    headers = b"".join(line % i for i in range(1 + HEAD_BYTES // 198))
    assert len(headers) >= HEAD_BYTES
    assert_refused_without_5xx(
        raw_exchange(hostile.server.ports.http, get_with_head(headers), wait=CUT_OFF_WITHIN), 431
    )


def test_one_200_kib_header_is_431(hostile: Hostile) -> None:
    header = b"X-Hostile: " + b"v" * HEAD_BYTES + b"\r\n"
    assert_refused_without_5xx(raw_exchange(hostile.server.ports.http, get_with_head(header), wait=CUT_OFF_WITHIN), 431)


def test_a_200_kib_request_line_is_refused(hostile: Hostile) -> None:
    line = b"GET /readyz?" + b"q" * HEAD_BYTES + b" HTTP/1.1\r\nHost: hostile\r\nConnection: close\r\n\r\n"
    result = raw_exchange(hostile.server.ports.http, line, wait=CUT_OFF_WITHIN)
    assert result.closed or result.status is not None
    assert result.status is None or result.status in (400, 414, 431), result.response[:300]


def test_headers_under_the_limit_are_fine(hostile: Hostile) -> None:
    """Control: 8 KiB of headers is an ordinary request."""
    headers = {f"X-Ok-{i}": "v" * 100 for i in range(80)}
    assert hostile.http.get("/readyz", headers=headers).status_code == 200


def test_slowloris_headers_are_cut_off_after_the_header_timeout(hostile: Hostile) -> None:
    """Headers sent one byte per second never finish; the server must close the connection
    after the header timeout (total time, not idle time) and keep serving everyone else."""
    answered: list[int] = []
    stop = threading.Event()

    def others() -> None:  # the server keeps serving other clients meanwhile
        with httpx.Client(timeout=2) as client:
            while not stop.is_set():
                answered.append(client.get(hostile.server.url("/readyz")).status_code)
                time.sleep(0.2)

    worker = threading.Thread(target=others, daemon=True)
    worker.start()
    try:
        result = trickle(
            hostile.server.ports.http,
            b"GET /readyz HTTP/1.1\r\nHost: hostile\r\n",
            b"X-Slow: " + b"a" * 60,
            interval=1.0,
            deadline=CUT_OFF_WITHIN,
        )
    finally:
        stop.set()
        worker.join(5)
    assert result.closed, f"connection still open after {result.elapsed:.1f}s of slowloris headers"
    assert HEADER_TIMEOUT - 0.5 <= result.elapsed <= CUT_OFF_WITHIN, result.elapsed
    assert result.status in (None, 408), result.response[:300]
    assert answered and set(answered) == {200}, answered


@pytest.mark.parametrize("path", ["/memstore/query", "/v1/metrics"])
def test_stalled_body_is_cut_off_after_the_body_timeout(hostile: Hostile, path: str) -> None:
    """``Content-Length: 1000``, 10 bytes, then nothing: 408 and/or closed after the body timeout."""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: hostile\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
    ).encode()
    before = hostile.counters()
    result = raw_exchange(hostile.server.ports.http, head + b'{"query": ', wait=CUT_OFF_WITHIN)
    assert result.closed or result.status == 408, (
        f"no 408 and the connection is still open after {result.elapsed:.1f}s: {result.response[:300]!r}"
    )
    assert result.status in (None, 408), result.response[:300]
    assert BODY_TIMEOUT - 0.5 <= result.elapsed <= CUT_OFF_WITHIN, result.elapsed
    if result.status == 408:
        after = hostile.counters()
        assert (
            after.value("http_requests_rejected_total", path=path)
            - before.value("http_requests_rejected_total", path=path)
            == 1
        )


def test_api_body_over_1_mib_is_413(hostile: Hostile) -> None:
    body = b'{"query": "' + b"x" * (1 << 20) + b'"}'
    before = hostile.counters()
    reply = hostile.http.post("/memstore/query", content=body, headers={"Content-Type": "application/json"})
    assert reply.status_code == 413, (reply.status_code, reply.text[:300])

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(body), 1 << 16):
            yield body[i : i + (1 << 16)]

    chunked = hostile.http.post("/memstore/query", content=chunks(), headers={"Content-Type": "application/json"})
    assert chunked.status_code == 413, (chunked.status_code, chunked.text[:300])
    after = hostile.counters()
    counted = after.value("http_requests_rejected_total", path="/memstore/query", reason="too_large")
    assert counted - before.value("http_requests_rejected_total", path="/memstore/query", reason="too_large") == 2


@pytest.mark.parametrize(
    "wire",
    [
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64,  # a TLS ClientHello on the plain port
        b"GARBAGE\r\n\r\n",
        b"GET / HTTP/9.9\r\n\r\n",
        b"GET /readyz HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n",
        b"GET /readyz HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
        b"POST /memstore/query HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"GET /\x00readyz HTTP/1.1\r\nHost: a\r\n\r\n",
        b"\r\n" * 10_000,
    ],
    ids=["tls-hello", "garbage", "http-9.9", "negative-length", "two-lengths", "bad-chunk", "nul-in-path", "crlfs"],
)
def test_malformed_http_is_refused_without_5xx(hostile: Hostile, wire: bytes) -> None:
    result = raw_exchange(hostile.server.ports.http, wire, wait=CUT_OFF_WITHIN)
    assert result.closed or result.status is not None, f"hanging after {result.elapsed:.1f}s"
    if result.status is not None:
        assert 400 <= result.status < 500, result.response[:300]
