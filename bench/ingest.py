"""Figure 1, ingest: accepted samples/s over OTLP gRPC and OTLP/HTTP against the "decode limit"
(protobuf ``ParseFromString`` plus a minimal Python walk of the same payloads, in-process, one thread).

Clients send pre-serialized request bytes from several threads, each on its own connection, to
the server in another process. Rounds are rendered before the clock starts.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import grpc
import httpx
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceResponse

from bench import workload
from bench.server import GRPC_OPTIONS, ServerProcess, otlp_export
from bench.stats import best_of, cpu_seconds

SECOND_NS = 1_000_000_000


@dataclass(frozen=True)
class IngestResult:
    accepted: int
    rejected: int
    seconds: float
    requests: int
    server_cpu: float

    @property
    def rate(self) -> float:
        return self.accepted / self.seconds if self.seconds else 0.0

    def __str__(self) -> str:
        return (
            f"{self.accepted} samples in {self.requests} requests, {self.seconds:.2f} s, {self.rate / 1000:.0f}k/s, "
            f"{self.rejected} rejected, server CPU {self.server_cpu:.2f} s "
            f"({1e6 * self.server_cpu / max(1, self.accepted):.2f} µs/sample)"
        )


def render_rounds(
    pods: Sequence[workload.PodPayload],
    first_ts_ns: int,
    spacing_s: float,
    n_rounds: int,
    pods_per_request: int,
    first_round: int = 0,
) -> list[list[bytes]]:
    """``n_rounds`` scrapes of every pod, ``spacing_s`` apart, starting at ``first_ts_ns``."""
    return [
        workload.render_round(pods, first_ts_ns + int(r * spacing_s * SECOND_NS), first_round + r, pods_per_request)
        for r in range(n_rounds)
    ]


def decode_limit(requests: Sequence[bytes], repeats: int = 3) -> float:
    """Samples/s of parse + walk over ``requests`` (best of ``repeats``)."""
    samples = sum(workload.decode_walk(r) for r in requests)
    seconds = best_of(lambda: [workload.decode_walk(r) for r in requests], repeats)
    return samples / seconds


Send = Callable[[bytes], int]
"""Sends one request; returns the rejected sample count."""


def _drive(requests: Sequence[bytes], senders: Sequence[Send], samples_per_request: Sequence[int]) -> tuple[int, int]:
    """Send every request once, FIFO, from one thread per sender; returns (accepted, rejected)."""
    lock = threading.Lock()
    state = {"next": 0, "accepted": 0, "rejected": 0}
    errors: list[BaseException] = []

    def worker(send: Send) -> None:
        try:
            while True:
                with lock:
                    i = state["next"]
                    state["next"] = i + 1
                if i >= len(requests):
                    return
                rejected = send(requests[i])
                with lock:
                    state["rejected"] += rejected
                    state["accepted"] += samples_per_request[i] - rejected
        except BaseException as exc:  # surface a failed send in the caller
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(s,), daemon=True) for s in senders]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return state["accepted"], state["rejected"]


class Client:
    """``workers`` OTLP clients (own connection each) of one transport against one server."""

    def __init__(self, server: ServerProcess, transport: str, workers: int = 4) -> None:
        self.server = server
        self.transport = transport
        self._channels: list[grpc.Channel] = []
        self._http: list[httpx.Client] = []
        self.senders: list[Send] = []
        for i in range(workers):
            if transport == "grpc":
                channel = grpc.insecure_channel(
                    f"127.0.0.1:{server.otlp}", options=[*GRPC_OPTIONS, ("grpc.channel_id", i)]
                )
                self._channels.append(channel)
                self.senders.append(_grpc_sender(channel))
            else:
                client = httpx.Client(base_url=f"http://127.0.0.1:{server.http}", timeout=60)
                self._http.append(client)
                self.senders.append(_http_sender(client))

    def send(self, rounds: Sequence[Sequence[bytes]], samples_per_pod: int = workload.SERIES_PER_POD) -> IngestResult:
        requests = [r for batch in rounds for r in batch]
        sizes = [samples_per_pod * _pods_in(r) for r in requests]
        cpu0 = cpu_seconds(self.server.pid)
        start = time.perf_counter()
        accepted, rejected = _drive(requests, self.senders, sizes)
        seconds = time.perf_counter() - start
        return IngestResult(accepted, rejected, seconds, len(requests), cpu_seconds(self.server.pid) - cpu0)

    def close(self) -> None:
        for channel in self._channels:
            channel.close()
        for client in self._http:
            client.close()


def _pods_in(request: bytes) -> int:
    """Pods (resource_metrics) in a request built by :func:`workload.batch`."""
    return request.count(b"\n\x0cservice.name")


def _grpc_sender(channel: grpc.Channel) -> Send:
    export = otlp_export(channel)

    def send(request: bytes) -> int:
        response: ExportMetricsServiceResponse = export(request, timeout=60)
        return int(response.partial_success.rejected_data_points)

    return send


def _http_sender(client: httpx.Client) -> Send:
    headers = {"Content-Type": "application/x-protobuf"}

    def send(request: bytes) -> int:
        reply = client.post("/v1/metrics", content=request, headers=headers)
        reply.raise_for_status()
        response = ExportMetricsServiceResponse()
        response.ParseFromString(reply.content)
        return int(response.partial_success.rejected_data_points)

    return send
