"""``make soak`` = ``python -m bench.soak``: the server under sustained load, RSS sampled every 10 s.

Issue 9 asks for "10 minutes at 10× a 1 000-pod fleet's rate (1 000 pods × 40 series every 5 s)".
Such a fleet sends 1 000 × 40 samples every 5 s = 8 000 samples/s; 10× is 80 000 samples/s, by
default as the same 40 000 series every 0.5 s (`--pods 10000 --interval 5` is 10× the cardinality
instead). `bench/soakload.py` processes (`--senders`) export every pod once per interval, 25 pods to
a request (a collector's batch), requests spread evenly over the interval; a KEDA client calls
GetMetrics every second (random phase) for a compat and a PromQL trigger of a prefill and a decode
deployment, from when every pod has exported twice.

Warm-up is the first retention + 60 s: series arrays grow by doubling until they hold one retention
window (256 slots for 240 samples at 0.5 s and 120 s, so RSS rises in steps for about a minute
and a half), and two retention windows would not fit in 10 minutes. Pass criteria (exit code 1
when one fails): no client or server error, no rejected point, ≥ 95 % of the target rate, every
acknowledged sample counted by the server, and flat RSS after warm-up: max ≤ 1.10 × the first
post-warm-up sample and a least-squares slope < 1 MiB/min (a leak of 1 KiB per Export request
would show as ~4.7 MiB/min).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import grpc
import numpy as np

from bench import latency
from bench.server import ServerProcess
from bench.soakload import QueryLoad
from bench.stats import cpu_seconds

HERE = Path(__file__).parent
MAX_SERIES = 500_000
"""The service's default ``--max-series``: the soak stays below the real limits."""


@dataclass(frozen=True)
class Point:
    t: float
    rss: float
    series: int
    received: float
    rate: float
    cpu_pct: float
    query_max_ms: float


def total(metrics: dict[str, float], prefix: str, exclude: str = "\0") -> float:
    return sum(v for k, v in metrics.items() if k.startswith(prefix + "{") and exclude not in k)


def server_errors(metrics: dict[str, float]) -> float:
    return (
        total(metrics, "otlp_requests_total", 'outcome="ok"')
        + total(metrics, "http_requests_rejected_total")
        + total(metrics, "keda_errors_total")
        + total(metrics, "queries_total", 'outcome="ok"')
    )


