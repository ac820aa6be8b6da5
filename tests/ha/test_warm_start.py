"""Peer warm start and ``GET /snapshot``: a replica that starts empty restores a Ready peer's
snapshot and answers as it does; the snapshot is served only to authenticated peers by a warm
replica; a corrupt, oversized, refused, stalled or absent peer is logged, counted and left for
the next one, and the replica falls back to its snapshot file and the warm-up. With ``PEERS``,
readiness (``/readyz``, gRPC health) means warmed."""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from scaler import config, snapshot
from tests.conftest import RunningService
from tests.integration.test_restart import PROMQL, answers, ingest
from tests.integration.test_tls import issue, make_ca
from tests.otlpdata import DECODE, gauge, now_ns, otlp_stub, request

TOKEN = "s3cret-peer-token"
SERVING = health_pb2.HealthCheckResponse.SERVING
WAITING = f"vllm:num_requests_waiting{{deployment={DECODE}}}"


def metric(svc: RunningService, line: str) -> float:
    for row in httpx.get(f"{svc.http}/metrics", timeout=10).text.splitlines():
        if row.startswith(line + " "):
            return float(row.split()[-1])
    return 0.0


def peer_url(svc: RunningService) -> str:
    return f"http://127.0.0.1:{svc.ports.http}"


@pytest.fixture
def warm_peer(service_factory: Callable[..., RunningService]) -> tuple[RunningService, float]:
    """A Ready replica holding 30 s of a small PD fleet; and the time its answers are compared at."""
    peer = service_factory(peer_token=TOKEN)
    t0_ns = now_ns() - 1_000_000_000
    ingest(peer.ports.otlp, t0_ns)
    return peer, t0_ns / 1e9


def test_an_empty_replica_restores_a_peers_snapshot_and_answers_the_same(
    service_factory: Callable[..., RunningService], warm_peer: tuple[RunningService, float]
) -> None:
    peer, at = warm_peer
    dead = f"http://127.0.0.1:{free_port()}"  # a peer that is down is skipped
    fresh = service_factory(peers=f"{dead},{peer_url(peer)}", peer_token=TOKEN, warmup_seconds=60.0)
    info = httpx.get(f"{fresh.http}/info", timeout=10).json()
    assert info["peers"]["warmStart"]["outcome"] == "restored"
    assert info["peers"]["warmStart"]["peer"] == peer_url(peer)
    assert info["snapshot"]["loaded"]["source"] == f"peer {peer_url(peer)}"
    assert info["ready"] is True and info["warmed"] is True
    assert answers(fresh.http, at) == answers(peer.http, at)
    assert all(answers(fresh.http, at)), PROMQL
    assert httpx.get(f"{fresh.http}/readyz", timeout=10).status_code == 200
    assert metric(fresh, 'peer_fetches_total{outcome="ok"}') == 1
    assert metric(peer, 'peer_snapshot_requests_total{outcome="ok"}') == 1
    assert metric(fresh, "ready") == 1


