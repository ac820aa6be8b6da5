"""LowPriority pauses on a real asyncio loop: other ready work runs before the next slice, and a
flood of it slows the paused work without starving it."""

from __future__ import annotations

import asyncio

from scaler import lowpriority
from scaler.lowpriority import LowPriority


async def _slices(turns: LowPriority, order: list[str], n: int, name: str = "slice") -> None:
    for i in range(n):
        order.append(f"{name}{i}")
        await turns.pause()


async def _steps(order: list[str], n: int) -> None:
    """A KEDA call's turns of the loop: each step makes the next one ready."""
    for i in range(n):
        order.append(f"keda{i}")
        await asyncio.sleep(0)


def test_a_ready_step_runs_before_the_next_slice() -> None:
    asyncio.run(_a_ready_step_runs_before_the_next_slice())


async def _a_ready_step_runs_before_the_next_slice() -> None:
    turns, order = LowPriority(), list[str]()
    await asyncio.gather(_slices(turns, order, 4), _steps(order, 4))
    # with plain sleep(0) the two would alternate: slice0 keda0 slice1 keda1 ...
    assert order.index("keda1") < order.index("slice1")
    assert order.index("keda2") < order.index("slice2")
    assert turns.deferred >= 2
    assert turns.paused == 0


def test_paused_work_does_not_defer_to_itself() -> None:
    asyncio.run(_paused_work_does_not_defer_to_itself())


async def _paused_work_does_not_defer_to_itself() -> None:
    """Two ingest tasks alone: neither gives turns away to the other, so nothing is slowed."""
    turns, order = LowPriority(), list[str]()
    await asyncio.gather(_slices(turns, order, 5, "a"), _slices(turns, order, 5, "b"))
    assert turns.deferred <= 1  # the one: gather's callback when the first task ends is other work
    assert order[:4] == ["a0", "b0", "a1", "b1"]


def test_a_flood_of_other_work_does_not_starve_it() -> None:
    asyncio.run(_a_flood_of_other_work_does_not_starve_it())


async def _a_flood_of_other_work_does_not_starve_it() -> None:
    turns, order = LowPriority(), list[str]()
    stop = asyncio.Event()

    async def flood() -> None:
        while not stop.is_set():
            await asyncio.sleep(0)

    flooding = asyncio.create_task(flood())
    turn = 0
    ingest = asyncio.create_task(_slices(turns, order, 10))
    while not ingest.done():
        turn += 1
        await asyncio.sleep(0)
        assert turn <= 10 * (lowpriority.MAX_DEFERRED_TURNS + 1) + 5
    stop.set()
    await flooding
    assert order == [f"slice{i}" for i in range(10)]
    assert turns.deferred <= 10 * lowpriority.MAX_DEFERRED_TURNS


def test_a_cancelled_pause_leaves_the_count_right() -> None:
    asyncio.run(_a_cancelled_pause_leaves_the_count_right())


async def _a_cancelled_pause_leaves_the_count_right() -> None:
    turns = LowPriority()
    task = asyncio.create_task(turns.pause())
    await asyncio.sleep(0)
    assert turns.paused == 1
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert turns.paused == 0
