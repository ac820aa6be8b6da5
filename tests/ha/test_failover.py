"""Issue 17's failover: three replicas fed through a fan-out (the simulator's exporter with one
queue-and-retry exporter per replica; real ``rotel`` collectors, one exporter each), a KEDA-like
client round-robining with one retry, ``StreamIsActive`` clients, then ``kill -9`` of one replica
mid-load and its restart from a peer's snapshot.

Each run prints its figures (``-s`` shows them); the README's "High availability" section
quotes them.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.ha.cluster import Cluster
from tests.ha.feed import DECODE, PREFILL, Exporter, Feed, Request, Rotel, SimFleet
from tests.ha.keda_client import RoundRobinKeda, StreamWatcher
from tests.integration.test_restart import answers

pytestmark = pytest.mark.slow

INTERVAL = 0.5
WAITING = {
    "metricQuery": f"sum(vllm:num_requests_waiting{{deployment={PREFILL}}})",
    "operationOverTime": "last_one",
    "window": "30s",
    "targetValue": "4",
}
DECODE_LOAD = {
    "query": f'sum(last_over_time(vllm:num_requests_running{{deployment="{DECODE}"}}[10s]))',
    "targetValue": "8",
}
SAME_ANSWERS = [
    f'sum(vllm:num_requests_waiting{{deployment="{PREFILL}"}})',
    f'sum(rate(vllm:prompt_tokens_total{{deployment="{PREFILL}"}}[10s]))',
    "histogram_quantile(0.9, sum by (le) (rate(vllm:time_to_first_token_seconds_bucket[30s])))",
    "count_over_time(vllm:num_requests_waiting[1m])",
    "sum(increase(vllm:generation_tokens_total[1m]))",
    "vllm:kv_cache_usage_perc",
]


@dataclass
class Load:
    """KEDA's polling, as fast as the client goes, in a thread; every answer is checked."""

    keda: RoundRobinKeda
    expected_waiting: float
    expected_decode: float
    wrong: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self._stop.is_set():
            for got, want, what in (
                (self.keda.metrics(WAITING), self.expected_waiting, "GetMetrics waiting"),
                (self.keda.active(WAITING), True, "IsActive waiting"),
                (self.keda.metrics(DECODE_LOAD), self.expected_decode, "GetMetrics decode"),
            ):
                if got is not None and got != want:
                    self.wrong.append(f"{what}: {got} != {want}")
            time.sleep(0.01)

    def stop(self) -> None:
        self._stop.set()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(3, tmp_path, env={"WARMUP_SECONDS": "60", "PEER_TIMEOUT_SECONDS": "10"})
    yield c
    c.stop()


def _samples_in(http: str, at: float, seconds: float) -> int:
    query = f"sum(count_over_time(vllm:num_requests_waiting[{int(seconds * 1000)}ms]))"
    reply = httpx.get(f"{http}/api/v1/query", params={"query": query, "time": at}, timeout=10).json()
    return int(float(reply["data"]["result"][0]["value"][1]))


