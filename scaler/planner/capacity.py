"""Demand and per-replica capacity of one role, at every instant of the grid.

Each role is reduced to one unit of work, chosen so that capacity adds up over replicas:

* **prefill**: prompt tokens per second. Demand is the token *arrival* rate — tokens finished
  plus the growth of the queue (waiting requests × mean prompt length) — so a saturated fleet,
  whose throughput is capped, still shows how far it is behind.
* **decode**: generated tokens per second. A decode replica's limits are batch slots, KV
  cache and the step time that grows with the batch (the ITL); they cap its batch, and the
  batch over the step time is its token rate. Concurrency itself would be a poor unit: by
  Little's law the running batch is arrivals × (output length × ITL), and the ITL falls as
  replicas are added, so the same load reads as fewer sequences on a larger fleet. Demand is
  the token rate plus the growth of the queue (waiting requests × mean output length).

Only a *growing* queue adds to the demand; a draining one is being served faster than it
arrives, which is no demand. The queue itself is kept apart as a **backlog** (tokens): the
planner drains it over one start-up interval, and not at all while replicas it asked for are
still starting — they will drain it, and counting it again on every call is how threshold
recipes pile on.

Capacity per replica "at SLO" comes from three sources, in this order of authority:

1. **seed** — the profile's analytical model for the observed mean prompt/output lengths,
   *corrected* as Dynamo's SLA planner does with ``observed latency / expected latency``
   (prefill: TTFT against a queueing model; decode: mean ITL against the step-time model);
2. **learned lower bound** — the highest per-replica throughput (prefill) or concurrency
   (decode) observed over a window in which the role met its SLO: the pods *did* that within
   the SLO, so capacity is at least that (the issue's "learned from throughput observed while
   the SLO held");
3. **learned upper bound** — the lowest per-replica load observed over a window in which the
   role missed its SLO while queueing: capacity is below that, whatever the seed said.

Every bound at instant ``i`` uses only instants up to ``i`` (a running max/min), so the
recommendation at a past instant is what the planner would have said then.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from scaler.planner import rolling
from scaler.planner.profile import Profile
from scaler.planner.series import BoolArray
from scaler.planner.signals import Signals
from scaler.planner.spec import PlannerSpec
from scaler.series import FloatArray

SLO_QUANTILE = 0.9
MISS_SHARE = 1.0 - SLO_QUANTILE
"""The SLO is a p90: a window misses it when more than 10 % of its observations exceed the target."""
DEFAULT_ISL = 512.0
"""Mean prompt length assumed before any request finished (only to size a backlog)."""
DEFAULT_OSL = 128.0
"""Mean output length assumed before any request finished (only to size a backlog)."""
KINGMAN_MEAN = 0.75
"""Mean queueing delay ≈ 0.75 × service time × ρ/(1−ρ): Kingman's M/G/1 mean wait
``ρ/(1−ρ)·(1+c_s²)/2·s`` with Poisson arrivals and ``c_s² ≈ 0.5`` (prompt lengths vary)."""
KINGMAN_P90 = 2 * KINGMAN_MEAN
"""The p90 of an exponential-tailed wait is ~2 × its mean (ln 10 ≈ 2.3, less the requests
that do not wait at all)."""
RHO_RANGE = (0.5, 0.95)
CORRECTION_RANGE = (0.5, 3.0)
KV_FULL = 0.9
"""KV-cache usage from which a pod's queue is put down to its KV cache, not its compute."""


@dataclass(frozen=True)
class RoleView:
    """One role's demand and capacity per grid instant (units: see the module docstring)."""

    unit: str
    demand: FloatArray
    backlog: FloatArray
    """Work queued that still has to be done (prefill: tokens; decode: sequence-seconds)."""
    seed: FloatArray
    lower: FloatArray
    upper: FloatArray
    capacity: FloatArray
    correction: FloatArray
    latency_mean: FloatArray
    """The role's SLO latency over the window, mean (prefill: TTFT; decode: ITL)."""
    miss_share: FloatArray
    """Share of the window's observations over the role's target (the p90 holds while ≤ 10 %)."""
    held: BoolArray
    missed: BoolArray
    busy: BoolArray
    """Requests were running or waiting at the instant."""


