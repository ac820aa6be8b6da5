"""vLLM engine mechanics of one prefill pod, and what prefill and decode engines share.

Each engine keeps its own clock and runs whole scheduler steps (``advance(until)`` may end
a little past ``until``; the next call continues from there). The cost model is the one
of capacity-profiles.md §1.1, multiplied by the scenario's ``slowdown``:

* prefill step: ``a + b·T + c·Σ((done+chunk)² − done²)`` for ``T`` ≤ ``max_num_batched_tokens``
  tokens drawn FIFO from the running prompts (chunked prefill; the ``c`` term is per prompt).

The decode engine (:mod:`scaler.sim.decode_engine`) adds decode steps, the NIXL KV pull
and vLLM V1's KV allocation with preemption.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from scaler.sim.profiles import Profile
from scaler.sim.request import PrefixCache, Request
from scaler.sim.vllm_metrics import VllmMetrics

Callback = Callable[[Request, float], None]


def ignore(_req: Request, _t: float) -> None:
    """The default of every callback: nothing to report."""
    return None


class VllmEngine:
    """What prefill and decode engines share: a clock, a FIFO waiting queue, KV accounting."""

    def __init__(self, profile: Profile, slowdown: float, metrics: VllmMetrics, now: float) -> None:
        self.profile = profile
        self.slowdown = slowdown
        self.metrics = metrics
        self.t = now
        self.waiting: deque[tuple[float, Request]] = deque()
        self.cache = PrefixCache(profile.kv_capacity_tokens)
        self.on_abort: Callback = ignore

    def enqueue(self, req: Request, at: float) -> None:
        if self.idle:
            self.t = max(self.t, at)
        self.waiting.append((at, req))

    @property
    def idle(self) -> bool:
        raise NotImplementedError

    @property
    def in_flight(self) -> int:
        raise NotImplementedError

    def _next_arrival(self, limit: float) -> float:
        if self.waiting and self.waiting[0][0] > self.t:
            return min(limit, self.waiting[0][0])
        return limit

    def _chunks(self, queue: list[Request], budget: int) -> tuple[list[tuple[Request, int]], int, float]:
        chunks, total, quad = [], 0, 0.0
        for req in queue:
            if budget <= 0:
                break
            n = min(budget, req.todo - req.done)
            if n <= 0:
                continue
            chunks.append((req, n))
            total += n
            quad += (req.done + n) ** 2 - req.done**2
            budget -= n
        return chunks, total, quad

    def _abort(self, req: Request, t: float) -> None:
        req.aborted = True
        req.finished = t
        self.metrics.success("abort", req.isl, req.generated)
        self.on_abort(req, t)


class PrefillEngine(VllmEngine):
    """A P/D prefill pod: every request has ``max_tokens=1`` and ends with ``length``.

    Its KV blocks stay allocated after the prefill until the decode pod has pulled them
    (``release``), so a slow decode side fills the prefill KV cache.
    """

    def __init__(self, profile: Profile, slowdown: float, metrics: VllmMetrics, now: float) -> None:
        super().__init__(profile, slowdown, metrics, now)
        self.running: list[Request] = []
        self.held: dict[int, int] = {}
        self.kv_used = 0
        self.on_complete: Callback = ignore

    @property
    def idle(self) -> bool:
        return not self.running and not self.waiting

    @property
    def in_flight(self) -> int:
        return len(self.running) + len(self.waiting) + len(self.held)

    def release(self, req: Request) -> None:
        self.kv_used -= self.held.pop(req.rid, 0)

    def _admit(self, budget: int) -> None:
        p = self.profile
        while self.waiting and self.waiting[0][0] <= self.t and len(self.running) < p.max_num_seqs and budget > 0:
            _, req = self.waiting[0]
            if req.failed:  # the client went away: vLLM aborts it
                self.waiting.popleft()
                self.metrics.success("abort", req.isl, 0)
                continue
            if self.kv_used + req.isl > p.kv_capacity_tokens:
                break
            self.waiting.popleft()
            self.kv_used += req.isl
            req.prefill_scheduled = self.t
            req.todo = max(1, req.isl - self.cache.match(req.segments))
            req.done = 0
            self.metrics.prefix_lookup(req.isl, req.todo)
            assert req.prefill_arrival is not None
            self.metrics.queue.observe(self.t - req.prefill_arrival)
            self.running.append(req)
            budget -= req.todo

    def _drop_failed(self) -> None:
        for req in [r for r in self.running if r.failed]:
            self.running.remove(req)
            self.kv_used -= req.isl
            self.metrics.success("abort", req.isl, 0)

    def advance(self, until: float) -> None:
        p = self.profile
        while self.t < until:
            if self.running and any(r.failed for r in self.running):
                self._drop_failed()
            in_progress = sum(r.todo - r.done for r in self.running)
            self._admit(p.max_num_batched_tokens - in_progress)
            chunks, total, quad = self._chunks(self.running, p.max_num_batched_tokens)
            if not chunks:
                self.t = self._next_arrival(until)
                continue
            self.t += self.slowdown * p.prefill_ms(total, quad) / 1000.0
            for req, n in chunks:
                req.done += n
                if req.done >= req.todo:
                    self._complete(req)

    def _complete(self, req: Request) -> None:
        t, m = self.t, self.metrics
        assert req.prefill_arrival is not None
        self.running.remove(req)
        self.held[req.rid] = req.isl
        self.cache.insert(req.segments)
        req.prefill_done = t
        m.ttft.observe(t - req.prefill_arrival)
        m.e2e.observe(t - req.prefill_arrival)
        m.prompt_tokens.inc(req.isl)
        m.generation_tokens.inc(1)
        m.success("length", req.isl, 1)
        self.on_complete(req, t)

    def abort_all(self) -> None:
        victims = [req for _, req in self.waiting] + self.running
        self.waiting.clear()
        self.running.clear()
        self.held.clear()
        self.kv_used = 0
        for req in victims:
            self._abort(req, self.t)

    def gauges(self) -> tuple[int, int, float]:
        return len(self.running), len(self.waiting), self.kv_used / self.profile.kv_capacity_tokens
