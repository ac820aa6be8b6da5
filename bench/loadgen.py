"""The ingest load generator: OTLP clients in their own processes, so the figure measures the
server and not the benchmark's GIL.

:class:`LoadClient` starts ``processes`` workers (``python -m bench.loadgen``), each with
``threads`` client threads on their own connections. For every :meth:`LoadClient.send` the
workers first render their share of the rounds (pre-serialised request bytes: nothing is
encoded while the clock runs), report ready, and start sending together when told to; the
result spans the first send to the last answer, with the server's CPU time over the same span.

Worker ``w`` of ``W`` sends the requests (pod batches) ``b`` with ``b % W == w``, every round in
order, so each series receives its samples in timestamp order, as from real collectors; the
number of workers is the number of requests in flight.

Protocol on the worker's stdin/stdout, one JSON object a line: the parent sends a ``round``
command (``first_ns``, ``spacing_s``, ``rounds``, ``first_round``, ``per_request``), the worker
answers ``{"ready": n_requests}``; the parent sends ``{"go": true}``, the worker answers with
its counts and its ``start``/``end`` on the system-wide monotonic clock.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import IO, Any

import grpc
import httpx
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceResponse

from bench import ingest, workload
from bench.server import GRPC_OPTIONS, ServerProcess, otlp_export
from bench.stats import cpu_seconds

SHAPES = {"default": workload.DEFAULT, "vllm16": workload.VLLM16}


@dataclass(frozen=True)
class IngestResult:
    accepted: int
    rejected: int
    seconds: float
    requests: int
    server_cpu: float
    """Server CPU seconds (all threads) while the load ran."""

    @property
    def rate(self) -> float:
        return self.accepted / self.seconds if self.seconds else 0.0

    @property
    def cpu_per_sample_us(self) -> float:
        return 1e6 * self.server_cpu / max(1, self.accepted)

    @property
    def busy(self) -> float:
        """Server CPU over wall time: about 1 when the load saturates its event loop."""
        return self.server_cpu / self.seconds if self.seconds else 0.0

    def __str__(self) -> str:
        return (
            f"{self.accepted} samples in {self.requests} requests, {self.seconds:.2f} s, {self.rate / 1000:.0f}k/s, "
            f"{self.rejected} rejected, server CPU {self.server_cpu:.2f} s "
            f"({self.cpu_per_sample_us:.2f} µs/sample, {100 * self.busy:.0f} % of one core)"
        )


class LoadClient:
    """``processes`` × ``threads`` OTLP clients of one transport, sending the pods of
    ``workload.payloads(series, prefix, shape)`` to ``server``."""

    def __init__(
        self,
        server: ServerProcess,
        transport: str = "grpc",
        *,
        series: int,
        prefix: str = "m",
        shape: str = "default",
        processes: int = 2,
        threads: int = 2,
    ) -> None:
        self.server = server
        self.shape = SHAPES[shape]
        self.workers: list[subprocess.Popen[str]] = []
        port = server.otlp if transport == "grpc" else server.http
        try:
            for p in range(processes):
                command = [sys.executable, "-m", "bench.loadgen", "--transport", transport, "--port", str(port)]
                command += ["--series", str(series), "--prefix", prefix, "--shape", shape]
                command += ["--threads", str(threads), "--first-worker", str(p * threads)]
                command += ["--workers", str(processes * threads)]
                self.workers.append(
                    subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
                )
            for worker in self.workers:
                _read(worker)  # {"started": ...}: payloads built, connections open
        except BaseException:
            self.close()
            raise

    def send(
        self, first_ns: int, rounds: int, per_request: int, first_round: int = 0, spacing_s: float = 1.0
    ) -> IngestResult:
        """``rounds`` scrapes of every pod, ``spacing_s`` apart from ``first_ns``, batched
        ``per_request`` pods to a request, as fast as the server takes them."""
        command = {"first_ns": first_ns, "spacing_s": spacing_s, "rounds": rounds}
        command |= {"first_round": first_round, "per_request": per_request}
        for worker in self.workers:
            _write(worker, command)
        requests = sum(int(_read(worker)["ready"]) for worker in self.workers)
        cpu0 = cpu_seconds(self.server.pid)
        for worker in self.workers:
            _write(worker, {"go": True})
        answers = [_read(worker) for worker in self.workers]
        cpu = cpu_seconds(self.server.pid) - cpu0
        busy = [a for a in answers if a["requests"]]
        seconds = max(a["end"] for a in busy) - min(a["start"] for a in busy) if busy else 0.0
        accepted = sum(int(a["accepted"]) for a in answers)
        rejected = sum(int(a["rejected"]) for a in answers)
        if requests != sum(int(a["requests"]) for a in answers):
            raise RuntimeError("the load generator sent other requests than it rendered")
        return IngestResult(accepted, rejected, seconds, requests, cpu)

    def close(self) -> None:
        end_children(self.workers)
        self.workers.clear()

    def __enter__(self) -> LoadClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def end_children(children: Sequence[subprocess.Popen[str]]) -> None:
    """Close the stdin of each child process (they end at EOF), then wait for them; kill one that
    does not end within 30 s."""
    for child in children:
        if child.stdin is not None and not child.stdin.closed:
            child.stdin.close()
    for child in children:
        try:
            child.wait(30)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(10)


def _write(worker: subprocess.Popen[str], message: dict[str, Any]) -> None:
    assert worker.stdin is not None
    worker.stdin.write(json.dumps(message) + "\n")
    worker.stdin.flush()


def _read(worker: subprocess.Popen[str]) -> dict[str, Any]:
    assert worker.stdout is not None
    line = worker.stdout.readline()
    if not line:
        raise RuntimeError(f"load generator {worker.pid} ended (exit code {worker.wait()})")
    answer: dict[str, Any] = json.loads(line)
    if "error" in answer:
        raise RuntimeError(f"load generator {worker.pid}: {answer['error']}")
    return answer


# ----------------------------------------------------------------------- the worker process

Send = Callable[[bytes], int]
"""Sends one request; returns the rejected sample count."""


def _grpc_sender(port: int, worker: int) -> tuple[Send, Callable[[], None]]:
    channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=[*GRPC_OPTIONS, ("grpc.channel_id", worker)])
    grpc.channel_ready_future(channel).result(timeout=30)
    export = otlp_export(channel)

    def send(request: bytes) -> int:
        response: ExportMetricsServiceResponse = export(request, timeout=120)
        return int(response.partial_success.rejected_data_points)

    return send, channel.close


def _http_sender(port: int, _worker: int) -> tuple[Send, Callable[[], None]]:
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120)
    headers = {"Content-Type": "application/x-protobuf"}

    def send(request: bytes) -> int:
        reply = client.post("/v1/metrics", content=request, headers=headers)
        reply.raise_for_status()
        return int(ExportMetricsServiceResponse.FromString(reply.content).partial_success.rejected_data_points)

    return send, client.close


def _render(
    pods: Sequence[workload.PodPayload], command: dict[str, Any], workers: Sequence[int], n_workers: int
) -> list[list[tuple[bytes, int]]]:
    """Per worker of this process, its requests (bytes, pods in it) of every round, in round
    order: request ``b`` of a round (pods ``b × per_request …``) goes to worker ``b % n_workers``."""
    per_request, first_round = int(command["per_request"]), int(command["first_round"])
    first_ns, spacing_s = int(command["first_ns"]), float(command["spacing_s"])
    mine = [(b, pods[start : start + per_request]) for b, start in enumerate(range(0, len(pods), per_request))]
    mine = [(b, chunk) for b, chunk in mine if b % n_workers in workers]
    out: list[list[tuple[bytes, int]]] = [[] for _ in workers]
    for r in range(int(command["rounds"])):
        t_ns = first_ns + int(r * spacing_s * ingest.SECOND_NS)
        counter = workload.counter_value(first_round + r)
        for b, chunk in mine:
            # rendered before the clock starts, so the histograms can grow too (a store filled to be queried)
            body = b"".join(p.grown(t_ns, counter) for p in chunk)
            out[workers.index(b % n_workers)].append((body, len(chunk)))
    return out


def _serve(args: argparse.Namespace, stdin: IO[str], stdout: IO[str]) -> None:
    shape = SHAPES[args.shape]
    pods = workload.payloads(args.series, prefix=args.prefix, shape=shape)
    make = _grpc_sender if args.transport == "grpc" else _http_sender
    mine = list(range(args.first_worker, args.first_worker + args.threads))
    clients = [make(args.port, w) for w in mine]
    print(json.dumps({"started": len(pods)}), file=stdout, flush=True)
    try:
        for line in stdin:
            command = json.loads(line)
            queues = _render(pods, command, mine, args.workers)
            print(json.dumps({"ready": sum(len(q) for q in queues)}), file=stdout, flush=True)
            if not json.loads(stdin.readline() or "{}").get("go"):
                return
            print(
                json.dumps(_run(queues, [send for send, _ in clients], shape.series_per_pod)), file=stdout, flush=True
            )
    finally:
        for _, close in clients:
            close()


def _run(queues: Sequence[Sequence[tuple[bytes, int]]], senders: Sequence[Send], per_pod: int) -> dict[str, Any]:
    """Send each queue from its own thread; counts and the span on the monotonic clock."""
    totals = {"accepted": 0, "rejected": 0, "requests": 0}
    lock = threading.Lock()
    errors: list[BaseException] = []

    def work(queue: Sequence[tuple[bytes, int]], send: Send) -> None:
        try:
            for body, pods in queue:
                rejected = send(body)
                with lock:
                    totals["requests"] += 1
                    totals["rejected"] += rejected
                    totals["accepted"] += pods * per_pod - rejected
        except BaseException as exc:  # reported to the parent
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(q, s), daemon=True) for q, s in zip(queues, senders, strict=True)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    end = time.monotonic()
    if errors:
        return {"error": repr(errors[0])}
    return {**totals, "start": start, "end": end}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.loadgen", description=__doc__)
    parser.add_argument("--transport", choices=("grpc", "http"), default="grpc")
    parser.add_argument("--port", type=int, required=True, help="OTLP gRPC (or HTTP) port on 127.0.0.1")
    parser.add_argument("--series", type=int, required=True, help="fleet size (workload.payloads)")
    parser.add_argument("--prefix", default="m")
    parser.add_argument("--shape", choices=sorted(SHAPES), default="default")
    parser.add_argument("--threads", type=int, default=2, help="client threads (connections) in this process")
    parser.add_argument("--first-worker", type=int, default=0, help="global index of this process's first thread")
    parser.add_argument("--workers", type=int, default=2, help="client threads over all processes")
    args = parser.parse_args(argv)
    try:
        _serve(args, sys.stdin, sys.stdout)
    except Exception as exc:
        print(json.dumps({"error": repr(exc)}), flush=True)
        raise


if __name__ == "__main__":
    main()
