"""One run of the lab: a scenario, a recipe, a seed → a :class:`RunResult`.

* ScaledObject recipes run on a virtual-time event loop (:mod:`scaler.lab.vtime`): the
  shared simulation (:mod:`scaler.sim.run`), the collectors pushing OTLP into the real
  scaler core in-process (:mod:`scaler.lab.inproc`), and the KEDA/HPA emulation of the demo
  (:mod:`scaler.sim.keda_emulator`) at real Kubernetes timings (the scenario's
  ``keda.time_scale``, which ``evaluate`` requires to be 1; only tests compress). Every trigger is checked
  first by the scaler itself (``GetMetricSpec``), so a bad query fails the run with the
  scaler's message, naming the file and the trigger.
* Fixed fleets and the oracle need no scaler: the fleet is simply advanced, the oracle's
  schedule applied at its times.
* After the scenario's last arrival the fleet keeps running (``tail_seconds``, no more
  scaling) so requests in flight finish and count; GPU-hours, scale events and
  over-provisioning are measured over the scenario itself.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from scaler import config
from scaler._gen import externalscaler_pb2 as pb
from scaler.lab import vtime
from scaler.lab.inproc import EPOCH, InProcessScaler
from scaler.lab.outcomes import Outcomes, load_steps
from scaler.lab.policies import (
    ROLES,
    Schedule,
    limits,
    oracle_schedule,
    over_provisioned,
    static_counts,
    workload_of,
)
from scaler.lab.recipes import Recipe, RecipeError
from scaler.lab.replicas import Failover, Replicas
from scaler.sim.capacity import Headroom
from scaler.sim.keda_emulator import ExternalScalerClient, ScaledObjectEmulator, ScalerCallError
from scaler.sim.manifests import ScaledObject
from scaler.sim.run import Simulation, drive, start_clock
from scaler.sim.scenario import Role, Scenario

SCALER_ADDRESS = "keda-otel-scaler.keda.svc:4318"


@dataclass
class RunResult:
    """The figures of one run (``report.json``'s ``runs[]``; see :mod:`scaler.lab.outcomes`)."""

    scenario: str
    recipe: str
    seed: int
    profile: str
    ok: bool = True
    error: str | None = None
    note: str | None = None
    ttft_attainment: float = 0.0
    itl_attainment: float = 0.0
    window_attainment: float = 0.0
    missed_windows: list[int] = field(default_factory=list)
    """The start (seconds) of every 30-s window that missed the SLO."""
    itl_token_attainment: float = 0.0
    """Share of all output tokens whose inter-token latency met the target."""
    gpu_hours: float = 0.0
    gpu_hours_prefill: float = 0.0
    gpu_hours_decode: float = 0.0
    over_provisioned_gpu_hours: float = 0.0
    over_provisioned_gpu_hours_prefill: float = 0.0
    over_provisioned_gpu_hours_decode: float = 0.0
    scale_events: int = 0
    scale_events_prefill: int = 0
    scale_events_decode: int = 0
    recovery_seconds: list[float | None] = field(default_factory=list)
    ttft_p90: float | None = None
    itl_p90: float | None = None
    requests: int = 0
    failed: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    meets_slo: bool = False
    replicas: dict[str, int] = field(default_factory=dict)
    """Fixed fleets: the replicas per role."""
    events: list[dict[str, Any]] = field(default_factory=list)
    """KEDA/HPA scaling decisions: ``{"t", "scaledObject", "change"}``."""
    search: list[dict[str, Any]] = field(default_factory=list)
    """``static-best``: every fleet tried (replicas, whether it met the SLO, GPU-hours)."""
    ha: dict[str, Any] | None = None
    """With several scaler replicas or a kill (:mod:`scaler.lab.replicas`): what happened to
    the replicas and KEDA's calls (first attempts failed, on the killed one, failed after the retry)."""
    max_replicas: dict[str, int] = field(default_factory=dict)
    simulated_seconds: float = 0.0
    wall_seconds: float = 0.0
    cpu_seconds: float = 0.0

    @property
    def key(self) -> str:
        """The scenario and its profile (``scenario@profile``), as the report names them."""
        return f"{self.scenario}@{self.profile}" if self.profile else self.scenario

    def to_json(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        for key, value in out.items():
            if isinstance(value, float):
                out[key] = round(value, 6)
        return out


async def _check_triggers(scaler: ExternalScalerClient, objects: list[ScaledObject]) -> None:
    """Let the scaler parse every trigger's metadata now (KEDA would see the error at once)."""
    for so in objects:
        for trig in so.triggers:
            meta = dict(trig.metadata) | {"scalerAddress": SCALER_ADDRESS}
            ref = pb.ScaledObjectRef(name=so.name, namespace=so.namespace, scalerMetadata=meta)
            try:
                await scaler.get_metric_spec(ref)
            except ScalerCallError as exc:
                raise RecipeError(f"{so.source}: spec.triggers[{trig.index}] ({trig.name}): {exc.details}") from None


def _keda_run(
    scenario: Scenario,
    objects: list[ScaledObject],
    seed: int,
    outcomes: Outcomes,
    result: RunResult,
    settings: Mapping[str, str],
    failover: Failover | None = None,
) -> Simulation:
    """The run through one in-process scaler, or through ``failover``'s replicas; the scaling
    events (and the replicas' figures) go to ``result``."""
    events = result.events

    async def main() -> Simulation:
        sim = Simulation(scenario, seed, outcomes)
        start_clock(sim)
        scaler: InProcessScaler | Replicas
        if failover is None:
            scaler = InProcessScaler(sim.clock, config.load({}, settings))
            await _check_triggers(scaler, objects)
        else:
            scaler = Replicas(sim.clock, failover, scenario.duration, config.load({}, settings))
            await _check_triggers(scaler.first(), objects)  # the recipe's check, not a call of KEDA's
        emulators = [
            ScaledObjectEmulator(
                so, scaler, sim, sim.clock, SCALER_ADDRESS, scenario.time_scale, scenario.hpa_sync_seconds
            )
            for so in objects
        ]
        stop = asyncio.Event()
        tasks = [asyncio.create_task(e.run(stop)) for e in emulators]
        try:
            await drive(sim, scaler, scenario.duration, EPOCH)
        finally:
            stop.set()
            results = await asyncio.gather(*tasks, return_exceptions=True)
            happened = sorted((ev for e in emulators for ev in e.events), key=lambda ev: ev.t)
            events.extend(
                {"t": round(ev.t, 3), "scaledObject": ev.scaled_object, "change": ev.message} for ev in happened
            )
            if isinstance(scaler, Replicas):
                result.ha = scaler.figures()
        for outcome in results:
            if isinstance(outcome, BaseException):
                raise outcome
        return sim

    return vtime.run(main)


GIVE_UP_CHECK_SECONDS = 60.0


def _scheduled_run(
    scenario: Scenario, seed: int, outcomes: Outcomes, schedule: Schedule | None, give_up: bool = False
) -> tuple[Simulation, bool]:
    """Advance the fleet, applying ``schedule``; with ``give_up``, stop as soon as the run can
    no longer meet the SLO. Returns the simulation and whether it ran to the end."""
    sim = Simulation(scenario, seed, outcomes)
    changes = list(schedule.changes()) if schedule else []
    limit = _miss_budget(scenario, seed) if give_up else math.inf
    t = 0.0
    while t < scenario.duration:
        t = min(t + GIVE_UP_CHECK_SECONDS, scenario.duration)
        while changes and changes[0][0] <= t:
            at, role, replicas = changes.pop(0)
            sim.sync(at)
            sim.fleet.scale(scenario.deployment(role), replicas)
        sim.sync(t)
        if outcomes.certain_misses() > limit:
            return sim, False
    return sim, True


def _miss_budget(scenario: Scenario, seed: int) -> float:
    """Misses beyond which a run cannot meet the SLO: (1 - goal) of the requests expected from
    the realised arrival rate, plus 2 % (Poisson noise of the count is far below that)."""
    workload = workload_of(scenario, seed)
    steps = max(1, int(scenario.duration))
    dt = scenario.duration / steps
    expected = sum(workload.rate((i + 0.5) * dt) * dt for i in range(steps))
    return (1 - scenario.slo.goal) * expected * 1.02


def simulate(
    scenario: Scenario,
    recipe: Recipe,
    seed: int,
    oracle: Schedule | None = None,
    counts: dict[Role, int] | None = None,
    give_up: bool = False,
    failover: Failover | None = None,
) -> RunResult:
    """One run of ``recipe`` (``counts`` overrides a fixed fleet's size and ``give_up`` stops it
    once it cannot meet the SLO — both for the static-best search; ``failover`` runs a
    ScaledObject recipe through several scaler replicas, one perhaps killed: fixed fleets and
    the oracle ask no scaler)."""
    if recipe.policy == "static-best" and counts is None:
        return search_static(scenario, recipe, seed, oracle)
    started, cpu = time.perf_counter(), time.process_time()
    result = RunResult(scenario.name, recipe.name, seed, scenario.profile.name)
    outcomes = Outcomes(scenario)
    oracle = oracle or oracle_schedule(scenario, seed)
    if recipe.policy == "scaledobjects":
        objects = recipe.scaled_objects(scenario)
        sim = _keda_run(scenario, objects, seed, outcomes, result, recipe.settings, failover)
    elif recipe.policy == "oracle" and recipe.foresight:  # its pods are up before the run
        schedule = oracle if recipe.headroom == Headroom() else oracle_schedule(scenario, seed, recipe.headroom)
        first = {role: schedule.at(role, 0.0) for role in ROLES}
        fixed = replace(scenario, initial_prefill=first["prefill"], initial_decode=first["decode"])
        sim, _ = _scheduled_run(fixed, seed, outcomes, schedule)
    elif recipe.policy == "oracle":  # as a recipe that measures the load: the initial fleet, the need ordered at 0 s
        late = oracle_schedule(scenario, seed, recipe.headroom, foresight=False)
        initial: dict[Role, int] = {"prefill": scenario.initial_prefill, "decode": scenario.initial_decode}
        sim, _ = _scheduled_run(scenario, seed, outcomes, late.starting_at(initial))
    else:
        sizes = counts or static_counts(scenario, dict(recipe.replicas))
        fixed = replace(scenario, initial_prefill=sizes["prefill"], initial_decode=sizes["decode"])
        sim, complete = _scheduled_run(fixed, seed, outcomes, None, give_up)
        result.replicas = {str(role): n for role, n in sizes.items()}
        if not complete:
            result.simulated_seconds = sim.fleet.now
            result.meets_slo = False
            result.note = f"stopped at {sim.fleet.now:.0f} s: too many misses to meet the SLO"
            return result
    _measure(result, sim, outcomes, oracle)
    result.wall_seconds = time.perf_counter() - started
    result.cpu_seconds = time.process_time() - cpu
    return result


def _measure(result: RunResult, sim: Simulation, outcomes: Outcomes, oracle: Schedule) -> None:
    scenario, fleet = sim.scenario, sim.fleet
    gpu = dict(fleet.gpu_seconds)
    events = dict(fleet.scale_events)
    result.max_replicas = {role: max((c.pods for c in fleet.timeline if c.role == role), default=0) for role in ROLES}
    over = over_provisioned(fleet.timeline, oracle, scenario.duration, scenario.profile.gpus_per_replica)
    sim.finish(scenario.tail_seconds)
    ttft, itl = outcomes.request_attainment()
    result.ttft_attainment, result.itl_attainment = ttft, itl
    result.window_attainment, result.missed_windows = outcomes.windows()
    result.itl_token_attainment = outcomes.token_attainment()
    result.gpu_hours_prefill, result.gpu_hours_decode = gpu["prefill"] / 3600, gpu["decode"] / 3600
    result.gpu_hours = result.gpu_hours_prefill + result.gpu_hours_decode
    result.over_provisioned_gpu_hours_prefill = over["prefill"]
    result.over_provisioned_gpu_hours_decode = over["decode"]
    result.over_provisioned_gpu_hours = over["prefill"] + over["decode"]
    result.scale_events_prefill, result.scale_events_decode = events["prefill"], events["decode"]
    result.scale_events = events["prefill"] + events["decode"]
    result.recovery_seconds = outcomes.recovery([(s.t, s.end) for s in load_steps(scenario)])
    result.ttft_p90, result.itl_p90 = outcomes.percentiles()
    result.requests = len(outcomes.arrival)
    result.failures = dict(outcomes.failures)
    result.failed = sum(outcomes.failures.values())
    goal = scenario.slo.goal
    result.meets_slo = ttft >= goal and itl >= goal
    result.simulated_seconds = scenario.duration


def search_static(scenario: Scenario, recipe: Recipe, seed: int, oracle: Schedule | None = None) -> RunResult:
    """The smallest fixed fleet within the limits that meets the SLO.

    Assumes that more pods of a role never hurt (true of the model: the EPP spreads load).
    Starts from the capacity model's estimate for the busiest moment; while that fleet
    misses the SLO, adds a pod (to the role that helps, both if neither alone does); then
    removes decode or prefill pods one at a time while the SLO still holds. The result
    cannot lose a pod of either role without missing the SLO. If even the largest fleet
    misses, that fleet is the answer, with a note. Typically 3-5 runs.
    """
    started, cpu = time.perf_counter(), time.process_time()
    oracle = oracle or oracle_schedule(scenario, seed)
    tried: dict[tuple[int, int], RunResult] = {}
    (p_lo, p_hi), (d_lo, d_hi) = limits(scenario, "prefill"), limits(scenario, "decode")

    def meets(prefill: int, decode: int) -> bool:
        if (prefill, decode) not in tried:
            largest = (prefill, decode) == (p_hi, d_hi)  # the answer when nothing meets: run it whole
            counts: dict[Role, int] = {"prefill": prefill, "decode": decode}
            tried[(prefill, decode)] = simulate(scenario, recipe, seed, oracle, counts, give_up=not largest)
        return tried[(prefill, decode)].meets_slo

    p, d = _estimate(scenario, oracle)
    p, d = min(max(p, p_lo), p_hi), min(max(d, d_lo, 1), d_hi)
    while not meets(p, d) and (p < p_hi or d < d_hi):
        if d < d_hi and meets(p, d + 1):
            d += 1
        elif p < p_hi and meets(p + 1, d):
            p += 1
        else:
            p, d = min(p + 1, p_hi), min(d + 1, d_hi)
    if meets(p, d):
        while True:
            if d > max(d_lo, 1) and meets(p, d - 1):
                d -= 1
            elif p > p_lo and meets(p - 1, d):
                p -= 1
            else:
                break
    result = replace(tried[(p, d)])
    result.search = [
        {"prefill": a, "decode": b, "meets_slo": r.meets_slo, "simulated_seconds": round(r.simulated_seconds)}
        for (a, b), r in tried.items()
    ]
    if not result.meets_slo:
        result.note = "no fixed fleet within the pod limits meets the SLO; this is the largest"
    result.wall_seconds = time.perf_counter() - started
    result.cpu_seconds = time.process_time() - cpu
    return result


def _estimate(scenario: Scenario, oracle: Schedule) -> tuple[int, int]:
    """The most pods of each role the oracle's schedule ever asks for."""
    return (
        max(n for _, n in oracle.steps["prefill"]),
        max(n for _, n in oracle.steps["decode"]),
    )
