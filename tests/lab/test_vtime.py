"""The virtual-time event loop: timers fire in order at their virtual times, at no wall cost."""

from __future__ import annotations

import asyncio
import time

import pytest

from scaler.lab import vtime


def test_an_hour_of_timers_runs_in_virtual_time() -> None:
    async def main() -> list[tuple[float, str]]:
        loop = asyncio.get_running_loop()
        seen: list[tuple[float, str]] = []

        async def every(name: str, period: float) -> None:
            while loop.time() < 3600:
                await asyncio.sleep(period)
                seen.append((loop.time(), name))

        await asyncio.gather(every("hpa", 15.0), every("poll", 5.0))
        return seen

    started = time.perf_counter()
    seen = vtime.run(main)
    assert time.perf_counter() - started < 2.0
    hpa = [t for t, name in seen if name == "hpa"]
    assert hpa[:3] == pytest.approx([15.0, 30.0, 45.0]) and len(hpa) == 240
    assert [t for t, _ in seen] == sorted(t for t, _ in seen)


def test_wait_for_times_out_on_the_virtual_clock_and_events_still_wake() -> None:
    async def main() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        event = asyncio.Event()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(event.wait(), 7.5)
        timed_out = loop.time()
        loop.call_later(2.0, event.set)
        await asyncio.wait_for(event.wait(), 60)
        return timed_out, loop.time()

    assert vtime.run(main) == pytest.approx((7.5, 9.5))


def test_a_loop_that_can_never_wake_is_an_error_not_a_hang() -> None:
    async def main() -> None:
        await asyncio.Event().wait()

    with pytest.raises(vtime.Deadlock):
        vtime.run(main)
