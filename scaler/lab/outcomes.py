"""Ground truth of one lab run — every request's fate — and the figures computed from it.

The simulator reports to :class:`Outcomes` directly (not through the scaler), so the
judge is independent of the pipeline under test. Definitions (``docs/lab.md``):

* **TTFT attainment**: share of *all* requests that arrived whose time to first token
  (gateway arrival → first streamed token) met the target. A request that failed, timed
  out at the gateway, or had no first token when the run's tail ended counts as a miss.
* **ITL attainment**: share of all requests whose mean inter-token latency (TPOT over its
  output) met the target; failed or unfinished requests miss, a finished one-token answer meets.
* **Window attainment**: share of the 30-s windows of the scenario in which at least
  ``slo.goal`` (90 %) of the requests that arrived met the TTFT target *and* at least 90 %
  of the tokens emitted met the ITL target (the windowed TTFT p90 and ITL p90 meet the
  SLO). An empty window meets it.
* **Time to recover** after a load step: from the step to the end of the last 5-s bucket,
  before the next step, in which the SLO (as for windows) was missed; ``None`` if the SLO
  was still missed at the end of that span.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from scaler.sim.request import Request
from scaler.sim.scenario import Role, Scenario

BUCKET_SECONDS = 5.0
WINDOW_SECONDS = 30.0


class Outcomes:
    """A :class:`scaler.sim.run.RunObserver` that keeps what the figures need."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.arrival: list[float] = []
        self.ttft: list[float] = []
        self.tpot: list[float] = []
        self.failures: Counter[str] = Counter()
        buckets = math.ceil((scenario.duration + scenario.tail_seconds) / BUCKET_SECONDS) + 1
        self._itl_total = [0] * buckets  # plain lists: numpy scalar updates cost ~10x more
        self._itl_met = [0] * buckets
        self._itl_slo = scenario.slo.itl_p90_seconds
        self._itl_values: dict[int, int] = {}
        self._ttft_misses = 0
        self._itl_misses = 0
        """Requests already known to miss the TTFT (ITL) target."""
        """Token counts by inter-token latency in 0.1 ms (for the p90)."""

    def _index(self, req: Request) -> int:
        return req.rid - 1

    def arrived(self, requests: list[Request]) -> None:
        for req in requests:
            if req.rid != len(self.arrival) + 1:  # pragma: no cover - the workload numbers them 1, 2, …
                raise ValueError(f"request {req.rid} arrived out of order")
            self.arrival.append(req.arrival)
            self.ttft.append(math.inf)
            self.tpot.append(math.inf)

    def first_token(self, req: Request, t: float) -> None:
        ttft = t - req.arrival
        self.ttft[self._index(req)] = ttft
        if ttft > self.scenario.slo.ttft_p90_seconds:
            self._ttft_misses += 1

    def finished(self, req: Request, t: float) -> None:
        first = req.first_token if req.first_token is not None else t
        tpot = (t - first) / (req.osl - 1) if req.osl > 1 else 0.0
        self.tpot[self._index(req)] = tpot
        if tpot > self._itl_slo:
            self._itl_misses += 1

    def prefill_done(self, req: Request, t: float) -> None:
        return None

    def itl(self, t: float, value: float, count: int) -> None:
        if count <= 0:
            return
        b = min(int(t / BUCKET_SECONDS), len(self._itl_total) - 1)
        self._itl_total[b] += count
        if value <= self._itl_slo:
            self._itl_met[b] += count
        key = int(value * 10_000 + 0.5)
        values = self._itl_values
        values[key] = values.get(key, 0) + count

    @property
    def itl_total(self) -> np.ndarray:
        return np.asarray(self._itl_total, dtype=float)

    @property
    def itl_met(self) -> np.ndarray:
        return np.asarray(self._itl_met, dtype=float)

    def failed(self, req: Request, t: float, reason: str) -> None:
        self.failures[reason] += 1
        self._itl_misses += 1
        if req.first_token is None:
            self._ttft_misses += 1
        self.tpot[self._index(req)] = math.inf
        if req.first_token is not None:  # a stream cut mid-answer: one gap that never ends
            b = min(int(t / BUCKET_SECONDS), len(self._itl_total) - 1)
            self._itl_total[b] += 1

    def certain_misses(self) -> int:
        """The larger of the TTFT and the ITL misses so far: a lower bound of the final count."""
        return max(self._ttft_misses, self._itl_misses)

    # ------------------------------------------------------------------ figures

    def request_attainment(self) -> tuple[float, float]:
        if not self.arrival:
            return 1.0, 1.0
        slo = self.scenario.slo
        ttft = np.asarray(self.ttft)
        tpot = np.asarray(self.tpot)
        return float(np.mean(ttft <= slo.ttft_p90_seconds)), float(np.mean(tpot <= slo.itl_p90_seconds))

    def token_attainment(self) -> float:
        total = sum(self._itl_total)
        return sum(self._itl_met) / total if total else 1.0

    def _ttft_buckets(self) -> tuple[np.ndarray, np.ndarray]:
        n = len(self._itl_total)
        arrival = np.asarray(self.arrival, dtype=float)
        index = np.minimum((arrival / BUCKET_SECONDS).astype(int), n - 1)
        met = np.asarray(self.ttft) <= self.scenario.slo.ttft_p90_seconds
        return np.bincount(index, weights=met, minlength=n), np.bincount(index, minlength=n).astype(float)

    def _meets(
        self, ttft_met: np.ndarray, ttft_total: np.ndarray, itl_met: np.ndarray, itl_total: np.ndarray
    ) -> np.ndarray:
        goal = self.scenario.slo.goal
        with np.errstate(invalid="ignore", divide="ignore"):
            ttft_ok = (ttft_total == 0) | (ttft_met >= goal * ttft_total - 1e-9)
            itl_ok = (itl_total == 0) | (itl_met >= goal * itl_total - 1e-9)
        result: np.ndarray = ttft_ok & itl_ok
        return result

    def windows(self) -> tuple[float, list[int]]:
        """The share of the scenario's 30-s windows in which both p90 targets held, and the
        start (seconds) of every window in which they did not."""
        per = int(WINDOW_SECONDS / BUCKET_SECONDS)
        windows = max(1, math.ceil(self.scenario.duration / WINDOW_SECONDS))
        ttft_met, ttft_total = self._ttft_buckets()

        def fold(a: np.ndarray) -> np.ndarray:
            out = np.zeros(windows)
            usable = min(len(a), windows * per)
            np.add.at(out, np.arange(usable) // per, a[:usable])
            return out

        ok = self._meets(fold(ttft_met), fold(ttft_total), fold(self.itl_met), fold(self.itl_total))
        return float(np.mean(ok)), [int(i) * int(WINDOW_SECONDS) for i in np.nonzero(~ok)[0]]

    def recovery(self, steps: Sequence[tuple[float, float]]) -> list[float | None]:
        """Time to recover after each ``(step time, end of its span)``."""
        ttft_met, ttft_total = self._ttft_buckets()
        ok = self._meets(ttft_met, ttft_total, self.itl_met, self.itl_total)
        out: list[float | None] = []
        for start, end in steps:
            first = int(start / BUCKET_SECONDS)
            last = max(first, min(len(ok), math.ceil(end / BUCKET_SECONDS)) - 1)
            bad = [b for b in range(first, last + 1) if not ok[b]]
            if not bad:
                out.append(0.0)
            elif bad[-1] == last:
                out.append(None)
            else:
                out.append(round((bad[-1] + 1) * BUCKET_SECONDS - start, 1))
        return out

    def percentiles(self) -> tuple[float | None, float | None]:
        """TTFT p90 over all requests (failures as infinite) and the token-level ITL p90."""
        ttft = None
        if self.ttft:  # nearest rank: failures are infinite, no interpolation across them
            ordered = np.sort(np.asarray(self.ttft))
            ttft = float(ordered[max(0, math.ceil(0.9 * len(ordered)) - 1)])
        total = sum(self._itl_values.values())
        itl = None
        if total:
            acc = 0
            for key in sorted(self._itl_values):
                acc += self._itl_values[key]
                if acc >= 0.9 * total:
                    itl = key / 10_000
                    break
        return (None if ttft is None or not math.isfinite(ttft) else ttft), itl


@dataclass(frozen=True)
class Step:
    """A load step: the offered work of a role jumps at a phase boundary."""

    t: float
    end: float
    phase: str


def load_steps(scenario: Scenario, factor: float = 1.5) -> list[Step]:
    """Phase boundaries where a role's needed replicas (capacity model) grow ``factor``-fold or more."""
    from scaler.sim import capacity

    steps: list[Step] = []
    starts = scenario.phase_starts()
    previous: dict[Role, float] | None = None
    for i, phase in enumerate(scenario.phases):
        need = capacity.replicas_needed(phase.rate * phase.mean_factor, phase, scenario)
        jump = previous is not None and any(need[r] > 0.5 and need[r] >= factor * max(previous[r], 1e-9) for r in need)
        if jump and phase.ramp_seconds <= 0:
            end = starts[i + 1] if i + 1 < len(starts) else scenario.duration
            steps.append(Step(starts[i], end, phase.name))
        previous = need
    return steps
