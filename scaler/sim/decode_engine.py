"""vLLM engine mechanics of one decode pod, in simulated continuous time.

Each engine keeps its own clock and runs whole scheduler steps (``advance(until)`` may end
a little past ``until``; the next call continues from there). The cost model is the one
of capacity-profiles.md §1.1, multiplied by the scenario's ``slowdown``:

* prefill step: ``a + b·T + c·Σ((done+chunk)² − done²)`` for ``T`` ≤ ``max_num_batched_tokens``
  tokens drawn FIFO from the running prompts (chunked prefill; the ``c`` term is per prompt);
* decode step: ``d + e·B + f·S`` for ``B`` running sequences of total context ``S``, plus
  ``b·T (+ c…)`` when the step also carries local prefill chunks (aggregated mode);
* KV pull from a prefill pod: ``t0 + N·kv_bytes_per_token / link`` (NIXL) for the ``N``
  prompt tokens the decode pod does not hold in its own prefix cache.

**Event-driven decode.** Between two events (a finish, an admission, a finished KV pull,
``until``) a decode engine runs a plain decode batch: ``B`` is constant and ``S`` grows by
``B`` per step, so step ``k`` costs ``c0 + δ·k``. :meth:`DecodeEngine.advance` takes all of
those steps at once: the number of steps to the next event comes from the closed form of
``Σ (c0 + δ·k)``, and the inter-token latencies are reported as at most
``ITL_SEGMENTS`` groups of equal steps (each at its group's mean value). The result is
the same as stepping one by one (``bulk=False``; tests compare both) at a cost per event,
not per step (a run whose steps differ by less than 1 % is reported as one group).

**KV cache** (decode), as vLLM V1 allocates it: a request is admitted when its prompt fits
(and a batch slot is free); every running sequence then takes one more token per step; when
the next step would not fit, the most recently scheduled sequence is preempted (recompute:
its blocks freed, back to the front of the queue; when it is scheduled again it recomputes
its prompt — mostly a prefix-cache hit — and what it had generated, and resumes). Prompt
blocks are shared between running requests with the same prefix and stay in an LRU prefix
cache after the requests finish. So ``vllm:kv_cache_usage_perc`` reaches 1 when the cache
binds, as on a real pod.

Simplifications (vs vLLM): KV is counted in tokens, not 16-token blocks; the prefix cache
holds prompts, not generated tokens.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable

from scaler.sim.profiles import Profile
from scaler.sim.request import Request
from scaler.sim.vllm_engine import Callback, VllmEngine, ignore
from scaler.sim.vllm_metrics import VllmMetrics

ItlSink = Callable[[float, float, int], None]
"""(time, inter-token latency, number of tokens) for the recorder."""

ITL_SEGMENTS = 8
"""Groups a run of decode steps is reported in (their values differ by ``δ`` per step)."""
ITL_SPREAD = 0.01
"""A run whose steps differ by less than this fraction is reported as one group."""


class DecodeEngine(VllmEngine):
    """A decode pod: decodes every request; prefills decode-only ones locally."""

    def __init__(self, profile: Profile, slowdown: float, metrics: VllmMetrics, now: float, bulk: bool = True) -> None:
        super().__init__(profile, slowdown, metrics, now)
        self.bulk = bulk
        self.transfers: list[tuple[float, int, Request]] = []
        self.prefilling: list[Request] = []
        self.decoding: dict[int, Request] = {}
        self._finish_heap: list[tuple[int, int, Request]] = []
        self._seq = itertools.count()
        self.steps = 0
        self.ctx_sum = 0
        self.isl_sum = 0
        self.refs: dict[str, int] = {}
        self.segment_tokens = 0
        self.preemptions = 0
        self.on_first_token: Callback = ignore
        self.on_finish: Callback = ignore
        self.on_transfer_done: Callback = ignore
        self.on_itl: ItlSink = lambda _t, _v, _n: None

    @property
    def idle(self) -> bool:
        return not (self.waiting or self.transfers or self.prefilling or self.decoding)

    @property
    def in_flight(self) -> int:
        return len(self.waiting) + len(self.transfers) + len(self.prefilling) + len(self.decoding)

    @property
    def kv_used(self) -> int:
        """KV tokens held: prompt blocks (shared ones once) and every generated token."""
        return self.segment_tokens + self.ctx_sum - self.isl_sum

    @property
    def committed(self) -> int:
        """KV tokens allocated (vLLM allocates as tokens are generated: :attr:`kv_used`)."""
        return self.kv_used

    def _new_segment_tokens(self, req: Request) -> int:
        return sum(tokens for key, tokens in req.segments if key not in self.refs)

    def _ref(self, req: Request, delta: int) -> None:
        for key, tokens in req.segments:
            count = self.refs.get(key, 0) + delta
            if count <= 0:
                self.refs.pop(key, None)
                self.segment_tokens -= tokens
            else:
                if count == 1 and delta > 0:
                    self.segment_tokens += tokens
                self.refs[key] = count

    def _can_admit(self, req: Request) -> bool:
        p = self.profile
        if len(self.decoding) + len(self.prefilling) + len(self.transfers) >= p.max_num_seqs:
            return False
        return self.kv_used + self._new_segment_tokens(req) + req.generated + 1 <= p.kv_capacity_tokens

    def _admit(self) -> None:
        p = self.profile
        while self.waiting and self.waiting[0][0] <= self.t:
            _, req = self.waiting[0]
            if req.failed:  # the client went away: vLLM aborts it (and frees the prefill pod's KV)
                self.waiting.popleft()
                self.metrics.success("abort", req.isl, req.generated)
                if req.remote_prefill:
                    self.on_transfer_done(req, self.t)
                continue
            if not self._can_admit(req):
                return  # FCFS: the head blocks the queue, as in vLLM's scheduler
            self.waiting.popleft()
            self._ref(req, +1)
            if req.preempted_at is not None:  # recompute: the prompt (mostly cached) and what it generated
                req.todo = max(1, req.isl + req.generated - self.cache.match(req.segments))
                req.done = 0
                self.metrics.prefix_lookup(req.isl + req.generated, req.todo)
                self.prefilling.append(req)
                continue
            req.decode_scheduled = self.t
            assert req.decode_arrival is not None
            self.metrics.queue.observe(self.t - req.decode_arrival)
            if req.remote_prefill:
                # NIXL pulls only the blocks this pod does not already hold (its prefix cache)
                missing = req.isl - self.cache.match(req.segments)
                self.metrics.prefix_lookup(req.isl, missing)
                done = self.t + self.slowdown * p.kv_transfer_s(missing)
                heapq.heappush(self.transfers, (done, next(self._seq), req))
            else:
                req.todo = max(1, req.isl - self.cache.match(req.segments))
                req.done = 0
                self.metrics.prefix_lookup(req.isl, req.todo)
                self.prefilling.append(req)

    def _join(self, req: Request, generated: int) -> None:
        """Start decoding ``req`` at this step; ``generated`` tokens exist already."""
        req.join_step = self.steps
        req.ctx_base = req.isl + generated - self.steps
        self.ctx_sum += req.isl + generated
        self.isl_sum += req.isl
        self.decoding[req.rid] = req
        req.finish_step = self.steps + req.osl - generated
        heapq.heappush(self._finish_heap, (req.finish_step, next(self._seq), req))

    def _make_room(self) -> None:
        """Before a step: every running sequence needs a slot for its next token; when the
        KV cache cannot hold them, preempt the most recently scheduled sequence (vLLM V1,
        recompute mode: its blocks are freed and it goes back to the front of the queue)."""
        capacity = self.profile.kv_capacity_tokens
        while self.decoding and self.kv_used + len(self.decoding) > capacity:
            victim = self.decoding.pop(next(reversed(self.decoding)))
            ctx = victim.ctx_base + self.steps
            self.ctx_sum -= ctx
            self.isl_sum -= victim.isl
            self._ref(victim, -1)
            victim.generated = ctx - victim.isl
            victim.preempted_at = self.t
            victim.finish_step = -1  # its finish-heap entry is void
            self.waiting.appendleft((self.t, victim))
            self.preemptions += 1

    def advance(self, until: float) -> None:
        p = self.profile
        while self.t < until:
            self._admit()
            first: list[Request] = []
            while self.transfers and self.transfers[0][0] <= self.t:
                _, _, req = heapq.heappop(self.transfers)
                self.cache.insert(req.segments)
                self.on_transfer_done(req, self.t)
                if req.failed:
                    self._release(req)
                    self.metrics.success("abort", req.isl, req.generated)
                    continue
                self._join(req, 0)
                first.append(req)
            if self.prefilling and any(r.failed for r in self.prefilling):
                for req in [r for r in self.prefilling if r.failed]:
                    self.prefilling.remove(req)
                    self._release(req)
                    self.metrics.success("abort", req.isl, req.generated)
            self._make_room()
            batch = len(self.decoding)
            if batch and not first and not self.prefilling and self.bulk:
                self._decode_run(batch, until)
                continue
            chunks, total, quad = self._chunks(self.prefilling, p.max_num_batched_tokens - batch)
            if batch == 0 and not chunks:
                limit = self._next_arrival(until)
                if self.transfers:
                    limit = min(limit, self.transfers[0][0])
                self.t = limit
                continue
            if batch:
                ms = p.decode_ms(batch + len(chunks), self.ctx_sum)
                ms += p.prefill_b_ms_per_tok * total + p.prefill_c_ms_per_tok2 * quad
            else:
                ms = p.prefill_ms(total, quad)
            step = self.slowdown * ms / 1000.0
            self.t += step
            self._decode_step(batch, step, first)
            for req, n in chunks:
                req.done += n
                if req.done >= req.todo:
                    self._local_prefill_done(req)

    # ------------------------------------------------------------------ event-driven decode

    def _next_event(self, until: float) -> float:
        """The earliest time something other than a plain decode step can happen."""
        limit = until
        if self.transfers:
            limit = min(limit, self.transfers[0][0])
        # a queued request that has arrived but does not fit waits for a finish; a later
        # arrival is admitted at the first step that starts at or after it
        if self.waiting and self.waiting[0][0] > self.t:
            limit = min(limit, self.waiting[0][0])
        return limit

    def _decode_run(self, batch: int, until: float) -> None:
        """All plain decode steps up to the next event, at once (see the module docstring)."""
        p = self.profile
        c0 = self.slowdown * p.decode_ms(batch, self.ctx_sum) / 1000.0
        delta = self.slowdown * p.decode_f_ms_per_ctx_tok * batch / 1000.0
        self._drop_void_finishes()
        n = self._finish_heap[0][0] - self.steps  # steps to the next finish (>= 1)
        remaining = self._next_event(until) - self.t
        room = (self.profile.kv_capacity_tokens - self.kv_used) // batch  # steps until the KV cache is full
        n = max(1, min(n, room, _steps_to_cover(remaining, c0, delta)))
        start = self.t
        previous, k0 = 0.0, 0
        groups = 1 if delta * n <= ITL_SPREAD * c0 else min(n, ITL_SEGMENTS)
        for g in range(1, groups + 1):
            k1 = n * g // groups
            elapsed = k1 * c0 + delta * k1 * (k1 - 1) / 2
            count = (k1 - k0) * batch
            value = c0 + delta * (k0 + k1 - 1) / 2  # the group's mean step
            self.metrics.itl.observe(value, count)
            self.on_itl(start + elapsed, value, count)
            previous, k0 = elapsed, k1
        self.t = start + previous
        self.steps += n
        self.ctx_sum += n * batch
        self.metrics.generation_tokens.inc(n * batch)
        self._finish_due()

    # ------------------------------------------------------------------ single steps

    def _decode_step(self, batch: int, step: float, first: list[Request]) -> None:
        if batch == 0:
            return
        m, t = self.metrics, self.t
        self.steps += 1
        self.ctx_sum += batch
        m.generation_tokens.inc(batch)
        for req in first:
            self._first_token(req)
        m.itl.observe(step, batch - len(first))
        self.on_itl(t, step, batch - len(first))
        self._finish_due()

    def _drop_void_finishes(self) -> None:
        heap = self._finish_heap
        while heap and heap[0][2].finish_step != heap[0][0]:
            heapq.heappop(heap)

    def _finish_due(self) -> None:
        heap = self._finish_heap
        while heap and heap[0][0] <= self.steps:
            step, _, req = heapq.heappop(heap)
            if req.finish_step == step and self.decoding.get(req.rid) is req:
                del self.decoding[req.rid]
                self._finish(req)

    def _first_token(self, req: Request) -> None:
        assert req.decode_arrival is not None
        req.first_token = self.t
        self.metrics.ttft.observe(self.t - req.decode_arrival)
        self.metrics.prompt_tokens.inc(req.isl)
        self.on_first_token(req, self.t)

    def _local_prefill_done(self, req: Request) -> None:
        self.prefilling.remove(req)
        self.cache.insert(req.segments)
        if req.preempted_at is not None:  # recomputed: resume; its next token comes after the stall
            stall = self.t - req.preempted_at
            self.metrics.itl.observe(stall, 1)
            self.on_itl(self.t, stall, 1)
            req.preempted_at = None
            self._join(req, req.generated)
            return
        self.metrics.generation_tokens.inc(1)
        self._first_token(req)
        if req.osl <= 1:
            self._release(req)
            self._finished_metrics(req)
        else:
            self._join(req, 1)

    def _finish(self, req: Request) -> None:
        self.ctx_sum -= req.ctx_base + self.steps
        self.isl_sum -= req.isl
        self._release(req)
        self._finished_metrics(req)

    def _release(self, req: Request) -> None:
        self._ref(req, -1)

    def _finished_metrics(self, req: Request) -> None:
        assert req.decode_arrival is not None
        req.finished = self.t
        self.metrics.e2e.observe(self.t - req.decode_arrival)
        self.metrics.success("stop", req.isl, req.osl)
        self.on_finish(req, self.t)

    def abort_all(self) -> None:
        admitted = [r for _, _, r in self.transfers] + self.prefilling + list(self.decoding.values())
        victims = [r for _, r in self.waiting] + admitted
        for req in self.decoding.values():  # what each running sequence has generated so far
            req.generated = req.ctx_base + self.steps - req.isl
        for req in admitted:
            self._ref(req, -1)
        self.waiting.clear()
        self.transfers.clear()
        self.prefilling.clear()
        self.decoding.clear()
        self._finish_heap.clear()
        self.ctx_sum = self.isl_sum = 0
        for req in victims:
            if req.remote_prefill and req.first_token is None:
                self.on_transfer_done(req, self.t)  # the prefill pod's KV is never pulled now
            self._abort(req, self.t)

    def gauges(self) -> tuple[int, int, float]:
        running = len(self.decoding) + len(self.prefilling)
        waiting = len(self.waiting) + len(self.transfers)
        return running, waiting, self.kv_used / self.profile.kv_capacity_tokens


def _steps_to_cover(remaining: float, c0: float, delta: float) -> int:
    """The fewest steps (>= 1) of cost ``c0 + delta·k`` whose total reaches ``remaining``."""
    if remaining <= c0:
        return 1
    if delta <= 0:
        n = math.ceil(remaining / c0)
    else:
        a, b = delta / 2, c0 - delta / 2
        n = math.ceil((-b + math.sqrt(b * b + 4 * a * remaining)) / (2 * a))
    n = max(1, n)
    # the closed form is exact up to rounding: settle the boundary explicitly
    while n > 1 and (n - 1) * c0 + delta * (n - 1) * (n - 2) / 2 >= remaining:
        n -= 1
    while n * c0 + delta * n * (n - 1) / 2 < remaining:
        n += 1
    return n
