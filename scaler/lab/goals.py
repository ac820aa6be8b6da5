"""The SLO planner's goals (issue 15), judged from a report's runs: ``summary.md``'s "Against
the planner's goals" and ``report.json``'s ``goals``.

Each goal is judged per scenario (and profile) on the seeds both recipes of a comparison ran
and completed, so a held-out seed set is judged on its own runs:

* **Dominance**: against every other recipe, the planner has at least its window attainment
  at no more GPU-hours, or is strictly better on one of the two and within
  :data:`POINTS` of attainment or :data:`SHARE` of GPU-hours on the other.
* **Cost**: at most :data:`COST` × the oracle's GPU-hours.
* **SLO**: at least :data:`WINDOWS` of the 30-s windows meet both p90 targets, a window the
  oracle misses too being excused (which also excuses a peak beyond the pod limits: the oracle
  misses it).
* **Stability**: at most half the scale events of each threshold recipe (:data:`THRESHOLD`),
  each counted on its own: the issue says "the threshold recipes", and a recipe that hardly
  scales (llm-d's adds one pod per 180 s) sets a limit no recipe that follows the load meets.

Means over seeds, as everywhere in the report. Nothing here runs anything: the figures are
the runs', so ``report.json`` of an earlier run judges the same. With ``--baseline``, the
baseline's runs of a scenario and recipe this report did not run join the judge (*borrowed*):
a change to the planner is re-run alone and judged against every recipe's runs on the same
seeds, and the section names what it borrowed.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

from scaler.lab.outcomes import WINDOW_SECONDS
from scaler.lab.runner import RunResult

CANDIDATE = "planner"
ORACLE = "oracle"
REACTIVE = "oracle-reactive"
"""The oracle without foresight: the windows it misses, no recipe that measures the load avoids
at its size (:mod:`scaler.lab.policies`)."""
THRESHOLD = ("shipped", "kedify-vllm", "llmd-token-aware")
"""The recipes that scale on thresholds, whose scale events the stability goal halves."""
POINTS = 0.02
"""Dominance's slack on window attainment (a fraction: 2 points)."""
SHARE = 0.02
"""Dominance's slack on GPU-hours (relative: 2 %)."""
COST = 1.15
WINDOWS = 0.99


@dataclass(frozen=True)
class Pair:
    """The candidate against one recipe on the seeds both completed (means over them)."""

    recipe: str
    seeds: int
    attainment: float
    gpu_hours: float
    their_attainment: float
    their_gpu_hours: float
    dominates: bool


@dataclass(frozen=True)
class Stability:
    recipe: str
    seeds: int
    events: float
    their_events: float
    holds: bool


@dataclass(frozen=True)
class Verdict:
    """Every goal for one scenario (``None``: the runs to judge it are missing)."""

    scenario: str
    seeds: int
    pairs: list[Pair]
    cost: float | None
    """The candidate's GPU-hours over the oracle's."""
    windows: float | None
    """Share of windows met, counting those the oracle misses too as met."""
    reactive_windows: float | None
    """The same, counting also those the oracle without foresight misses as met: how far the
    candidate is from what a recipe that measures the load can reach at the oracle's size
    (context, not the goal; on the seeds all three ran)."""
    stability: list[Stability]

    @property
    def dominant(self) -> bool:
        return all(p.dominates for p in self.pairs)

    def to_json(self) -> dict[str, object]:
        return asdict(self) | {"dominant": self.dominant}


def dominates(attainment: float, gpu_hours: float, their_attainment: float, their_gpu_hours: float) -> bool:
    """The issue's dominance: ≥ attainment at ≤ GPU-hours, or strictly better on one and within
    the slack on the other."""
    at_least, no_more = attainment >= their_attainment, gpu_hours <= their_gpu_hours
    if at_least and no_more:
        return True
    if attainment > their_attainment and gpu_hours <= their_gpu_hours * (1 + SHARE):
        return True
    return gpu_hours < their_gpu_hours and attainment >= their_attainment - POINTS


def _excused(mine: RunResult, *others: RunResult) -> float:
    """The share of ``mine``'s windows met, a window one of ``others`` missed counting as met."""
    windows = max(1, math.ceil(mine.simulated_seconds / WINDOW_SECONDS))
    excused = set().union(*(o.missed_windows for o in others))
    return 1.0 - len(set(mine.missed_windows) - excused) / windows


def borrow(runs: Sequence[RunResult], baseline: Iterable[Mapping[str, Any]]) -> list[RunResult]:
    """The baseline's runs (``report.json``'s ``runs[]``) of each scenario and recipe that
    ``runs`` has none of."""
    own = {(r.key, r.recipe) for r in runs}
    loaded = (_run(run) for run in baseline)
    return [r for r in loaded if (r.key, r.recipe) not in own]


def _run(run: Mapping[str, Any]) -> RunResult:
    """A run of a report that :func:`scaler.lab.compare.load` accepted; an older report's run
    lacks the keys added since (``profile``, ``missed_windows``), which take their defaults."""
    names = {f.name for f in fields(RunResult)}
    known = {k: v for k, v in run.items() if k in names} | {"profile": run.get("profile") or ""}
    missed = known.get("missed_windows")
    if not (isinstance(missed, list) and all(isinstance(t, int | float) for t in missed)):
        known.pop("missed_windows", None)
    return RunResult(**known)


