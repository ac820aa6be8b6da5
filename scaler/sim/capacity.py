"""What one replica of each role sustains at the SLO, from the profile's cost model alone.

Used by the evaluation lab's clairvoyant policy (how many pods the known future rate
needs), and to carry a scenario's load over to another profile. It is a steady-state
model, deliberately simple, and it is *judged by the simulator* like every recipe (the
oracle's attainment is measured, not assumed):

* **prefill**: full chunked-prefill steps of ``T = max_num_batched_tokens`` tokens cost
  ``a + b·T + c·T·L`` for prompts of (uncached) length ``L`` (the ``c`` term is per prompt,
  ``Σ chunk²`` = ``L²`` per prompt), so one replica prefills ``1000 / (a/T + b + c·L)``
  tokens/s; only prompts that go through a prefill pod count (``Shape.remote``).
* **decode**: ``B`` sequences of mean context ``ISL + OSL/2`` cost ``d + e·B + f·B·ctx``
  per step; ``B`` is the largest batch that fits ``max_num_seqs``, the KV cache
  (``ISL + OSL`` reserved per sequence, as the engine admits) and the ITL target. A
  replica then completes ``B / (OSL · step)`` requests/s (Little's law).

Both are scaled by a utilization target (``headroom``): queues form before 100 %.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace

from scaler.sim.phases import Phase
from scaler.sim.profiles import Profile
from scaler.sim.scenario import Role, Scenario

ITL_MARGIN = 0.8
"""Size decode so the *mean* step stays this far under the ITL target (p90 is above the mean)."""


@dataclass(frozen=True)
class Shape:
    """A phase's mean request on a profile (lengths clipped to ``max_model_len``)."""

    isl: float
    osl: float
    uncached: float
    """Prompt tokens a prefill pod computes per request that goes through one."""
    remote: float
    """Share of requests that go through a prefill pod (P/D)."""
    local: float
    """Prompt tokens a decode pod prefills per request (decode-only requests)."""


@functools.lru_cache(maxsize=1024)
def shape(phase: Phase, profile: Profile, non_cached_tokens: int = 8) -> Shape:
    max_len = profile.max_model_len
    total = sum(c.weight for c in phase.classes)
    isl = sum(c.weight * c.isl.clipped_mean(max_len - 1) for c in phase.classes) / total
    osl = sum(c.weight * c.osl.clipped_mean(max_len) for c in phase.classes) / total
    osl = max(1.0, min(osl, max_len - isl))
    if phase.prompt == "repeated":
        return Shape(isl, osl, 0.0, 0.0, 1.0)  # cached on every decode pod after its first use
    shared = phase.prefix_ratio * isl if phase.prefix_ratio > 0 else min(phase.shared_prefix_tokens, isl - 1)
    suffix = isl - shared
    if suffix <= non_cached_tokens:
        return Shape(isl, osl, 0.0, 0.0, suffix)
    return Shape(isl, osl, suffix, 1.0, 0.0)


def prefill_tokens_per_s(profile: Profile, prompt: float, slowdown: float = 1.0) -> float:
    """One prefill replica's throughput with full batches, for prompts of ``prompt`` tokens."""
    t = profile.max_num_batched_tokens
    per_token = profile.prefill_a_ms / t + profile.prefill_b_ms_per_tok + profile.prefill_c_ms_per_tok2 * prompt
    return 1000.0 / (per_token * slowdown)


def decode_batch(profile: Profile, s: Shape, itl_seconds: float, slowdown: float = 1.0) -> float:
    """The largest mean batch one decode replica can run within the ITL target and its KV."""
    ctx = s.isl + s.osl / 2
    per_seq = profile.decode_e_ms_per_seq + profile.decode_f_ms_per_ctx_tok * ctx
    by_itl = (ITL_MARGIN * itl_seconds * 1000 / slowdown - profile.decode_d_ms) / per_seq
    by_kv = profile.kv_capacity_tokens / (s.isl + s.osl)
    return max(1.0, min(float(profile.max_num_seqs), by_kv, by_itl))


def decode_requests_per_s(profile: Profile, s: Shape, itl_seconds: float, slowdown: float = 1.0) -> float:
    """Requests/s one decode replica completes at :func:`decode_batch` (Little's law)."""
    batch = decode_batch(profile, s, itl_seconds, slowdown)
    step_ms = slowdown * (profile.decode_ms(round(batch), round(batch * (s.isl + s.osl / 2))))
    step_ms += slowdown * profile.prefill_b_ms_per_tok * s.local * batch / max(s.osl, 1.0)  # local prefill
    return batch / (s.osl * step_ms / 1000.0)


@dataclass(frozen=True)
class Headroom:
    """Utilization targets of the sizing (queues form before 100 %)."""

    prefill: float = 0.75
    decode: float = 0.85


def replicas_needed(
    rate: float, phase: Phase, scenario: Scenario, headroom: Headroom = Headroom()
) -> dict[Role, float]:
    """Fractional replicas of each role that ``rate`` requests/s of ``phase`` need."""
    p, slo = scenario.profile, scenario.slo
    s = shape(phase, p, scenario.epp.non_cached_tokens)
    prefill = 0.0
    if s.remote > 0 and rate > 0:
        prefill = rate * s.remote * s.uncached / prefill_tokens_per_s(p, s.uncached, scenario.slowdown)
    decode = rate / decode_requests_per_s(p, s, slo.itl_p90_seconds, scenario.slowdown) if rate > 0 else 0.0
    return {"prefill": prefill / headroom.prefill, "decode": decode / headroom.decode}


def work(scenario: Scenario) -> dict[Role, float]:
    """Replica-seconds of each role the scenario's mean load needs on its profile."""
    total: dict[Role, float] = {"prefill": 0.0, "decode": 0.0}
    previous = 0.0
    for phase in scenario.phases:
        ramp = min(phase.ramp_seconds, phase.seconds)
        mean_rate = (ramp * (previous + phase.rate) / 2 + (phase.seconds - ramp) * phase.rate) / phase.seconds
        need = replicas_needed(mean_rate * phase.mean_factor, phase, scenario, Headroom(1.0, 1.0))
        for role in total:
            total[role] += need[role] * phase.seconds
        previous = phase.rate
    return total


def on_profile(scenario: Scenario, profile: Profile) -> Scenario:
    """The scenario on ``profile``, its rates scaled so the busier role needs as many
    replica-seconds there as on the scenario's own profile (the SLO per ``slo.profiles``)."""
    if profile.name == scenario.profile.name:
        return scenario
    moved = scenario.with_profile(profile)
    before, after = work(scenario), work(moved)
    ratios = [before[r] / after[r] for r in before if before[r] > 0 and after[r] > 0]
    factor = min(ratios) if ratios else 1.0
    if not math.isfinite(factor) or factor <= 0:
        factor = 1.0
    phases = tuple(replace(ph, rate=ph.rate * factor) for ph in moved.phases)
    return replace(moved, phases=phases)