class Senders:
    """``bench.soakload`` processes, one per shard of the fleet, started in lockstep."""

    def __init__(self, args: argparse.Namespace, port: int) -> None:
        common = [f"--{k.replace('_', '-')}={getattr(args, k)}" for k in SENDER_ARGS]
        command = [sys.executable, "-m", "bench.soakload", f"--port={port}", f"--shards={args.senders}", *common]
        self.procs = [
            subprocess.Popen([*command, f"--shard={i}"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            for i in range(args.senders)
        ]
        self.ready: list[dict[str, Any]] = []
        self.latest: dict[int, dict[str, Any]] = {}
        self.lock = threading.Lock()

    def go(self) -> float:
        for proc in self.procs:
            assert proc.stdout is not None
            self.ready.append(json.loads(proc.stdout.readline() or '{"ready": false}'))
        if not all(r.get("ready") for r in self.ready):
            raise RuntimeError(f"a sender did not start: {self.ready}")
        start = time.time() + 0.5
        for proc in self.procs:
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write(f"go {start}\n")
            proc.stdin.flush()
            threading.Thread(target=self._read, args=(proc.stdout,), daemon=True).start()
        return start

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            status = json.loads(line)
            with self.lock:
                self.latest[status["shard"]] = status

    def finish(self, timeout: float) -> list[dict[str, Any]]:
        for proc in self.procs:
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        time.sleep(0.2)
        with self.lock:
            return [self.latest.get(i, {"shard": i, "final": False}) for i in range(len(self.procs))]


SENDER_ARGS = ("pods", "series", "interval", "seconds", "pods_per_request", "connections")


def git_state() -> str:
    """HEAD and whether scaler/ differs from it (read-only git commands)."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=HERE.parent, capture_output=True, text=True, check=False
        ).stdout.strip()

    changed = git("diff", "--name-only", "HEAD", "--", "scaler") + git(
        "ls-files", "--others", "--exclude-standard", "scaler"
    )
    return git("rev-parse", "--short", "HEAD") + (" + uncommitted changes in scaler/" if changed else "")


def slope_per_min(points: Sequence[Point]) -> float:
    if len(points) < 2:
        return float("nan")
    return float(np.polyfit([p.t / 60 for p in points], [p.rss for p in points], 1)[0])


def run(args: argparse.Namespace) -> tuple[list[str], bool]:
    """The soak; returns the report lines and whether every criterion held."""
    target = args.pods * args.series / args.interval
    code = git_state()  # before the server starts: others may commit during a run
    if args.pods * args.series > MAX_SERIES:
        raise SystemExit(f"{args.pods * args.series} series exceed the default --max-series {MAX_SERIES}")
    server = ServerProcess(["--retention-seconds", str(args.retention)], max_series=MAX_SERIES).started()
    senders: Senders | None = None
    queries: QueryLoad | None = None
    points: list[Point] = []
    try:
        senders = Senders(args, server.otlp)
        # from when every pod has exported twice: rate() needs two samples, and until then the server
        # answers UNAVAILABLE ("no data yet") by design during its own warm-up
        queries = QueryLoad(server.keda, args.query_every, delay=2 * args.interval + 1)
        start = senders.go()
        time.sleep(max(0.0, start - time.time()))
        queries.start()
        seen_queries, last_cpu, last_received, t_prev = 0, cpu_seconds(server.pid), 0.0, 0.0
        print(f"{'t s':>5} {'RSS MiB':>8} {'series':>8} {'received':>11} {'k/s':>6} {'CPU %':>6} {'query ms':>8}")
        for k in range(int(args.seconds // args.sample_every) + 1):
            time.sleep(max(0.0, start + k * args.sample_every - time.time()))
            t = time.time() - start
            metrics, rss, cpu = server.metrics(), server.rss_mib(), cpu_seconds(server.pid)
            received = total(metrics, "otlp_points_received_total")
            lat = [s for name in queries.seconds for s in queries.seconds[name][seen_queries:]]
            seen_queries = min(len(s) for s in queries.seconds.values())
            dt = max(t - t_prev, 1e-9) if k else 1.0
            point = Point(
                t, rss, int(metrics.get("store_series{}", 0)), received, (received - last_received) / dt / 1000,
                100 * (cpu - last_cpu) / dt if k else 0.0, 1000 * max(lat, default=0.0),
            )  # fmt: skip
            points.append(point)
            last_cpu, last_received, t_prev = cpu, received, t
            print(
                f"{t:5.0f} {rss:8.1f} {point.series:8d} {received:11.0f} {point.rate:6.1f} {point.cpu_pct:6.0f} "
                f"{point.query_max_ms:8.1f}",
                flush=True,
            )
        finals = senders.finish(args.seconds + 60)
        client_latency = queries.stop()
        metrics = server.metrics()
        server_cpu = cpu_seconds(server.pid)
        buckets = latency._histogram(server)
        server_p99 = 1000 * latency._quantile(buckets, 0.99)
    finally:
        if queries is not None:
            queries.stopping.set()
        if senders is not None:
            for proc in senders.procs:
                if proc.poll() is None:
                    proc.kill()
        server.stop()
    log_lines = server.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
    warnings = [line for line in log_lines if " WARNING " in line or " ERROR " in line or "Traceback" in line]

    ok = sum(f.get("ok", 0) for f in finals)
    sent = sum(f.get("sent", 0) for f in finals)
    client_errors = sum(f.get("errors", 0) for f in finals) + len(queries.errors)
    client_rejected = sum(f.get("rejected", 0) for f in finals)
    messages = [msg for f in finals for msg in f.get("messages", [])] + queries.errors[:5]
    gen_cpu = sum(f.get("cpu_s", 0.0) for f in finals)
    achieved = ok / args.seconds
    received = total(metrics, "otlp_points_received_total")
    rejected = total(metrics, "otlp_points_rejected_total")
    errors = server_errors(metrics)
    post = [p for p in points if p.t >= args.warmup]
    first = post[0].rss if post else float("nan")
    peak = max((p.rss for p in post), default=float("nan"))
    slope = slope_per_min(post)
    checks = [
        ("senders finished", all(f.get("final") for f in finals), f"{len(finals)} process(es)"),
        ("zero client errors", client_errors == 0, f"{client_errors} (OTLP + GetMetrics)"),
        ("zero server errors", errors == 0, f"{errors:.0f} (OTLP, HTTP, KEDA, queries)"),
        ("zero rejected points", rejected == 0 and client_rejected == 0, f"server {rejected:.0f}, "
         f"partial_success {client_rejected}"),
        ("rate ≥ 95 % of target", achieved >= 0.95 * target, f"{achieved:,.0f}/s of {target:,.0f}/s "
         f"({100 * achieved / target:.1f} %)"),
        ("server counted every acked sample", received == ok, f"received {received:,.0f}, acked {ok:,}"),
        ("post-warm-up samples", len(post) >= 3, f"{len(post)} (t ≥ {args.warmup:.0f} s)"),
        ("RSS max ≤ 1.10 × first post-warm-up", peak <= 1.10 * first, f"max {peak:.1f} MiB, first {first:.1f} MiB "
         f"({peak / first:.3f}×)"),
        ("RSS slope < 1 MiB/min", slope < 1.0, f"{slope:+.3f} MiB/min"),
    ]  # fmt: skip
    passed = all(c[1] for c in checks)
    lines = [
        "# Soak",
        "",
        "Generated by `make soak` (`.venv/bin/python -m bench.soak`).",
        "",
        f"**Verdict: {'PASS' if passed else 'FAIL'}**",
        "",
        "## What it measures",
        "",
        (__doc__ or "").split("\n", 2)[2].strip(),
        "",
        "## Setup",
        "",
        f"* date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(start))}; nproc: {os.cpu_count()}; "
        f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
        f"* code: {code} (at the start)",
        f"* Python {platform.python_version()}, grpcio {grpc.__version__}, numpy {np.__version__}",
        f"* command: `{' '.join(['python -m bench.soak', *sys.argv[1:]])}`",
        f"* load: {args.pods} pods × {args.series} series every {args.interval} s = {target:,.0f} samples/s "
        f"(a 1 000-pod fleet at 40 series every 5 s sends 8 000/s: this is {target / 8000:.1f}×), "
        f"{args.pods_per_request} pods per request, {args.connections} connection(s) × {args.senders} "
        f"sender process(es); GetMetrics × 4 every {args.query_every} s",
        f"* server: retention {args.retention:.0f} s, max series {MAX_SERIES}; warm-up {args.warmup:.0f} s "
        f"(default: retention + 60 s); RSS sampled every {args.sample_every:.0f} s",
        "",
        "## Checks",
        "",
        "| check | holds? | evidence |",
        "|---|---|---|",
        *(f"| {name} | {'yes' if held else '**no**'} | {detail} |" for name, held, detail in checks),
        "",
        "## Details",
        "",
        f"* OTLP: {sent:,} samples sent, {ok:,} acked, {achieved:,.0f}/s over {args.seconds:.0f} s; send "
        f"lateness p99 {max(f.get('late_p99_ms', 0) for f in finals)} ms, max "
        f"{max(f.get('late_max_ms', 0) for f in finals)} ms",
        f"* generator CPU {gen_cpu:.1f} s = {1000 * gen_cpu / max(sent / 10_000, 1):.2f} ms per 10k samples; "
        f"server CPU {server_cpu:.0f} s ({100 * server_cpu / args.seconds:.0f} % of a core, includes start-up)",
        f"* RSS: start {points[0].rss:.1f} MiB, first post-warm-up {first:.1f}, max {peak:.1f}, last "
        f"{points[-1].rss:.1f}; slope {slope:+.3f} MiB/min over {len(post)} samples",
        *(f"* GetMetrics {name} (client, end to end): {lat}, max {max(queries.seconds[name], default=0) * 1000:.1f} "
          f"ms, last value {queries.values.get(name, float('nan')):g}" for name, lat in client_latency.items()),
        f"* GetMetrics server side (histogram): p99 {server_p99:.2f} ms",
        f"* server log: {len(warnings)} warning/error line(s)" + "".join(f"\n  * `{w[:200]}`" for w in warnings[:5]),
        *(f"* client error: `{msg[:200]}`" for msg in messages[:5]),
        "",
        "## RSS curve",
        "",
        "| t (s) | RSS MiB | series | received | k samples/s | server CPU % | GetMetrics max ms |",
        "|---|---|---|---|---|---|---|",
        *(f"| {p.t:.0f}{' (warm-up)' if p.t < args.warmup else ''} | {p.rss:.1f} | {p.series} | {p.received:,.0f} | "
          f"{p.rate:.1f} | {p.cpu_pct:.0f} | {p.query_max_ms:.1f} |" for p in points),
    ]  # fmt: skip
    return lines, passed


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    add = parser.add_argument
    add("--seconds", type=float, default=600.0, help="load duration (default 600)")
    add("--pods", type=int, default=1000, help="pods in the fleet (default 1000)")
    add("--series", type=int, default=40, help="samples per pod per export (default 40)")
    add("--interval", type=float, default=0.5, help="seconds between a pod's exports (default 0.5)")
    add("--pods-per-request", type=int, default=25, help="pods batched in one Export, like a collector (25)")
    add("--connections", type=int, default=4, help="gRPC channels per sender process (default 4)")
    add("--senders", type=int, default=1, help="sender processes, each a shard of the fleet (default 1)")
    add("--retention", type=float, default=120.0, help="server --retention-seconds (default 120)")
    add("--warmup", type=float, default=None, help="seconds excluded from the RSS check (default retention + 60)")
    add("--sample-every", type=float, default=10.0, help="RSS sampling period (default 10)")
    add("--query-every", type=float, default=1.0, help="GetMetrics period (default 1)")
    add("--output", type=Path, default=HERE / "SOAK.md", help="report (default bench/SOAK.md)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind: stop the server and senders
    if args.warmup is None:
        args.warmup = args.retention + 60
    lines, passed = run(args)
    text = "\n".join(lines) + "\n"
    args.output.write_text(text, encoding="utf-8")
    print("\n" + text.split("## RSS curve")[0].rstrip())
    print(f"\nwrote {args.output}")
    if not passed:
        print("soak: FAILED (see the checks above)", file=sys.stderr)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
