"""The service's housekeeping task: every second, a slice of the retention sweep (in small
pieces, so the event loop never stalls), a reload of the HTTP certificates when their files
changed, and a snapshot when its interval has passed.
"""

from __future__ import annotations

import asyncio
import logging
import time

from scaler.persistence import Persistence
from scaler.store import Store
from scaler.tls import ReloadingSSLContext

__all__ = ["Housekeeping"]

logger = logging.getLogger(__name__)

_HOUSEKEEPING_SECONDS = 1.0
_GC_SLICE = 250
"""Series per ``Store.collect`` call between yields to the loop: ~0.7 ms of work when every
series has samples to trim (steady state), so a KEDA call that arrives meanwhile waits at most
that (1000 a slice was 2.7 ms: ~3 % of calls landed in one, which set the 3-ms p99 of
``sum by (deployment) (rate(...))``; same work per sweep, in four times as many slices)."""
_GC_SWEEP_SECONDS = 10.0
"""Visit every series once per this period rather than every tick: with 100k series a full
sweep every second cost ~40% of the loop and stalled it for tens of ms per slice
(bench/RESULTS.md, reaction phase). Expired series still go within this period, and queries
never read samples outside their window."""


class Housekeeping:
    """What the service does every second besides serving. See the module docstring."""

    def __init__(self, store: Store, persistence: Persistence, snapshot_interval_seconds: float) -> None:
        self.store = store
        self.persistence = persistence
        self.snapshot_interval_seconds = snapshot_interval_seconds
        """0: no periodic snapshot (only on stop)."""
        self.ssl: ReloadingSSLContext | None = None
        """The HTTP listener's certificates, once it serves TLS."""
        self._last_save = time.monotonic()

    async def run(self) -> None:
        """Forever (until cancelled); an error in one round is logged and the next round runs."""
        while True:
            await asyncio.sleep(_HOUSEKEEPING_SECONDS)
            try:
                count = self.store.series_count
                remaining = max(_GC_SLICE, int(count * _HOUSEKEEPING_SECONDS / _GC_SWEEP_SECONDS))
                while remaining > 0 and count:
                    self.store.collect(min(_GC_SLICE, remaining))
                    remaining -= _GC_SLICE
                    await asyncio.sleep(0)
                if self.ssl is not None:
                    self.ssl.maybe_reload()
                interval = self.snapshot_interval_seconds
                if interval and time.monotonic() - self._last_save >= interval:
                    self._last_save = time.monotonic()
                    await self.persistence.save()
            except Exception:  # a housekeeping bug must not kill the service
                logger.exception("housekeeping failed")
