"""The recipes that are not ScaledObjects: fixed fleets and the clairvoyant schedule.

**Oracle.** It knows the arrival rate of the whole run in advance — the phases, their
ramps and the realised burst states of this seed (:meth:`scaler.sim.workload.Workload.rate`),
not the individual requests — and the capacity model of :mod:`scaler.sim.capacity`. Each
second it needs ``oracle_need(rate(t))`` pods per role (within the scenario's limits):
prefill pods for a TTFT p90 under the target given the queueing of the prompts' sizes,
decode pods for a batch within the ITL target and the KV cache. Because a pod takes up
to the profile's longest start-up to serve, it orders a pod that long before it is
needed and keeps it while any need within that lead remains:
``desired(t) = max(need(τ) for τ in [t, t + startup_max])``. It pays for the start-up
(GPU-seconds count from pod creation) and for every drain, like any recipe, and applies
its schedule straight to the Deployments (no KEDA, no HPA). Its GPU-hours are the lower
bound the other recipes are compared with, at the attainment it reaches.

**Oracle without foresight** (``foresight: false``). The same need, known exactly and at once,
but only up to now: ``desired(t) = max(need(τ) for τ in [t - startup_max, t])``. It orders a
pod the second the need rises, so the pod serves one start-up later, and keeps it as long as
the oracle keeps one ahead (the same window, looking back). It starts as the recipes that
measure the load start, at the scenario's initial fleet, and orders the first need at 0 s. No
scaler that measures the load can know it sooner or better, so its misses at a rise are the
ones no reactive recipe avoids at its size: what is left to a reactive planner is standing
headroom, which costs GPUs.
"""

from __future__ import annotations

import bisect
import itertools
import math
import random
from dataclasses import dataclass

from scaler.sim import capacity
from scaler.sim.fleet import Change
from scaler.sim.scenario import Role, Scenario
from scaler.sim.workload import Workload

ROLES: tuple[Role, Role] = ("prefill", "decode")


@dataclass(frozen=True)
class Schedule:
    """Desired replicas per role as step functions: sorted ``(time, replicas)``."""

    steps: dict[Role, list[tuple[float, int]]]

    def at(self, role: Role, t: float) -> int:
        points = self.steps[role]
        i = bisect.bisect_right([p[0] for p in points], t) - 1
        return points[max(i, 0)][1]

    def changes(self) -> list[tuple[float, Role, int]]:
        return sorted((t, role, n) for role in ROLES for t, n in self.steps[role][1:])

    def starting_at(self, counts: dict[Role, int]) -> Schedule:
        """This schedule for a fleet that starts at ``counts``: its first desired count becomes
        a change at 0 s, so those pods start with the run instead of being there before it."""
        steps = {role: [(0.0, counts[role]), *points] for role, points in self.steps.items()}
        return Schedule(steps)


def limits(scenario: Scenario, role: Role) -> tuple[int, int]:
    default = (1, 4)
    return scenario.limits.get(role, default)


def static_counts(scenario: Scenario, requested: dict[Role, int | None]) -> dict[Role, int]:
    """Fixed replicas per role (``None``: the scenario's maximum)."""
    return {role: limits(scenario, role)[1] if requested.get(role) is None else requested[role] or 0 for role in ROLES}


def workload_of(scenario: Scenario, seed: int) -> Workload:
    """The workload a run with ``seed`` sees (the same random streams as :class:`scaler.sim.run.Simulation`)."""
    rng = random.Random(seed)
    rng.random()  # the fleet's stream
    return Workload(scenario, random.Random(rng.random()))


def oracle_schedule(
    scenario: Scenario,
    seed: int,
    headroom: capacity.Headroom | None = None,
    step: float = 1.0,
    foresight: bool = True,
) -> Schedule:
    headroom = headroom or capacity.Headroom()
    workload = workload_of(scenario, seed)
    duration = scenario.duration
    grid = [i * step for i in range(math.ceil(duration / step) + 1)]
    needs: dict[Role, list[int]] = {role: [] for role in ROLES}
    for t in grid:
        _, phase = scenario.phase_at(t)
        need = capacity.oracle_need(workload.rate(t), phase, scenario, headroom)
        for role in ROLES:
            lo, hi = limits(scenario, role)
            needs[role].append(min(hi, max(lo, need[role])))
    lead = math.ceil(scenario.profile.startup_seconds[1] * scenario.time_scale / step)
    steps: dict[Role, list[tuple[float, int]]] = {}
    for role in ROLES:
        values = needs[role]
        desired = _window_max(values, lead) if foresight else _window_max(values[::-1], lead)[::-1]
        points = [(0.0, desired[0])]
        for t, n in zip(grid[1:], desired[1:], strict=True):
            if n != points[-1][1]:
                points.append((t, n))
        steps[role] = points
    return Schedule(steps)


def _window_max(values: list[int], lead: int) -> list[int]:
    """``out[i] = max(values[i : i + lead + 1])`` in one pass (monotonic deque)."""
    out = [0] * len(values)
    window: list[int] = []  # indices with decreasing values
    head = 0
    for i in range(len(values) - 1, -1, -1):
        while len(window) > head and values[window[-1]] <= values[i]:
            window.pop()
        window.append(i)
        while window[head] > i + lead:
            head += 1
        out[i] = values[window[head]]
    return out


def over_provisioned(
    timeline: list[Change], oracle: Schedule, duration: float, gpus_per_replica: int
) -> dict[Role, float]:
    """GPU-hours per role spent on pods above the oracle's desired count, over ``[0, duration]``."""
    out: dict[Role, float] = {}
    for role in ROLES:
        points = [(c.t, c.pods) for c in timeline if c.role == role and c.t <= duration]
        marks = sorted({0.0, duration, *(t for t, _ in points), *(t for t, _ in oracle.steps[role])})
        total = 0.0
        for a, b in itertools.pairwise(marks):
            i = bisect.bisect_right([t for t, _ in points], a) - 1
            pods = points[max(i, 0)][1]
            total += max(0, pods - oracle.at(role, a)) * (b - a)
        out[role] = total * gpus_per_replica / 3600.0
    return out
