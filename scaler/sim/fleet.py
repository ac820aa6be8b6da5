"""The simulated llm-d P/D deployment: two Deployments of vLLM pods behind a gateway/EPP.

* **Gateway/EPP** (llm-d-inference-scheduler): every request goes to a decode pod, picked
  by a weighted sum of scorers — prefix-cache affinity (the EPP's *approximate* index:
  what it routed where), queue depth (min-max normalised, as GAIE's queue scorer), KV
  usage and running-batch load; ties are broken at random. Then the
  ``prefix-based-pd-decider``: if the prompt suffix not cached on that decode pod is
  longer than ``nonCachedTokens``, a prefill pod is added (P/D); otherwise the decode pod
  prefills locally. With no ready prefill pod the request stays decode-only. With no
  ready decode pod it waits at the gateway (dropped after ``gateway_timeout_seconds``).
* **Deployment controller**: the scale subresource sets ``spec_replicas``; new pods count
  as replicas at once but take traffic only after their start-up delay; on scale-in the
  not-ready pods go first, then the most recently ready (ReplicaSet ranking). A removed
  pod stops getting new requests, finishes what it has within the drain period
  (``terminationGracePeriodSeconds``), aborts the rest, and disappears.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field
from typing import Literal, Protocol

from scaler.sim.engine import DecodeEngine, PrefillEngine
from scaler.sim.request import PrefixCache, Request
from scaler.sim.scenario import Scenario
from scaler.sim.vllm_metrics import VllmMetrics

Role = Literal["prefill", "decode"]
ROLES: tuple[Role, Role] = ("prefill", "decode")
_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"


class Observer(Protocol):
    """What the fleet reports to the recorder (ground truth, not via the scaler)."""

    def first_token(self, req: Request, t: float) -> None: ...
    def finished(self, req: Request, t: float) -> None: ...
    def prefill_done(self, req: Request, t: float) -> None: ...
    def itl(self, t: float, value: float, count: int) -> None: ...
    def failed(self, req: Request, t: float, reason: str) -> None: ...


@dataclass(eq=False)
class Pod:
    name: str
    role: Role
    deployment: str
    engine: PrefillEngine | DecodeEngine
    metrics: VllmMetrics
    created: float
    ready_at: float
    state: Literal["starting", "ready", "terminating"] = "starting"
    deadline: float = float("inf")
    epp_cache: PrefixCache = field(default_factory=lambda: PrefixCache(1))

    def refresh_gauges(self) -> tuple[int, int, float]:
        running, waiting, kv = self.engine.gauges()
        self.metrics.running.set(running)
        self.metrics.waiting.set(waiting)
        self.metrics.kv_usage.set(kv)
        return running, waiting, kv


@dataclass(eq=False)
class Deployment:
    name: str
    role: Role
    spec_replicas: int
    pods: list[Pod] = field(default_factory=list)
    template_hash: str = ""

    @property
    def status_replicas(self) -> int:
        return sum(1 for p in self.pods if p.state != "terminating")

    @property
    def ready_replicas(self) -> int:
        return sum(1 for p in self.pods if p.state == "ready")

    def ready_pods(self) -> list[Pod]:
        return [p for p in self.pods if p.state == "ready"]


class Fleet:
    def __init__(self, scenario: Scenario, rng: random.Random, observer: Observer) -> None:
        self.scenario = scenario
        self.rng = rng
        self.observer = observer
        self.now = 0.0
        self.gateway: deque[Request] = deque()
        self.removed: list[Pod] = []
        """Pods gone since the last export (their series get a staleness marker once)."""
        self.gpu_seconds: dict[Role, float] = {"prefill": 0.0, "decode": 0.0}
        self._pods_by_name: dict[str, Pod] = {}
        self.deployments: dict[str, Deployment] = {}
        setup: tuple[tuple[Role, str, int], ...] = (
            ("prefill", scenario.prefill_deployment, scenario.initial_prefill),
            ("decode", scenario.decode_deployment, scenario.initial_decode),
        )
        for role, name, initial in setup:
            dep = Deployment(name, role, initial, template_hash=self._random_name(10))
            self.deployments[name] = dep
            for _ in range(initial):
                self._create_pod(dep, ready_at=0.0)

    # ------------------------------------------------------------------ scale subresource

    def by_role(self, role: Role) -> Deployment:
        return next(d for d in self.deployments.values() if d.role == role)

    def scale(self, name: str, replicas: int) -> None:
        self.deployments[name].spec_replicas = max(0, replicas)

    def spec_replicas(self, name: str) -> int:
        return self.deployments[name].spec_replicas

    def status_replicas(self, name: str) -> int:
        return self.deployments[name].status_replicas

    def ready_replicas(self, name: str) -> int:
        return self.deployments[name].ready_replicas

    def pods(self) -> list[Pod]:
        return [p for d in self.deployments.values() for p in d.pods]

    # ------------------------------------------------------------------ deployment controller

    def _random_name(self, n: int) -> str:
        return "".join(self.rng.choice(_NAME_CHARS) for _ in range(n))

    def _create_pod(self, dep: Deployment, ready_at: float | None = None) -> None:
        s = self.scenario
        if ready_at is None:
            lo, hi = s.profile.startup_seconds
            ready_at = self.now + self.rng.uniform(lo, hi) * s.time_scale
        name = f"{dep.name}-{dep.template_hash}-{self._random_name(5)}"
        metrics = VllmMetrics(s.model_name)
        engine: PrefillEngine | DecodeEngine
        if dep.role == "prefill":
            engine = PrefillEngine(s.profile, s.slowdown, metrics, ready_at)
            engine.on_complete = self._prefill_complete
        else:
            engine = DecodeEngine(s.profile, s.slowdown, metrics, ready_at)
            engine.on_first_token = self.observer.first_token
            engine.on_finish = self.observer.finished
            engine.on_itl = self.observer.itl
            engine.on_transfer_done = self._transfer_done
        engine.on_abort = lambda req, t: self.observer.failed(req, t, "aborted by pod termination")
        pod = Pod(name, dep.role, dep.name, engine, metrics, self.now, ready_at)
        pod.epp_cache = PrefixCache(s.profile.kv_capacity_tokens)
        if ready_at <= self.now:
            pod.state = "ready"
        dep.pods.append(pod)
        self._pods_by_name[name] = pod

    def _reconcile(self, dep: Deployment) -> None:
        diff = dep.spec_replicas - dep.status_replicas
        for _ in range(diff):
            self._create_pod(dep)
        if diff >= 0:
            return
        live = [p for p in dep.pods if p.state != "terminating"]
        # ReplicaSet deletion ranking: not ready first, then the most recently ready/created.
        live.sort(key=lambda p: (p.state == "ready", -p.ready_at, -p.created))
        for pod in live[:-diff]:
            if pod.state == "starting":
                self._remove(dep, pod, exported=False)
            else:
                pod.state = "terminating"
                pod.deadline = self.now + self.scenario.drain_seconds * self.scenario.time_scale

    def _remove(self, dep: Deployment, pod: Pod, exported: bool = True) -> None:
        dep.pods.remove(pod)
        del self._pods_by_name[pod.name]
        if exported:
            self.removed.append(pod)

    def _lifecycle(self, dep: Deployment) -> None:
        for pod in list(dep.pods):
            if pod.state == "starting" and pod.ready_at <= self.now:
                pod.state = "ready"
            elif pod.state == "terminating":
                if pod.engine.in_flight == 0:
                    self._remove(dep, pod)
                elif self.now >= pod.deadline:
                    pod.engine.abort_all()
                    self._remove(dep, pod)

    # ------------------------------------------------------------------ gateway / EPP

    def _score(self, pods: list[Pod], req: Request) -> Pod:
        epp = self.scenario.epp
        waits = [p.engine.gauges() for p in pods]
        qmin, qmax = min(w[1] for w in waits), max(w[1] for w in waits)
        best: list[Pod] = []
        best_score = -1.0
        max_seqs = self.scenario.profile.max_num_seqs
        for pod, (running, waiting, kv) in zip(pods, waits, strict=True):
            queue = 1.0 if qmax == qmin else (qmax - waiting) / (qmax - qmin)
            score = (
                epp.prefix_weight * pod.epp_cache.match(req.segments) / req.isl
                + epp.queue_weight * queue
                + epp.kv_weight * (1.0 - kv)
                + epp.load_weight * (1.0 - min(1.0, running / max_seqs))
            )
            if score > best_score + 1e-9:
                best, best_score = [pod], score
            elif abs(score - best_score) <= 1e-9:
                best.append(pod)
        return best[0] if len(best) == 1 else self.rng.choice(best)

    def submit(self, req: Request) -> None:
        if not self._route(req, req.arrival):
            self.gateway.append(req)

    def _route(self, req: Request, t: float) -> bool:
        decode_pods = self.by_role("decode").ready_pods()
        if not decode_pods:
            return False
        decode = self._score(decode_pods, req)
        non_cached = req.isl - decode.epp_cache.match(req.segments)
        decode.epp_cache.insert(req.segments)
        req.decode_pod = decode.name
        prefill_pods = self.by_role("prefill").ready_pods()
        if non_cached > self.scenario.epp.non_cached_tokens and prefill_pods:
            prefill = self._score(prefill_pods, req)
            prefill.epp_cache.insert(req.segments)
            req.remote_prefill = True
            req.prefill_pod = prefill.name
            req.prefill_arrival = t
            prefill.engine.enqueue(req, t)
        else:
            req.decode_arrival = t
            decode.engine.enqueue(req, t)
        return True

    def _prefill_complete(self, req: Request, t: float) -> None:
        self.observer.prefill_done(req, t)
        decode = self._pods_by_name.get(req.decode_pod)
        if decode is None:
            self.observer.failed(req, t, "decode pod gone before the KV pull")
            self._transfer_done(req, t)
            return
        req.decode_arrival = t
        decode.engine.enqueue(req, t)

    def _transfer_done(self, req: Request, _t: float) -> None:
        prefill = self._pods_by_name.get(req.prefill_pod)
        if prefill is not None and isinstance(prefill.engine, PrefillEngine):
            prefill.engine.release(req)

    # ------------------------------------------------------------------ time

    def step(self, until: float, arrivals: list[Request]) -> None:
        """Advance the fleet to ``until`` (simulation seconds) with these new requests."""
        dt = until - self.now
        for dep in self.deployments.values():
            self.gpu_seconds[dep.role] += dt * len(dep.pods)
        self.now = until
        for dep in self.deployments.values():
            self._reconcile(dep)
            self._lifecycle(dep)
        timeout = self.scenario.epp.gateway_timeout_seconds
        for _ in range(len(self.gateway)):
            req = self.gateway.popleft()
            if not self._route(req, until):
                if until - req.arrival > timeout:
                    self.observer.failed(req, until, "no ready decode pod (gateway timeout)")
                else:
                    self.gateway.append(req)
        for req in arrivals:
            self.submit(req)
        for role in ROLES:  # prefill first: its completions feed the decode queues
            for pod in self.by_role(role).pods:
                if pod.state != "starting":
                    pod.engine.advance(until)
