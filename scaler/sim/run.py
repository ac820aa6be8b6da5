"""One simulated run, shared by the demo (wall clock) and the evaluation lab (virtual clock).

* :class:`Simulation` — the fleet and its workload, advanced together, and the scale
  target KEDA/HPA drive: every read or write of the scale subresource first brings the
  fleet up to the current time (``clock``), so decisions see the fleet as it is then.
* :func:`drive` — the collectors: each pod is scraped every ``scrape_interval_seconds``
  at its own phase (from the time it is ready), as a sidecar collector would, the EPP
  likewise, and the scrapes are pushed to a :class:`MetricsSink` as OTLP; optionally a
  callback once per simulated second. It runs on whatever event loop it is awaited in:
  the demo's real one, or the lab's virtual-time loop (:mod:`scaler.lab.vtime`), where
  ``asyncio.sleep`` costs nothing.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Callable
from typing import Protocol

from opentelemetry.proto.metrics.v1 import metrics_pb2

from scaler.sim.fleet import Fleet, Observer, Pod
from scaler.sim.otlp_export import epp_resource, epp_to_metrics, pod_resource, resource_metrics, vllm_to_metrics
from scaler.sim.request import Request
from scaler.sim.scenario import Scenario
from scaler.sim.workload import Workload

Resources = list[metrics_pb2.ResourceMetrics]


class RunObserver(Observer, Protocol):
    def arrived(self, requests: list[Request]) -> None: ...


class MetricsSink(Protocol):
    """Where the collectors push: the scaler's OTLP receiver, over gRPC or in-process."""

    async def export(self, resources: Resources) -> None: ...


class Simulation:
    """The fleet, its workload and the scale subresource (see the module docstring)."""

    def __init__(self, scenario: Scenario, seed: int, observer: RunObserver) -> None:
        rng = random.Random(seed)
        self.scenario = scenario
        self.seed = seed
        self.observer = observer
        self.fleet = Fleet(scenario, random.Random(rng.random()), observer)
        self.workload = Workload(scenario, random.Random(rng.random()))
        self.clock: Callable[[], float] = lambda: self.fleet.now

    def sync(self, t: float | None = None) -> None:
        """Advance to ``t`` (default: the clock's now) with the arrivals until then."""
        t = self.clock() if t is None else t
        if t <= self.fleet.now:
            return
        arrivals = self.workload.arrivals(min(t, self.scenario.duration))
        self.observer.arrived(arrivals)
        self.fleet.advance(t, arrivals)

    def finish(self, tail_seconds: float, step: float = 5.0) -> None:
        """No more arrivals: let the requests in flight finish, for at most ``tail_seconds``."""
        end = self.fleet.now + tail_seconds
        while self.fleet.in_flight() and self.fleet.now < end:
            self.sync(min(end, self.fleet.now + step))

    # ------------------------------------------------------------------ ScaleTarget

    def spec_replicas(self, name: str) -> int:
        self.sync()
        return self.fleet.spec_replicas(name)

    def status_replicas(self, name: str) -> int:
        self.sync()
        return self.fleet.status_replicas(name)

    def ready_replicas(self, name: str) -> int:
        self.sync()
        return self.fleet.ready_replicas(name)

    def scale(self, name: str, replicas: int) -> None:
        self.sync()
        self.fleet.scale(name, replicas)


class Collectors:
    """Per-pod sidecar collectors (and the EPP's): scrape times and OTLP payloads."""

    def __init__(self, sim: Simulation, epoch: float) -> None:
        self.sim = sim
        self.epoch = epoch
        self.interval = sim.scenario.scrape_interval_seconds
        self._next: dict[str, float] = {}
        self._epp_phase = 0.37  # any fixed offset: the EPP's collector has its own phase
        self._epp_next = self._epp_phase * self.interval
        self._epp_gone: set[str] = set()

    def _first(self, pod: Pod) -> float:
        start = max(pod.ready_at, self.sim.fleet.now)
        offset = pod.scrape_phase * self.interval
        return offset + math.ceil((start - offset) / self.interval - 1e-9) * self.interval

    def next_due(self) -> float:
        due = self._epp_next
        for pod in self.sim.fleet.pods():
            if pod.state == "starting":
                continue
            when = self._next.get(pod.name)
            if when is None:
                when = self._next[pod.name] = self._first(pod)
            due = min(due, when)
        return due

    def scrape(self, t: float) -> Resources:
        """Everything due at ``t``, plus one staleness marker per series of removed pods."""
        fleet, s = self.sim.fleet, self.sim.scenario
        time_ns = int((self.epoch + t) * 1e9)
        out: Resources = []
        for pod in fleet.pods():
            when = self._next.get(pod.name)
            if pod.state == "starting" or when is None or when > t:
                continue
            self._next[pod.name] = when + self.interval * max(1, math.ceil((t - when) / self.interval + 1e-9))
            pod.refresh_gauges()
            created = int((self.epoch + pod.created) * 1e9)
            metrics = vllm_to_metrics(pod.metrics, time_ns, created)
            out.append(resource_metrics(pod_resource(pod.name, pod.deployment, s.namespace, pod.role), metrics))
        for pod in fleet.removed:
            self._next.pop(pod.name, None)
            self._epp_gone.add(pod.name)
            created = int((self.epoch + pod.created) * 1e9)
            stale = vllm_to_metrics(pod.metrics, time_ns, created, stale=True)
            out.append(resource_metrics(pod_resource(pod.name, pod.deployment, s.namespace, pod.role), stale))
        fleet.removed.clear()
        if self._epp_next <= t:
            self._epp_next += self.interval * max(1, math.ceil((t - self._epp_next) / self.interval + 1e-9))
            out.append(resource_metrics(epp_resource(s.epp.deployment, s.namespace), self._epp_metrics(time_ns)))
            self._epp_gone.clear()
        return out

    def _epp_metrics(self, time_ns: int) -> list[metrics_pb2.Metric]:
        fleet, s = self.sim.fleet, self.sim.scenario
        queues = {p.name: p.gauges()[1] for p in fleet.pods() if p.state == "ready"}
        return epp_to_metrics(fleet.load, queues, s.namespace, s.epp.pool, time_ns, sorted(self._epp_gone))


def start_clock(sim: Simulation) -> None:
    """Simulated time is the running loop's time since now."""
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    sim.clock = lambda: loop.time() - t0


async def drive(
    sim: Simulation,
    sink: MetricsSink,
    until: float,
    epoch: float,
    every_second: Callable[[float], None] | None = None,
) -> None:
    """Run the collectors (and ``every_second``) until simulated time ``until`` on ``sim.clock``
    (see :func:`start_clock`); see the module docstring."""
    collectors = Collectors(sim, epoch)
    next_second = 0.0 if every_second is not None else math.inf
    while True:
        due = min(collectors.next_due(), next_second, until)
        delay = due - sim.clock()
        if delay > 0:
            await asyncio.sleep(delay)
        now = max(due, sim.clock())
        sim.sync(now)
        batch = collectors.scrape(now)
        if batch:
            await sink.export(batch)
        if every_second is not None and now >= next_second:
            every_second(next_second)
            next_second += 1.0
        if now >= until:
            return
