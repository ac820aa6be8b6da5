"""Issue 20's figures: ingest of the vLLM-shaped payload (:data:`workload.VLLM16`, 50 pods per
request) in data points/s and samples/s against protobuf decode + a minimal walk of the same
requests (in-process, one thread), and KEDA ``GetMetrics`` client latency while ingest runs at
half the measured capacity (:mod:`bench.paced`, own process) against the same calls idle.

Both ingest paths run in the same run, each in its own server: the native loop and the
reference translation (the server started with the extension hidden), so the "before" and
"after" are measured side by side.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass

import grpc
import httpx

from bench import ingest, latency, workload
from bench.ingest import SECOND_NS
from bench.loadgen import IngestResult, LoadClient
from bench.profiling import Profile, Recorder, hotspots, inclusive
from bench.server import GRPC_OPTIONS, HEALTH_PATH, ServerProcess
from bench.stats import CallTrace, Latency, Scheduler, TailShares, cpu_seconds, time_calls, time_paced
from scaler._gen import externalscaler_pb2_grpc as pb_grpc

SHAPE = workload.VLLM16
PER_REQUEST = 50
REFERENCE_PRELUDE = "import scaler.nativeingest as native\nnative.AVAILABLE = False"
"""Runs before the CLI: the receivers then take the reference path (as without the extension)."""
PATHS = {"native": "", "reference": REFERENCE_PRELUDE}
PROBE_INTERVAL_S = 0.005
"""GetMetrics calls start this far apart (200 calls/s) while measuring latency."""
SHARES = ["Ingestor._store_native (", "NativeIngest.run (", "Ingestor._store_reference (", "Store.append (",
          "translate_in_parts (", "ParseFromString", "gc_collect_main"]  # fmt: skip


@dataclass(frozen=True)
class PathResult:
    path: str
    ingest: IngestResult
    limit_samples: float
    """Decode + walk of the same requests, samples/s."""
    idle: Latency
    loaded: Latency
    elsewhere: Latency
    """The same calls while the same load goes to a second server process."""
    load: dict[str, float]
    cpu: dict[str, float]
    """Share of one core during the loaded calls: ``server``, ``load`` (generator), ``client``."""
    profile: Profile | None
    shares: dict[str, float]
    floor: dict[str, Latency]
    """Idle, what a call costs besides the query: ``health`` (a trivial unary RPC, paced like the
    GetMetrics calls) and ``back-to-back`` (the GetMetrics calls without pauses between them)."""
    traces: dict[str, list[CallTrace]]
    """Per call of ``idle``, ``loaded`` and ``elsewhere``: the scheduler's counters (:class:`Scheduler`)."""
    loaded_profile: Profile | None
    """The server while the load and the calls run (after the measured calls, so py-spy does not
    slow them)."""

    @property
    def points_rate(self) -> float:
        return self.ingest.rate * SHAPE.points_per_pod / SHAPE.series_per_pod

    @property
    def limit_points(self) -> float:
        return self.limit_samples * SHAPE.points_per_pod / SHAPE.series_per_pod


def measure(path: str, pods: int, rounds: int, calls: int, clients: tuple[int, int], profile: bool) -> PathResult:
    """``clients``: load generator processes × threads each."""
    payloads = workload.payloads(pods * SHAPE.series_per_pod, prefix="v", shape=SHAPE)
    t0 = time.time_ns() - 100 * SECOND_NS
    with ServerProcess(prelude=PATHS[path]) as server:
        active = httpx.get(server.url("/info"), timeout=10).json()["ingest"]["path"]
        if active != ("native" if path == "native" else "python"):
            raise RuntimeError(f"the {path} server runs the {active} ingest path")
        processes, threads = clients
        series = pods * SHAPE.series_per_pod
        with LoadClient(
            server, series=series, prefix="v", shape="vllm16", processes=processes, threads=threads
        ) as load:
            load.send(t0, 1, PER_REQUEST)  # creates the series; not timed
            timed = ingest.render_rounds(payloads, t0 + SECOND_NS, 1.0, rounds, PER_REQUEST, first_round=1)
            requests = [r for batch in timed for r in batch]
            limit = ingest.decode_limit(requests)
            result = load.send(t0 + SECOND_NS, rounds, PER_REQUEST, first_round=1)
            limit = max(limit, ingest.decode_limit(requests))  # before and after: the better baseline
            del timed, requests
            hot: Profile | None = None
            shares: dict[str, float] = {}
            if profile:
                recorder = Recorder(server.pid, f"ingest-vllm-{path}")
                time.sleep(0.5)
                load.send(t0 + (rounds + 1) * SECOND_NS, rounds, PER_REQUEST, first_round=rounds + 1)
                profile_path = recorder.stop()
                hot, shares = hotspots(profile_path), inclusive(profile_path, SHARES)
        rate = 0.5 * result.rate * SHAPE.points_per_pod / SHAPE.series_per_pod
        with ServerProcess(prelude=PATHS[path]) as other:
            _paced(other, pods, FILL_RATE, FILL_SECONDS).communicate(timeout=60)  # its series exist too
            u = _latency_under_load(server, other, pods, rate, calls, f"getmetrics-loaded-{path}" if profile else "")
    return PathResult(
        path, result, limit, u.idle, u.loaded, u.elsewhere, u.load, u.cpu, hot, shares, u.floor, u.traces, u.profile
    )


