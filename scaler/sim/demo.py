"""``keda-otel-scaler demo``: a simulated llm-d P/D fleet autoscaled through the real scaler.

One run: start ``keda-otel-scaler serve`` as a child process on free ports; simulate the
fleet in 100 ms ticks paced by the wall clock (1× real time: the scaler stamps and ages
samples by wall clock); every export interval push each pod's vLLM metrics over
OTLP/gRPC, as the collector sidecars would; emulate KEDA and the HPA from the
repository's ScaledObjects over real gRPC; record one sample per second; show a live
view; finally write ``report.json``, ``replicas.png`` and ``summary.md``. The child is
terminated however the run ends (normal end, error, Ctrl-C, SIGTERM).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import grpc
from opentelemetry.proto.metrics.v1 import metrics_pb2

from scaler._gen import externalscaler_pb2_grpc as pb_grpc
from scaler.sim import manifests, report, view
from scaler.sim.fleet import Fleet, Role
from scaler.sim.hpa import BehaviorError
from scaler.sim.keda_emulator import ScaledObjectEmulator
from scaler.sim.manifests import ManifestError, ScaledObject
from scaler.sim.otlp_export import OtlpPusher, pod_resource, registry_to_metrics, resource_metrics
from scaler.sim.recorder import Recorder
from scaler.sim.scaler_process import Ports, ScalerProcess, ScalerStartError
from scaler.sim.scenario import Scenario, ScenarioError
from scaler.sim.scenario import load as load_scenario
from scaler.sim.workload import Workload


@dataclass
class DemoRun:
    """Everything one run accumulates; lives outside the event loop so Ctrl-C keeps it."""

    scenario: Scenario
    objects: list[ScaledObject]
    manifests_dir: Path
    seed: int
    fleet: Fleet = field(init=False)
    workload: Workload = field(init=False)
    recorder: Recorder = field(init=False)
    emulators: list[ScaledObjectEmulator] = field(default_factory=list)
    pusher: OtlpPusher | None = None
    wall_seconds: float = 0.0
    interrupted: bool = False

    def __post_init__(self) -> None:
        rng = random.Random(self.seed)
        self.recorder = Recorder(self.scenario)
        self.fleet = Fleet(self.scenario, random.Random(rng.random()), self.recorder)
        self.workload = Workload(self.scenario, random.Random(rng.random()))

    def role_of(self, emulator: ScaledObjectEmulator) -> Role:
        return self.fleet.deployments[emulator.so.target].role

    def trigger_values(self) -> dict[Role, dict[str, float | None]]:
        return {self.role_of(e): e.values() for e in self.emulators}


def _export_batch(run: DemoRun, start_ns: int) -> list[metrics_pb2.ResourceMetrics]:
    now_ns = time.time_ns()
    s = run.scenario
    batch = []
    for pod in run.fleet.pods():
        if pod.state == "starting":
            continue
        pod.refresh_gauges()
        resource = pod_resource(pod.name, pod.deployment, s.namespace, pod.role)
        batch.append(resource_metrics(resource, registry_to_metrics(pod.metrics.registry, now_ns, start_ns)))
    for pod in run.fleet.removed:
        resource = pod_resource(pod.name, pod.deployment, s.namespace, pod.role)
        batch.append(resource_metrics(resource, registry_to_metrics(pod.metrics.registry, now_ns, start_ns, True)))
    run.fleet.removed.clear()
    return batch


async def _simulate(run: DemoRun, ports: Ports, live: view.View) -> None:
    s = run.scenario
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    start_ns = time.time_ns()

    def clock() -> float:
        return loop.time() - t0

    run.pusher = pusher = OtlpPusher(f"127.0.0.1:{ports.otlp}")
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{ports.keda}")
    stub = pb_grpc.ExternalScalerStub(channel)
    run.emulators = [
        ScaledObjectEmulator(so, stub, run.fleet, clock, f"127.0.0.1:{ports.keda}", s.time_scale, s.hpa_sync_seconds)
        for so in run.objects
    ]
    stop = asyncio.Event()
    await pusher.push(_export_batch(run, start_ns))
    tasks = [asyncio.create_task(e.run(stop), name=f"keda:{e.so.name}") for e in run.emulators]
    export: asyncio.Task[None] | None = None
    next_export, next_sample, tick = s.export_interval_seconds, 0.0, 0
    try:
        while True:
            now = clock()
            arrivals = run.workload.arrivals(min(now, s.duration))
            run.recorder.arrived(arrivals)
            run.fleet.step(now, arrivals)
            if now >= next_export:
                if export is None or export.done():
                    export = asyncio.create_task(pusher.push(_export_batch(run, start_ns)))
                next_export += s.export_interval_seconds
            if now >= next_sample:
                run.recorder.sample(next_sample, run.fleet, run.trigger_values())
                live.update(run.recorder, run.emulators, run.fleet)
                next_sample += 1.0
            if now >= s.duration:
                break
            for task in tasks:
                if task.done():
                    task.result()  # an emulator crashed: surface its exception
            tick += 1
            await asyncio.sleep(max(0.0, t0 + tick * s.tick_seconds - loop.time()))
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        if export is not None:
            with contextlib.suppress(Exception):
                await export
        run.wall_seconds = clock()
        await pusher.close()
        await channel.close()


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def prepare(args: argparse.Namespace) -> DemoRun:
    """Scenario and ScaledObjects from the arguments; raises ScenarioError/ManifestError."""
    scenario = load_scenario(args.scenario)
    if args.duration is not None:
        scenario = scenario.with_duration(args.duration)
    directory = manifests.locate(getattr(args, "manifests", None), scenario.manifests)
    objects = manifests.load(directory, (scenario.prefill_deployment, scenario.decode_deployment), scenario.namespace)
    return DemoRun(scenario, objects, directory, args.seed)


def main(args: argparse.Namespace) -> int:
    """Entry point of ``keda-otel-scaler demo``; returns the exit code."""
    try:
        run = prepare(args)
    except (ScenarioError, ManifestError, BehaviorError) as exc:
        print(f"keda-otel-scaler demo: {exc}", file=sys.stderr)
        return 2
    report_dir = Path(args.report) if args.report else None
    live = view.View(run, quiet=bool(args.quiet))
    live.banner()
    scaler = ScalerProcess(report_dir / "scaler.log" if report_dir else None)
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    code = 0
    try:
        ports = scaler.start()
        print(f"  why each ScaledObject scales, live while the demo runs: {scaler.url('/ui')}", flush=True)
        asyncio.run(_simulate(run, ports, live))
    except KeyboardInterrupt:
        run.interrupted, code = True, 130
        print("\ninterrupted: stopping the scaler", file=sys.stderr)
    except ScalerStartError as exc:
        print(f"keda-otel-scaler demo: cannot start the scaler: {exc}", file=sys.stderr)
        return 1
    finally:
        scaler.stop()
        signal.signal(signal.SIGTERM, previous)
    summary = report.summarize(run)
    live.finish(summary)
    if report_dir is not None and run.recorder.t:
        paths = report.write(run, summary, report_dir)
        print("report: " + ", ".join(str(p) for p in paths))
    return code
