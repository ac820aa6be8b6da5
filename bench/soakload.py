"""The soak's load: an OTLP sender process and a KEDA query thread.

``python -m bench.soakload --port P --pods 1000 --series 40 --interval 0.5`` (started by
``bench.soak``, one process per shard of the fleet) prints ``{"ready": …}``, waits for
``go <unix time>`` on stdin, then sends every pod once per ``--interval`` for ``--seconds``,
``--pods-per-request`` pods to a request, requests spread evenly over the interval and over
``--connections`` gRPC channels (futures, at most ``--max-inflight`` outstanding). It prints a
JSON status line every ``--report-every`` seconds and a final one with ``"final": true``.

The fleet is serialized once into one ``bytearray`` (pods of a request are adjacent, so a request
is a slice); the ``fixed64`` ``time_unix_nano`` and the counters' ``double`` ``as_double`` are
found by their placeholder bytes and patched per send with numpy: no per-point Python work.
"""

from __future__ import annotations

import argparse
import json
import random
import struct
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import grpc
import numpy as np
import numpy.typing as npt
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.metrics.v1 import metrics_pb2 as m
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from bench import latency, workload
from bench.server import GRPC_OPTIONS, otlp_export
from bench.stats import Latency, percentile
from scaler._gen import externalscaler_pb2_grpc as pb_grpc

SINGLES = (
    *(("gauge", name, "") for name in workload.GAUGES[:3]),
    *(("sum", "vllm:request_success_total", reason) for reason in workload.FINISHED_REASONS),
    *(("sum", name, "") for name in workload.COUNTERS[:2]),
    ("gauge", workload.GAUGES[3], ""),
    *(("sum", name, "") for name in workload.COUNTERS[2:]),
)
"""One-sample series, in the order they are used (kind, metric, finished_reason)."""
MIN_SERIES = 3 + 3
"""3 gauges plus the smallest histogram (only ``+Inf``: bucket, ``_count``, ``_sum``)."""
_TS_FIELD = b"\x19" + struct.pack("<Q", workload.TS_MARK)  # field 3 (time_unix_nano), fixed64
_COUNTER_FIELD = b"\x21" + struct.pack("<d", workload.COUNTER_MARK)  # field 4 (as_double), fixed64
COUNTER_PER_S = 10.0
"""Counters grow by this much per second (so ``rate()`` is 10/s per series)."""


def pod_request(pod: workload.Pod, series: int) -> ExportMetricsServiceRequest:
    """The pod's request with exactly ``series`` samples: up to 16 one-sample gauges/counters
    (``workload`` order), the rest one histogram (buckets + ``_count`` + ``_sum``)."""
    if series < MIN_SERIES:
        raise ValueError(f"--series must be at least {MIN_SERIES}")
    singles = SINGLES[: min(len(SINGLES), series - 3)]
    buckets = series - len(singles) - 2
    bounds = [*workload.HISTOGRAM_BOUNDS, *(1000.0 * 2**i for i in range(buckets))][: buckets - 1]
    attrs = workload.point_attributes(pod)
    metrics: dict[str, m.Metric] = {}
    for kind, name, reason in singles:
        point_attrs = [*attrs, workload.kv("finished_reason", reason)] if reason else attrs
        value = workload.COUNTER_MARK if kind == "sum" else float(pod.index % 7)
        point = m.NumberDataPoint(
            start_time_unix_nano=workload.START_NS, time_unix_nano=workload.TS_MARK, as_double=value
        )
        point.attributes.extend(point_attrs)
        metric = metrics.setdefault(name, m.Metric(name=name))
        if kind == "sum":
            metric.sum.aggregation_temporality = m.AGGREGATION_TEMPORALITY_CUMULATIVE
            metric.sum.is_monotonic = True
            metric.sum.data_points.append(point)
        else:
            metric.gauge.data_points.append(point)
    histogram = workload.pod_histogram(pod, bounds, attrs)
    metrics[histogram.name] = histogram
    resource = Resource(
        attributes=[
            workload.kv("service.name", "vllm"),
            workload.kv("service.instance.id", f"{pod.name}:8200"),
            workload.kv("k8s.namespace.name", workload.NAMESPACE),
            workload.kv("k8s.pod.name", pod.name),
            workload.kv("k8s.deployment.name", pod.deployment),
        ]
    )
    scope = m.ScopeMetrics(metrics=list(metrics.values()))
    return ExportMetricsServiceRequest(resource_metrics=[m.ResourceMetrics(resource=resource, scope_metrics=[scope])])