def test_the_snapshot_is_served_to_the_token_only(warm_peer: tuple[RunningService, float]) -> None:
    peer, _ = warm_peer
    url = f"{peer.http}/snapshot"
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        reply = httpx.get(url, headers=headers, timeout=10)
        assert reply.status_code == 401
        assert "PEER_TOKEN" in reply.json()["detail"]
    assert metric(peer, 'peer_snapshot_requests_total{outcome="unauthorized"}') == 3
    assert metric(peer, 'http_requests_rejected_total{path="/snapshot",reason="401"}') == 3
    good = httpx.get(url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    assert good.status_code == 200 and good.headers["content-type"] == "application/octet-stream"
    taken = snapshot.decode(good.content)
    series = httpx.get(f"{peer.http}/info", timeout=10).json()["store"]["series"]
    assert len(taken.labels) == series > 0


def test_without_a_token_or_mtls_the_snapshot_is_not_served(service_factory: Callable[..., RunningService]) -> None:
    svc = service_factory()
    reply = httpx.get(f"{svc.http}/snapshot", timeout=10)
    assert reply.status_code == 403 and "PEER_TOKEN" in reply.json()["detail"]
    assert metric(svc, 'peer_snapshot_requests_total{outcome="disabled"}') == 1


def test_a_replica_that_is_not_warm_refuses_to_serve_its_empty_store(
    service_factory: Callable[..., RunningService],
) -> None:
    svc = service_factory(peer_token=TOKEN, warmup_seconds=30.0)
    reply = httpx.get(f"{svc.http}/snapshot", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    assert reply.status_code == 503 and "warm" in reply.json()["error"]
    assert metric(svc, 'peer_snapshot_requests_total{outcome="not_ready"}') == 1


class FakePeer:
    """An HTTP server on loopback answering ``GET /snapshot`` as told (status, body, headers, a stall)."""

    def __init__(self, status: int = 200, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.status, self.body, self.headers = status, body, headers or {}
        self.stall = threading.Event()
        self.requests: list[dict[str, str]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                outer.requests.append(dict(self.headers))
                if outer.stall.is_set():
                    time.sleep(5)
                    return
                self.send_response(outer.status)
                headers = dict(outer.headers)
                if "Transfer-Encoding" not in headers:
                    headers["Content-Length"] = str(len(outer.body))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(outer.body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_peer() -> Iterator[FakePeer]:
    peer = FakePeer()
    yield peer
    peer.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _health(svc: RunningService) -> int:
    with grpc.insecure_channel(f"127.0.0.1:{svc.ports.keda}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        return int(stub.Check(health_pb2.HealthCheckRequest(service="")).status)


CASES: dict[str, tuple[dict[str, Any], dict[str, Any], str, str]] = {
    # name: (fake peer, replica settings, outcome counted, what the log says)
    "corrupt": ({"body": b"KOTSNAP\n" + b"\x01" * 64}, {}, "corrupt", "checksum mismatch"),
    "not a snapshot": ({"body": b"<html>hello</html>"}, {}, "corrupt", "bad magic"),
    "declared too large": ({"body": b"x" * 2048}, {"peer_snapshot_max_bytes": 1024}, "too_large", "2048 bytes"),
    "chunked too large": (
        {"body": b"800\r\n" + b"x" * 2048 + b"\r\n0\r\n\r\n", "headers": {"Transfer-Encoding": "chunked"}},
        {"peer_snapshot_max_bytes": 1024},
        "too_large",
        "more than PEER_SNAPSHOT_MAX_BYTES=1024",
    ),
    "refused": ({"status": 401, "body": b'{"detail": "no"}'}, {}, "refused", "HTTP 401"),
    "not ready": ({"status": 503, "body": b'{"error": "warming"}'}, {}, "not_ready", "HTTP 503"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_bad_peer_is_rejected_with_its_reason_and_the_warm_up_applies(
    case: str,
    fake_peer: FakePeer,
    service_factory: Callable[..., RunningService],
    caplog: pytest.LogCaptureFixture,
) -> None:
    peer_answer, settings, outcome, logged = CASES[case]
    for key, value in peer_answer.items():
        setattr(fake_peer, key, value)
    with caplog.at_level(logging.WARNING, logger="scaler.peers"):
        svc = service_factory(peers=fake_peer.url, peer_token=TOKEN, warmup_seconds=30.0, **settings)
    assert fake_peer.requests and fake_peer.requests[0]["Authorization"] == f"Bearer {TOKEN}"
    assert metric(svc, f'peer_fetches_total{{outcome="{outcome}"}}') == 1
    assert logged in caplog.text, caplog.text
    info = httpx.get(f"{svc.http}/info", timeout=10).json()
    assert info["peers"]["warmStart"] == {"outcome": "none"}
    assert info["store"]["series"] == 0
    # The warm-up applies: not Ready (no data), KEDA gets UNAVAILABLE, gRPC health NOT_SERVING.
    assert httpx.get(f"{svc.http}/readyz", timeout=10).status_code == 503
    assert _health(svc) == health_pb2.HealthCheckResponse.NOT_SERVING
    otlp_stub(svc.ports.otlp).Export(request(DECODE, "d0", gauge("vllm:num_requests_waiting", 4, now_ns())))
    deadline = time.monotonic() + 10
    while httpx.get(f"{svc.http}/readyz", timeout=10).status_code != 200 or _health(svc) != SERVING:
        assert time.monotonic() < deadline, "data arrived but the replica did not turn Ready"
        time.sleep(0.05)


def test_chunked_body_within_the_limit_is_accepted(
    fake_peer: FakePeer, warm_peer: tuple[RunningService, float], service_factory: Callable[..., RunningService]
) -> None:
    peer, at = warm_peer
    data = httpx.get(f"{peer.http}/snapshot", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10).content
    chunks = b"".join(f"{len(part):x}\r\n".encode() + part + b"\r\n" for part in (data[:1000], data[1000:]))
    fake_peer.body = chunks + b"0\r\n\r\n"
    fake_peer.headers = {"Transfer-Encoding": "chunked"}
    svc = service_factory(peers=fake_peer.url, peer_token=TOKEN, warmup_seconds=30.0)
    assert answers(svc.http, at) == answers(peer.http, at)


def test_a_stalled_peer_is_given_up_after_the_timeout(
    fake_peer: FakePeer, service_factory: Callable[..., RunningService]
) -> None:
    fake_peer.stall.set()
    started = time.monotonic()
    svc = service_factory(peers=fake_peer.url, peer_token=TOKEN, peer_timeout_seconds=1.0, warmup_seconds=0.0)
    assert time.monotonic() - started < 5
    assert metric(svc, 'peer_fetches_total{outcome="timeout"}') == 1
    # Warm-up 0: the warm-up has passed, so the replica is Ready without data.
    assert httpx.get(f"{svc.http}/readyz", timeout=10).status_code == 200


def test_peers_found_through_dns(
    service_factory: Callable[..., RunningService], warm_peer: tuple[RunningService, float]
) -> None:
    peer, at = warm_peer
    fresh = service_factory(peers=f"dns+http://localhost:{peer.ports.http}", peer_token=TOKEN, warmup_seconds=60.0)
    warm = httpx.get(f"{fresh.http}/info", timeout=10).json()["peers"]["warmStart"]
    assert warm["outcome"] == "restored"
    assert warm["peer"].endswith(f":{peer.ports.http} (via dns+http://localhost:{peer.ports.http})")
    assert answers(fresh.http, at) == answers(peer.http, at)


def test_an_unresolvable_name_falls_back_to_the_snapshot_file(
    tmp_path: Path, service_factory: Callable[..., RunningService]
) -> None:
    first = service_factory(snapshot_path=str(tmp_path / "store.snap"))
    otlp_stub(first.ports.otlp).Export(request(DECODE, "d0", gauge("vllm:num_requests_waiting", 4, now_ns())))
    first.stop()
    svc = service_factory(
        peers="dns+http://no-such-peer.invalid:9090", snapshot_path=str(tmp_path / "store.snap"), warmup_seconds=30.0
    )
    info = httpx.get(f"{svc.http}/info", timeout=10).json()
    assert metric(svc, 'peer_fetches_total{outcome="unresolved"}') == 1
    assert info["snapshot"]["loaded"]["outcome"] == "restored"
    assert info["snapshot"]["loaded"]["source"].endswith("store.snap")
    assert info["ready"] is True  # restored data is data


def _peer_certificate(tmp_path: Path) -> dict[str, str]:
    """A CA and one certificate for every replica, usable as server and as client (peer mTLS)."""
    ca, ca_cert, ca_key = make_ca("peer-ca")
    pem = issue(ca_cert, ca_key, "keda-otel-scaler", server=True, client=True)
    for name, data in (("ca.crt", ca.cert), ("tls.crt", pem.cert), ("tls.key", pem.key)):
        (tmp_path / name).write_bytes(data)
    return {
        "rest_tls_cert_file": str(tmp_path / "tls.crt"),
        "rest_tls_key_file": str(tmp_path / "tls.key"),
        "rest_tls_ca_file": str(tmp_path / "ca.crt"),
    }


def test_peers_under_rest_mtls_need_no_token(tmp_path: Path, service_factory: Callable[..., RunningService]) -> None:
    tls = _peer_certificate(tmp_path)
    peer = service_factory(**tls)
    t0_ns = now_ns() - 1_000_000_000
    ingest(peer.ports.otlp, t0_ns)
    fresh = service_factory(peers=f"https://localhost:{peer.ports.http}", warmup_seconds=60.0, **tls)
    context = ssl.create_default_context(cafile=tls["rest_tls_ca_file"])
    context.load_cert_chain(tls["rest_tls_cert_file"], tls["rest_tls_key_file"])
    info = httpx.get(f"https://localhost:{fresh.ports.http}/info", verify=context, timeout=10).json()
    assert info["peers"]["warmStart"]["outcome"] == "restored", info["peers"]
    assert info["store"]["series"] > 0


def test_an_https_peer_with_an_unknown_certificate_is_refused(
    tmp_path: Path, service_factory: Callable[..., RunningService]
) -> None:
    tls = _peer_certificate(tmp_path)
    peer = service_factory(peer_token=TOKEN, rest_tls_cert_file=tls["rest_tls_cert_file"], **_key(tls))
    other_ca, _, _ = make_ca("someone-else")
    (tmp_path / "other-ca.crt").write_bytes(other_ca.cert)
    fresh = service_factory(
        peers=f"https://localhost:{peer.ports.http}",
        peer_token=TOKEN,
        peer_ca_file=str(tmp_path / "other-ca.crt"),
        warmup_seconds=0.0,
    )
    assert metric(fresh, 'peer_fetches_total{outcome="unreachable"}') == 1


def _key(tls: dict[str, str]) -> dict[str, str]:
    return {"rest_tls_key_file": tls["rest_tls_key_file"]}


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("ftp://peer:9090", "is not http(s)://HOST[:PORT]"),
        ("dns+http://peers", "needs a port"),
        ("http://peer:9090/path", "base URL"),
        ("peer:9090", "is not http(s)://HOST[:PORT]"),
        ("http://peer:99999", "out of range"),
    ],
)
def test_a_bad_peers_value_names_the_variable(text: str, problem: str) -> None:
    with pytest.raises(config.SettingsError) as caught:
        config.load({}, {"PEERS": text})
    assert str(caught.value).startswith(f"PEERS={text!r}: ")
    assert problem in str(caught.value)


def test_peers_parse() -> None:
    sources = config.parse_peers(" http://a:9090 ,dns+https://svc.ns.svc:9443,https://[::1], ")
    assert [str(s) for s in sources] == ["http://a:9090", "dns+https://svc.ns.svc:9443", "https://[::1]:443"]
    assert [s.resolve for s in sources] == [False, True, False]
