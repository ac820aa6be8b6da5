"""Machinery of the hostile-input suite (issue 9).

* :class:`Hostile` runs ``python -m scaler serve`` in a subprocess (:class:`scaler.runner.ScalerProcess`)
  with a few *sentinel* series ingested at start, and :meth:`Hostile.check` asserts the invariants
  every hostile case must leave intact: ``/readyz`` answers 200, the process is alive, its RSS
  grew by at most :data:`RSS_GROWTH_BOUND_MIB` over the baseline taken after the sentinel, and
  the sentinel series still answer their exact values through ``POST /memstore/query`` and
  ``/api/v1/query``. ``tests/hostile/conftest.py`` runs it after every test.
* :class:`Counters` reads ``/metrics`` so a test can assert a rejection was counted.
* Raw clients: a generic gRPC Export that sends bytes as they are, an HTTP client that fails any
  response whose body leaks a Python traceback, and a raw-socket HTTP exchange.
* Wire-level builders and gzip bombs live in :mod:`tests.hostile.wire`.
"""

from __future__ import annotations

import contextlib
import json
import select
import socket
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

import grpc
import httpx
from google.rpc import status_pb2
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from prometheus_client.parser import text_string_to_metric_families

from scaler.runner import ScalerProcess
from tests.otlpdata import counter, gauge, histogram, now_ns, request

RSS_GROWTH_BOUND_MIB = 64.0
"""How much the server's RSS may grow over the baseline taken after the sentinel, across a whole
module. Every module runs the server with ``--max-otlp-message-bytes`` = :data:`MAX_MESSAGE_BYTES`
(4 MiB), so a legitimate request costs at most ~4 MiB of body (8 MiB on gRPC, which reads up to
twice the limit before the receiver rejects it) plus its decoded protobuf objects (a few times
the body): ~30 MiB at worst, and CPython keeps freed arenas, so peaks add up rather than come
back (the bomb module, the hungriest, peaks at ~27 MiB). 64 MiB leaves room for that and for
allocator noise, yet is 16x smaller than what a 1 GiB gzip bomb would cost if it were inflated:
a server that inflates or amplifies a hostile body fails the bound by a wide margin. (The gRPC
bomb, 32 MiB inflated, is caught by its status code rather than by this bound.)"""

MAX_MESSAGE_BYTES = 4 << 20
"""``--max-otlp-message-bytes`` of every server of the suite (keeps the bomb cases cheap)."""

RETENTION_SECONDS = 600
"""``--retention-seconds``: the sentinel lives far longer than a module runs."""

_EXPORT = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"
_LARGE_MESSAGES = [("grpc.max_send_message_length", 64 << 20), ("grpc.max_receive_message_length", 64 << 20)]
"""gRPC client options: the suite sends requests far over the server's limit on purpose."""

REQUEST_TIMEOUT = 15.0
"""Client-side bound on every request: a hang fails the case instead of the whole run."""

PROTOBUF = {"Content-Type": "application/x-protobuf"}
JSON = {"Content-Type": "application/json"}

# Counter reasons for whole-request rejections, as named in scaler/receiver.py (the per-sample
# reasons are scaler.model.RejectReason values).
BAD_PROTOBUF = "bad_protobuf"
BAD_JSON = "bad_json"
BAD_GZIP = "bad_gzip"
TOO_LARGE = "too_large"
UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
UNSUPPORTED_ENCODING = "unsupported_encoding"

LEAK_MARKERS = ("Traceback", 'File "')


def assert_no_leak(body: bytes, where: str = "") -> None:
    """No response may show a Python traceback (it would leak paths and internals)."""
    for marker in LEAK_MARKERS:
        assert marker.encode() not in body, f"response body of {where} leaks {marker!r}: {body[:500]!r}"


def _no_leak_hook(response: httpx.Response) -> None:
    response.read()
    assert_no_leak(response.content, f"{response.request.method} {response.request.url.path}")


# ---------------------------------------------------------------------------------- sentinel

SENTINEL_DEPLOYMENT = "hostile-sentinel"


