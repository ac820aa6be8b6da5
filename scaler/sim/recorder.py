"""Ground-truth time series of a demo run, sampled once per second, and their JSON form.

Latency percentiles are computed from the simulator's own request timelines over a
sliding window (not from the scaler), so the report judges the autoscaling independently
of the pipeline under test. ``ttft_p90`` is the prefill pods' TTFT (queue + prefill) for
``prefill`` and the client-visible TTFT (gateway arrival → first streamed token, KV pull
included) for ``decode``; ``itl_p90`` exists only for decode (a P/D prefill emits one token).
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from scaler.sim.fleet import ROLES, Fleet, Role
from scaler.sim.request import Request
from scaler.sim.scenario import Scenario


def percentile(values: Iterable[float], q: float) -> float | None:
    data = sorted(values)
    if not data:
        return None
    return data[min(len(data) - 1, max(0, math.ceil(q * len(data)) - 1))]


def weighted_percentile(pairs: Iterable[tuple[float, int]], q: float) -> float | None:
    data = sorted(pairs)
    total = sum(n for _, n in data)
    if total <= 0:
        return None
    need, acc = q * total, 0
    for value, n in data:
        acc += n
        if acc >= need:
            return value
    return data[-1][0]


@dataclass
class PhaseStats:
    ttft: list[float] = field(default_factory=list)
    prefill_ttft: list[float] = field(default_factory=list)
    itl: dict[float, int] = field(default_factory=dict)
    completed: int = 0
    failed: int = 0
    arrived: int = 0
    prompt_tokens: int = 0
    remote_prefills: int = 0


class Recorder:
    """Implements :class:`scaler.sim.fleet.Observer`; ``sample`` once per second."""

    def __init__(self, scenario: Scenario, window_seconds: float = 10.0) -> None:
        self.scenario = scenario
        self.window = window_seconds
        self._ttft: deque[tuple[float, float]] = deque()
        self._prefill_ttft: deque[tuple[float, float]] = deque()
        self._itl: deque[tuple[float, float, int]] = deque()
        self._arrivals: deque[tuple[float, int]] = deque()
        self.phases = [PhaseStats() for _ in scenario.phases]
        self._ends = list(itertools.accumulate(p.seconds for p in scenario.phases))
        self.failures: dict[str, int] = {}
        self.t: list[float] = []
        self.phase: list[str] = []
        self.load: dict[str, list[Any]] = {"requests_per_s": [], "prompt_tokens_per_s": [], "gateway_queue": []}
        self.roles: dict[Role, dict[str, Any]] = {
            role: {
                key: []
                for key in (
                    "replicas",
                    "ready",
                    "desired",
                    "terminating",
                    "ttft_p50",
                    "ttft_p90",
                    "itl_p50",
                    "itl_p90",
                    "queue",
                    "running",
                    "kv_cache_usage",
                    "gpu_seconds",
                )
            }
            | {"triggers": {}}
            for role in ROLES
        }

    # ------------------------------------------------------------------ Observer

    def arrived(self, requests: list[Request]) -> None:
        for req in requests:
            stats = self.phases[req.phase]
            stats.arrived += 1
            stats.prompt_tokens += req.isl
            self._arrivals.append((req.arrival, req.isl))

    def first_token(self, req: Request, t: float) -> None:
        ttft = t - req.arrival
        self._ttft.append((t, ttft))
        self.phases[req.phase].ttft.append(ttft)

    def finished(self, req: Request, t: float) -> None:
        self.phases[req.phase].completed += 1

    def prefill_done(self, req: Request, t: float) -> None:
        assert req.prefill_arrival is not None
        value = t - req.prefill_arrival
        self._prefill_ttft.append((t, value))
        self.phases[req.phase].prefill_ttft.append(value)
        self.phases[req.phase].remote_prefills += 1

    def itl(self, t: float, value: float, count: int) -> None:
        if count <= 0:
            return
        self._itl.append((t, value, count))
        index = min(bisect.bisect_right(self._ends, t), len(self._ends) - 1)
        bucket = round(value, 4)
        hist = self.phases[index].itl
        hist[bucket] = hist.get(bucket, 0) + count

    def failed(self, req: Request, t: float, reason: str) -> None:
        self.phases[req.phase].failed += 1
        self.failures[reason] = self.failures.get(reason, 0) + 1

    # ------------------------------------------------------------------ sampling

    def sample(self, t: float, fleet: Fleet, triggers: Mapping[Role, Mapping[str, float | None]]) -> None:
        cutoff = t - self.window
        for dq in (self._ttft, self._prefill_ttft, self._itl):
            while dq and dq[0][0] < cutoff:
                dq.popleft()
        while self._arrivals and self._arrivals[0][0] < t - 1.0:
            self._arrivals.popleft()
        self.t.append(round(t, 1))
        self.phase.append(self.scenario.phase_at(t)[1].name)
        self.load["requests_per_s"].append(len(self._arrivals))
        self.load["prompt_tokens_per_s"].append(sum(n for _, n in self._arrivals))
        self.load["gateway_queue"].append(len(fleet.gateway))
        for role in ROLES:
            dep = fleet.by_role(role)
            series = self.roles[role]
            gauges = [p.engine.gauges() for p in dep.pods if p.state != "starting"]
            series["replicas"].append(dep.status_replicas)
            series["ready"].append(dep.ready_replicas)
            series["desired"].append(dep.spec_replicas)
            series["terminating"].append(sum(1 for p in dep.pods if p.state == "terminating"))
            series["queue"].append(sum(g[1] for g in gauges))
            series["running"].append(sum(g[0] for g in gauges))
            series["kv_cache_usage"].append(_round(sum(g[2] for g in gauges) / len(gauges)) if gauges else None)
            series["gpu_seconds"].append(round(fleet.gpu_seconds[role], 1))
            source = [v for _, v in (self._prefill_ttft if role == "prefill" else self._ttft)]
            series["ttft_p50"].append(_round(percentile(source, 0.5)))
            series["ttft_p90"].append(_round(percentile(source, 0.9)))
            itl = [] if role == "prefill" else [(v, n) for _, v, n in self._itl]
            series["itl_p50"].append(_round(weighted_percentile(itl, 0.5)))
            series["itl_p90"].append(_round(weighted_percentile(itl, 0.9)))
            names: dict[str, list[float | None]] = series["triggers"]
            values = triggers.get(role, {})
            for name in values:
                if name not in names:
                    names[name] = [None] * (len(self.t) - 1)
            for name, points in names.items():
                points.append(_round(values.get(name)))

    def to_json(self) -> dict[str, Any]:
        return {"t": self.t, "phase": self.phase, "load": self.load, "roles": self.roles}


def _round(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return round(value, 4)
