"""Paced OTLP load of the issue-20 shape, in its own process (so it never takes the timing
client's GIL): ``python -m bench.paced --port P --pods 200 --rate 100000 --duration 10``.

Sends requests of ``--per-request`` pods of :data:`workload.VLLM16` with fresh timestamps,
evenly spaced so that ``--rate`` data points per second arrive, from ``--connections`` client
threads (request ``i`` from thread ``i % connections``, so a slow answer does not delay the
next request); prints one JSON line at the end.

Each request's bytes are rendered when it is sent (fresh timestamps and counters). By default
(``--render patch``) a request is one buffer joined once from its pods' templates, whose
timestamp and counter fields are overwritten in place at offsets found once; ``--render each``
renders every pod with :meth:`workload.PodPayload.render` (two ``bytes.replace`` scans a pod).
Both give the same bytes; for 50 pods patching took 0.06 ms against 0.47 ms (bench/RESULTS.md):
the load generator shares the server's two cores here, which exporters in a deployment do not.
"""

from __future__ import annotations

import argparse
import json
import signal
import struct
import threading
import time
from collections.abc import Sequence

import grpc
import numpy as np
import numpy.typing as npt

from bench import workload
from bench.server import GRPC_OPTIONS, otlp_export


class Request:
    """The pods of one request, rendered by overwriting their timestamp and counter fields in
    one buffer (:meth:`render` gives the bytes of joining each pod's ``render``)."""

    def __init__(self, pods: Sequence[workload.PodPayload]) -> None:
        self.pods = pods
        template = b"".join(p.template for p in pods)
        self._buffer = bytearray(template)
        self._bytes: npt.NDArray[np.uint8] = np.frombuffer(self._buffer, dtype=np.uint8)
        self._ts = self._fields(template, workload.TS_BYTES)
        self._counter = self._fields(template, workload.COUNTER_BYTES)

    @staticmethod
    def _fields(template: bytes, mark: bytes) -> npt.NDArray[np.intp]:
        """Byte indices, one row of 8 per field, of every occurrence of ``mark``."""
        starts = workload.positions(template, mark)
        return np.asarray(starts, dtype=np.intp)[:, None] + np.arange(len(mark), dtype=np.intp)

    def render(self, t_ns: int, counter: float) -> bytes:
        self._bytes[self._ts] = np.frombuffer(struct.pack("<Q", t_ns), dtype=np.uint8)
        self._bytes[self._counter] = np.frombuffer(struct.pack("<d", counter), dtype=np.uint8)
        return bytes(self._buffer)

    def render_each(self, t_ns: int, counter: float) -> bytes:
        return b"".join(p.render(t_ns, counter) for p in self.pods)


RENDER = ("patch", "each")


def run(
    port: int, pods: int, per_request: int, rate: float, duration: float, connections: int, render: str = "patch"
) -> dict[str, float]:
    shape = workload.VLLM16
    payloads = workload.payloads(pods * shape.series_per_pod, prefix="v", shape=shape)
    chunks = [payloads[i : i + per_request] for i in range(0, len(payloads), per_request)]
    # one buffer per request and sender thread: a buffer is patched in place
    requests = [[Request(chunk) for chunk in chunks] for _ in range(connections)]
    interval = per_request * shape.points_per_pod / rate
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    totals = {"points": 0, "rejected": 0, "requests": 0, "max_late_s": 0.0}
    lock = threading.Lock()
    patch = render == "patch"
    start = time.monotonic()

    def sender(first: int) -> None:
        channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=[*GRPC_OPTIONS, ("grpc.channel_id", first)])
        export = otlp_export(channel)
        try:
            for i in range(first, 1 << 62, connections):
                wait = start + i * interval - time.monotonic()
                if stop.wait(max(0.0, wait)) or time.monotonic() - start >= duration:
                    return
                request = requests[first][i % len(chunks)]
                counter = workload.counter_value(i // len(chunks))
                render = request.render if patch else request.render_each
                body = render(time.time_ns(), counter)
                rejected = export(body, timeout=30).partial_success.rejected_data_points
                with lock:
                    totals["rejected"] += rejected
                    totals["points"] += shape.points_per_pod * len(request.pods)
                    totals["requests"] += 1
                    totals["max_late_s"] = max(totals["max_late_s"], -wait)
        finally:
            channel.close()

    threads = [threading.Thread(target=sender, args=(c,), daemon=True) for c in range(connections)]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):  # the main thread takes SIGTERM
        for t in threads:
            t.join(0.1)
    return {**totals, "seconds": time.monotonic() - start}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True, help="OTLP gRPC port on 127.0.0.1")
    parser.add_argument("--pods", type=int, default=200)
    parser.add_argument("--per-request", type=int, default=50)
    parser.add_argument("--rate", type=float, required=True, help="data points per second")
    parser.add_argument("--duration", type=float, default=10.0, help="stop after this many seconds")
    parser.add_argument("--connections", type=int, default=2, help="client threads, one connection each")
    parser.add_argument(
        "--render", choices=RENDER, default="patch", help="patch: fields overwritten in place; each: every pod rendered"
    )
    args = parser.parse_args(argv)
    result = run(args.port, args.pods, args.per_request, args.rate, args.duration, args.connections, args.render)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