@dataclass(frozen=True)
class SentinelSeries:
    """One sentinel series: a compat query, the equivalent PromQL selector, and its value."""

    compat: str
    promql: str
    value: float


def _sentinel_series(name: str, value: float, **labels: str) -> SentinelSeries:
    pairs = {"sentinel": "yes", **labels}
    compat = name + "{" + ", ".join(f'{k}="{v}"' for k, v in pairs.items()) + "}"
    promql = "{" + ", ".join(f'{k}="{v}"' for k, v in {"__name__": name, **pairs}.items()) + "}"
    return SentinelSeries(compat, promql, value)


def sentinel_request(t_ns: int) -> tuple[ExportMetricsServiceRequest, list[SentinelSeries]]:
    """A gauge, a counter and a histogram shaped like vLLM's, and the series they must yield."""
    req = request(
        SENTINEL_DEPLOYMENT,
        "sentinel-0",
        gauge("hostile.sentinel.queue", 41.5, t_ns, sentinel="yes"),
        counter("hostile_sentinel_requests_total", 1234.0, t_ns, sentinel="yes"),
        histogram("hostile.sentinel.latency_seconds", [0.1, 1.0], [2, 3, 1], 12.25, t_ns, sentinel="yes"),
    )
    series = [
        _sentinel_series("hostile.sentinel.queue", 41.5),
        _sentinel_series("hostile_sentinel_requests_total", 1234.0),
        _sentinel_series("hostile.sentinel.latency_seconds_count", 6.0),
        _sentinel_series("hostile.sentinel.latency_seconds_sum", 12.25),
        _sentinel_series("hostile.sentinel.latency_seconds_bucket", 2.0, le="0.1"),
        _sentinel_series("hostile.sentinel.latency_seconds_bucket", 5.0, le="1"),
        _sentinel_series("hostile.sentinel.latency_seconds_bucket", 6.0, le="+Inf"),
    ]
    return req, series


# ---------------------------------------------------------------------------------- counters


class Counters:
    """A snapshot of ``/metrics``; :meth:`value` sums the samples whose labels include ``labels``."""

    def __init__(self, text: str) -> None:
        self.samples: list[tuple[str, dict[str, str], float]] = [
            (s.name, dict(s.labels), s.value) for family in text_string_to_metric_families(text) for s in family.samples
        ]

    def value(self, name: str, **labels: str) -> float:
        return sum(v for n, ls, v in self.samples if n == name and all(ls.get(k) == x for k, x in labels.items()))


# ---------------------------------------------------------------------------------- server


