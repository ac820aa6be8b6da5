"""Demand and per-replica capacity of one role, at every instant of the grid.

Each role is reduced to one unit of work, chosen so that capacity adds up over replicas:

* **prefill**: prompt tokens per second that the prefix cache does not hold (vLLM's
  ``prefix_cache_hits``/``_queries`` counters; all of them without those counters). Demand is
  the token *arrival* rate — tokens finished plus the change of the queue (waiting requests ×
  mean uncached prompt length) over the same window — so a saturated fleet, whose throughput
  is capped, still shows how far it is behind, and one draining a queue (serving faster than
  requests arrive) is not mistaken for more demand. Counting cached tokens would mix two
  workloads: a fleet serving 90 % hits does ten times the tokens it could without them, and
  capacity learned there says nothing about the moment the hits stop.
* **decode**: generated tokens per second. A decode replica's limits are batch slots, KV
  cache and the step time that grows with the batch (the ITL); they cap its batch, and the
  batch over the step time is its token rate. Concurrency itself would be a poor unit: by
  Little's law the running batch is arrivals × (output length × ITL), and the ITL falls as
  replicas are added, so the same load reads as fewer sequences on a larger fleet. Demand is
  the request arrival rate (requests finished plus the change of those in the system, running
  or waiting) × the mean output length; a sequence just admitted has not yet produced the
  tokens it will, so the token rate alone lags a rise by a whole output.

The queue itself is kept apart as a **backlog** (tokens): the planner drains it over one
start-up interval, and not at all while replicas it asked for are still starting — they will
drain it, and counting it again on every call is how threshold recipes pile on.

Capacity per replica "at SLO" comes from three sources:

1. **seed** — the profile's analytical model for the observed mean prompt/output lengths,
   *corrected* as Dynamo's SLA planner does with ``observed latency / expected latency``
   (prefill: mean TTFT against a queueing model; decode: mean ITL against the step-time model),
   the correction scaling the modelled service or step time;
2. **learned lower bound** — the highest per-replica throughput observed over a window in
   which the role met its SLO: the pods *did* that within the SLO, so capacity is at least that
   (the issue's "learned from throughput observed while the SLO held");
3. **learned upper bound** — the lowest, over windows in which the role kept missing its SLO
   while a queue stood, of each window's highest per-replica throughput (the latencies over
   target happened somewhere in the window): capacity is below that, whatever the seed said.
   When the two bounds contradict each other the newer evidence wins: the workload changed
   (prompt lengths, cache hits), or the older miss had another cause (a routing imbalance, a
   backlog from before). :mod:`scaler.planner.bounds` learns them.

Only windows in which the pod count stayed constant teach anything (right after pods join,
the window's latencies still show the queue the fewer pods had). Every bound at instant ``i``
uses only instants up to ``i`` (a running max/min), so the recommendation at a past instant is
what the planner would have said then.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from scaler.planner import bounds, rolling
from scaler.planner.bounds import EVIDENCE_MS
from scaler.planner.profile import Profile
from scaler.planner.series import BoolArray
from scaler.planner.signals import Signals
from scaler.planner.spec import PlannerSpec
from scaler.series import FloatArray, Int64Array

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
PREFILL_CORRECTION_RANGE = (1.0, 1.5)
"""A prefill pod batches prompts into shared steps (chunked prefill), so its TTFT under load
departs from the single-server queueing model by more than a model error, and mostly
downwards: a TTFT below the model's says little about how much more the pod could take. So
the correction only ever slows the model (by up to 50 %); what the pods can do beyond it is
learned from the throughput they served while the SLO held (the lower bound)."""
KV_FULL = 0.8
"""Mean prefill KV-cache usage from which its queue is put down to decode: a prefill pod holds
a prompt's KV until the decode pod pulls it, so a slow decode fleet fills prefill's cache and
queues requests there that more prefill pods would not serve any sooner."""


@dataclass(frozen=True)
class RoleView:
    """One role's demand and capacity per grid instant (units: see the module docstring)."""

    unit: str
    demand: FloatArray
    served: FloatArray
    """Work done per second."""
    backlog: FloatArray
    """Work queued that still has to be done (tokens)."""
    growth: FloatArray
    """How fast the backlog grows (tokens/s; 0 while it shrinks), net of what the pods that
    joined within the rate window serve of it (see :func:`_net_of_joined`)."""
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
    slot_bound: BoolArray
    """The modelled batch is capped by the batch slots (``max_num_seqs``), not by the ITL or the
    KV cache (decode only): see :attr:`~scaler.planner.tuning.Tuning.slot_headroom`."""


