"""The service's housekeeping task: every second, a slice of the retention sweep (in small
pieces, so the event loop never stalls), a reload of the HTTP certificates when their files
changed, and a snapshot when its interval has passed.

The sweep's pieces are low-priority turns of the loop (:class:`~scaler.lowpriority.LowPriority`,
shared with ingest): a ready KEDA step runs before the next piece. A piece is sized to take
about :data:`_PIECE_SECONDS` of CPU: how long a piece takes depends on how many samples each series
drops (a series fed 30 times a second trims ~30 samples a second, with its array moved), so a
fixed count of series is ~0.7 ms in a store fed every few seconds and several ms in one fed
many times a second, and each of a KEDA call's turns of the loop may wait behind one piece.
"""

from __future__ import annotations

import asyncio
import logging
import time

from scaler.lowpriority import LowPriority
from scaler.persistence import Persistence
from scaler.store import Store
from scaler.tls import ReloadingSSLContext

__all__ = ["Housekeeping"]

logger = logging.getLogger(__name__)

_HOUSEKEEPING_SECONDS = 1.0
_GC_SLICE = 250
"""Most series per ``Store.collect`` call between yields to the loop: ~0.7 ms of work when every
series has a few samples to trim (steady state), so a KEDA call that arrives meanwhile waits at
most that (1000 a slice was 2.7 ms: ~3 % of calls landed in one, which set the 3-ms p99 of
``sum by (deployment) (rate(...))``; same work per sweep, in four times as many slices)."""
_MIN_SLICE = 16
"""Fewest series per ``Store.collect`` call, however long each takes."""
_PIECE_SECONDS = 0.0003
"""The duration a piece of the sweep aims at (as an ingest slice, ``receiver.NATIVE_SLICE_SAMPLES``):
the next piece's series count is scaled from the last one's duration (at most :data:`_GC_SLICE`,
at least :data:`_MIN_SLICE`)."""
_cpu_time = time.thread_time
"""What a piece's duration is measured with: its own work, not a preemption meanwhile."""
_GC_SWEEP_SECONDS = 10.0
"""Visit every series once per this period rather than every tick: with 100k series a full
sweep every second cost ~40% of the loop and stalled it for tens of ms per slice
(bench/RESULTS.md, reaction phase). Expired series still go within this period, and queries
never read samples outside their window."""


class Housekeeping:
    """What the service does every second besides serving. See the module docstring."""

    def __init__(
        self,
        store: Store,
        persistence: Persistence,
        snapshot_interval_seconds: float,
        turns: LowPriority | None = None,
    ) -> None:
        self.store = store
        self.persistence = persistence
        self.snapshot_interval_seconds = snapshot_interval_seconds
        """0: no periodic snapshot (only on stop)."""
        self.ssl: ReloadingSSLContext | None = None
        """The HTTP listener's certificates, once it serves TLS."""
        self._last_save = time.monotonic()
        self.turns = turns or LowPriority()
        """The yields between pieces of the sweep (the receivers' ones, so neither defers to the other)."""
        self._piece = _GC_SLICE
        """Series in the next piece of the sweep."""

    async def run(self) -> None:
        """Forever (until cancelled); an error in one round is logged and the next round runs."""
        while True:
            await asyncio.sleep(_HOUSEKEEPING_SECONDS)
            try:
                await self.sweep()
                if self.ssl is not None:
                    self.ssl.maybe_reload()
                interval = self.snapshot_interval_seconds
                if interval and time.monotonic() - self._last_save >= interval:
                    self._last_save = time.monotonic()
                    await self.persistence.save()
            except Exception:  # a housekeeping bug must not kill the service
                logger.exception("housekeeping failed")

    async def sweep(self) -> None:
        """One second's share of the retention sweep, in pieces of about :data:`_PIECE_SECONDS`
        with a low-priority yield after each."""
        count = self.store.series_count
        remaining = max(_GC_SLICE, int(count * _HOUSEKEEPING_SECONDS / _GC_SWEEP_SECONDS)) if count else 0
        while remaining > 0:
            piece = min(self._piece, remaining)
            began = _cpu_time()
            self.store.collect(piece)
            took = _cpu_time() - began
            remaining -= piece
            if piece == self._piece or took > _PIECE_SECONDS:  # a short last piece says little
                scaled = int(piece * _PIECE_SECONDS / max(took, 1e-6))
                self._piece = max(_MIN_SLICE, min(_GC_SLICE, scaled))
            await self.turns.pause()