class Hostile:
    """A server subprocess with its sentinel, its clients and its invariants."""

    live: ClassVar[list[Hostile]] = []
    """Started and not yet stopped: the conftest checks each after every test."""

    def __init__(self, server: ScalerProcess, max_series: int) -> None:
        self.server = server
        self.max_series = max_series
        self.http = httpx.Client(
            base_url=server.url(""), timeout=REQUEST_TIMEOUT, event_hooks={"response": [_no_leak_hook]}
        )
        self.channel = grpc.insecure_channel(f"127.0.0.1:{server.ports.otlp}", options=_LARGE_MESSAGES)
        self._export: grpc.UnaryUnaryMultiCallable[bytes, ExportMetricsServiceResponse] = self.channel.unary_unary(
            _EXPORT, request_serializer=None, response_deserializer=ExportMetricsServiceResponse.FromString
        )
        self.sentinels: list[SentinelSeries] = []
        self.baseline_rss = 0.0

    @staticmethod
    @contextmanager
    def running(
        extra_args: Sequence[str] = (), max_series: int = 100_000, env: Mapping[str, str] | None = None
    ) -> Iterator[Hostile]:
        args = [
            "--retention-seconds",
            str(RETENTION_SECONDS),
            "--max-otlp-message-bytes",
            str(MAX_MESSAGE_BYTES),
            *extra_args,
        ]
        server = ScalerProcess(
            ["--max-series", str(max_series), "--log-level", "info", *args], env={"ADMIN_TOKEN": None, **(env or {})}
        )
        server.start()
        hostile = Hostile(server, max_series)
        try:
            hostile.seed_sentinel()
            Hostile.live.append(hostile)
            yield hostile
        finally:
            if hostile in Hostile.live:
                Hostile.live.remove(hostile)
            hostile.http.close()
            hostile.channel.close()
            server.stop()

    # ------------------------------------------------------------------ sentinel, invariants

    def seed_sentinel(self) -> None:
        """Ingest the sentinel over gRPC, check it answers, and take the RSS baseline."""
        req, self.sentinels = sentinel_request(now_ns())
        reply = self.grpc_export(req.SerializeToString())
        assert reply.partial_success.rejected_data_points == 0, reply
        self.check_sentinel()
        self.baseline_rss = self.server.rss_mib()

    def check(self) -> None:
        """The invariants every hostile case must leave intact."""
        proc = self.server.process
        assert proc is not None and proc.poll() is None, f"the server died (exit {proc and proc.returncode})"
        ready = self.http.get("/readyz")
        assert ready.status_code == 200, ready.text
        rss = self.server.rss_mib()
        assert rss - self.baseline_rss <= RSS_GROWTH_BOUND_MIB, (
            f"server RSS grew from {self.baseline_rss:.1f} to {rss:.1f} MiB (bound {RSS_GROWTH_BOUND_MIB} MiB)"
        )
        self.check_sentinel()

    def check_sentinel(self) -> None:
        for s in self.sentinels:
            reply = self.http.post("/memstore/query", json={"query": s.compat, "operationOverTime": "last_one"})
            assert reply.status_code == 200, (s.compat, reply.text)
            assert reply.json() == {"ok": True, "operation": "query", "error": "", "value": s.value}, s.compat
            prom = self.http.get("/api/v1/query", params={"query": s.promql})
            assert prom.status_code == 200, (s.promql, prom.text)
            body = strict_json(prom.text)
            assert body["status"] == "success", body
            result = body["data"]["result"]
            assert len(result) == 1, (s.promql, result)
            assert float(result[0]["value"][1]) == s.value, (s.promql, result)

    # ------------------------------------------------------------------ observation

    def counters(self) -> Counters:
        reply = self.http.get("/metrics")
        assert reply.status_code == 200
        return Counters(reply.text)

    def series_count(self) -> int:
        return int(self.counters().value("store_series"))

    def names(self) -> list[str]:
        reply = self.http.get("/memstore/names")
        assert reply.status_code == 200, reply.text
        names: list[str] = strict_json(reply.text)
        return names

    def query_value(self, compat: str) -> Any:
        """``last_one`` of a compat query: the value, or None when not found."""
        reply = self.http.post("/memstore/query", json={"query": compat, "operationOverTime": "last_one"})
        assert reply.status_code == 200, (compat, reply.text)
        body = strict_json(reply.text)
        return None if body["error"] else body["value"]

    # ------------------------------------------------------------------ OTLP clients

    def grpc_export(self, body: bytes, compression: grpc.Compression | None = None) -> ExportMetricsServiceResponse:
        """Export raw request bytes over gRPC; raises ``grpc.RpcError`` on a failure status."""
        return self._export(body, timeout=REQUEST_TIMEOUT, compression=compression)

    def grpc_failure(self, body: bytes, compression: grpc.Compression | None = None) -> grpc.Call:
        """Export raw bytes over gRPC, expecting a failure status; returns the failed call."""
        try:
            reply = self.grpc_export(body, compression)
        except grpc.RpcError as exc:
            assert isinstance(exc, grpc.Call)
            return exc
        raise AssertionError(f"gRPC Export succeeded: {reply}")

    def post_otlp(self, body: bytes | Iterator[bytes], headers: Mapping[str, str]) -> httpx.Response:
        return self.http.post("/v1/metrics", content=body, headers=dict(headers))


# ---------------------------------------------------------------------------------- answers


