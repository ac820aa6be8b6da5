"""Low-priority turns of the event loop: ingest, the retention sweep and the HTTP API's queries
yield to every other ready callback.

Storing a large Export runs in slices with a yield to the loop between them, but a plain
``await asyncio.sleep(0)`` puts the next slice in the very next turn, beside whatever else became
ready: a KEDA call takes several turns (gRPC's completion events, the handler, sending the
answer), and each of them waited behind one slice. :meth:`LowPriority.pause` yields and then
keeps yielding while anything *other than low-priority work* is ready, so a ready KEDA step runs
before the next slice; a slice then only delays a KEDA event that arrives while it runs.

The check reads the length of the loop's ready queue (``BaseEventLoop._ready``, a private
attribute of CPython's asyncio loops). A loop without it (e.g. uvloop) gets the plain
``sleep(0)``. At most :data:`MAX_DEFERRED_TURNS` turns are given away per pause, so a stream of
other work (thousands of StreamIsActive wake-ups) slows ingest but never starves it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sized

MAX_DEFERRED_TURNS = 3
"""Turns of the loop a pause gives away to other ready work before it resumes regardless. 3, not
1: under half-capacity ingest a GetMetrics' p99 went from 4.2–5.4 ms to 3.3–4.5 ms (six runs
each, alternated in one script), its p50 from 2.0–2.8 to 1.6–2.2 ms (8: no better than 3)."""


class LowPriority:
    """The pauses of background work: the receivers' ingest slices, the retention sweep's pieces
    and the slices of the HTTP API's queries (one instance for all of them, so they do not
    defer to each other's paused steps)."""

    def __init__(self) -> None:
        self.paused = 0
        """Tasks inside :meth:`pause` (each has one step in the ready queue while it yields)."""
        self.deferred = 0
        """Turns given away to other work so far (for tests and diagnostics)."""

    async def pause(self) -> None:
        """Yield to the loop; resume once nothing but other paused low-priority work is ready."""
        ready: Sized | None = getattr(asyncio.get_running_loop(), "_ready", None)
        self.paused += 1
        try:
            await asyncio.sleep(0)
            if ready is None:
                return
            for _ in range(MAX_DEFERRED_TURNS):
                # while this task runs, every other paused task has exactly one step queued
                if len(ready) <= self.paused - 1:
                    return
                self.deferred += 1
                await asyncio.sleep(0)
        finally:
            self.paused -= 1
