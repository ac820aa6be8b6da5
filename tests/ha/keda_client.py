"""KEDA's side of a failover, over real gRPC.

* :class:`RoundRobinKeda`: one channel per replica (the addresses KEDA's gRPC round-robin
  balancer gets for a Service); each call goes to the next replica, and a failed call is
  retried once on the one after, as a second attempt through KEDA's connection would land.
  Every first-attempt failure and every final failure is recorded.
* :class:`StreamWatcher`: a ``StreamIsActive`` client (KEDA's ``external-push``) that
  reconnects to the next replica when its stream breaks, recording each message and how long
  the reconnection took.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import grpc

from scaler._gen import externalscaler_pb2 as pb
from scaler._gen import externalscaler_pb2_grpc as pb_grpc

T = TypeVar("T")
CALL_TIMEOUT = 2.0


def ref(metadata: dict[str, str], name: str = "pd-prefill") -> pb.ScaledObjectRef:
    return pb.ScaledObjectRef(name=name, namespace="llm-d", scalerMetadata=metadata)


@dataclass
class Outcome:
    calls: int = 0
    retried: int = 0
    """Calls whose first attempt failed (and were retried on another replica)."""
    failed: int = 0
    """Calls that failed on the retry too."""
    errors: list[str] = field(default_factory=list)
    retried_latency: list[float] = field(default_factory=list)
    """Seconds from the start of a retried call to its answer."""


class RoundRobinKeda:
    def __init__(self, targets: Sequence[str]) -> None:
        self.targets = list(targets)
        self.channels = [grpc.insecure_channel(t) for t in self.targets]
        self.stubs = [pb_grpc.ExternalScalerStub(c) for c in self.channels]
        self._next = itertools.count()
        self._lock = threading.Lock()
        self.outcome = Outcome()

    def _call(self, method: Callable[[pb_grpc.ExternalScalerStub], T]) -> T | None:
        with self._lock:
            first = next(self._next) % len(self.stubs)
            self.outcome.calls += 1
        started = time.monotonic()
        try:
            return method(self.stubs[first])
        except grpc.RpcError as exc:
            first_error = f"{self.targets[first]}: {exc.code().name}"
        with self._lock:
            self.outcome.retried += 1
        second = (first + 1) % len(self.stubs)
        try:
            result = method(self.stubs[second])
        except grpc.RpcError as exc:
            with self._lock:
                self.outcome.failed += 1
                self.outcome.errors.append(f"{first_error}; retry {self.targets[second]}: {exc.code().name}")
            return None
        with self._lock:
            self.outcome.retried_latency.append(time.monotonic() - started)
        return result

    def metrics(self, metadata: dict[str, str]) -> float | None:
        request = pb.GetMetricsRequest(scaledObjectRef=ref(metadata), metricName="s0-x")
        reply = self._call(lambda stub: stub.GetMetrics(request, timeout=CALL_TIMEOUT))
        return None if reply is None else float(reply.metricValues[0].metricValueFloat)

    def active(self, metadata: dict[str, str]) -> bool | None:
        reply = self._call(lambda stub: stub.IsActive(ref(metadata), timeout=CALL_TIMEOUT))
        return None if reply is None else bool(reply.result)

    def close(self) -> None:
        for channel in self.channels:
            channel.close()


@dataclass
class Message:
    at: float
    target: str
    active: bool


class StreamWatcher:
    """Holds one ``StreamIsActive`` stream, starting on ``targets[first]``; on a broken stream it
    reconnects to the next replica at once (KEDA waits its backoff first; the wait is not ours
    to measure)."""

    def __init__(self, targets: Sequence[str], metadata: dict[str, str], first: int = 0) -> None:
        self.targets = list(targets)
        self.metadata = metadata
        self.index = first
        self.messages: list[Message] = []
        self.breaks: list[tuple[float, str]] = []
        self.reconnects: list[float] = []
        """Seconds from a broken stream to the first message of the next one."""
        self._stop = threading.Event()
        self._call: grpc.RpcContext | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> StreamWatcher:
        self._thread.start()
        return self

    def _run(self) -> None:
        broke_at: float | None = None
        while not self._stop.is_set():
            target = self.targets[self.index % len(self.targets)]
            channel = grpc.insecure_channel(target)
            try:
                stream = pb_grpc.ExternalScalerStub(channel).StreamIsActive(ref(self.metadata))
                self._call = stream
                for reply in stream:
                    now = time.monotonic()
                    if broke_at is not None:
                        self.reconnects.append(now - broke_at)
                        broke_at = None
                    self.messages.append(Message(now, target, bool(reply.result)))
            except grpc.RpcError as exc:
                if not self._stop.is_set():
                    self.breaks.append((time.monotonic(), f"{target}: {exc.code().name}"))
                    broke_at = broke_at or time.monotonic()
                    self.index += 1
                    time.sleep(0.02)
            finally:
                channel.close()

    def current(self) -> Message | None:
        return self.messages[-1] if self.messages else None

    def stop(self) -> None:
        self._stop.set()
        if self._call is not None:
            self._call.cancel()
        self._thread.join(timeout=5)
