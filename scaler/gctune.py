"""Keeping the cyclic garbage collector's pauses short while the store grows.

Every series is a GC-tracked :class:`~scaler.series.Series` that never takes part in a reference
cycle, and a full (generation-2) collection walks all of them: measured in the server at 100k
series, ~320k tracked objects and 60–400 ms of one pause on 2 shared cores, during which no
KEDA call is answered. Two measures bound that:

* **thresholds** ``(10_000, 5, 100)``: generation 0 is collected every 10k net allocations and
  generation 1 after 5 of those, so one young pass walks at most ~10k objects and one
  generation-1 pass at most ~50k survivors. Measured in the server while 10,000 StreamIsActive
  streams open at once (every stream's task, coroutine and trigger survive): with
  ``(50_000, 10, 100)`` the young passes took up to 24-35 ms and one generation-1 pass 237-399 ms
  (no KEDA call answered meanwhile); with these, at most 9 ms and 37 ms, for about the same total
  GC time (0.42-0.72 s vs 0.48 s of the ~6 s of CPU the opening takes). Smaller, more frequent
  passes cost nothing extra: an object is walked once per generation it passes through;
* **freezing what survived**: after a full collection, when the objects it kept (its survivors,
  minus those already frozen) outnumber the frozen ones, :func:`gc.freeze` moves them all to the
  permanent generation, which later collections skip. A store that grows to N series thus freezes
  O(log N) times and each full collection walks only what arrived since the last freeze. The
  start-up objects (modules, classes, functions) are frozen at once.

The cost: an object frozen while alive that later becomes garbage *inside a reference cycle* is
never reclaimed (objects without cycles, such as deleted series, are still freed by reference
counting). What is frozen is what survived a full collection at one of O(log N) instants, so the
amount is bounded by O(log N) × the cyclic objects of requests in flight at those instants.
"""

from __future__ import annotations

import gc
from typing import Any

THRESHOLDS = (10_000, 5, 100)
FREEZE_MIN = 50_000
"""Survivors a full collection must leave (beyond the frozen) before they are frozen: below it a
full collection is short anyway."""


def install() -> None:
    """Set the thresholds, freeze the start-up objects, and freeze again as the heap grows."""
    gc.set_threshold(*THRESHOLDS)
    gc.collect()
    gc.freeze()
    if _after_collection not in gc.callbacks:
        gc.callbacks.append(_after_collection)


def _after_collection(phase: str, info: dict[str, Any]) -> None:
    if phase != "stop" or info["generation"] != 2:
        return
    survivors = len(gc.get_objects(2))
    if survivors >= max(FREEZE_MIN, gc.get_freeze_count()):
        gc.freeze()