def _fill_forward(values: FloatArray, default: float) -> FloatArray:
    out = values.copy()
    last = default
    for i, v in enumerate(out):
        if math.isfinite(v) and v > 0:
            last = v
        else:
            out[i] = last
    return out


def _mean_pods(signals: Signals) -> FloatArray:
    """Mean pods exporting over each window (pods that joined mid-window count partly)."""
    return rolling.mean(signals.pods, rolling.starts(signals.times, signals.window_ms))


def _busy(signals: Signals) -> BoolArray:
    return np.asarray((signals.running + signals.waiting) > 0, dtype=np.bool_)


def _stable(signals: Signals) -> BoolArray:
    """Windows in which the same number of pods exported throughout: only then do the window's
    latencies and the per-replica load belong together (right after pods join, the latencies
    still show the queue the fewer pods had)."""
    return rolling.constant(signals.pods, rolling.starts(signals.times, signals.window_ms)) & (signals.pods > 0)


def _shift(values: FloatArray, signals: Signals) -> FloatArray:
    """``values`` one window earlier (NaN where the grid does not reach back that far)."""
    idx = np.searchsorted(signals.times, signals.times - signals.window_ms, side="left")
    exact = (idx < len(values)) & (signals.times[np.minimum(idx, len(values) - 1)] == signals.times - signals.window_ms)
    return np.where(exact, values[np.minimum(idx, len(values) - 1)], np.nan)


def _bounds(
    per_pod: FloatArray, held: BoolArray, missed: BoolArray, at_miss: FloatArray | None = None
) -> tuple[FloatArray, FloatArray]:
    """Running max of the per-replica load over windows that held the SLO, running min over
    windows that missed it (``at_miss``: the load to take for a miss, default ``per_pod``)."""
    lower = np.maximum.accumulate(np.where(held, per_pod, 0.0))
    upper = np.minimum.accumulate(np.where(missed, per_pod if at_miss is None else at_miss, np.inf))
    return lower, upper


def _combine(seed: FloatArray, lower: FloatArray, upper: FloatArray) -> FloatArray:
    """The seed, raised to the learned lower bound and capped by the learned upper bound; the
    upper bound wins a conflict (a miss is the more recent and the more costly evidence)."""
    with np.errstate(invalid="ignore"):
        raised = np.where(np.isnan(seed), np.where(lower > 0, lower, np.nan), np.fmax(seed, lower))
        capped = np.where(np.isfinite(upper), np.fmin(raised, upper), raised)
    return np.where(np.isnan(capped) & np.isfinite(upper), upper, capped)


def prefill(signals: Signals, spec: PlannerSpec) -> RoleView:
    budget = spec.ttft_budget_s
    requests = np.where(signals.request_rate > 0, signals.request_rate, np.nan)
    isl = _fill_forward(signals.prompt_rate / requests, DEFAULT_ISL)
    backlog = signals.waiting * isl
    # a queue that grows shows arrivals beyond what was served; one that drains is served
    # faster than it arrives, and that surplus is not demand
    growth = np.maximum(backlog - np.nan_to_num(_shift(backlog, signals)), 0.0) / (signals.window_ms / 1000)
    arrivals = signals.prompt_rate + growth
    demand = np.maximum(arrivals, 0.0)
    share = signals.ttft.share_above(budget)
    mean = signals.ttft.mean()
    active = signals.request_rate > 0
    stable = _stable(signals)
    held = active & stable & (share <= MISS_SHARE)
    queued = (signals.waiting >= np.maximum(signals.pods, 1)) & (np.nan_to_num(_shift(signals.waiting, signals)) > 0)
    # a prefill pod's KV blocks wait for the decode pods to pull them: with its KV cache full it
    # queues because decode is behind, which says nothing about prefill's own capacity
    own = ~(np.nan_to_num(signals.kv_usage) >= KV_FULL)
    missed = stable & own & (share > MISS_SHARE) & queued
    per_pod = signals.prompt_rate / np.maximum(_mean_pods(signals), 1.0)
    correction = np.ones(len(demand))
    seed = np.full(len(demand), np.nan)
    profile = spec.profile
    if profile is not None:
        raw = np.array([profile.prefill_tokens_per_s(x) for x in isl])
        service = np.array([profile.prefill_service_s(x) for x in isl])
        rho = np.clip(per_pod / raw, 0.0, 0.99)
        expected = service * (1 + KINGMAN_MEAN * rho / (1 - rho))
        # measured only while not saturated: in a queue the TTFT grows with the backlog, not
        # with a model error, and the demand (which counts the queue) already answers that
        measured = np.isfinite(mean) & active & stable & ~queued
        correction = _fill_forward(np.where(measured, np.clip(mean / expected, *CORRECTION_RANGE), np.nan), 1.0)
        slack = budget / correction - service
        target_rho = np.clip(slack / np.maximum(slack + KINGMAN_P90 * service, 1e-9), *RHO_RANGE)
        seed = np.where(slack > 0, target_rho, RHO_RANGE[0]) * raw
    lower, upper = _bounds(per_pod, held, missed)
    capacity = _combine(seed, lower, upper)
    return RoleView(
        "prompt tokens/s",
        demand,
        backlog,
        seed,
        lower,
        upper,
        capacity,
        correction,
        mean,
        share,
        held,
        missed,
        _busy(signals),
    )


