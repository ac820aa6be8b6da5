"""Background OTLP load at a realistic rate, in its own process (so it never takes the timing
client's GIL): ``python -m bench.background --port P --series 10000 --duration 60``.

Like a central collector scraping every pod once per ``--interval`` with a batch processor that
flushes every ``--flush`` seconds: each flush sends the pods scraped since the last one, with
fresh timestamps. Prints one JSON line with what it sent when it ends.
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


def run(port: int, series: int, interval: float, flush: float, duration: float) -> dict[str, float]:
    pods = workload.payloads(series, prefix="bg")
    per_flush = max(1, round(len(pods) * flush / interval))
    channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=GRPC_OPTIONS)
    export = otlp_export(channel)
    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    sent = rejected = requests = 0
    late = 0.0
    start = time.monotonic()
    tick = 0
    cursor = 0
    round_index = 0
    try:
        while not stop["now"] and time.monotonic() - start < duration:
            due = start + tick * flush
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            else:
                late = max(late, -wait)
            chunk = pods[cursor : cursor + per_flush]
            cursor += per_flush
            if cursor >= len(pods):
                cursor = 0
                round_index += 1
            body = b"".join(p.render(time.time_ns(), workload.counter_value(round_index)) for p in chunk)
            response = export(body, timeout=30)
            rejected += response.partial_success.rejected_data_points
            sent += workload.SERIES_PER_POD * len(chunk)
            requests += 1
            tick += 1
    finally:
        channel.close()
    elapsed = time.monotonic() - start
    return {"samples": sent, "rejected": rejected, "requests": requests, "seconds": elapsed, "max_late_s": late}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True, help="OTLP gRPC port on 127.0.0.1")
    parser.add_argument("--series", type=int, default=10_000)
    parser.add_argument("--interval", type=float, default=5.0, help="scrape interval (s)")
    parser.add_argument("--flush", type=float, default=0.2, help="batch processor flush (s)")
    parser.add_argument("--duration", type=float, default=60.0, help="stop after this many seconds")
    args = parser.parse_args(argv)
    print(json.dumps(run(args.port, args.series, args.interval, args.flush, args.duration)), flush=True)


if __name__ == "__main__":
    main()