def _wait(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def failover(cluster: Cluster, fleet: SimFleet, name: str) -> dict[str, Any]:
    """Kill replica 1 mid-load, restart it; assert issue 17's outcomes; return the figures."""
    waiting, decode = float(fleet.waiting("prefill")), float(2 * fleet.waiting("decode"))
    targets = [r.keda for r in cluster.replicas]
    keda = RoundRobinKeda(targets)
    _wait(lambda: all(keda.metrics(WAITING) == waiting for _ in targets), 20, "every replica to hold the data")
    keda.outcome = type(keda.outcome)()
    load = Load(keda, waiting, decode)
    loader = threading.Thread(target=load.run, daemon=True)
    streams = [StreamWatcher(targets, WAITING, first=i).start() for i in range(3)]
    loader.start()
    try:
        time.sleep(1.5)
        killed_at = time.monotonic()
        kill_wall = time.time()
        cluster[1].kill()
        time.sleep(3.0)
        kill_window = time.time() - kill_wall
        calls_while_down = keda.outcome.calls
        restart_wall = time.time()
        cluster[1].start(timeout=30)
        restarted = cluster[1]
        time.sleep(1.0)
    finally:
        load.stop()
        loader.join(timeout=10)
        for stream in streams:
            stream.stop()
        keda.close()
    out = keda.outcome
    assert out.failed == 0, out.errors
    assert load.wrong == [], load.wrong[:5]
    assert out.retried >= 1, "no call landed on the killed replica: the test did not test anything"
    # The stream held on the killed replica broke, reconnected to the next one and got the current state.
    moved = streams[1]
    assert moved.breaks, "the stream on the killed replica did not break"
    assert moved.reconnects, moved.breaks
    assert [m.active for m in moved.messages if m.at > killed_at] == [True]
    for stream in streams:
        current = stream.current()
        assert current is not None and current.active is True
    # A dead replica costs the live ones nothing: every sample of the kill window arrived.
    expected = round(kill_window / INTERVAL) * len(fleet.pods)
    for live in (cluster[0], cluster[2]):
        got = _samples_in(live.http, kill_wall + kill_window, kill_window)
        assert got >= expected - len(fleet.pods), (live.index, got, expected)
    # The restarted replica is Ready from a peer's snapshot, in <= 10 s, answering as its peers.
    info = restarted.info()
    warm = info["peers"]["warmStart"]  # type: ignore[index]
    assert warm["outcome"] == "restored", info["peers"]
    assert restarted.ready_seconds <= 10.0
    at = restart_wall - 0.5
    reference = answers(cluster[0].http, at, SAME_ANSWERS)
    assert all(r for r in reference), reference
    assert answers(restarted.http, at, SAME_ANSWERS) == reference
    assert answers(cluster[2].http, at, SAME_ANSWERS) == reference
    figures = {
        "fan-out": name,
        "calls": out.calls,
        "callsDuringKillWindow": calls_while_down,
        "retried": out.retried,
        "failedAfterRetry": out.failed,
        "retriedCallMaxMs": round(1000 * max(out.retried_latency), 1),
        "streamReconnectMs": round(1000 * max(moved.reconnects), 1),
        "restartToReadySeconds": round(restarted.ready_seconds, 2),
        "peerSnapshotBytes": warm["bytes"],
        "peerFetchSeconds": warm["seconds"],
        "restoredSeries": info["snapshot"]["loaded"]["series"],  # type: ignore[index]
    }
    print(f"\nHA figures: {json.dumps(figures)}")
    return figures


def test_kill_and_restart_with_the_simulators_fan_out(cluster: Cluster) -> None:
    fleet = SimFleet(INTERVAL)
    exporters = [Exporter(r.otlp) for r in cluster.replicas]
    feed = Feed(fleet, [e.put for e in exporters]).start()
    try:
        cluster.start()
        failover(cluster, fleet, "simulator exporter, one per replica")
        # The killed replica's exporter queued what it could not deliver and sent it after the restart.
        _wait(lambda: exporters[1].pending == 0, 10, "the killed replica's queue to drain")
        assert exporters[1].failures > 0 and exporters[1].dropped == 0
    finally:
        feed.stop()
        for exporter in exporters:
            exporter.close()


def test_kill_and_restart_with_rotel_collectors(cluster: Cluster, tmp_path: Path) -> None:
    fleet = SimFleet(INTERVAL)
    collectors = [Rotel(r.otlp, tmp_path / f"rotel-{r.index}.log") for r in cluster.replicas]
    sinks: list[Callable[[Request], None]] = [c.put for c in collectors]
    feed = Feed(fleet, sinks).start()
    try:
        cluster.start()
        failover(cluster, fleet, "rotel collectors, one exporter per replica")
    finally:
        feed.stop()
        for collector in collectors:
            collector.close()
