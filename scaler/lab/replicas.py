"""Several scaler replicas in the lab: the high-availability layout, in-process.

What the README's "High availability" section deploys, on the lab's clock:

* **Replicas**: ``N`` :class:`~scaler.lab.inproc.InProcessScaler` (each a real
  :class:`scaler.app.Service` core, with its own store, ingestor, trigger cache and warm-up).
* **OTLP**: every request goes to every live replica, as the sidecar collectors export with
  one exporter per replica. A killed replica receives nothing; when it is back, the
  exporters' retry queues would replay what it missed, all of it older than the peer
  snapshot it starts from (the store keeps the snapshot's samples), so that replay is left out.
* **KEDA**: each unary call goes to the next replica in turn and a failed call is retried
  once on the one after — the client of ``tests/ha/keda_client.py``, which the HA tests hold
  the service to. Each round visits every replica once, in an order shuffled per round (a
  fixed seed): KEDA's emulation makes its calls in threes (GetMetricSpec, GetMetrics,
  IsActive), so with three replicas a fixed order would send every GetMetrics to one
  replica and leave another only GetMetricSpec, which reads no data. A replica that is
  killed, or not Ready, fails the call with ``UNAVAILABLE`` (Ready is
  :meth:`scaler.app.Service.warmed`, what the HA layout's readiness requires). A
  ``StreamIsActive`` stream opens on the next replica in turn and breaks with
  ``UNAVAILABLE`` when its replica is killed; KEDA's emulation reconnects after its backoff
  (a failed opening is not retried at once: KEDA backs off).
* **Kill and restart** (:class:`Failover`): replica ``killed`` stops at a virtual time;
  ``restart_after`` seconds later a new process starts in its place — an empty store, its
  own warm-up — and warms from a live, warmed peer's snapshot through the service's own code:
  :meth:`scaler.persistence.Persistence.capture` and :func:`scaler.snapshot.encode` on the
  peer (what ``GET /snapshot`` serves), the bytes held to ``PEER_SNAPSHOT_MAX_BYTES``,
  :func:`scaler.snapshot.decode` (what :class:`scaler.peers.PeerClient` checks) and
  :meth:`scaler.app.Service.restore_from_peer`. The bytes change hands in-process, and the
  peer is the first live, warmed one after the restarted replica (the service picks one at
  random; the lab stays deterministic). With no such peer the replica starts empty and is
  Ready after data arrives or its warm-up, as the service does. The restart takes no virtual
  time: the real one's few seconds to Ready are part of ``restart_after``. Both happen at the
  first delivery or call at or after their time, not on a timer: nothing sees a replica in
  between, and one more timer would reorder the run's simultaneous events (see :meth:`Replicas._due`).

Every call is counted (:class:`Calls`): first attempts that failed, those that landed on the
killed replica, and calls that failed after the retry. Every unary call's final answer (the
reply's bytes, or the status code), with its time and request, is hashed; the sorted hashes
make one SHA-256 (``answers_sha256``): two runs whose digests are equal gave KEDA the same
answers to the same questions at the same times, whatever the order of calls due at the
same instant and whichever replica answered each.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from opentelemetry.proto.metrics.v1 import metrics_pb2

from scaler import config, peers, snapshot
from scaler._gen import externalscaler_pb2 as pb
from scaler.lab.inproc import InProcessScaler
from scaler.sim.keda_emulator import ScalerCallError, ScalerCalls


@dataclass(frozen=True)
class Failover:
    """The scaler's layout in a run: ``replicas``, and optionally one of them killed at
    ``kill_at`` × the scenario's duration and restarted ``restart_after`` seconds later."""

    replicas: int = 1
    kill_at: float | None = None
    restart_after: float = 30.0

    def __post_init__(self) -> None:
        if self.replicas < 1:
            raise ValueError(f"--replicas must be >= 1, got {self.replicas}")
        if self.kill_at is not None and not 0 <= self.kill_at < 1:
            raise ValueError(f"--kill-replica-at is a fraction of the duration, 0 <= F < 1; got {self.kill_at:g}")
        if self.restart_after < 0:
            raise ValueError(f"--restart-after must be >= 0 seconds, got {self.restart_after:g}")

    @property
    def killed(self) -> int:
        """The replica killed: the second (index 1), or the only one."""
        return min(1, self.replicas - 1)

    def describe(self) -> str:
        text = f"{self.replicas} scaler replica{'s' if self.replicas > 1 else ''}"
        if self.kill_at is not None:
            text += (
                f", replica {self.killed} killed at {self.kill_at:g} of each scenario "
                f"and restarted {self.restart_after:g} s later"
            )
        return text


