"""The evaluation matrix: scenarios × profiles × recipes × seeds, run in worker processes.

A scenario or recipe that cannot be loaded does not stop the matrix: each run it would
have taken part in is reported with ``ok: false`` and the loader's message (file and
key); so is a run that fails (for instance a trigger the scaler rejects). Everything
else runs. Runs go to a pool of ``jobs`` processes, longest first; ``jobs=1`` runs them
in this process.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from scaler.lab import recipes, runner
from scaler.lab.recipes import Recipe, RecipeError
from scaler.lab.replicas import Failover
from scaler.lab.runner import RunResult

__all__ = ["Job", "Plan", "Progress", "RunResult", "execute", "plan", "run_job"]
from scaler.sim import capacity, profiles
from scaler.sim import scenario as scenario_module
from scaler.sim.scenario import Scenario
from scaler.sim.validate import SpecError

_COST = {"scaledobjects": 2.0, "static": 1.0, "oracle": 1.0, "static-best": 5.0}
"""Relative cost per simulated second, to start the longest runs first."""


@dataclass(frozen=True)
class Job:
    scenario: str
    """Path of the scenario file."""
    profile: str
    """The profile to run on ('' for the scenario's own)."""
    recipe: str
    """Path of the recipe directory."""
    seed: int
    cost: float = 1.0
    failover: Failover | None = None
    """Several scaler replicas, one perhaps killed (``--replicas``, ``--kill-replica-at``)."""


@dataclass
class Plan:
    jobs: list[Job]
    failed: list[RunResult]
    """Runs that cannot start (a broken scenario or recipe)."""
    scenarios: dict[str, Scenario]
    """Loaded scenarios by ``name@profile``."""


def load_scenario(path: str, profile: str = "") -> Scenario:
    s = scenario_module.load(path)
    if s.time_scale != 1.0:
        raise SpecError(f"{path}: keda.time_scale: the lab runs at real Kubernetes timings (1), got {s.time_scale:g}")
    if profile and profile != s.profile.name:
        s = capacity.on_profile(s, profiles.named(profile, "--profiles"))
    return s


def plan(
    scenario_paths: Sequence[str],
    recipe_dirs: Sequence[Path],
    seeds: Sequence[int],
    extra_profiles: Sequence[str] = (),
    failover: Failover | None = None,
) -> Plan:
    """Expand the matrix; load errors become failed runs."""
    loaded: list[tuple[Path, Recipe | str]] = []
    for path in recipe_dirs:
        try:
            loaded.append((path, recipes.load(path)))
        except RecipeError as exc:
            loaded.append((path, str(exc)))
    jobs: list[Job] = []
    failed: list[RunResult] = []
    scenarios: dict[str, Scenario] = {}
    for spath in scenario_paths:
        stem = Path(spath).stem
        try:
            base = load_scenario(spath)
        except SpecError as exc:
            failed += [_failure(stem, path.name, seed, "", str(exc)) for path, _ in loaded for seed in seeds]
            continue
        names = [base.profile.name] + [p for p in extra_profiles if p != base.profile.name]
        for pname in names:
            try:
                s = load_scenario(spath, pname)
            except SpecError as exc:
                failed += [_failure(stem, path.name, seed, pname, str(exc)) for path, _ in loaded for seed in seeds]
                continue
            scenarios[f"{s.name}@{pname}"] = s
            for path, recipe in loaded:
                for seed in seeds:
                    if isinstance(recipe, str):
                        failed.append(_failure(s.name, path.name, seed, pname, recipe))
                    else:
                        cost = s.duration * _COST[recipe.policy] * (failover.replicas if failover else 1)
                        profile = "" if pname == base.profile.name else pname
                        jobs.append(Job(spath, profile, str(path), seed, cost, failover))
    jobs.sort(key=lambda j: -j.cost)
    return Plan(jobs, failed, scenarios)


def _failure(scenario: str, recipe: str, seed: int, profile: str, message: str) -> RunResult:
    return RunResult(scenario, recipe, seed, profile, ok=False, error=message)


def run_job(job: Job) -> RunResult:
    """One run (in a worker process); any failure is reported, never raised. A failure is named
    as a completed run would be as far as the run got: by the scenario's own name and profile
    once the scenario loaded (so ``--baseline`` and the summary key it with that scenario's
    completed seeds), by its file's stem and the ``--profiles`` entry ('' for its own) if not."""
    scenario, profile, name = Path(job.scenario).stem, job.profile, Path(job.recipe).name
    try:
        s = load_scenario(job.scenario, job.profile)
        scenario, profile = s.name, s.profile.name
        return runner.simulate(s, recipes.load(Path(job.recipe)), job.seed, failover=job.failover)
    except (SpecError, RecipeError) as exc:
        return _failure(scenario, name, job.seed, profile, str(exc))
    except Exception as exc:  # a bug must cost one run, not the matrix
        detail = traceback.format_exc(limit=6)
        return _failure(scenario, name, job.seed, profile, f"{type(exc).__name__}: {exc}\n{detail}")


class Progress:
    """A progress bar on a terminal, one line per finished run otherwise."""

    def __init__(self, total: int, out: TextIO | None = None, quiet: bool = False) -> None:
        self.total = total
        self.done = 0
        self.out = out or sys.stderr
        self.quiet = quiet
        self.live = not quiet and self.out.isatty()
        self.started = time.monotonic()

    def update(self, result: RunResult) -> None:
        self.done += 1
        elapsed = time.monotonic() - self.started
        eta = elapsed / self.done * (self.total - self.done)
        what = f"{result.scenario}/{result.recipe}/seed {result.seed}" + ("" if result.ok else " FAILED")
        if self.live:
            width = 30
            filled = int(width * self.done / max(self.total, 1))
            bar = "#" * filled + "-" * (width - filled)
            line = f"\r[{bar}] {self.done}/{self.total} runs, {_clock(elapsed)} elapsed, ETA {_clock(eta)}  {what}"
            self.out.write(line[:160].ljust(160))
            if self.done == self.total:
                self.out.write("\n")
            self.out.flush()
        elif not self.quiet:
            print(f"[{self.done}/{self.total}] {_clock(elapsed)} {what}", file=self.out, flush=True)


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m}m{s:02d}s"


def execute(jobs: Sequence[Job], workers: int, on_result: Callable[[RunResult], None]) -> list[RunResult]:
    """Run ``jobs`` on ``workers`` processes (1: in this one), in the order given."""
    results: list[RunResult] = []
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            results.append(run_job(job))
            on_result(results[-1])
        return results
    context = multiprocessing.get_context("spawn")  # no fork of a process that may hold gRPC threads
    pool = concurrent.futures.ProcessPoolExecutor(max_workers=workers, mp_context=context)
    try:
        futures = [pool.submit(run_job, job) for job in jobs]
        for future in concurrent.futures.as_completed(futures):
            results.append(future.result())
            on_result(results[-1])
    except BaseException:  # Ctrl-C, SIGTERM: stop the workers now rather than after their runs
        for process in list(getattr(pool, "_processes", {}).values()):
            process.terminate()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()
    return results
