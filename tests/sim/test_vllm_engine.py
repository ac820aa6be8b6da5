"""vLLM engine mechanics: prefill queueing and chunking, decode step cost, KV capacity, KV pull."""

from __future__ import annotations

from dataclasses import replace

import pytest

from scaler.sim.decode_engine import DecodeEngine
from scaler.sim.vllm_engine import PrefillEngine
from scaler.sim.vllm_metrics import VllmMetrics, WeightedHistogram
from tests.sim.helpers import PROFILE, request

STEP_2048_MS = 8 + 0.004 * 2048 + 6e-7 * 2048**2  # one full prefill step (a + b·T + c·T²)


def hist(metric: WeightedHistogram) -> tuple[int, float]:
    return sum(metric.counts), metric.sum


def test_prefill_queue_drains_one_full_step_per_prompt() -> None:
    m = VllmMetrics("m", 2048)
    engine = PrefillEngine(PROFILE, 1.0, m, 0.0)
    done: list[float] = []
    engine.on_complete = lambda req, t: done.append(t)
    for rid in range(3):
        req = request(rid, 0.0, 2048, 1)
        req.prefill_arrival = 0.0
        engine.enqueue(req, 0.0)
    assert engine.gauges()[:2] == (0, 3)
    engine.advance(0.001)  # one step admitted the first prompt: its 2048 tokens fill the budget
    assert engine.gauges()[:2] == (0, 2)
    assert done == pytest.approx([STEP_2048_MS / 1000])
    engine.advance(1.0)
    assert done == pytest.approx([k * STEP_2048_MS / 1000 for k in (1, 2, 3)])
    assert hist(m.queue)[0] == 3
    assert hist(m.queue)[1] == pytest.approx(3 * STEP_2048_MS / 1000)  # waited 0, 1 and 2 steps
    assert hist(m.ttft)[0] == 3
    assert m.prompt_tokens.value == 3 * 2048
    # KV stays held until the decode side pulls it
    assert engine.gauges()[2] == pytest.approx(3 * 2048 / PROFILE.kv_capacity_tokens)
    engine.release(request(0, 0.0, 2048, 1))
    assert engine.kv_used == 2 * 2048


def test_prefill_chunks_long_prompts_and_shares_the_budget() -> None:
    engine = PrefillEngine(PROFILE, 1.0, VllmMetrics("m", 2048), 0.0)
    done: dict[int, float] = {}
    engine.on_complete = lambda req, t: done.__setitem__(req.rid, t)
    for rid, isl in ((1, 1500), (2, 1500)):
        req = request(rid, 0.0, isl, 1)
        req.prefill_arrival = 0.0
        engine.enqueue(req, 0.0)
    engine.advance(1.0)
    first = 8 + 0.004 * 2048 + 6e-7 * (1500**2 + 548**2)  # 1500 + the first 548 of the second
    second = 8 + 0.004 * 952 + 6e-7 * (1500**2 - 548**2)
    assert done[1] == pytest.approx(first / 1000)
    assert done[2] == pytest.approx((first + second) / 1000)


def test_decode_step_cost_grows_with_batch_and_context() -> None:
    engine = DecodeEngine(PROFILE, 1.0, VllmMetrics("m", 2048), 0.0)
    times: dict[str, float] = {}
    engine.on_first_token = lambda req, t: times.__setitem__("first", t)
    engine.on_finish = lambda req, t: times.__setitem__("done", t)
    req = request(1, 0.0, 100, 3)
    req.decode_arrival = 0.0
    engine.enqueue(req, 0.0)
    engine.advance(1.0)
    prefill = 8 + 0.004 * 100 + 6e-7 * 100**2  # local prefill of 100 tokens (batch empty)
    step1 = 6 + 0.01 * 1 + 1.4e-4 * 101  # d + e·B + f·S with the first token in context
    step2 = 6 + 0.01 * 1 + 1.4e-4 * 102
    assert times["first"] == pytest.approx(prefill / 1000)
    assert times["done"] == pytest.approx((prefill + step1 + step2) / 1000)


def test_slowdown_multiplies_every_latency() -> None:
    engine = DecodeEngine(PROFILE, 10.0, VllmMetrics("m", 2048), 0.0)
    first: list[float] = []
    engine.on_first_token = lambda req, t: first.append(t)
    req = request(1, 0.0, 100, 1)
    req.decode_arrival = 0.0
    engine.enqueue(req, 0.0)
    engine.advance(1.0)
    assert first == pytest.approx([10 * (8 + 0.4 + 0.006) / 1000])


def test_kv_capacity_limits_admission() -> None:
    small = replace(PROFILE, kv_capacity_tokens=1000)
    engine = DecodeEngine(small, 1.0, VllmMetrics("m", 2048), 0.0)
    done: list[int] = []
    engine.on_finish = lambda req, t: done.append(req.rid)
    for rid in range(3):  # each needs 400 prompt + 100 output tokens: two fit in 1000
        req = request(rid, 0.0, 400, 100)
        req.decode_arrival = 0.0
        engine.enqueue(req, 0.0)
    engine.advance(0.05)
    running, waiting, kv = engine.gauges()
    assert (running, waiting) == (2, 1)
    assert 0.8 < kv <= 1.0
    engine.advance(10.0)
    assert done == [0, 1, 2]
    assert engine.kv_used == 0 and engine.committed == 0


def test_shared_prompt_blocks_count_once_and_cached_prompts_skip_prefill() -> None:
    engine = DecodeEngine(PROFILE, 1.0, VllmMetrics("m", 2048), 0.0)
    for rid in range(2):
        req = request(rid, 0.0, 500, 50, key="same")
        req.decode_arrival = 0.0
        engine.enqueue(req, 0.0)
    engine.advance(0.0001)
    assert engine.segment_tokens == 500  # two running requests share the 500 prompt tokens
    engine.advance(5.0)
    later = request(9, 5.0, 500, 5, key="same")
    later.decode_arrival = 5.0
    engine.enqueue(later, 5.0)
    engine.advance(5.0001)
    assert later.todo == 1  # full prefix-cache hit: only the last token is computed