def _offsets(data: bytes, needle: bytes) -> list[int]:
    """Offsets of the 8 value bytes after each occurrence of ``needle`` (tag + placeholder)."""
    out, at = [], data.find(needle)
    while at >= 0:
        out.append(at + 1)
        at = data.find(needle, at + len(needle))
    return out


IndexArray = npt.NDArray[np.intp]


@dataclass
class Fleet:
    """Pods serialized back to back; request ``k`` is ``buffer[bounds[k]:bounds[k+1]]``."""

    buffer: bytearray
    bounds: list[int]
    samples: list[int]
    ts_index: list[IndexArray]
    counter_index: list[IndexArray]
    view: npt.NDArray[np.uint8] = field(init=False)

    def __post_init__(self) -> None:
        self.view = np.frombuffer(self.buffer, dtype=np.uint8)

    @staticmethod
    def build(pods: Sequence[workload.Pod], series: int, pods_per_request: int) -> Fleet:
        buffer = bytearray()
        bounds, samples, ts_index, counter_index = [0], [], [], []
        expected_ts = len(SINGLES[: series - 3]) + 1
        expected_counters = sum(kind == "sum" for kind, _, _ in SINGLES[: series - 3])
        for first in range(0, len(pods), pods_per_request):
            ts: list[int] = []
            counters: list[int] = []
            chunk = pods[first : first + pods_per_request]
            for pod in chunk:
                data = pod_request(pod, series).SerializeToString()
                pod_ts, pod_counters = _offsets(data, _TS_FIELD), _offsets(data, _COUNTER_FIELD)
                counts = (len(pod_ts), len(pod_counters), workload.decode_walk(data))
                if counts != (expected_ts, expected_counters, series):
                    raise AssertionError(f"{pod.name}: placeholders or sample count do not match")
                ts += [len(buffer) + o for o in pod_ts]
                counters += [len(buffer) + o for o in pod_counters]
                buffer += data
            bounds.append(len(buffer))
            samples.append(series * len(chunk))
            lanes = np.arange(8, dtype=np.intp)
            ts_index.append(np.asarray(ts, dtype=np.intp)[:, None] + lanes)
            counter_index.append(np.asarray(counters, dtype=np.intp)[:, None] + lanes)
        return Fleet(buffer, bounds, samples, ts_index, counter_index)

    def render(self, k: int, t_ns: int, counter: float) -> bytes:
        self.view[self.ts_index[k]] = np.frombuffer(struct.pack("<Q", t_ns), dtype=np.uint8)
        self.view[self.counter_index[k]] = np.frombuffer(struct.pack("<d", counter), dtype=np.uint8)
        return bytes(memoryview(self.buffer)[self.bounds[k] : self.bounds[k + 1]])


