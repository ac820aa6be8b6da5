"""What feeds the replicas: the simulator's vLLM pods (their ``prometheus_client`` registries,
converted by the simulator's exporter as the sidecar collectors' Prometheus receiver does),
exported once per ``interval`` through a fan-out — one OTLP exporter per replica, each with its
own sending queue and retry like the collector's ``otlp`` exporter — or through real ``rotel``
collectors, one per replica.

The load is steady on purpose, so "the values are unchanged" is checkable: gauges hold their
values and counters grow by a fixed amount per export, at timestamps ``t0 + k × interval``.
"""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc

from scaler.sim.otlp_export import pod_resource, registry_to_metrics, resource_metrics
from scaler.sim.vllm_metrics import VllmMetrics

PREFILL = "pd-llm-d-modelservice-prefill"
DECODE = "pd-llm-d-modelservice-decode"
NAMESPACE = "llm-d"
PROMPT_TOKENS_PER_EXPORT = 1000
"""Each prefill pod's prompt-token counter grows by this much per export."""

Request = metrics_service_pb2.ExportMetricsServiceRequest


@dataclass
class Pod:
    name: str
    role: str
    waiting: int
    metrics: VllmMetrics = field(init=False)

    def __post_init__(self) -> None:
        self.metrics = VllmMetrics("facebook/opt-125m", 2048)
        self.metrics.waiting.set(self.waiting)
        self.metrics.running.set(2 * self.waiting)
        self.metrics.kv_usage.set(0.1 * self.waiting)

    @property
    def deployment(self) -> str:
        return PREFILL if self.role == "prefill" else DECODE

    def step(self) -> None:
        if self.role == "prefill":
            self.metrics.prompt_tokens.inc(PROMPT_TOKENS_PER_EXPORT)
        self.metrics.generation_tokens.inc(10)
        self.metrics.ttft.observe(0.2, 3)
        self.metrics.itl.observe(0.03, 30)


class SimFleet:
    """Two prefill and three decode pods; ``requests()`` gives the next export of each pod."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.pods = [Pod("prefill-0", "prefill", 3), Pod("prefill-1", "prefill", 4)]
        self.pods += [Pod(f"decode-{i}", "decode", 1 + i) for i in range(3)]
        self.t0_ns = time.time_ns()
        self.start_ns = self.t0_ns - 10**9
        self.step = 0

    def waiting(self, role: str) -> int:
        return sum(p.waiting for p in self.pods if p.role == role)

    def at(self, step: int) -> float:
        """The timestamp (s) of export ``step``."""
        return (self.t0_ns + step * int(self.interval * 1e9)) / 1e9

    def requests(self) -> list[Request]:
        """One request per pod, as each pod's sidecar sends its own batch."""
        now_ns = self.t0_ns + self.step * int(self.interval * 1e9)
        self.step += 1
        out = []
        for pod in self.pods:
            pod.step()
            resource = pod_resource(pod.name, pod.deployment, NAMESPACE, pod.role)
            metrics = registry_to_metrics(pod.metrics.registry, now_ns, self.start_ns)
            out.append(Request(resource_metrics=[resource_metrics(resource, metrics)]))
        return out


