"""Paced OTLP load of the issue-20 shape, in its own process (so it never takes the timing
client's GIL): ``python -m bench.paced --port P --pods 200 --rate 100000 --duration 10``.

Sends requests of ``--per-request`` pods of :data:`workload.VLLM16` with fresh timestamps,
evenly spaced so that ``--rate`` data points per second arrive, from ``--connections`` client
threads (request ``i`` from thread ``i % connections``, so a slow answer does not delay the
next request); prints one JSON line at the end.
"""

from __future__ import annotations

import argparse
import json
import signal
import threading
import time
from collections.abc import Sequence

import grpc

from bench import workload
from bench.server import GRPC_OPTIONS, otlp_export


def run(port: int, pods: int, per_request: int, rate: float, duration: float, connections: int) -> dict[str, float]:
    shape = workload.VLLM16
    payloads = workload.payloads(pods * shape.series_per_pod, prefix="v", shape=shape)
    chunks = [payloads[i : i + per_request] for i in range(0, len(payloads), per_request)]
    interval = per_request * shape.points_per_pod / rate
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    totals = {"points": 0, "rejected": 0, "requests": 0, "max_late_s": 0.0}
    lock = threading.Lock()
    start = time.monotonic()

    def sender(first: int) -> None:
        channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=[*GRPC_OPTIONS, ("grpc.channel_id", first)])
        export = otlp_export(channel)
        try:
            for i in range(first, 1 << 62, connections):
                wait = start + i * interval - time.monotonic()
                if stop.wait(max(0.0, wait)) or time.monotonic() - start >= duration:
                    return
                chunk = chunks[i % len(chunks)]
                counter = workload.counter_value(i // len(chunks))
                body = b"".join(p.render(time.time_ns(), counter) for p in chunk)
                rejected = export(body, timeout=30).partial_success.rejected_data_points
                with lock:
                    totals["rejected"] += rejected
                    totals["points"] += shape.points_per_pod * len(chunk)
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
    args = parser.parse_args(argv)
    result = run(args.port, args.pods, args.per_request, args.rate, args.duration, args.connections)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
