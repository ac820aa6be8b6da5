"""An asyncio event loop whose clock is virtual: waiting costs no wall time.

``loop.time()`` starts at 0 and only moves when the loop would otherwise block: instead
of sleeping until the next timer, the selector jumps the clock to it. Everything written
against the event loop — ``asyncio.sleep``, ``wait_for`` time-outs, ``call_later`` — then
runs unchanged at any speed: the KEDA/HPA emulation (its 15 s syncs and polling
intervals), the scaler's own ``StreamIsActive`` recheck, the collectors' scrapes. Code that
reads the wall clock directly is unaffected, which is why the lab injects ``loop.time``
(plus a fixed epoch) as the clock of the scaler's store.

A run must have no real I/O: a loop with nothing scheduled and nothing ready would wait
forever, and raises :class:`Deadlock` instead.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")


class Deadlock(RuntimeError):
    """Nothing is scheduled and nothing can wake the loop."""


class _Selector(selectors.DefaultSelector):
    """The loop's selector: never blocks; a timeout advances the virtual clock instead."""

    def __init__(self, clock: VirtualClock) -> None:
        super().__init__()
        self.clock = clock

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is None:
            raise Deadlock("virtual-time loop: nothing is scheduled and nothing is ready")
        if timeout > 0:
            self.clock.now += timeout
        events: list[tuple[selectors.SelectorKey, int]] = super().select(0)
        return events


class VirtualClock:
    now: float = 0.0


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """``asyncio.SelectorEventLoop`` on a virtual clock (see the module docstring)."""

    def __init__(self) -> None:
        self._virtual = VirtualClock()
        super().__init__(_Selector(self._virtual))

    def time(self) -> float:
        return self._virtual.now


def run(main: Callable[[], Awaitable[T]]) -> T:
    """Run ``main()`` to completion on a fresh virtual-time loop."""
    with asyncio.Runner(loop_factory=VirtualTimeLoop) as runner:
        result: Any = runner.run(main())  # type: ignore[arg-type]
        return result  # type: ignore[no-any-return]