@dataclass
class Tally:
    """What the server answered (updated from gRPC callback threads under ``lock``)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    requests: int = 0
    sent: int = 0
    ok: int = 0
    rejected: int = 0
    errors: int = 0
    messages: list[str] = field(default_factory=list)

    def done(self, samples: int, future: grpc.Future[ExportMetricsServiceResponse]) -> None:
        error = future.exception()
        with self.lock:
            if error is not None:
                self.errors += 1
                detail = f"{error.code()}: {error.details()}" if isinstance(error, grpc.Call) else repr(error)
                if len(self.messages) < 5:
                    self.messages.append(detail)
                return
            partial = future.result().partial_success
            self.ok += samples - partial.rejected_data_points
            self.rejected += partial.rejected_data_points
            if (partial.rejected_data_points or partial.error_message) and len(self.messages) < 5:
                self.messages.append(f"partial_success: {partial.rejected_data_points} {partial.error_message}")


def send(args: argparse.Namespace, fleet: Fleet, start_wall: float) -> dict[str, object]:
    """Send every request once per interval until ``args.seconds``; returns the final status."""
    channels = [
        grpc.insecure_channel(f"127.0.0.1:{args.port}", options=[*GRPC_OPTIONS, ("grpc.channel_id", i)])
        for i in range(args.connections)
    ]
    exports = [otlp_export(c) for c in channels]
    tally, slots = Tally(), threading.BoundedSemaphore(args.max_inflight)
    n = len(fleet.samples)
    step = args.interval / n
    t0 = time.monotonic() + (start_wall - time.time())
    t0 += step * args.shard / args.shards  # shards interleave
    late: list[float] = []
    next_report, i, cpu0 = t0 + args.report_every, 0, time.process_time()

    def status(final: bool) -> dict[str, object]:
        with tally.lock:
            out: dict[str, object] = {k: getattr(tally, k) for k in ("requests", "sent", "ok", "rejected", "errors")}
            out["messages"] = list(tally.messages)
        out.update(shard=args.shard, t=round(time.monotonic() - t0, 3), final=final)
        out.update(cpu_s=round(time.process_time() - cpu0, 3), late_max_ms=round(1000 * max(late, default=0.0), 1))
        out.update(late_p99_ms=round(1000 * percentile(late, 99), 2) if late else 0.0)
        return out

    while True:
        due = t0 + i * step
        if due - t0 >= args.seconds:
            break
        now = time.monotonic()
        if due > now:
            time.sleep(due - now)
        late.append(max(0.0, now - due))
        k = i % n
        t_ns = time.time_ns()
        body = fleet.render(k, t_ns, 1000.0 + COUNTER_PER_S * (t_ns / 1e9 - start_wall))
        slots.acquire()
        future = exports[i % len(exports)].future(body, timeout=args.timeout)
        with tally.lock:
            tally.requests += 1
            tally.sent += fleet.samples[k]

        def release(f: grpc.Future[ExportMetricsServiceResponse], samples: int = fleet.samples[k]) -> None:
            try:
                tally.done(samples, f)
            finally:
                slots.release()

        future.add_done_callback(release)
        i += 1
        if time.monotonic() >= next_report:
            next_report += args.report_every
            print(json.dumps(status(False)), flush=True)
    for _ in range(args.max_inflight):  # drain
        slots.acquire(timeout=args.timeout)
    for channel in channels:
        channel.close()
    return status(True)


class QueryLoad(threading.Thread):
    """KEDA ``GetMetrics`` for a compat and a PromQL trigger of a prefill and a decode deployment,
    every ``every`` seconds on average after ``delay``; latencies, last values and errors per trigger."""

    def __init__(self, port: int, every: float = 1.0, delay: float = 0.0) -> None:
        super().__init__(name="keda-queries", daemon=True)
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=GRPC_OPTIONS)
        self.stub = pb_grpc.ExternalScalerStub(self.channel)
        self.every = every
        self.requests = {
            f"{role}-{kind}": latency.metrics_request(f"{role}-{kind}", metadata)
            for role, deployment in (("prefill", workload.deployment_name(0)), ("decode", workload.deployment_name(1)))
            for kind, metadata in latency.triggers(deployment).items()
        }
        self.seconds: dict[str, list[float]] = {name: [] for name in self.requests}
        self.values: dict[str, float] = {}
        self.errors: list[str] = []
        self.stopping = threading.Event()
        self.delay = delay

    def run(self) -> None:
        tick = time.monotonic() + self.delay
        while not self.stopping.wait(max(0.0, tick - time.monotonic())):
            tick += self.every * (0.5 + random.random())  # a random phase: not in step with the senders
            for name, request in self.requests.items():
                start = time.perf_counter()
                try:
                    reply = self.stub.GetMetrics(request, timeout=10)
                    self.values[name] = reply.metricValues[0].metricValueFloat
                except grpc.RpcError as exc:
                    self.errors.append(f"{name}: {exc.code()}: {exc.details()}")
                self.seconds[name].append(time.perf_counter() - start)

    def stop(self) -> dict[str, Latency]:
        self.stopping.set()
        self.join(15)
        self.channel.close()
        return {name: Latency.of(s) for name, s in self.seconds.items()}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True, help="OTLP gRPC port on 127.0.0.1")
    ints = {"pods": 1000, "series": 40, "pods-per-request": 25, "connections": 4, "max-inflight": 64, "shard": 0}
    for name, value in {**ints, "shards": 1}.items():
        parser.add_argument(f"--{name}", type=int, default=value)
    for name, fvalue in {"interval": 0.5, "seconds": 600.0, "timeout": 30.0, "report-every": 10.0}.items():
        parser.add_argument(f"--{name}", type=float, default=fvalue)
    args = parser.parse_args(argv)
    pods = workload.fleet(args.pods * workload.SERIES_PER_POD)
    mine = pods[args.shard * len(pods) // args.shards : (args.shard + 1) * len(pods) // args.shards]
    started = time.perf_counter()
    fleet = Fleet.build(mine, args.series, args.pods_per_request)
    ready = {"ready": True, "shard": args.shard, "pods": len(mine), "requests": len(fleet.samples)}
    ready.update(build_s=round(time.perf_counter() - started, 2), bytes=len(fleet.buffer))
    print(json.dumps(ready), flush=True)
    line = sys.stdin.readline().split()
    if len(line) != 2 or line[0] != "go":
        return
    print(json.dumps(send(args, fleet, float(line[1]))), flush=True)


if __name__ == "__main__":
    main()