def _fill_forward(values: FloatArray, default: float) -> FloatArray:
    out = values.copy()
    last = default
    for i, v in enumerate(out):
        if math.isfinite(v) and v > 0:
            last = v
        else:
            out[i] = last
    return out


def _correction(measured: FloatArray, times: Int64Array, bounds: tuple[float, float] = CORRECTION_RANGE) -> FloatArray:
    """The latest measured correction, for :data:`EVIDENCE_MS` after it was measured; then 1
    (the model as is): an old correction belongs to the workload of its time (a cache-hit
    regime that ended, say), not to the one that cannot be measured now."""
    out = np.ones(len(measured))
    last, at = 1.0, None
    for i, value in enumerate(measured):
        if math.isfinite(value):
            last, at = float(value), int(times[i])
        out[i] = last if at is not None and times[i] - at <= EVIDENCE_MS else 1.0
    return np.clip(out, *bounds)


def _mean_pods(signals: Signals) -> FloatArray:
    """Mean pods exporting over each rate window (pods that joined mid-window count partly)."""
    return rolling.mean(signals.pods, rolling.starts(signals.times, signals.window_ms))


def _busy(signals: Signals) -> BoolArray:
    return np.asarray((signals.running + signals.waiting) > 0, dtype=np.bool_)


def _stable(signals: Signals) -> BoolArray:
    """Windows in which the same number of pods exported throughout: only then do the window's
    latencies and the per-replica load belong together."""
    lo = rolling.starts(signals.times, signals.latency_window_ms)
    return rolling.constant(signals.pods, lo) & (signals.pods > 0)


def _shift(values: FloatArray, signals: Signals, window_ms: int | None = None) -> FloatArray:
    """``values`` one window (default: the rate window) earlier (NaN where the grid does not
    reach back that far)."""
    target = signals.times - (signals.window_ms if window_ms is None else window_ms)
    idx = np.minimum(np.searchsorted(signals.times, target, side="left"), len(values) - 1)
    return np.where(signals.times[idx] == target, values[idx], np.nan)


def _change(held: FloatArray, signals: Signals, window_ms: int) -> FloatArray:
    """How much ``held`` grew (or, negative, shrank) per second over the window ending at each
    instant; 0 where nothing was held yet (before any pod exported, it is unknown)."""
    before = _shift(held, signals, window_ms)
    known = ~np.isnan(before) & (np.nan_to_num(_shift(signals.pods, signals, window_ms)) > 0)
    return np.asarray(np.where(known, held - np.nan_to_num(before), 0.0) / (window_ms / 1000), dtype=np.float64)


def _arrivals(served: FloatArray, held: FloatArray, signals: Signals, window_ms: int) -> FloatArray:
    """Work arriving per second: what was served plus what the work ``held`` (queued, or in
    the system) grew, or less what it shrank, over the same window."""
    return np.asarray(np.maximum(served + _change(held, signals, window_ms), 0.0), dtype=np.float64)


def _never_queued(signals: Signals) -> BoolArray:
    """No pod had a queue at any instant of the latency window."""
    lo = rolling.starts(signals.times, signals.latency_window_ms)
    return np.asarray(rolling.maximum(signals.waiting / np.maximum(signals.pods, 1.0), lo) < 1.0, dtype=np.bool_)


def _standing(waiting: FloatArray, signals: Signals) -> BoolArray:
    """A queue on every pod now, and one a window ago. Every pod, not as many waiting requests
    as pods: a queue stays on the pod it was routed to, so pods that just joined idle beside
    it, and the fleet's throughput then says nothing of what its pods can do."""
    return np.asarray(
        (signals.queued_pods >= np.maximum(signals.pods, 1)) & (np.nan_to_num(_shift(waiting, signals)) > 0),
        dtype=np.bool_,
    )