def strict_json(text: str) -> Any:
    """Parse JSON as a strict parser would: bare ``NaN``/``Infinity`` tokens and lone surrogates
    (which no UTF-8 JSON text can carry) are errors."""

    def constant(token: str) -> Any:
        raise ValueError(f"non-standard JSON constant {token}")

    document = json.loads(text, parse_constant=constant)
    _no_surrogates(document)
    return document


def _no_surrogates(node: Any) -> None:
    if isinstance(node, str):
        node.encode("utf-8")  # raises UnicodeEncodeError on a lone surrogate
    elif isinstance(node, dict):
        for key, value in node.items():
            _no_surrogates(key)
            _no_surrogates(value)
    elif isinstance(node, list):
        for item in node:
            _no_surrogates(item)


def otlp_status(reply: httpx.Response, as_json: bool = False) -> str:
    """The message of an OTLP/HTTP failure body: a ``google.rpc.Status`` in the request's
    encoding (protobuf for ``application/x-protobuf`` requests)."""
    content_type = reply.headers.get("content-type", "")
    if as_json:
        assert content_type.startswith("application/json"), content_type
        message = strict_json(reply.text).get("message", "")
    else:
        assert content_type.startswith("application/x-protobuf"), content_type
        message = status_pb2.Status.FromString(reply.content).message
    assert isinstance(message, str) and message, f"no message in the failure body {reply.content[:300]!r}"
    return message


def export_reply(reply: httpx.Response) -> ExportMetricsServiceResponse:
    """A successful OTLP/HTTP protobuf answer."""
    assert reply.status_code == 200, (reply.status_code, reply.content[:500])
    assert reply.headers.get("content-type", "").startswith("application/x-protobuf")
    return ExportMetricsServiceResponse.FromString(reply.content)


def export_over(hostile: Hostile, transport: str, req: ExportMetricsServiceRequest) -> ExportMetricsServiceResponse:
    """Send a valid request over ``grpc`` or ``http`` (protobuf) and return the Export answer."""
    body = req.SerializeToString()
    if transport == "grpc":
        return hostile.grpc_export(body)
    return export_reply(hostile.post_otlp(body, PROTOBUF))


# ---------------------------------------------------------------------------------- raw HTTP


@dataclass
class RawExchange:
    """What a raw-socket HTTP exchange came to."""

    response: bytes
    closed: bool
    """The server closed the connection (EOF or reset)."""
    elapsed: float

    @property
    def status(self) -> int | None:
        if not self.response.startswith(b"HTTP/1."):
            return None
        return int(self.response.split(b" ", 2)[1])


def raw_exchange(port: int, data: bytes, wait: float) -> RawExchange:
    """Send ``data`` (tolerating the server closing early) and read until the server closes the
    connection or ``wait`` seconds pass."""
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as sock:
        with contextlib.suppress(OSError):  # the server answered and closed before reading everything
            sock.sendall(data)
        return _read_until_close(sock, start, start + wait)


def _read_until_close(sock: socket.socket, start: float, deadline: float) -> RawExchange:
    received = bytearray()
    closed = False
    while not closed:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        readable, _, _ = select.select([sock], [], [], left)
        if not readable:
            break
        try:
            chunk = sock.recv(65536)
        except OSError:
            closed = True
            break
        if chunk:
            received += chunk
        else:
            closed = True
    assert_no_leak(bytes(received), "a raw socket request")
    return RawExchange(bytes(received), closed, time.monotonic() - start)


def trickle(port: int, head: bytes, trickled: bytes, interval: float, deadline: float) -> RawExchange:
    """Send ``head``, then ``trickled`` one byte per ``interval`` seconds, until the server answers
    or closes the connection or ``deadline`` seconds pass (a slowloris client)."""
    start = time.monotonic()
    end = start + deadline
    with socket.create_connection(("127.0.0.1", port), timeout=deadline) as sock:
        sock.sendall(head)
        for byte in trickled:
            readable, _, _ = select.select([sock], [], [], max(0.0, min(interval, end - time.monotonic())))
            if readable or time.monotonic() >= end:
                break
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                return RawExchange(b"", True, time.monotonic() - start)
        return _read_until_close(sock, start, end)
