"""Small measurement helpers: percentiles, best-of timing, latency summaries, RSS."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
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
    start = clock()
    for i in range(n):
        wait = start + i * interval - clock()
        if wait > 0:
            time.sleep(wait)
        began = clock()
        fn()
        out.append(clock() - began)
    return out


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
