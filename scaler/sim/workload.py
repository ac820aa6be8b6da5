"""Request arrivals: a Poisson process whose rate and prompt shape follow the phases."""

from __future__ import annotations

import itertools
import random

from scaler.sim.request import Request, Segments
from scaler.sim.scenario import Phase, Scenario


class Workload:
    """Draws the requests that arrive at the gateway in ``(t0, t1]``.

    Arrivals are exact (exponential inter-arrival times); when a draw crosses a phase
    boundary it is redrawn from the boundary with the next phase's rate, which is exact
    for a piecewise-constant Poisson process.
    """

    def __init__(self, scenario: Scenario, rng: random.Random) -> None:
        self.scenario = scenario
        self.rng = rng
        self._ids = itertools.count(1)
        self._ends = list(itertools.accumulate(p.seconds for p in scenario.phases))
        self._t = 0.0
        self._next: float | None = None
        self._repeated_isl: dict[int, int] = {}

    def _phase_index(self, t: float) -> int:
        for i, end in enumerate(self._ends):
            if t < end:
                return i
        return len(self._ends) - 1

    def rate(self, t: float) -> float:
        """The arrival rate at ``t`` (requests/s), ramps included."""
        i = self._phase_index(t)
        phase = self.scenario.phases[i]
        start = self._ends[i] - phase.seconds
        if phase.ramp_seconds <= 0 or t >= start + phase.ramp_seconds:
            return phase.rate
        previous = self.scenario.phases[i - 1].rate if i > 0 else 0.0
        return previous + (phase.rate - previous) * (t - start) / phase.ramp_seconds

    def _draw(self) -> float:
        """The next arrival after ``self._t``: thinning against each phase's peak rate."""
        t = self._t
        while True:
            i = self._phase_index(t)
            peak = max(self.scenario.phases[i].rate, self.scenario.phases[i - 1].rate if i > 0 else 0.0)
            end = self._ends[i]
            if peak > 0:
                candidate = t + self.rng.expovariate(peak)
                if candidate >= end and i < len(self._ends) - 1:
                    t = end
                    continue
                if self.rng.random() * peak <= self.rate(candidate):
                    return candidate
                t = candidate
                continue
            if i == len(self._ends) - 1:
                return float("inf")
            t = end

    def arrivals(self, t1: float) -> list[Request]:
        out: list[Request] = []
        while True:
            if self._next is None:
                self._next = self._draw()
            if self._next > t1:
                return out
            self._t = self._next
            self._next = None
            out.append(self._request(self._t))

    def _request(self, t: float) -> Request:
        i = self._phase_index(t)
        phase = self.scenario.phases[i]
        rid = next(self._ids)
        max_len = self.scenario.profile.max_model_len
        if phase.prompt == "repeated":
            if i not in self._repeated_isl:
                self._repeated_isl[i] = min(phase.isl.sample(self.rng), max_len - 1)
            isl = self._repeated_isl[i]
            segments: Segments = ((f"phase{i}/repeated", isl),)
        else:
            isl = min(phase.isl.sample(self.rng), max_len - 1)
            segments = _unique_segments(phase, i, rid, isl)
        osl = max(1, min(phase.osl.sample(self.rng), max_len - isl))
        return Request(rid=rid, arrival=t, segments=segments, isl=isl, osl=osl, phase=i)


def _unique_segments(phase: Phase, index: int, rid: int, isl: int) -> Segments:
    shared = min(phase.shared_prefix_tokens, isl - 1)
    if shared <= 0:
        return ((f"req{rid}", isl),)
    system = f"phase{index}/system"
    return ((system, shared), (f"{system}/req{rid}", isl - shared))
