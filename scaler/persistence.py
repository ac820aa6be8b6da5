"""Warm restarts: load the store's snapshot on start, save it on shutdown (and, optionally,
periodically), logging and counting every outcome. The file format is :mod:`scaler.snapshot`;
the same format, captured by :meth:`Persistence.capture`, is what ``GET /snapshot`` serves to
peers, and a peer's snapshot is restored through :meth:`Persistence.restore` like a file's.

A damaged or unreadable snapshot never stops the service: it is logged, moved aside to
``<path>.corrupt`` (so the next save does not silently destroy the evidence) and the service
starts empty.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

from scaler import snapshot
from scaler.selfmetrics import SelfMetrics
from scaler.store import Store

logger = logging.getLogger(__name__)

_CAPTURE_SLICE = 2000
"""Series copied between yields to the event loop while a running service saves."""


class Persistence:
    def __init__(self, path: str, store: Store, metrics: SelfMetrics) -> None:
        self.path = Path(path) if path else None
        self.store = store
        self.metrics = metrics
        self.status: dict[str, Any] = {"path": path or None}
        self._saving = asyncio.Lock()
        self._writing: asyncio.Future[int] | None = None
        """The file write in its thread: it outlives a cancelled periodic save, and the next
        save waits for it, so an older snapshot can never replace a newer one."""

    def load(self) -> None:
        """Restore the snapshot file, if any, into the (empty) store."""
        if self.path is None:
            return
        started = time.perf_counter()
        try:
            loaded = snapshot.read(self.path)
        except FileNotFoundError:
            logger.info("no snapshot at %s: starting empty", self.path)
            self.status["loaded"] = {"outcome": "absent"}
            return
        except snapshot.SnapshotError as exc:
            aside = self.path.with_name(self.path.name + ".corrupt")
            try:
                self.path.replace(aside)
            except OSError:
                aside = self.path
            logger.error("snapshot %s is unusable (%s): starting empty; the file is kept at %s", self.path, exc, aside)
            self.status["loaded"] = {"outcome": "unusable", "error": str(exc)}
            return
        self.restore(loaded, str(self.path), time.perf_counter() - started)

    def restore(self, loaded: snapshot.Snapshot, source: str, seconds: float) -> snapshot.Restored:
        """Put a checked snapshot (from the file or a peer) into the store; log and show it in ``/info``."""
        started = time.perf_counter()
        result = snapshot.restore(self.store, loaded)
        seconds += time.perf_counter() - started
        age = max(0.0, (self.store.now_ms() - loaded.created_ms) / 1000)
        self.metrics.snapshot_loaded_series.set(result.series)
        self.status["loaded"] = {
            "outcome": "restored",
            "source": source,
            "series": result.series,
            "samples": result.samples,
            "skippedSeries": result.skipped_series,
            "ageSeconds": round(age, 3),
            "seconds": round(seconds, 3),
        }
        logger.info(
            "snapshot from %s restored: %d series, %d samples (%d series expired or over limits), "
            "taken %.1fs ago, in %.2fs",
            source,
            result.series,
            result.samples,
            result.skipped_series,
            age,
            seconds,
        )
        return result

    async def capture(self) -> snapshot.Snapshot:
        """The whole store, copied in slices so the event loop keeps serving."""
        capture = snapshot.Capture()
        for i, series in enumerate(self.store.series()):
            capture.add(series)
            if i % _CAPTURE_SLICE == _CAPTURE_SLICE - 1:
                await asyncio.sleep(0)
        return capture.finish(self.store.now_ms())

    async def save(self) -> None:
        """Copy the store in slices (the loop keeps serving), then write the file off the loop."""
        if self.path is None:
            return
        async with self._saving:
            if self._writing is not None and not self._writing.done():
                await asyncio.wait([self._writing])
            started = time.perf_counter()
            taken = await self.capture()
            self._writing = asyncio.ensure_future(asyncio.to_thread(snapshot.write, self.path, taken))
            self._writing.add_done_callback(_retrieve)
            try:
                size = await asyncio.shield(self._writing)
            except OSError as exc:
                self.metrics.snapshot_writes.labels("error").inc()
                self.status["saved"] = {"outcome": "error", "error": str(exc)}
                logger.error("cannot write snapshot %s: %s", self.path, exc)
                return
            seconds = time.perf_counter() - started
            self.metrics.snapshot_writes.labels("ok").inc()
            self.status["saved"] = {
                "outcome": "ok",
                "at": taken.created_ms / 1000,
                "series": len(taken.labels),
                "samples": taken.samples,
                "bytes": size,
                "seconds": round(seconds, 3),
            }
            logger.info(
                "snapshot %s saved: %d series, %d samples, %d bytes in %.2fs",
                self.path,
                len(taken.labels),
                taken.samples,
                size,
                seconds,
            )


def _retrieve(future: asyncio.Future[int]) -> None:
    """Mark a write's exception as seen when nobody awaits it any more (a cancelled save):
    the awaiting save logs and counts it; otherwise asyncio would warn at garbage collection."""
    if not future.cancelled():
        future.exception()
