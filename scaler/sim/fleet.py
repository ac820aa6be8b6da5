"""The simulated llm-d P/D deployment: two Deployments of vLLM pods behind a gateway/EPP.

* **Gateway/EPP** (:mod:`scaler.sim.epp`): every request goes to a decode pod picked by the
  EPP's scorers. Then the ``prefix-based-pd-decider``: if the prompt suffix not cached on
  that decode pod is longer than ``nonCachedTokens``, a prefill pod is added (P/D);
  otherwise the decode pod prefills locally. With no ready prefill pod the request stays
  decode-only. With no ready decode pod it waits at the gateway (dropped after
  ``gateway_timeout_seconds``).
* **The decode pod owns the request** (llm-d's routing sidecar runs on it): from routing
  on, a request counts as in flight on its decode pod, also while it is prefilled
  remotely and while its KV is pulled.
* **Deployment controller**: the scale subresource sets ``spec_replicas`` and the
  ReplicaSet reconciles at once; new pods count as replicas immediately but take traffic
  only after their start-up delay; on scale-in the not-ready pods go first, then the most
  recently ready (ReplicaSet ranking). A removed pod stops getting new requests and
  finishes every request it accepted; it disappears when it has none left, or is killed
  at its drain deadline (``terminationGracePeriodSeconds``), which fails what is left.
* **Clients** give up on a request with no first token after ``client_timeout_seconds``
  (600 s, as llm-d's benchmarks); vLLM then aborts it wherever it waits.

Time is continuous: :meth:`Fleet.advance` routes each arrival at its own time, runs pod
start-ups, drains and gateway time-outs at theirs, and advances the engines (which are
event-driven themselves) between them. GPU-seconds count every pod that exists (starting,
ready or terminating) times the profile's GPUs per replica.
"""

from __future__ import annotations

import random
import zlib
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal, Protocol

from scaler.sim.decode_engine import DecodeEngine
from scaler.sim.epp import InFlightLoad, Picker
from scaler.sim.request import PrefixCache, Request
from scaler.sim.scenario import Role, Scenario
from scaler.sim.vllm_engine import PrefillEngine
from scaler.sim.vllm_metrics import VllmMetrics

__all__ = ["ROLES", "Change", "Deployment", "Fleet", "Observer", "Pod", "Role"]

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
    pending: dict[int, Request] = field(default_factory=dict)
    """Decode pods: requests the routing sidecar holds while a prefill pod works on them."""
    scrape_phase: float = 0.0
    """Offset of this pod's collector scrapes within the scrape interval (0..1)."""

    @property
    def in_flight(self) -> int:
        return self.engine.in_flight + len(self.pending)

    def gauges(self) -> tuple[int, int, float]:
        return self.engine.gauges()

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


@dataclass(frozen=True)
class Change:
    """One point of the replica timeline: the pods that exist and the desired count."""

    t: float
    role: Role
    pods: int
    spec: int