def _view(
    signals: Signals,
    unit: str,
    served: FloatArray,
    load: tuple[FloatArray, FloatArray, FloatArray],
    model: tuple[FloatArray, FloatArray, FloatArray, FloatArray],
    slo: tuple[FloatArray, FloatArray, BoolArray, BoolArray],
    slot_bound: BoolArray | None = None,
) -> RoleView:
    """A role's view from its ``load`` (demand, growth, backlog), its ``model`` (the seed, the
    work per pod, the correction) and its ``slo`` (latency mean, share over target, held,
    missed): the bounds learned from the work per pod where the SLO held or missed, and the
    capacity they and the seed give."""
    demand, growth, backlog = load
    seed, per_pod, correction, shape = model
    mean, share, held, missed = slo
    lower, upper = bounds.learn(per_pod, held, missed, signals.times, signals.latency_window_ms, shape)
    capacity = bounds.combine(seed, lower, upper)
    return RoleView(
        unit=unit,
        demand=demand,
        served=served,
        growth=_net_of_joined(growth, signals, capacity),
        backlog=backlog,
        seed=seed,
        lower=lower,
        upper=upper,
        capacity=capacity,
        correction=correction,
        latency_mean=mean,
        miss_share=share,
        held=held,
        missed=missed,
        busy=_busy(signals),
        slot_bound=np.zeros(len(demand), dtype=np.bool_) if slot_bound is None else slot_bound,
    )


def _net_of_joined(growth: FloatArray, signals: Signals, capacity: FloatArray) -> FloatArray:
    """The queue's growth less what the pods that joined within the rate window serve of it:
    it was measured while fewer pods served, and from now on each of them takes its share of
    the arrivals. The planner carries the growth over a start-up; carried whole from the window
    in which a pod arrived (azure-mix seed 1, 585 s: prefill's drained queue flooding decode as
    decode's second pod joined), it asked for two more decode pods, which came after the queue
    was gone. A pod counts as joined for the part of the window it did not export in (the
    mean pods over the window, as in the per-pod load); an unknown capacity subtracts nothing."""
    joined = np.maximum(signals.pods - _mean_pods(signals), 0.0)
    serve = joined * np.nan_to_num(capacity, nan=0.0, posinf=0.0)
    return np.asarray(np.maximum(growth - serve, 0.0), dtype=np.float64)


def prefill(signals: Signals, spec: PlannerSpec) -> RoleView:
    budget = spec.ttft_budget_s
    # the work per prompt: the tokens the prefix cache does not hold
    uncached = _fill_forward(signals.uncached_share, 1.0)
    isl = _fill_forward(signals.mean_prompt, DEFAULT_ISL) * uncached
    served = signals.prompt_rate * uncached
    own = ~(np.nan_to_num(signals.kv_usage) >= KV_FULL)
    queued = signals.waiting * isl
    # arrivals whoever holds them up; the queue is only prefill's to drain while its KV cache is
    # not full (see KV_FULL)
    demand = _arrivals(served, queued, signals, signals.window_ms)
    backlog = np.where(own, queued, 0.0)
    growth = np.where(own, np.maximum(_change(queued, signals, signals.window_ms), 0.0), 0.0)
    share = signals.ttft.share_above(budget)
    mean = signals.ttft.mean()
    active = signals.request_rate > 0
    stable = _stable(signals)
    standing = _standing(signals.waiting, signals)
    held = active & stable & (share <= MISS_SHARE)
    missed = stable & own & (share > MISS_SHARE) & standing
    per_pod = served / np.maximum(_mean_pods(signals), 1.0)
    correction = np.ones(len(demand))
    seed = shape = np.full(len(demand), np.nan)
    profile = spec.profile
    if profile is not None:
        raw = shape = np.array([profile.prefill_tokens_per_s(x) for x in isl])
        service = np.array([profile.prefill_service_s(x) for x in isl])
        rho = np.clip(per_pod / raw, 0.0, 0.99)
        expected = service * (1 + KINGMAN_MEAN * rho / (1 - rho))
        # measured only in windows without any queue: a queue's TTFT is the backlog's, which the
        # demand (counting the queue) already answers, not a model error
        measured = np.isfinite(mean) & active & stable & own & _never_queued(signals)
        correction = _correction(np.where(measured, mean / expected, np.nan), signals.times, PREFILL_CORRECTION_RANGE)
        # the correction scales the service time: throughput by 1/correction, and the share of
        # the budget one prompt's own prefill takes by correction
        service = service * correction
        slack = budget - service
        target_rho = np.clip(slack / np.maximum(slack + KINGMAN_P90 * service, 1e-9), *RHO_RANGE)
        seed = np.where(slack > 0, target_rho, RHO_RANGE[0]) * raw / correction
    return _view(
        signals,
        "uncached prompt tokens/s",
        served,
        (demand, growth, backlog),
        (seed, per_pod, correction, shape),
        (mean, share, held, missed),
    )


