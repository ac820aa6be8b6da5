"""Paced OTLP load of the issue-20 shape, in its own process (so it never takes the timing
client's GIL): ``python -m bench.paced --port P --pods 200 --rate 100000 --duration 10``.

Sends requests of ``--per-request`` pods of :data:`workload.VLLM16` with fresh timestamps,
evenly spaced so that ``--rate`` data points per second arrive; prints one JSON line at the end.
"""

from __future__ import annotations

import argparse
import json
import signal
import time
from collections.abc import Sequence

import grpc

from bench import workload
from bench.server import GRPC_OPTIONS, otlp_export


def run(port: int, pods: int, per_request: int, rate: float, duration: float) -> dict[str, float]:
    shape = workload.VLLM16
    payloads = workload.payloads(pods * shape.series_per_pod, prefix="v", shape=shape)
    interval = per_request * shape.points_per_pod / rate
    channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=GRPC_OPTIONS)
    export = otlp_export(channel)
    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    points = rejected = requests = 0
    late = 0.0
    start = time.monotonic()
    cursor = round_index = 0
    try:
        while not stop["now"] and time.monotonic() - start < duration:
            wait = start + requests * interval - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            else:
                late = max(late, -wait)
            chunk = payloads[cursor : cursor + per_request]
            cursor += per_request
            if cursor >= len(payloads):
                cursor, round_index = 0, round_index + 1
            body = b"".join(p.render(time.time_ns(), workload.counter_value(round_index)) for p in chunk)
            rejected += export(body, timeout=30).partial_success.rejected_data_points
            points += shape.points_per_pod * len(chunk)
            requests += 1
    finally:
        channel.close()
    elapsed = time.monotonic() - start
    return {"points": points, "rejected": rejected, "requests": requests, "seconds": elapsed, "max_late_s": late}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True, help="OTLP gRPC port on 127.0.0.1")
    parser.add_argument("--pods", type=int, default=200)
    parser.add_argument("--per-request", type=int, default=50)
    parser.add_argument("--rate", type=float, required=True, help="data points per second")
    parser.add_argument("--duration", type=float, default=10.0, help="stop after this many seconds")
    args = parser.parse_args(argv)
    print(json.dumps(run(args.port, args.pods, args.per_request, args.rate, args.duration)), flush=True)


if __name__ == "__main__":
    main()