@dataclass
class Calls:
    """KEDA's calls through the replicas (streams: each opening counts as a call)."""

    calls: int = 0
    first_attempt_failed: int = 0
    """Calls whose first attempt failed (killed, not Ready, or an error the scaler answered)."""
    on_killed: int = 0
    """First attempts that landed on the killed replica while it was down."""
    failed_after_retry: int = 0
    """Calls that failed on the retry too (the warm-up's UNAVAILABLE at the start is one)."""
    killed_failed_after_retry: int = 0
    """Of ``on_killed``, the calls whose retry failed as well."""
    last_failed_after_retry_at: float | None = None
    """When the last call that failed after the retry was made (virtual seconds)."""
    streams_broken: int = 0
    """StreamIsActive streams cut by the kill."""
    answered_by_restarted: dict[str, int] = field(default_factory=dict)
    """Calls (and stream openings) answered by the restarted replica, by method."""


@dataclass
class Replica:
    """One replica slot: the current process, or none while it is down."""

    name: str
    scaler: InProcessScaler | None
    restarted: bool = False
    killed: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when this incarnation is killed (its streams break)."""

    def serving(self) -> bool:
        return self.scaler is not None and self.scaler.service.warmed()


class Replicas(ScalerCalls):
    """``N`` replicas behind KEDA's round-robin client and the collectors' fan-out.

    Implements :class:`scaler.sim.run.MetricsSink` and
    :class:`scaler.sim.keda_emulator.ExternalScalerClient` (see the module docstring).
    """

    def __init__(
        self,
        clock: Callable[[], float],
        failover: Failover,
        duration: float,
        settings: config.Settings | None = None,
    ) -> None:
        self.clock = clock
        self.failover = failover
        self.settings = settings or config.load({}, {})
        self.members = [
            Replica(f"replica-{i}", InProcessScaler(clock, self.settings)) for i in range(failover.replicas)
        ]
        self.counts = Calls()
        self.history: list[dict[str, Any]] = []
        """What happened to the replicas: kills and restarts, with the snapshot taken."""
        self._round: list[int] = []
        self._shuffle = random.Random(len(self.members)).shuffle
        self._answers: list[bytes] = []
        self._lock = asyncio.Lock()
        """Held by a delivery, a kill and a restart: a restart sees every export or none."""
        self._plan: list[tuple[float, Callable[[int], Awaitable[None]]]] = []
        """The kill and the restart still to come, by virtual time."""
        if failover.kill_at is not None:
            kill_at = failover.kill_at * duration
            self._plan = [(kill_at, self._kill), (kill_at + failover.restart_after, self._restart)]

    # ------------------------------------------------------------------ OTLP (MetricsSink)

    async def export(self, resources: list[metrics_pb2.ResourceMetrics]) -> None:
        await self._due()
        async with self._lock:
            for member in self.members:
                if member.scaler is not None:
                    await member.scaler.export(resources)

    # ------------------------------------------------------------------ KEDA (ExternalScalerClient)

    def _next(self) -> int:
        if not self._round:
            self._round = list(range(len(self.members)))
            self._shuffle(self._round)
        return self._round.pop()

    def _answered(self, member: Replica, method: str) -> None:
        if member.restarted:
            counts = self.counts.answered_by_restarted
            counts[method] = counts.get(method, 0) + 1

    async def _attempt(self, index: int, method: str, request: Any) -> Any:
        member = self.members[index]
        if member.scaler is None:
            raise ScalerCallError("UNAVAILABLE", f"{member.name} is down (connection refused)")
        if not member.serving():
            raise ScalerCallError("UNAVAILABLE", f"{member.name} is not Ready (warming up)")
        reply = await member.scaler._call(method, request)
        self._answered(member, method)
        return reply

    async def _call(self, method: str, request: Any) -> Any:
        await self._due()
        try:
            reply = await self._routed(method, request)
        except ScalerCallError as exc:
            self._note(method, request, exc.code.encode())
            raise
        self._note(method, request, reply.SerializeToString(deterministic=True))
        return reply

    async def _routed(self, method: str, request: Any) -> Any:
        """The next replica's answer, or the one after's when that fails (see :class:`Calls`)."""
        first = self._next()
        self.counts.calls += 1
        try:
            return await self._attempt(first, method, request)
        except ScalerCallError:
            on_killed = self.members[first].scaler is None
            self.counts.first_attempt_failed += 1
            self.counts.on_killed += on_killed
        try:
            return await self._attempt((first + 1) % len(self.members), method, request)
        except ScalerCallError:
            self.counts.failed_after_retry += 1
            self.counts.killed_failed_after_retry += on_killed
            self.counts.last_failed_after_retry_at = round(self.clock(), 3)
            raise

    def _note(self, method: str, request: Any, answer: bytes) -> None:
        entry = hashlib.sha256()
        for part in (f"{self.clock():.6f} {method}".encode(), request.SerializeToString(deterministic=True), answer):
            entry.update(len(part).to_bytes(8, "little") + part)
        self._answers.append(entry.digest())

    async def stream_is_active(self, ref: pb.ScaledObjectRef) -> AsyncIterator[pb.IsActiveResponse]:
        await self._due()
        member = self.members[self._next()]
        self.counts.calls += 1
        scaler = member.scaler
        if scaler is None or not member.serving():
            self.counts.first_attempt_failed += 1
            self.counts.on_killed += scaler is None
            raise ScalerCallError("UNAVAILABLE", f"{member.name} is down or not Ready")
        self._answered(member, "StreamIsActive")
        stream = aiter(scaler.stream_is_active(ref))
        killed = asyncio.ensure_future(member.killed.wait())
        try:
            while True:
                message = asyncio.ensure_future(anext(stream))
                await asyncio.wait((message, killed), return_when=asyncio.FIRST_COMPLETED)
                if not message.done():
                    message.cancel()
                    with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                        await message
                    self.counts.streams_broken += 1
                    raise ScalerCallError("UNAVAILABLE", f"{member.name} was killed: the stream broke")
                try:
                    yield message.result()
                except StopAsyncIteration:
                    return
        finally:
            killed.cancel()
            await stream.aclose()  # type: ignore[attr-defined]

    # ------------------------------------------------------------------ failover

    async def _due(self) -> None:
        """Kill or restart now if its time has come. Called on every delivery and call: nothing
        sees a replica in between, and a timer of its own would change the order in which the
        run's simultaneous events (a scrape, a KEDA read) happen, so the run would not be the
        undisturbed one but for the kill."""
        if not self._plan or self._plan[0][0] > self.clock():
            return
        async with self._lock:
            while self._plan and self._plan[0][0] <= self.clock():
                _, action = self._plan.pop(0)
                await action(self.failover.killed)

    async def _kill(self, index: int) -> None:
        member = self.members[index]
        member.scaler = None
        member.killed.set()
        self.history.append({"t": round(self.clock(), 3), "replica": member.name, "event": "killed"})

    async def _restart(self, index: int) -> None:
        """A new process in the slot, warmed from a peer's snapshot when one is live and warmed."""
        member = self.members[index]
        fresh = InProcessScaler(self.clock, self.settings)
        event: dict[str, Any] = {"t": round(self.clock(), 3), "replica": member.name, "event": "restarted"}
        fetched = await self._peer_snapshot(index)
        if fetched is not None:
            fresh.service.restore_from_peer(fetched)
            event |= {"peer": fetched.peer, "bytes": fetched.size, "series": len(fetched.snapshot.labels)}
        event["ready"] = fresh.service.warmed()
        self.members[index] = Replica(member.name, fresh, restarted=True)
        self.history.append(event)

    async def _peer_snapshot(self, index: int) -> peers.Fetched | None:
        """``GET /snapshot`` of the first live, warmed peer after ``index``, in-process."""
        limit = self.settings.peer.peer_snapshot_max_bytes
        for step in range(1, len(self.members)):
            peer = self.members[(index + step) % len(self.members)]
            if peer.scaler is None or not peer.serving():
                continue  # refused: down, or 503 "not warmed up yet"
            started = time.perf_counter()
            data = snapshot.encode(await peer.scaler.service.persistence.capture())
            if len(data) > limit:
                continue  # too_large, as PeerClient refuses it
            taken = snapshot.decode(data)
            return peers.Fetched(taken, peer.name, len(data), time.perf_counter() - started)
        return None

    def first(self) -> InProcessScaler:
        """Replica 0 as it started (the run checks the recipe's triggers on it)."""
        scaler = self.members[0].scaler
        assert scaler is not None, "replica-0 is down"
        return scaler

    def figures(self) -> dict[str, Any]:
        """``report.json``'s ``runs[].ha``: the layout, what happened, and the call counts."""
        return {
            "replicas": self.failover.replicas,
            "history": list(self.history),
            **asdict(self.counts),
            "answers_sha256": hashlib.sha256(b"".join(sorted(self._answers))).hexdigest(),
        }
