"""The planner's decision time (``--only planner``): what one GetMetrics of a planner trigger
costs, and how much of it holds the event loop.

A decision is taken in two parts (:mod:`scaler.planner`): :func:`~scaler.planner.take` selects
and copies the deployment's series on the event loop, and :func:`~scaler.planner.decide`
computes the decision from the copies in a worker thread. Two figures, each on a store keeping
the retention that ``manifests/keda-planner/scaler`` sets (read from the overlay, so the figure
follows it), filled by decode pods that export vLLM's series every second (a busy fleet: the
collectors' 5-s scrape holds a fifth of those samples):

* ``take`` against the whole decision computed inline (what held the loop before the split),
  the two ways alternated call by call;
* the event loop's lag (a 1-ms timer's overshoot) while decisions are answered 5 ms apart
  through the trigger's own path (:meth:`~scaler.trigger.kinds.PlannerTrigger.read_async`),
  with ``decide`` in the thread against inline, the two ways alternated round by round.

The machine's load falls on both ways alike.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from bench.report import Report, Row
from scaler import planner
from scaler.trigger import kinds
from tests.planner.fleet import Fleet, Load

OVERLAY = Path(__file__).resolve().parent.parent / "manifests" / "keda-planner" / "scaler" / "kustomization.yaml"
RETENTION_KEY = "METRIC_STORE_RETENTION_SECONDS"
LOOP_HOLD_TARGET_MS = 20.0
"""The event loop's hold per decision (the same target as the other loop-hold figures)."""
BUSY = Load(running=120, kv=0.6, generation_tokens=6000, requests=12, itl=0.02, lengths=(1000, 500))
"""Each pod: 120 sequences at 20 ms a token (6000 tokens/s), 500-token outputs of 1000-token prompts."""
META = {"planner": "decode", "deployment": "dec", "ttftTarget": "1s", "itlTarget": "50ms", "profile": "llama8b-h100"}


def overlay_retention_s(path: Path = OVERLAY) -> float:
    """The retention the planner overlay sets: the value of the JSON patch that replaces the
    container env entry its ``test`` op names ``METRIC_STORE_RETENTION_SECONDS``."""
    kustomization: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    for patch in kustomization.get("patches", []):
        ops: list[dict[str, Any]] = yaml.safe_load(patch.get("patch", "")) or []
        tested = [op for op in ops if op.get("op") == "test" and op.get("value") == RETENTION_KEY]
        named = {op["path"].rsplit("/", 1)[0] for op in tested}
        for op in ops:
            if op.get("op") == "replace" and op["path"].rsplit("/", 1)[0] in named and op["path"].endswith("/value"):
                return float(op["value"])
    raise ValueError(f"{path}: no patch sets {RETENTION_KEY}")


@dataclass(frozen=True)
class Timing:
    take_ms: np.ndarray[Any, np.dtype[np.float64]]
    decide_ms: np.ndarray[Any, np.dtype[np.float64]]
    inline_ms: np.ndarray[Any, np.dtype[np.float64]]
    desired: int


def busy_fleet(pods: int, retention_s: float) -> Fleet:
    """``pods`` decode pods that exported :data:`BUSY` every second for one retention."""
    fleet = Fleet("dec", retention_seconds=retention_s)
    fleet.add(*(f"dec-{i}" for i in range(pods)))
    fleet.run(int(retention_s), BUSY)
    return fleet


def measure(fleet: Fleet, calls: int) -> Timing:
    """``calls`` decisions each way, alternated, on ``fleet``'s store; the clock moves 5 s
    between calls (KEDA's polling), so the grid moves too."""
    spec = planner.parse_spec(META)
    # one untimed decision first: the first one after the store was filled took up to 5× the
    # next ones' take at 32 pods (25 against 8 ms), a cost paid once, not per call
    planner.plan(fleet.store, spec, fleet.now_ms)
    take_ms, decide_ms, inline_ms = [], [], []
    desired = -1
    for _ in range(calls):
        fleet.run(5, BUSY)
        now = fleet.now_ms
        started = time.perf_counter()
        snapshot = planner.take(fleet.store, spec, now)
        taken = time.perf_counter()
        split = planner.decide(snapshot)
        done = time.perf_counter()
        whole = planner.plan(fleet.store, spec, now)
        inline = time.perf_counter()
        assert split is not None and whole is not None and split.desired == whole.desired
        desired = split.desired
        take_ms.append((taken - started) * 1000)
        decide_ms.append((done - taken) * 1000)
        inline_ms.append((inline - done) * 1000)
    return Timing(np.array(take_ms), np.array(decide_ms), np.array(inline_ms), desired)


