"""What one replica of each role sustains at the SLO, from the profile's cost model alone.

Used by the evaluation lab's clairvoyant policy (how many pods the known future rate
needs), and to carry a scenario's load over to another profile. It is a steady-state
model, deliberately simple, and it is *judged by the simulator* like every recipe (the
oracle's attainment is measured, not assumed):

* **prefill**: full chunked-prefill steps of ``T = max_num_batched_tokens`` tokens cost
  ``a + b·T + c·T·L`` for prompts of (uncached) length ``L`` (the ``c`` term is per prompt,
  ``Σ chunk²`` = ``L²`` per prompt), so one replica prefills ``1000 / (a/T + b + c·L)``
  tokens/s; only prompts that go through a prefill pod count (``Shape.remote``).
* **decode**: ``B`` sequences of mean context ``ctx`` cost ``d + e·B + f·B·ctx`` per step;
  ``B`` is the largest batch that fits ``max_num_seqs``, 90 % of the KV cache (a running
  sequence holds its context) and the ITL target. A replica then completes
  ``B / (OSL · step)`` requests/s (Little's law).

Means are taken over the phase's length distributions after clipping to the model's
context (quadrature on their quantiles); the batch's context and KV are weighted by
output length, because a long answer stays in the batch longer.

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
KV_FILL = 0.9
"""The KV cache a decode batch may fill on average (it preempts when it is full)."""


@dataclass(frozen=True)
class Shape:
    """A phase's requests on a profile (lengths clipped to ``max_model_len`` as the workload does)."""

    isl: float
    """Mean prompt length."""
    osl: float
    """Mean output length."""
    ctx: float
    """Mean context of a running sequence (time-weighted: long answers stay in the batch longer)."""
    uncached: float
    """Prompt tokens a prefill pod computes per request that goes through one."""
    uncached_sq: float
    """Mean square of those (the per-prompt quadratic prefill term)."""
    uncached_p90: float
    remote: float
    """Share of requests that go through a prefill pod (P/D)."""
    local: float
    """Prompt tokens a decode pod prefills per request (decode-only requests)."""


_GRID = 128


@functools.lru_cache(maxsize=1024)
def shape(phase: Phase, profile: Profile, non_cached_tokens: int = 8) -> Shape:
    """Expectations over the phase's ISL/OSL distributions, by quadrature on their quantiles."""
    max_len = profile.max_model_len
    qs = [(i + 0.5) / _GRID for i in range(_GRID)]
    total = sum(c.weight for c in phase.classes)
    n = isl_sum = osl_sum = ctx_w = 0.0
    prompts: list[tuple[float, float]] = []
    for cls in phase.classes:
        w = cls.weight / total / (_GRID * _GRID)
        isls = [min(cls.isl.quantile(q), max_len - 1) for q in qs]
        osls = [cls.osl.quantile(q) for q in qs]
        for isl in isls:
            prompts.append((isl, w * _GRID))
            for raw in osls:
                osl = max(1, min(raw, max_len - isl))
                n += w
                isl_sum += w * isl
                osl_sum += w * osl
                ctx_w += w * osl * (isl + osl / 2)
    isl, osl = isl_sum / n, osl_sum / n
    ctx = ctx_w / osl_sum
    if phase.prompt == "repeated":
        return Shape(isl, osl, ctx, 0.0, 0.0, 0.0, 0.0, 1.0)  # cached on every decode pod after first use
    if phase.prefix_ratio > 0:  # as the workload builds them: a fixed prefix, at least one token more
        prefix = phase.prefix_ratio * isl
        uncached = [(max(x, prefix + 1) - prefix, w) for x, w in prompts]
    else:
        uncached = [(x - min(phase.shared_prefix_tokens, x - 1), w) for x, w in prompts]
    mean = sum(u * w for u, w in uncached) / n
    if mean <= non_cached_tokens:
        return Shape(isl, osl, ctx, 0.0, 0.0, 0.0, 0.0, mean)
    square = sum(u * u * w for u, w in uncached) / n
    return Shape(isl, osl, ctx, mean, square, _quantile(uncached, 0.9), 1.0, 0.0)


def _quantile(weighted: list[tuple[float, float]], q: float) -> float:
    ordered = sorted(weighted)
    total = sum(w for _, w in ordered)
    acc = 0.0
    for value, w in ordered:
        acc += w
        if acc >= q * total:
            return value
    return ordered[-1][0]


def prefill_tokens_per_s(profile: Profile, prompt: float, slowdown: float = 1.0, prompt_sq: float = 0.0) -> float:
    """One prefill replica's throughput with full batches, for prompts of ``prompt`` tokens
    (``prompt_sq``: their mean square, when lengths vary; the ``c`` term goes with ``L²``)."""
    t = profile.max_num_batched_tokens
    quad = (prompt_sq / prompt if prompt_sq and prompt else prompt) * profile.prefill_c_ms_per_tok2
    per_token = profile.prefill_a_ms / t + profile.prefill_b_ms_per_tok + quad
    return 1000.0 / (per_token * slowdown)