class Exporter:
    """One replica's exporter: a bounded sending queue drained in order, a failed export
    retried every ``retry_seconds`` (the collector's ``retry_on_failure``) until it succeeds
    or is older than ``max_elapsed``; the oldest request is dropped when the queue is full."""

    def __init__(self, target: str, queue_size: int = 600, retry_seconds: float = 0.2, max_elapsed: float = 60) -> None:
        self.channel = grpc.insecure_channel(target)
        self.export = metrics_service_pb2_grpc.MetricsServiceStub(self.channel).Export  # type: ignore[no-untyped-call]
        self.queue: deque[tuple[float, Request]] = deque(maxlen=queue_size)
        self.retry_seconds = retry_seconds
        self.max_elapsed = max_elapsed
        self.sent = self.failures = self.dropped = 0
        self._wake = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def put(self, request: Request) -> None:
        with self._wake:
            if len(self.queue) == self.queue.maxlen:
                self.dropped += 1
            self.queue.append((time.monotonic(), request))
            self._wake.notify()

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self.queue and not self._closed:
                    self._wake.wait()
                if self._closed:
                    return
                queued_at, request = self.queue[0]
            try:
                self.export(request, timeout=2)
            except grpc.RpcError:
                self.failures += 1
                if time.monotonic() - queued_at > self.max_elapsed:
                    self._pop(request)
                    self.dropped += 1
                time.sleep(self.retry_seconds)
                continue
            self._pop(request)
            self.sent += 1

    def _pop(self, request: Request) -> None:
        with self._wake:
            if self.queue and self.queue[0][1] is request:
                self.queue.popleft()

    @property
    def pending(self) -> int:
        return len(self.queue)

    def close(self) -> None:
        with self._wake:
            self._closed = True
            self._wake.notify()
        self._thread.join(timeout=5)
        self.channel.close()


class Feed:
    """Exports the fleet every ``interval`` to ``sinks`` (each takes every request) in a thread."""

    def __init__(self, fleet: SimFleet, sinks: Sequence[Callable[[Request], None]]) -> None:
        self.fleet = fleet
        self.sinks = sinks
        self.exports = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Feed:
        self._thread.start()
        return self

    def _run(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            for request in self.fleet.requests():
                for sink in self.sinks:
                    sink(request)
            self.exports += 1
            next_at += self.fleet.interval
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


BIND_ATTEMPTS = 3
"""Starts of a rotel collector that lost one of its ports to another process before binding it."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Rotel:
    """The real ``rotel`` collector (its agent binary from the PyPI wheel) exporting OTLP/gRPC to
    one replica, with its own batching, retry and queue. The only rotel on PyPI (0.0.1a15)
    refuses a second metrics exporter ("Only one exporter supported for
    ROTEL_EXPORTERS_METRICS"), so a fan-out to N replicas is N of these, each fed every request."""

    def __init__(self, target: str, log: Path) -> None:
        import rotel

        agent = Path(rotel.__file__).parent / "rotel-agent"
        assert agent.exists(), "rotel-agent binary missing from the rotel wheel"
        self.log_path = log
        for attempt in range(BIND_ATTEMPTS):
            # a free port is free when picked, not when rotel binds it: another process may take
            # it in between (a parallel test worker's client socket), so a bind failure picks again
            self.grpc_in = _free_port()
            self.process = self._start(agent, target, _free_port(), log)
            if self._listening(log, last=attempt == BIND_ATTEMPTS - 1):
                break
        self.exporter = Exporter(f"127.0.0.1:{self.grpc_in}")

    def _start(self, agent: Path, target: str, http_in: int, log: Path) -> subprocess.Popen[bytes]:
        command = [
            str(agent),
            "start",
            "--otlp-grpc-endpoint",
            f"127.0.0.1:{self.grpc_in}",
            "--otlp-http-endpoint",
            f"127.0.0.1:{http_in}",
            "--exporter",
            "otlp",
            "--otlp-exporter-endpoint",
            f"http://{target}",
            "--otlp-exporter-protocol",
            "grpc",
            "--otlp-exporter-retry-initial-backoff",
            "200ms",
            "--otlp-exporter-retry-max-backoff",
            "1s",
            "--otlp-exporter-retry-max-elapsed-time",
            "60s",
            "--batch-timeout",
            "100ms",
        ]
        self.log = log.open("w")
        return subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT)

    def _listening(self, log: Path, last: bool) -> bool:
        """Whether rotel listens on its gRPC port within 20 s; False when it lost a port to
        another process (and this is not the last attempt), which picks new ports."""
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.log.close()
                text = log.read_text()
                assert not last and "Address already in use" in text, text[-2000:]
                return False
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.grpc_in)) == 0:
                    return True
            time.sleep(0.1)
        return True

    def put(self, request: Request) -> None:
        self.exporter.put(request)

    def close(self) -> None:
        self.exporter.close()
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()
