"""Small measurement helpers: percentiles, best-of timing, latency summaries, RSS, and the
scheduler's per-thread counters (how long a thread ran and how long it waited for a CPU)."""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100) of unsorted ``values``."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


@dataclass(frozen=True)
class Latency:
    """A latency sample summary in milliseconds."""

    n: int
    p50: float
    p99: float
    mean: float

    @staticmethod
    def of(seconds: Sequence[float]) -> Latency:
        ms = [s * 1000 for s in seconds]
        return Latency(len(ms), percentile(ms, 50), percentile(ms, 99), sum(ms) / len(ms) if ms else math.nan)

    def __str__(self) -> str:
        return f"p50 {self.p50:.3f} ms, p99 {self.p99:.3f} ms (n={self.n})"


def time_calls(fn: Callable[[], object], n: int, warmup: int = 20) -> list[float]:
    """Durations in seconds of ``n`` sequential calls of ``fn`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    out = []
    clock = time.perf_counter
    for _ in range(n):
        start = clock()
        fn()
        out.append(clock() - start)
    return out


def time_paced(fn: Callable[[], object], n: int, interval: float, warmup: int = 20) -> list[float]:
    """Durations in seconds of ``n`` calls of ``fn`` started ``interval`` seconds apart (as a
    client polling the server, not a saturating one), after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    out = []
    clock = time.perf_counter
    for _ in paced(n, interval):
        began = clock()
        fn()
        out.append(clock() - began)
    return out


def paced(n: int, interval: float) -> Iterator[int]:
    """``0 .. n-1``, each when its turn comes: ``interval`` seconds after the previous one's (sleeping
    until then; at once when late)."""
    clock = time.perf_counter
    start = clock()
    for i in range(n):
        wait = start + i * interval - clock()
        if wait > 0:
            time.sleep(wait)
        yield i


@dataclass(frozen=True)
class CallTrace:
    """One timed call and what the scheduler did meanwhile (seconds)."""

    seconds: float
    server_run: float
    """The server's event-loop thread on a CPU: the call's own work and whatever else the loop
    ran while the call was in flight (ingest slices, other calls)."""
    server_wait: float
    """The server's event-loop thread runnable but waiting for a CPU."""
    helpers_wait: float
    """The server's other threads (gRPC's I/O and completion-queue threads) waiting for a CPU."""
    client_wait: float
    """The calling thread waiting for a CPU (woken by the answer, not yet running)."""


class Scheduler:
    """Run and run-queue wait times of a process's threads and of the calling thread, from
    ``/proc/<pid>/task/<tid>/schedstat`` (kept open: one ``pread`` each per reading). The
    process's thread ``pid`` is its main thread (the service's event loop); its other threads are
    those it has when this is made (a thread that ends keeps its last reading)."""

    def __init__(self, pid: int) -> None:
        tids = sorted(int(t) for t in os.listdir(f"/proc/{pid}/task"))
        self._fds = [os.open(f"/proc/{pid}/task/{tid}/schedstat", os.O_RDONLY) for tid in tids]
        self._main = tids.index(pid)
        self._fds.append(os.open(f"/proc/self/task/{threading.get_native_id()}/schedstat", os.O_RDONLY))
        self._last = [(0, 0)] * len(self._fds)

    def close(self) -> None:
        for fd in self._fds:
            os.close(fd)

    def read(self) -> tuple[int, int, int, int]:
        """Nanoseconds: server loop run, server loop wait, other server threads' wait, client wait."""
        for i, fd in enumerate(self._fds):
            try:
                fields = os.pread(fd, 128, 0).split()
            except OSError:  # the thread ended
                continue
            self._last[i] = (int(fields[0]), int(fields[1]))
        stats = self._last
        (main_run, main_wait), client = stats[self._main], stats[-1][1]
        helpers = sum(w for i, (_, w) in enumerate(stats[:-1]) if i != self._main)
        return main_run, main_wait, helpers, client

    def time_paced(self, fn: Callable[[], object], n: int, interval: float, warmup: int = 20) -> list[CallTrace]:
        """:func:`time_paced` of ``fn`` (called from this thread), each call with the scheduler's
        counters read just before and just after it."""
        for _ in range(warmup):
            fn()
        out = []
        clock = time.perf_counter
        for _ in paced(n, interval):
            before = self.read()
            began = clock()
            fn()
            seconds = clock() - began
            after = self.read()
            run, loop_wait, helpers, client = (1e-9 * (a - b) for a, b in zip(after, before, strict=True))
            out.append(CallTrace(seconds, run, loop_wait, helpers, client))
        return out


@dataclass(frozen=True)
class TailShares:
    """Where the slowest calls' time went: means over the calls at or above a percentile."""

    q: float
    n: int
    seconds: float
    server_run: float
    server_wait: float
    helpers_wait: float
    client_wait: float

    @staticmethod
    def of(traces: Sequence[CallTrace], q: float = 99.0) -> TailShares:
        ordered = sorted(traces, key=lambda t: t.seconds)
        tail = ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1)) :]

        def mean(field: Callable[[CallTrace], float]) -> float:
            return sum(field(t) for t in tail) / len(tail) if tail else math.nan

        return TailShares(
            q,
            len(tail),
            mean(lambda t: t.seconds),
            mean(lambda t: t.server_run),
            mean(lambda t: t.server_wait),
            mean(lambda t: t.helpers_wait),
            mean(lambda t: t.client_wait),
        )

    def __str__(self) -> str:
        # the waits overlap (the gRPC threads' are summed over threads): not parts of a sum
        label = "all calls" if self.q <= 0 else f"calls ≥ p{self.q:g} (n={self.n})"
        return (
            f"{label}: mean {1000 * self.seconds:.2f} ms; meanwhile the server loop ran "
            f"{1000 * self.server_run:.2f} ms and waited {1000 * self.server_wait:.2f} ms for a CPU, the server's "
            f"gRPC threads waited {1000 * self.helpers_wait:.2f} ms (summed), the client "
            f"{1000 * self.client_wait:.2f} ms"
        )


def best_of(fn: Callable[[], object], repeats: int) -> float:
    """The fastest of ``repeats`` runs of ``fn`` in seconds (robust to a noisy, shared machine)."""
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def best_ratio(ours: Callable[[], object], baseline: Callable[[], object], repeats: int) -> float:
    """min(ours) / min(baseline) over ``repeats`` interleaved runs of each, so a burst of noise
    on a shared machine hits both sides rather than one."""
    best_ours = best_base = math.inf
    clock = time.perf_counter
    for _ in range(repeats):
        start = clock()
        ours()
        middle = clock()
        baseline()
        end = clock()
        best_ours = min(best_ours, middle - start)
        best_base = min(best_base, end - middle)
    return best_ours / best_base


def rss_mib(pid: int | str = "self") -> float:
    """Resident set size of a process in MiB (``VmRSS`` of /proc/<pid>/status)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")