def decode(signals: Signals, spec: PlannerSpec) -> RoleView:
    isl = _fill_forward(signals.mean_prompt, DEFAULT_ISL)
    osl = _fill_forward(signals.mean_output, DEFAULT_OSL)
    # Requests waiting for this role: its own queue or, better, what llm-d's EPP has routed to
    # its pods and they do not run yet. Under P/D a slow decode fleet holds the prefill pods' KV
    # until it pulls it, so the queue builds up at prefill, out of decode's own sight; the EPP
    # counts it on the decode pod each request is bound for.
    in_system = np.where(np.isfinite(signals.in_flight), signals.in_flight, signals.running + signals.waiting)
    backlog = signals.waiting * osl
    # requests arriving: those that finished plus the change of those in the system, whether
    # queued or just admitted (a sequence admitted has not yet produced the tokens it will),
    # over the rate window, as prefill's: a rise shows within one HPA sync, and its noise is
    # the settled level's to absorb (see forecast.settle). Over the 30-s latency window a step
    # showed 15 s later; that lag was hidden while the mean output came from the token
    # counters, whose overstatement during a rise (see signals._mean_length) made up for it
    window = signals.window_ms
    demand = _arrivals(signals.request_rate, in_system, signals, window) * osl
    growth = np.maximum(_change(backlog, signals, window), 0.0)
    itl_share = signals.itl.share_above(spec.itl_target_s)
    queue_share = signals.queue.share_above(spec.ttft_budget_s)
    mean = signals.itl.mean()
    active = signals.generation_rate > 0
    stable = _stable(signals)
    held = active & stable & (itl_share <= MISS_SHARE) & ~(queue_share > MISS_SHARE)
    over = (itl_share > MISS_SHARE) | ((queue_share > MISS_SHARE) & _standing(signals.waiting, signals))
    missed = active & stable & over
    pods = np.maximum(_mean_pods(signals), 1.0)
    per_pod = signals.generation_rate / pods
    correction = np.ones(len(demand))
    seed = shape = np.full(len(demand), np.nan)
    slot_bound = np.zeros(len(demand), dtype=np.bool_)
    profile = spec.profile
    if profile is not None:
        context = shape = isl + osl / 2
        # the batch over the same window the ITL was measured in
        lo = rolling.starts(signals.times, signals.latency_window_ms)
        batch = np.maximum(rolling.mean(signals.running, lo) / np.maximum(rolling.mean(signals.pods, lo), 1.0), 1.0)
        expected = np.array([profile.decode_step_s(b, c) for b, c in zip(batch, context, strict=True)])
        measured = np.isfinite(mean) & active & stable
        correction = _correction(np.where(measured, mean / expected, np.nan), signals.times)
        rows = zip(correction, context, isl, osl, strict=True)
        seeds = [_decode_seed(profile, spec.itl_target_s, *row) for row in rows]
        seed = np.array([tokens for tokens, _ in seeds])
        slot_bound = np.array([slots for _, slots in seeds], dtype=np.bool_)
    return _view(
        signals,
        "generated tokens/s",
        signals.generation_rate,
        (demand, growth, backlog),
        (seed, per_pod, correction, shape),
        (mean, itl_share, held, missed),
        slot_bound,
    )


ITL_MARGIN = 0.95
"""The seed keeps the *mean* step this far under the ITL target: the SLO is on the p90, and
steps vary with the batch's composition and the prefill chunks a decode pod runs itself."""


def _decode_seed(
    profile: Profile, itl_s: float, correction: float, context: float, isl: float, osl: float
) -> tuple[float, bool]:
    """Tokens/s one decode replica generates at the largest batch its limits allow, with the
    step time corrected by ``correction`` (observed/expected); a measured hint is taken as is.
    And whether that batch is the batch slots (``max_num_seqs``: the ITL and the KV cache would
    allow as many sequences or more); never for a hint, which holds no batch."""
    if profile.decode_tokens_per_second is not None:
        return profile.decode_tokens_per_second, False
    batch = profile.decode_sequences_within(ITL_MARGIN * itl_s / correction, context, isl + osl)
    tokens = batch / (correction * profile.decode_step_s(batch, context)) if batch > 0 else 0.0
    return tokens, profile.max_num_seqs <= batch + 1e-9