class Fleet:
    def __init__(self, scenario: Scenario, rng: random.Random, observer: Observer) -> None:
        self.scenario = scenario
        self.rng = rng
        self.observer = observer
        self.now = 0.0
        self.gateway: deque[Request] = deque()
        self._waiting_clients: deque[Request] = deque()
        """Requests in arrival order, until their first token (for the client time-out)."""
        self.removed: list[Pod] = []
        """Pods gone since the last export (their series get a staleness marker once)."""
        self.gpu_seconds: dict[Role, float] = {"prefill": 0.0, "decode": 0.0}
        self.timeline: list[Change] = []
        self.scale_events: dict[Role, int] = {"prefill": 0, "decode": 0}
        self.load = InFlightLoad()
        self._pickers = {r: Picker(scenario.epp, scenario.profile.max_num_seqs, rng) for r in ROLES}
        self._refreshed = -1.0
        self._accounted = 0.0
        self._pods_by_name: dict[str, Pod] = {}
        self.deployments: dict[str, Deployment] = {}
        self._by_role: dict[Role, Deployment] = {}
        setup: tuple[tuple[Role, int], ...] = (
            ("prefill", scenario.initial_prefill),
            ("decode", scenario.initial_decode),
        )
        for role, initial in setup:
            dep = Deployment(scenario.deployment(role), role, initial, template_hash=self._random_name(10))
            self.deployments[dep.name] = dep
            self._by_role[role] = dep
            for _ in range(initial):
                self._create_pod(dep, ready_at=0.0)
            self._record(dep)

    # ------------------------------------------------------------------ scale subresource

    def by_role(self, role: Role) -> Deployment:
        return self._by_role[role]

    def scale(self, name: str, replicas: int) -> None:
        dep = self.deployments[name]
        replicas = max(0, replicas)
        if replicas != dep.spec_replicas:
            self.scale_events[dep.role] += 1
        dep.spec_replicas = replicas
        self._account(self.now)
        self._reconcile(dep)
        self._record(dep)

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
        metrics = VllmMetrics(s.model_name, s.profile.max_model_len)
        engine: PrefillEngine | DecodeEngine
        if dep.role == "prefill":
            engine = PrefillEngine(s.profile, s.slowdown, metrics, ready_at)
            engine.on_complete = self._prefill_complete
        else:
            engine = DecodeEngine(s.profile, s.slowdown, metrics, ready_at)
            engine.on_first_token = self._first_token
            engine.on_finish = self._finished
            engine.on_itl = self.observer.itl
            engine.on_transfer_done = self._transfer_done
        engine.on_abort = lambda req, t: self._fail(req, t, "aborted by pod termination")
        pod = Pod(name, dep.role, dep.name, engine, metrics, self.now, ready_at)
        pod.epp_cache = PrefixCache(s.profile.kv_capacity_tokens)
        pod.scrape_phase = (zlib.crc32(name.encode()) % 100_000) / 100_000
        if ready_at <= self.now:
            pod.state = "ready"
            self.load.register(name)
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
        self.load.forget(pod.name)
        if exported:
            self.removed.append(pod)

    def _record(self, dep: Deployment) -> None:
        self.timeline.append(Change(self.now, dep.role, len(dep.pods), dep.spec_replicas))

    def _account(self, t: float) -> None:
        if t > self._accounted:
            gpus = self.scenario.profile.gpus_per_replica
            for dep in self.deployments.values():
                self.gpu_seconds[dep.role] += (t - self._accounted) * len(dep.pods) * gpus
            self._accounted = t

    def _next_lifecycle(self) -> float:
        t = float("inf")
        for dep in self.deployments.values():
            for pod in dep.pods:
                if pod.state == "starting":
                    t = min(t, pod.ready_at)
                elif pod.state == "terminating":
                    t = min(t, pod.deadline)
        if self.gateway:
            t = min(t, self.gateway[0].arrival + self.scenario.epp.gateway_timeout_seconds)
        clients = self._waiting_clients
        while clients and (clients[0].first_token is not None or clients[0].failed):
            clients.popleft()
        if clients:
            t = min(t, clients[0].arrival + self.scenario.client_timeout_seconds)
        return t

    def _lifecycle(self) -> None:
        """Start-ups, finished drains, drain deadlines and time-outs due at ``now``."""
        clients, patience = self._waiting_clients, self.scenario.client_timeout_seconds
        while clients and clients[0].arrival + patience <= self.now:
            req = clients.popleft()
            if req.first_token is None and not req.failed:  # the engines drop it where it waits
                self._fail(req, self.now, "client timed out before the first token")
        became_ready = False
        for dep in self.deployments.values():
            before = len(dep.pods)
            for pod in list(dep.pods):
                if pod.state == "starting" and pod.ready_at <= self.now:
                    pod.state = "ready"
                    self.load.register(pod.name)
                    became_ready = True
                elif pod.state == "terminating":
                    pod.engine.advance(self.now)
                    if pod.in_flight == 0:
                        self._remove(dep, pod)
                    elif self.now >= pod.deadline:
                        self._kill(pod)
                        self._remove(dep, pod)
            if len(dep.pods) != before:
                self._record(dep)
        self._serve_gateway(retry=became_ready)

    def _kill(self, pod: Pod) -> None:
        pod.engine.abort_all()
        for req in list(pod.pending.values()):
            self._fail(req, self.now, "aborted by pod termination")
        pod.pending.clear()

    # ------------------------------------------------------------------ gateway / EPP

    def _serve_gateway(self, retry: bool) -> None:
        timeout = self.scenario.epp.gateway_timeout_seconds
        for _ in range(len(self.gateway)):
            req = self.gateway.popleft()
            if req.failed:
                continue
            if retry and self._route(req, self.now):
                continue
            if self.now - req.arrival >= timeout:
                self._fail(req, self.now, "no ready decode pod (gateway timeout)")
            else:
                self.gateway.append(req)

    def _refresh(self, t: float) -> None:
        """The EPP's view of the engines: bring them up to ``t`` every ``refresh_seconds``."""
        if t - self._refreshed < self.scenario.epp.refresh_seconds:
            return
        self._engines_to(t)
        self._refreshed = t
        for picker in self._pickers.values():
            picker.refreshed()

    def submit(self, req: Request) -> None:
        self._waiting_clients.append(req)
        if not self._route(req, req.arrival):
            self.gateway.append(req)

    def _route(self, req: Request, t: float) -> bool:
        decode_pods = self.by_role("decode").ready_pods()
        if not decode_pods:
            return False
        self._refresh(t)
        decode = self._pickers["decode"].pick(decode_pods, req)
        assert isinstance(decode, Pod)
        non_cached = req.isl - decode.epp_cache.match(req.segments)
        decode.epp_cache.insert(req.segments)
        req.decode_pod = decode.name
        prefill_pods = self.by_role("prefill").ready_pods()
        if non_cached > self.scenario.epp.non_cached_tokens and prefill_pods:
            prefill = self._pickers["prefill"].pick(prefill_pods, req)
            assert isinstance(prefill, Pod)
            prefill_uncached = req.isl - prefill.epp_cache.match(req.segments)
            prefill.epp_cache.insert(req.segments)
            req.remote_prefill = True
            req.prefill_pod = prefill.name
            req.prefill_arrival = t
            self.load.charge(req, non_cached, prefill_uncached)
            decode.pending[req.rid] = req
            prefill.engine.enqueue(req, t)
        else:
            self.load.charge(req, non_cached, None)
            req.decode_arrival = t
            decode.engine.enqueue(req, t)
        return True

    def _prefill_complete(self, req: Request, t: float) -> None:
        self.observer.prefill_done(req, t)
        decode = self._pods_by_name.get(req.decode_pod)
        if req.aborted or decode is None:  # its decode pod was killed at its drain deadline
            self._transfer_done(req, t)
            return
        decode.pending.pop(req.rid, None)
        req.decode_arrival = t
        decode.engine.enqueue(req, t)

    def _transfer_done(self, req: Request, _t: float) -> None:
        prefill = self._pods_by_name.get(req.prefill_pod)
        if prefill is not None and isinstance(prefill.engine, PrefillEngine):
            prefill.engine.release(req)

    def _first_token(self, req: Request, t: float) -> None:
        self.load.first_token(req)
        self.observer.first_token(req, t)

    def _finished(self, req: Request, t: float) -> None:
        self.load.finished(req)
        self.observer.finished(req, t)

    def _fail(self, req: Request, t: float, reason: str) -> None:
        if req.failed:
            return
        req.failed = req.aborted = True
        self.load.finished(req)
        decode = self._pods_by_name.get(req.decode_pod)
        if decode is not None:
            decode.pending.pop(req.rid, None)
        self.observer.failed(req, t, reason)

    # ------------------------------------------------------------------ time

    def _engines_to(self, t: float) -> None:
        for role in ROLES:  # prefill first: its completions feed the decode queues
            for pod in self._by_role[role].pods:
                if pod.engine.t < t and pod.state != "starting":
                    pod.engine.advance(t)

    def _to(self, t: float) -> None:
        """Lifecycle events up to ``t``, each at its own time."""
        while True:
            due = self._next_lifecycle()
            if due > t:
                break
            self._engines_to(due)
            self._account(due)
            self.now = max(self.now, due)
            self._lifecycle()
        self._account(t)
        self.now = max(self.now, t)

    def advance(self, until: float, arrivals: Iterable[Request] = ()) -> None:
        """Advance to ``until`` (simulation seconds), routing ``arrivals`` at their times."""
        for req in arrivals:
            self._to(req.arrival)
            self.submit(req)
        self._to(until)
        self._engines_to(until)
        self._lifecycle()

    def in_flight(self) -> int:
        """Requests accepted and not finished (gateway queue included)."""
        return len(self.gateway) + sum(p.in_flight for p in self.pods())