def test_remote_request_waits_for_the_kv_pull() -> None:
    engine = DecodeEngine(PROFILE, 1.0, VllmMetrics("m", 2048), 0.0)
    pulled: list[float] = []
    first: list[float] = []
    engine.on_transfer_done = lambda req, t: pulled.append(t)
    engine.on_first_token = lambda req, t: first.append(t)
    req = request(1, 0.0, 1000, 2)
    req.remote_prefill = True
    req.decode_arrival = 0.0
    engine.enqueue(req, 0.0)
    engine.advance(0.05)
    assert engine.gauges()[:2] == (0, 1)  # WAITING_FOR_REMOTE_KVS counts as waiting
    engine.advance(1.0)
    transfer = (1.5 + 1000 * 36864 / 0.4e6) / 1000  # t0 + ISL·kv_bytes/link (NIXL over TCP)
    assert pulled == pytest.approx([transfer])
    assert first == pytest.approx([transfer + (6 + 0.01 + 1.4e-4 * 1000) / 1000])


def test_abort_all_reports_every_request() -> None:
    engine = DecodeEngine(PROFILE, 1.0, VllmMetrics("m", 2048), 0.0)
    aborted: list[int] = []
    engine.on_abort = lambda req, t: aborted.append(req.rid)
    for rid in range(3):
        req = request(rid, 0.0, 100, 1000)
        req.decode_arrival = 0.0
        engine.enqueue(req, 0.0)
    engine.advance(0.1)
    generated = engine.metrics.generation_tokens.value
    assert generated > 0
    engine.abort_all()
    assert sorted(aborted) == [0, 1, 2]
    assert engine.idle and engine.kv_used == 0 and engine.committed == 0
    # each aborted sequence's length is what it generated before the abort, as vLLM observes it
    lengths = engine.metrics.request_generation
    assert sum(lengths.counts) == 3 and lengths.sum == generated


def _decode_trace(
    bulk: bool, kv_tokens: int = PROFILE.kv_capacity_tokens
) -> tuple[dict[int, tuple[float, float]], list[tuple[float, float, int]], float]:
    import random

    engine = DecodeEngine(replace(PROFILE, kv_capacity_tokens=kv_tokens), 1.0, VllmMetrics("m", 2048), 0.0, bulk=bulk)
    times: dict[int, list[float]] = {}
    itl: list[tuple[float, float, int]] = []
    engine.on_first_token = lambda req, t: times.__setitem__(req.rid, [t])
    engine.on_finish = lambda req, t: times[req.rid].append(t)
    engine.on_itl = lambda t, v, n: itl.append((t, v, n))
    rng = random.Random(7)
    t = 0.0
    for rid in range(300):  # a busy pod: arrivals, local prefills, KV pulls, finishes interleave
        t += rng.expovariate(40.0)
        req = request(rid, t, rng.randint(50, 800), rng.randint(1, 300))
        req.remote_prefill = rng.random() < 0.5
        req.decode_arrival = t
        engine.advance(t)
        engine.enqueue(req, t)
    engine.advance(60.0)
    return {rid: (v[0], v[1]) for rid, v in times.items()}, itl, engine.metrics.generation_tokens.value


@pytest.mark.parametrize("kv_tokens", [PROFILE.kv_capacity_tokens, 20_000])  # the second preempts
def test_event_driven_decode_matches_stepping_one_step_at_a_time(kv_tokens: int) -> None:
    bulk, bulk_itl, bulk_tokens = _decode_trace(True, kv_tokens)
    steps, step_itl, step_tokens = _decode_trace(False, kv_tokens)
    assert len(bulk) == len(steps) == 300
    for rid, (first, done) in steps.items():
        assert bulk[rid] == pytest.approx((first, done), abs=1e-9), rid
    assert bulk_tokens == step_tokens
    assert len(bulk_itl) < len(step_itl)  # the point of it: fewer events (far fewer between arrivals)
    tokens = sum(n for _, _, n in step_itl)
    assert sum(n for _, _, n in bulk_itl) == tokens
    mean = sum(v * n for _, v, n in step_itl) / tokens
    assert sum(v * n for _, v, n in bulk_itl) / tokens == pytest.approx(mean, rel=1e-9)


def test_a_full_kv_cache_preempts_the_newest_sequence_and_it_resumes() -> None:
    small = replace(PROFILE, kv_capacity_tokens=1000)
    m = VllmMetrics("m", 2048)
    engine = DecodeEngine(small, 1.0, m, 0.0)
    done: dict[int, float] = {}
    engine.on_finish = lambda req, t: done.__setitem__(req.rid, t)
    for rid in range(3):  # 300-token prompts fit three times; 300 answer tokens each do not
        req = request(rid, 0.0, 300, 300)
        req.decode_arrival = 0.0
        engine.enqueue(req, 0.0)
    engine.advance(0.05)
    assert engine.gauges()[:2] == (3, 0)  # admitted on their prompts, as vLLM allocates
    highest = 0.0
    for k in range(1, 400):
        engine.advance(0.05 * k)
        highest = max(highest, engine.gauges()[2])
    assert sorted(done) == [0, 1, 2]
    assert engine.preemptions >= 1 and highest > 0.97  # the gauge shows the cache full
    assert m.generation_tokens.value == 3 * 300  # recomputed tokens are prefill, not new output
    assert engine.kv_used == 0 and not engine.decoding and not engine.waiting
