"""The store's retention sweep: expired samples trimmed and empty series deleted, a few series
per call, so the application can run it in small slices and the event loop never stalls.

Successive calls walk the whole index round-robin; a series created meanwhile is visited on
the next round. Nothing reads a sample older than the retention (``Store.cutoff_ms``: PromQL
selectors and planner decisions read from it), so a series waiting for its visit costs memory,
never a different answer.
"""

from __future__ import annotations

from scaler.seriesindex import SeriesIndex

__all__ = ["RetentionSweep"]


class RetentionSweep:
    """The round-robin walk over one :class:`~scaler.seriesindex.SeriesIndex`."""

    def __init__(self, index: SeriesIndex) -> None:
        self._index = index
        self._queue: list[int] = []
        """Ids of the series still to visit in this round (taken from the end)."""

    def collect(self, cutoff_ms: int, budget: int | None = None) -> int:
        """Trim samples older than ``cutoff_ms`` and delete series left with none, visiting at
        most ``budget`` series; returns the series deleted."""
        if not self._queue:
            self._queue = list(self._index.by_id)
        take = len(self._queue) if budget is None else min(budget, len(self._queue))
        batch = self._queue[-take:]
        del self._queue[-take:]
        by_id = self._index.by_id
        deleted = 0
        for series_id in batch:
            series = by_id.get(series_id)
            if series is None:
                continue
            if series.n == 0 or series.last_ts < cutoff_ms:
                self._index.remove(series)
                deleted += 1
            elif series.first_ts < cutoff_ms:
                series.trim(cutoff_ms)
        return deleted

    def clear(self) -> None:
        """Forget the round in progress (every series was deleted)."""
        self._queue.clear()
