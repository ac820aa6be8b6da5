"""A/B proposed changes to scaler/ without touching the work tree:
``python -m bench.ab [--series N] [--reaction] VARIANT [VARIANT ...]``.

A variant is a comma-separated list of patches (``git diff`` of scaler/, e.g.
``my-change.diff``) applied in order to a copy of the package in
a temporary directory. One server runs per variant plus one unpatched, all at once (each started
in its copy's directory, which ``python -m`` puts first on sys.path), and the same pre-rendered
rounds go to each in turn, round by round, so machine noise hits every variant alike. Reports
ingest samples/s, server CPU per sample, RSS after the fill, GetMetrics and ``/api/v1/query``
latency, the broad queries of :mod:`bench.heavy` through ``/api/v1/query`` (one call to each
variant in turn, so both see the same moment's load), and with ``--reaction`` the Export →
StreamIsActive p99 under background load.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path

import httpx

from bench import heavy, latency, prom, reaction
from bench.loadgen import LoadClient
from bench.server import ServerProcess
from bench.stats import Latency, cpu_seconds

ROOT = Path(__file__).resolve().parent.parent


def patched_copy(patches: Sequence[Path], into: Path) -> Path:
    """A copy of scaler/ with ``patches`` applied, in ``into``; returns the PYTHONPATH entry."""
    shutil.copytree(ROOT / "scaler", into / "scaler", ignore=shutil.ignore_patterns("__pycache__"))
    for patch in patches:
        subprocess.run(["git", "apply", "--whitespace=nowarn", str(patch.resolve())], cwd=into, check=True)
    return into


def start_variant(path: Path | None) -> ServerProcess:
    """A server running the patched copy at ``path`` (its directory comes first on sys.path)."""
    server = ServerProcess(cwd=path or ROOT).started()
    expected = (path or ROOT) / "scaler"
    probe = subprocess.run(
        [sys.executable, "-c", "import scaler, sys; sys.stdout.write(scaler.__file__)"],
        cwd=path or ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    if not probe.stdout.startswith(str(expected)):
        server.stop()
        raise RuntimeError(f"variant imports {probe.stdout}, not {expected}")
    return server


def broad_interleaved(servers: Mapping[str, ServerProcess], calls: int) -> dict[str, dict[str, Latency]]:
    """Each of :data:`bench.heavy.BROAD_QUERIES` through every server's ``/api/v1/query``, one
    call to each server in turn (after 20 untimed rounds): per server, per query, latency."""
    t_s = time.time()
    out: dict[str, dict[str, Latency]] = {name: {} for name in servers}
    with ExitStack() as stack:
        clients = {n: stack.enter_context(httpx.Client(base_url=s.url(""), timeout=60)) for n, s in servers.items()}
        for label, expr in heavy.BROAD_QUERIES.items():
            params = {"query": expr, "time": f"{t_s:.3f}"}
            durations: dict[str, list[float]] = {name: [] for name in servers}
            for i in range(calls + 20):
                for name, client in clients.items():
                    start = time.perf_counter()
                    client.get("/api/v1/query", params=params).raise_for_status()
                    if i >= 20:
                        durations[name].append(time.perf_counter() - start)
            for name in servers:
                out[name][label] = Latency.of(durations[name])
    return out


def run(variants: dict[str, Path | None], series: int, rounds: int, calls: int, flips: int) -> list[str]:
    lines = []
    with ExitStack() as stack:
        servers: dict[str, ServerProcess] = {}
        for name, path in variants.items():
            server = start_variant(path)
            stack.callback(server.stop)
            servers[name] = server
        clients = {name: LoadClient(server, series=series) for name, server in servers.items()}
        for client in clients.values():
            stack.callback(client.close)
        times: dict[str, list[float]] = {name: [] for name in servers}
        cpu: dict[str, float] = dict.fromkeys(servers, 0.0)
        accepted: dict[str, int] = dict.fromkeys(servers, 0)
        rejected: dict[str, int] = dict.fromkeys(servers, 0)
        for i in range(rounds):
            # stamped now, so the rounds stay fresh however long the variants take
            now_ns = time.time_ns()
            order = list(servers) if i % 2 == 0 else list(reversed(servers))
            for name in order:
                result = clients[name].send(now_ns, 1, 25, first_round=i)
                rejected[name] += result.rejected
                if i:  # round 0 creates the series
                    times[name].append(result.seconds)
                    cpu[name] += result.server_cpu
                    accepted[name] += result.accepted
        time.sleep(2.0)
        rss = {name: server.rss_mib() for name, server in servers.items()}
        lat = {name: latency.measure_grpc(server, calls) for name, server in servers.items()}
        expr = latency.promql_forms()["promql"]
        http = {name: prom.query_latency(s.url(""), expr, time.time(), calls // 10)[0] for name, s in servers.items()}
        broad = broad_interleaved(servers, calls // 4)
        react = {name: reaction.measure(s, flips, 10_000).stream.p99 if flips else 0.0 for name, s in servers.items()}
        per_round = series
        base = next(iter(servers))
        header = (
            "| variant | ingest median | ingest best | ratio (median) | server CPU µs/sample | rejected | RSS MiB |"
        )
        header += " GetMetrics compat p50/p99 ms | promql p50/p99 ms | /api/v1/query p50 ms | reaction p99 ms |"
        lines += [header, "|" + "---|" * 11]
        for name in servers:
            median = per_round / statistics.median(times[name])
            best = per_round / min(times[name])
            ratio = statistics.median(times[base]) / statistics.median(times[name])
            q = lat[name].queries
            lines.append(
                f"| {name} | {median / 1000:.0f}k/s | {best / 1000:.0f}k/s | {ratio:.2f}× | "
                f"{1e6 * cpu[name] / max(1, accepted[name]):.2f} | {rejected[name]} | {rss[name]:.0f} | "
                f"{q['compat'].p50:.3f} / {q['compat'].p99:.3f} | {q['promql'].p50:.3f} / {q['promql'].p99:.3f} | "
                f"{http[name].p50:.2f} | {react[name]:.1f} |"
            )
        lines += ["", "| variant | " + " | ".join(f"{label} p50 / p99 ms" for label in heavy.BROAD_QUERIES) + " |"]
        lines.append("|" + "---|" * (1 + len(heavy.BROAD_QUERIES)))
        for name in servers:
            cells = [f"{lat.p50:.2f} / {lat.p99:.2f}" for lat in broad[name].values()]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        for name, server in servers.items():
            lines.append(f"<!-- {name}: server pid {server.pid}, CPU {cpu_seconds(server.pid):.1f} s -->")
    return lines


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ab", description=__doc__)
    parser.add_argument("variants", nargs="+", help="comma-separated git diffs of scaler/, applied in order")
    parser.add_argument("--series", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=24, help="scrapes of the whole fleet, each stamped when sent")
    parser.add_argument("--calls", type=int, default=1000, help="GetMetrics calls per query and variant")
    parser.add_argument("--reaction", type=int, default=0, metavar="FLIPS", help="also measure reaction (flips)")
    args = parser.parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so the servers and Prometheus this run started are stopped
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with tempfile.TemporaryDirectory(prefix="bench-ab-") as tmp:
        variants: dict[str, Path | None] = {"unpatched": None}
        for i, spec in enumerate(args.variants):
            patches = [Path(p) for p in spec.split(",")]
            label = " + ".join(p.stem.split("-", 1)[0] for p in patches)
            variants[label] = patched_copy(patches, Path(tmp) / f"v{i}")
        for line in run(variants, args.series, args.rounds, args.calls, args.reaction):
            print(line, flush=True)


if __name__ == "__main__":
    main()