def decode(signals: Signals, spec: PlannerSpec) -> RoleView:
    requests = np.where(signals.request_rate > 0, signals.request_rate, np.nan)
    isl = _fill_forward(signals.prompt_rate / requests, DEFAULT_ISL)
    osl = _fill_forward(signals.generation_rate / requests, DEFAULT_OSL)
    growth = np.maximum(signals.waiting - np.nan_to_num(_shift(signals.waiting, signals)), 0.0)
    demand = signals.generation_rate + growth * osl / (signals.window_ms / 1000)
    itl_share = signals.itl.share_above(spec.itl_target_s)
    queue_share = signals.queue.share_above(spec.ttft_budget_s)
    mean = signals.itl.mean()
    active = signals.generation_rate > 0
    stable = _stable(signals)
    queued = (signals.waiting >= np.maximum(signals.pods, 1)) & (np.nan_to_num(_shift(signals.waiting, signals)) > 0)
    held = active & stable & (itl_share <= MISS_SHARE) & ~(queue_share > MISS_SHARE)
    missed = active & stable & ((itl_share > MISS_SHARE) | ((queue_share > MISS_SHARE) & queued))
    pods = np.maximum(_mean_pods(signals), 1.0)
    per_pod = signals.generation_rate / pods
    correction = np.ones(len(demand))
    seed = np.full(len(demand), np.nan)
    profile = spec.profile
    if profile is not None:
        context = isl + osl / 2
        # the batch over the same window the ITL was measured in
        batch = np.maximum(rolling.mean(signals.running, rolling.starts(signals.times, signals.window_ms)) / pods, 1.0)
        expected = np.array([profile.decode_step_s(b, c) for b, c in zip(batch, context, strict=True)])
        measured = np.isfinite(mean) & active & stable
        correction = _fill_forward(np.where(measured, np.clip(mean / expected, *CORRECTION_RANGE), np.nan), 1.0)
        seed = np.array(
            [_decode_seed(profile, spec.itl_target_s, *x) for x in zip(correction, context, isl, osl, strict=True)]
        )
    lower, upper = _bounds(per_pod, held, missed)
    capacity = _combine(seed, lower, upper)
    return RoleView(
        "generated tokens/s",
        demand,
        signals.waiting * osl,
        seed,
        lower,
        upper,
        capacity,
        correction,
        mean,
        itl_share,
        held,
        missed,
        _busy(signals),
    )


def _decode_seed(profile: Profile, itl_s: float, correction: float, context: float, isl: float, osl: float) -> float:
    """Tokens/s one decode replica generates at the largest batch its limits allow, with the
    step time corrected by ``correction`` (observed/expected); a measured hint is taken as is."""
    if profile.decode_tokens_per_second is not None:
        return profile.decode_tokens_per_second
    batch = profile.decode_sequences_within(itl_s / correction, context, isl + osl)
    return batch / (correction * profile.decode_step_s(batch, context)) if batch > 0 else 0.0