def judge(runs: Sequence[RunResult], candidate: str = CANDIDATE) -> list[Verdict]:
    """A verdict per scenario the candidate completed at least one run of."""
    by: dict[tuple[str, str], dict[int, RunResult]] = defaultdict(dict)
    for r in runs:
        if r.ok:
            by[(r.key, r.recipe)][r.seed] = r
    verdicts = []
    for key in sorted({k for k, recipe in by if recipe == candidate}):
        mine = by[(key, candidate)]
        others = sorted(recipe for k, recipe in by if k == key and recipe != candidate)
        pairs, stability = [], []
        cost = windows = None
        for recipe in others:
            theirs = by[(key, recipe)]
            seeds = sorted(set(mine) & set(theirs))
            if not seeds:
                continue
            a, b = [mine[s] for s in seeds], [theirs[s] for s in seeds]
            att, gpu = _mean(a, "window_attainment"), _mean(a, "gpu_hours")
            their_att, their_gpu = _mean(b, "window_attainment"), _mean(b, "gpu_hours")
            won = dominates(att, gpu, their_att, their_gpu)
            pairs.append(Pair(recipe, len(seeds), att, gpu, their_att, their_gpu, won))
            if recipe == ORACLE:
                cost = gpu / their_gpu if their_gpu > 0 else math.inf
                windows = statistics.fmean(_excused(m, o) for m, o in zip(a, b, strict=True))
            if recipe in THRESHOLD:
                events, their_events = _mean(a, "scale_events"), _mean(b, "scale_events")
                stability.append(Stability(recipe, len(seeds), events, their_events, events <= their_events / 2))
        oracle, reactive = by.get((key, ORACLE), {}), by.get((key, REACTIVE), {})
        common = sorted(set(mine) & set(oracle) & set(reactive))
        reach = statistics.fmean(_excused(mine[s], oracle[s], reactive[s]) for s in common) if common else None
        verdicts.append(Verdict(key, len(mine), pairs, cost, windows, reach, stability))
    return verdicts


def _mean(runs: Sequence[RunResult], key: str) -> float:
    return statistics.fmean(float(getattr(r, key)) for r in runs)


def markdown(verdicts: Sequence[Verdict], borrowed: Sequence[RunResult] = (), candidate: str = CANDIDATE) -> list[str]:
    """``summary.md``'s section: a row per scenario and the counts of each goal; empty when the
    candidate did not run beside any other recipe."""
    if not any(v.pairs for v in verdicts):
        return []
    lent = sorted({r.recipe for r in borrowed})
    source = f" The runs of {', '.join(lent)} are the baseline's." if lent else ""
    lines = [
        "",
        f"## Against the {candidate}'s goals",
        "",
        f"Issue 15's goals for `{candidate}`, per scenario on the seeds each pair of recipes both completed "
        f"(means over them). **Not dominated by**: the recipes it does not dominate (≥ their window attainment "
        f"at ≤ their GPU-hours, or strictly better on one and within {POINTS * 100:.0f} points or {SHARE:.0%} on "
        f"the other). **Cost**: GPU-hours over the oracle's (goal ≤ {COST}×). **SLO**: windows meeting both p90 "
        f"targets, those the oracle misses too excused (goal ≥ {WINDOWS:.0%}); in brackets, those {REACTIVE} "
        f"misses excused as well (what a recipe that measures the load can reach at the oracle's size). "
        f"**Scale events**: its own against half of each threshold recipe's (goal: at most that).{source}",
        "",
        "| scenario | seeds | not dominated by | cost × oracle | SLO windows | scale events (limit) |",
        "|---|---|---|---|---|---|",
    ]
    for v in verdicts:
        lost = [p for p in v.pairs if not p.dominates]
        beaten = ", ".join(f"{p.recipe} ({p.their_attainment:.1%} · {p.their_gpu_hours:.2f})" for p in lost)
        cost = "-" if v.cost is None else f"{v.cost:.3f}× {_mark(v.cost <= COST)}"
        slo = "-" if v.windows is None else f"{v.windows:.1%} {_mark(v.windows >= WINDOWS)}"
        if v.reactive_windows is not None:
            slo += f" ({v.reactive_windows:.1%})"
        events = "; ".join(
            f"{s.events:.1f} ({s.recipe} {s.their_events / 2:.1f}) {_mark(s.holds)}" for s in v.stability
        )
        lines.append(f"| {v.scenario} | {v.seeds} | {beaten or 'none ✓'} | {cost} | {slo} | {events or '-'} |")
    lines += ["", *_counts(verdicts)]
    return lines


def _mark(ok: bool) -> str:
    return "✓" if ok else "✗"


def _counts(verdicts: Sequence[Verdict]) -> list[str]:
    pairs = [p for v in verdicts for p in v.pairs]
    threshold = [p for p in pairs if p.recipe in THRESHOLD]
    costs = [v.cost for v in verdicts if v.cost is not None]
    slo = [v.windows for v in verdicts if v.windows is not None]
    won = sum(p.dominates for p in threshold)
    among = f", {won} of {len(threshold)} against the threshold recipes" if threshold else ""
    lines = [
        f"- Dominance: {sum(v.dominant for v in verdicts)} of {len(verdicts)} scenarios against every recipe; "
        f"{sum(p.dominates for p in pairs)} of {len(pairs)} pairs{among}.",
        f"- Cost ≤ {COST}× the oracle: {sum(c <= COST for c in costs)} of {len(costs)} scenarios.",
        f"- SLO ≥ {WINDOWS:.0%} of windows: {sum(w >= WINDOWS for w in slo)} of {len(slo)} scenarios.",
    ]
    for recipe in THRESHOLD:
        held = [s.holds for v in verdicts for s in v.stability if s.recipe == recipe]
        if held:
            lines.append(f"- Stability against {recipe}: {sum(held)} of {len(held)} scenarios.")
    return lines