def decode_batch(profile: Profile, s: Shape, itl_seconds: float, slowdown: float = 1.0) -> float:
    """The largest mean batch one decode replica can run within the ITL target and its KV."""
    per_seq = profile.decode_e_ms_per_seq + profile.decode_f_ms_per_ctx_tok * s.ctx
    by_itl = (ITL_MARGIN * itl_seconds * 1000 / slowdown - profile.decode_d_ms) / per_seq
    by_kv = KV_FILL * profile.kv_capacity_tokens / s.ctx
    return max(1.0, min(float(profile.max_num_seqs), by_kv, by_itl))


def decode_requests_per_s(profile: Profile, s: Shape, itl_seconds: float, slowdown: float = 1.0) -> float:
    """Requests/s one decode replica completes at :func:`decode_batch` (Little's law)."""
    batch = decode_batch(profile, s, itl_seconds, slowdown)
    step_ms = slowdown * (profile.decode_ms(round(batch), round(batch * s.ctx)))
    step_ms += slowdown * profile.prefill_b_ms_per_tok * s.local * batch / max(s.osl, 1.0)  # local prefill
    return batch / (s.osl * step_ms / 1000.0)


@dataclass(frozen=True)
class Headroom:
    """Utilization targets of the sizing (queues form before 100 %)."""

    prefill: float = 0.9
    decode: float = 0.85


def replicas_needed(
    rate: float, phase: Phase, scenario: Scenario, headroom: Headroom = Headroom()
) -> dict[Role, float]:
    """Fractional replicas of each role that ``rate`` requests/s of ``phase`` need."""
    p, slo = scenario.profile, scenario.slo
    s = shape(phase, p, scenario.epp.non_cached_tokens)
    prefill = 0.0
    if s.remote > 0 and rate > 0:
        tput = prefill_tokens_per_s(p, s.uncached, scenario.slowdown, s.uncached_sq)
        prefill = rate * s.remote * s.uncached / tput
    decode = rate / decode_requests_per_s(p, s, slo.itl_p90_seconds, scenario.slowdown) if rate > 0 else 0.0
    return {"prefill": prefill / headroom.prefill, "decode": decode / headroom.decode}


TTFT_MARGIN = 0.9
"""Size prefill for a TTFT p90 this far under the target."""


def prefill_pods_for_ttft(rate: float, s: Shape, profile: Profile, ttft_seconds: float, slowdown: float = 1.0) -> int:
    """The fewest prefill pods whose queueing keeps the TTFT p90 under the target.

    Each pod is an M/G/1 queue (the EPP spreads requests evenly): a prompt of ``u`` uncached
    tokens takes ``u / throughput``; by Pollaczek-Khinchine the mean wait is
    ``λ·E[S²] / (2(1 − ρ))``, and the wait's tail is taken as exponential (its p90 is
    ``Wq/ρ · ln(10ρ)``). The p90 TTFT is then bounded by that wait plus the p90 prefill,
    the KV pull and one decode step. If no number of pods gets under the target, the
    utilization-based count.
    """
    tput = prefill_tokens_per_s(profile, s.uncached, slowdown, s.uncached_sq)
    es, es2 = s.uncached / tput, s.uncached_sq / tput**2
    fixed = s.uncached_p90 / tput + slowdown * (profile.kv_transfer_s(round(s.uncached)) + profile.decode_d_ms / 1000)
    budget = TTFT_MARGIN * ttft_seconds - fixed
    base = max(1, math.ceil(rate * es))
    if budget <= 0:
        return base
    for c in range(base, base + 200):
        lam = rate / c
        rho = lam * es
        if rho >= 1:
            continue
        wq = lam * es2 / (2 * (1 - rho))
        w90 = wq / rho * math.log(10 * rho) if rho > 0.1 else 0.0
        if w90 <= budget:
            return c
    return base


def oracle_need(rate: float, phase: Phase, scenario: Scenario, headroom: Headroom) -> dict[Role, int]:
    """Whole pods per role for ``rate`` requests/s of ``phase``: prefill by its queueing
    against the TTFT target, decode by batch size against the ITL target and the KV cache."""
    if rate <= 0:
        return {"prefill": 0, "decode": 0}
    p = scenario.profile
    s = shape(phase, p, scenario.epp.non_cached_tokens)
    frac = replicas_needed(rate, phase, scenario, headroom)
    prefill = 0
    if s.remote > 0:
        by_queue = prefill_pods_for_ttft(rate * s.remote, s, p, scenario.slo.ttft_p90_seconds, scenario.slowdown)
        prefill = max(by_queue, math.ceil(frac["prefill"] - 1e-9))
    return {"prefill": prefill, "decode": math.ceil(frac["decode"] - 1e-9)}


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
    """The scenario on ``profile``, its rates scaled so that its busier role there needs as
    many replica-seconds as the busier role on the scenario's own profile (the SLO per
    ``slo.profiles``). The roles may swap: opt-125m's chat is decode-bound, Llama-70B's
    prefill-bound, and the fleet scales through the same range of pods either way."""
    if profile.name == scenario.profile.name:
        return scenario
    moved = scenario.with_profile(profile)
    before, after = max(work(scenario).values()), max(work(moved).values())
    factor = before / after if after > 0 else 1.0
    if not math.isfinite(factor) or factor <= 0:
        factor = 1.0
    phases = tuple(replace(ph, rate=ph.rate * factor) for ph in moved.phases)
    return replace(moved, phases=phases)