def breakdown(r: PathResult) -> list[str]:
    """Notes: where the calls' time went, idle and under load (the slowest 1 % and all calls)."""
    floor = ", ".join(f"{name} {lat}" for name, lat in r.floor.items())
    lines = [f"idle, {r.path} path, besides the query: {floor}"]
    for phase, traces in r.traces.items():
        lines += [f"{phase} GetMetrics, {r.path} path, {TailShares.of(traces, q)}" for q in (99.0, 0.0)]
    return lines


FILL_RATE = 50_000.0
FILL_SECONDS = 3.0
"""The second server gets the load's series first (points/s, seconds), as the first has them."""


@dataclass(frozen=True)
class _UnderLoad:
    idle: Latency
    loaded: Latency
    elsewhere: Latency
    load: dict[str, float]
    cpu: dict[str, float]
    floor: dict[str, Latency]
    traces: dict[str, list[CallTrace]]
    profile: Profile | None


def _paced(server: ServerProcess, pods: int, rate: float, duration: float) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "bench.paced", "--port", str(server.otlp)]
    command += ["--pods", str(pods), "--per-request", str(PER_REQUEST), "--rate", f"{rate:.0f}"]
    command += ["--duration", str(duration)]
    return subprocess.Popen(command, stdout=subprocess.PIPE)


def _latency_under_load(
    server: ServerProcess, other: ServerProcess, pods: int, rate: float, calls: int, profile: str
) -> _UnderLoad:
    """GetMetrics client latency idle, then while :mod:`bench.paced` sends ``rate`` points/s to
    ``server``, then while it sends them to ``other`` (the calls still go to ``server``); each
    call with the scheduler's counters of the server's threads and the calling thread.

    The calls are paced (:data:`PROBE_INTERVAL_S` apart, like KEDA polling many ScaledObjects)
    rather than back to back, which would load the event loop by themselves. ``profile``: the
    name of a py-spy profile of the server under the same load and calls, taken after the
    measured calls ("" for none)."""
    trigger = latency.triggers(workload.deployment_name(0, "v"))["compat"]
    request = latency.metrics_request("compat", trigger)
    channel = grpc.insecure_channel(f"127.0.0.1:{server.keda}", options=GRPC_OPTIONS)
    stub = pb_grpc.ExternalScalerStub(channel)
    health: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(HEALTH_PATH)
    scheduler = Scheduler(server.pid)

    def probe() -> list[CallTrace]:
        return scheduler.time_paced(lambda: stub.GetMetrics(request), calls, PROBE_INTERVAL_S)

    def under(target: ServerProcess) -> tuple[list[CallTrace], dict[str, float], dict[str, float], Profile | None]:
        load = _paced(target, pods, rate, 30 + calls * PROBE_INTERVAL_S * (2 if profile else 1))
        hot: Profile | None = None
        try:
            time.sleep(2.0)  # the load settles
            pids = {"server": server.pid, "load": load.pid}
            before = {k: cpu_seconds(pid) for k, pid in pids.items()} | {"client": time.process_time()}
            start = time.monotonic()
            result = probe()
            wall = time.monotonic() - start
            after = {k: cpu_seconds(pid) for k, pid in pids.items()} | {"client": time.process_time()}
            if profile and target is server:
                recorder = Recorder(server.pid, profile)
                time_paced(lambda: stub.GetMetrics(request), calls, PROBE_INTERVAL_S)
                hot = hotspots(recorder.stop())
        finally:
            load.terminate()
            out, _ = load.communicate(timeout=60)
        summary = json.loads(out.decode().strip().splitlines()[-1]) if out.strip() else {}
        return result, summary, {k: (after[k] - before[k]) / wall for k in before}, hot

    try:
        floor = {
            "health": Latency.of(time_paced(lambda: health(b""), calls, PROBE_INTERVAL_S)),
            "back-to-back": Latency.of(time_calls(lambda: stub.GetMetrics(request), calls)),
        }
        idle = probe()
        loaded, summary, cpu, hot = under(server)
        elsewhere, _, _, _ = under(other)
        traces = {"idle": idle, "loaded": loaded, "elsewhere": elsewhere}
        lat = {name: Latency.of([t.seconds for t in ts]) for name, ts in traces.items()}
        return _UnderLoad(lat["idle"], lat["loaded"], lat["elsewhere"], summary, cpu, floor, traces, hot)
    finally:
        scheduler.close()
        channel.close()
