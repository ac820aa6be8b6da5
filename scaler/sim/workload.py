"""Request arrivals: a (Markov-modulated) Poisson process whose rate and shape follow the phases.

* The rate of phase ``i`` is ``rate`` (climbing linearly from the previous phase's rate over
  ``ramp_seconds``), times the factor of the current ``burst`` state if the phase has one.
  Burst states are visited in turn with exponential dwell times; their path is drawn
  once, up front, from its own random stream, so :meth:`Workload.rate` is the realised
  rate — what a clairvoyant policy may know — and the arrivals do not shift it.
* Arrivals are exact: thinning of a Poisson process at each phase's peak rate, restarted
  at phase boundaries (exact for a piecewise rate).
* Each request draws its shape from the phase's ``mix`` (or its ``isl``/``osl``), clipped
  to the profile's ``max_model_len``; its prompt is the phase's repeated prompt, or unique
  with an optional shared prefix (see :mod:`scaler.sim.phases`).
"""

from __future__ import annotations

import bisect
import itertools
import random

from scaler.sim.phases import Phase
from scaler.sim.request import Request, Segments
from scaler.sim.scenario import Scenario


class Workload:
    """Draws the requests that arrive at the gateway in ``(t0, t1]``."""

    def __init__(self, scenario: Scenario, rng: random.Random) -> None:
        self.scenario = scenario
        self.rng = rng
        self._ids = itertools.count(1)
        self._ends = list(itertools.accumulate(p.seconds for p in scenario.phases))
        self._t = 0.0
        self._next: float | None = None
        self._repeated_isl: dict[int, int] = {}
        self._weights = [list(itertools.accumulate(c.weight for c in p.classes)) for p in scenario.phases]
        self._bursts = self._burst_paths(random.Random(rng.random()) if _any_burst(scenario) else None)
        self._prefix = [_prefix_tokens(p, scenario.profile.max_model_len) for p in scenario.phases]
        phases = scenario.phases
        self._peaks = [max(p.rate, phases[i - 1].rate if i else 0.0) * p.peak_factor for i, p in enumerate(phases)]

    def _burst_paths(self, rng: random.Random | None) -> list[tuple[list[float], list[float]]]:
        """Per phase: the state change times and the factor from each change on."""
        paths: list[tuple[list[float], list[float]]] = []
        for i, phase in enumerate(self.scenario.phases):
            if not phase.burst or rng is None:
                paths.append(([], []))
                continue
            start, end = self._ends[i] - phase.seconds, self._ends[i]
            times, factors, t, k = [], [], start, 0
            while t < end:
                state = phase.burst[k % len(phase.burst)]
                times.append(t)
                factors.append(state.factor)
                t += rng.expovariate(1.0 / state.mean_seconds)
                k += 1
            paths.append((times, factors))
        return paths

    def _phase_index(self, t: float) -> int:
        return min(bisect.bisect_right(self._ends, t), len(self._ends) - 1)

    def base_rate(self, t: float) -> float:
        """The arrival rate at ``t`` before burst factors (ramps included)."""
        i = self._phase_index(t)
        phase = self.scenario.phases[i]
        start = self._ends[i] - phase.seconds
        if phase.ramp_seconds <= 0 or t >= start + phase.ramp_seconds:
            return phase.rate
        previous = self.scenario.phases[i - 1].rate if i > 0 else 0.0
        return previous + (phase.rate - previous) * (t - start) / phase.ramp_seconds

    def rate(self, t: float) -> float:
        """The arrival rate at ``t`` (requests/s): ramps and the realised burst state included."""
        i = self._phase_index(t)
        times, factors = self._bursts[i]
        if not times:
            return self.base_rate(t)
        return self.base_rate(t) * factors[max(0, bisect.bisect_right(times, t) - 1)]

    def change_points(self) -> list[float]:
        """Every time the rate function may jump (phase boundaries and burst switches)."""
        points = [0.0, *self._ends]
        for times, _ in self._bursts:
            points.extend(times)
        return sorted(set(points))

    def _draw(self) -> float:
        """The next arrival after ``self._t``: thinning against each phase's peak rate."""
        t = self._t
        while True:
            i = self._phase_index(t)
            peak = self._peaks[i]
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
        classes = phase.classes
        shape = classes[0] if len(classes) == 1 else classes[self._pick(i)]
        if phase.prompt == "repeated":
            if i not in self._repeated_isl:
                self._repeated_isl[i] = min(shape.isl.sample(self.rng), max_len - 1)
            isl = self._repeated_isl[i]
            segments: Segments = ((f"phase{i}/repeated", isl),)
        else:
            isl = min(shape.isl.sample(self.rng), max_len - 1)
            isl, segments = self._unique_segments(phase, i, rid, isl)
        osl = max(1, min(shape.osl.sample(self.rng), max_len - isl))
        return Request(rid=rid, arrival=t, segments=segments, isl=isl, osl=osl, phase=i)

    def _pick(self, phase: int) -> int:
        weights = self._weights[phase]
        return bisect.bisect_right(weights, self.rng.random() * weights[-1])

    def _unique_segments(self, phase: Phase, index: int, rid: int, isl: int) -> tuple[int, Segments]:
        prefix = self._prefix[index]
        if prefix > 0:
            group = self.rng.randrange(phase.prefix_groups)
            isl = max(isl, prefix + 1)
            key = f"phase{index}/prefix{group}"
            return isl, ((key, prefix), (f"{key}/req{rid}", isl - prefix))
        shared = min(phase.shared_prefix_tokens, isl - 1)
        if shared <= 0:
            return isl, ((f"req{rid}", isl),)
        system = f"phase{index}/system"
        return isl, ((system, shared), (f"{system}/req{rid}", isl - shared))


def _prefix_tokens(phase: Phase, max_len: int) -> int:
    """The shared prefix of a ``prefix_ratio`` phase: that share of its mean prompt."""
    if phase.prefix_ratio <= 0 or phase.prompt != "unique":
        return 0
    total = sum(c.weight for c in phase.classes)
    mean = sum(c.weight * c.isl.clipped_mean(max_len - 1) for c in phase.classes) / total
    return max(1, min(round(phase.prefix_ratio * mean), max_len - 2))


def _any_burst(scenario: Scenario) -> bool:
    return any(p.burst for p in scenario.phases)