@dataclass(frozen=True)
class Lag:
    """A 1-ms timer's overshoot (ms) on the event loop while decisions are answered."""

    inline_ms: np.ndarray[Any, np.dtype[np.float64]]
    threaded_ms: np.ndarray[Any, np.dtype[np.float64]]


async def _overshoot(fleet: Fleet, trigger: kinds.PlannerTrigger, offload: kinds.Offload, calls: int) -> list[float]:
    """The overshoot of a 1-ms sleep, repeated while ``calls`` decisions are answered 5 ms
    apart through the trigger's own path (``read_async``: ``take`` on the loop, ``decide`` by
    ``offload``)."""
    lags: list[float] = []
    done = asyncio.Event()

    async def tick() -> None:
        while not done.is_set():
            started = time.perf_counter()
            await asyncio.sleep(0.001)
            lags.append((time.perf_counter() - started) * 1000 - 1.0)

    ticker = asyncio.create_task(tick())
    await asyncio.sleep(0.005)
    for _ in range(calls):
        await trigger.read_async(fleet.store, fleet.now_ms, offload)
        # KEDA's calls come apart (each trigger every few seconds): the loop runs between them
        await asyncio.sleep(0.005)
    done.set()
    await ticker
    return lags


def loop_lag(fleet: Fleet, calls: int, rounds: int = 3) -> Lag:
    """The event loop's lag while ``calls`` decisions run on ``fleet``'s store, inline (the
    whole decision on the loop) and with ``decide`` in a worker thread (the service), ``rounds``
    rounds alternated."""
    trigger = kinds.PlannerTrigger(planner.parse_spec(META), "planner-dec", 0.0, False)
    trigger.read(fleet.store, fleet.now_ms)  # untimed, as in :func:`measure`
    inline: list[float] = []
    threaded: list[float] = []
    for _ in range(rounds):
        inline += asyncio.run(_overshoot(fleet, trigger, kinds.inline, calls))
        threaded += asyncio.run(_overshoot(fleet, trigger, kinds.in_thread, calls))
    return Lag(np.array(inline), np.array(threaded))


def phase(report: Report, pod_counts: tuple[int, ...], calls: int, retention_s: float | None = None) -> None:
    retention = overlay_retention_s() if retention_s is None else retention_s
    for pods in pod_counts:
        # filled once for both figures (the fill takes most of the figure's time)
        fleet = busy_fleet(pods, retention)
        t = measure(fleet, calls)
        take50, take99 = np.percentile(t.take_ms, [50, 99])
        whole50 = float(np.percentile(t.inline_ms, 50))
        report.add(
            Row(
                f"planner decision, {pods} decode pods, {retention:.0f}-s retention: event loop held (take, p99)",
                f"{take99:.1f} ms (p50 {take50:.1f})",
                f"whole decision inline: p50 {whole50:.1f} ms",
                float(take50) / whole50,
                f"p99 ≤ {LOOP_HOLD_TARGET_MS:.0f} ms",
                bool(take99 <= LOOP_HOLD_TARGET_MS),
            )
        )
        report.note(
            f"planner, {pods} pods exporting every second over {retention:.0f} s: take p50 {take50:.1f} ms, "
            f"decide (worker thread) p50 {np.percentile(t.decide_ms, 50):.1f} ms, whole inline p50 {whole50:.1f} ms "
            f"(p99 {np.percentile(t.inline_ms, 99):.1f}); {calls} calls each way, alternated; desired {t.desired}"
        )
        lag = loop_lag(fleet, max(calls // 3, 1))
        worst_thread, worst_inline = float(lag.threaded_ms.max()), float(lag.inline_ms.max())
        report.add(
            Row(
                f"planner decisions, {pods} decode pods: event-loop lag (1-ms timer overshoot, worst)",
                f"{worst_thread:.1f} ms (p99 {np.percentile(lag.threaded_ms, 99):.1f})",
                f"decisions inline: worst {worst_inline:.1f} ms (p99 {np.percentile(lag.inline_ms, 99):.1f})",
                worst_thread / worst_inline if worst_inline > 0 else None,
                f"worst ≤ {LOOP_HOLD_TARGET_MS:.0f} ms",
                worst_thread <= LOOP_HOLD_TARGET_MS,
            )
        )
