"""A replica's warm start and warm-up: the data it loads before it binds, and when its store is
complete enough that "no data" means zero rather than "not yet".

* **Warm start** (:meth:`WarmUp.warm_start`, before any listener binds): a snapshot from a
  peer (``PEERS``), else the snapshot file. Nothing is accepted meanwhile, so no sample has to
  be merged with the snapshot: the collectors' exporters retry what they could not deliver,
  and it arrives after the bind.
* **Warm-up** (:meth:`WarmUp.warming`): within ``WARMUP_SECONDS`` of start, a trigger's
  missing data is held, not read as zero. The replica is *warmed* once it holds data, a peer
  gave it a snapshot, or the warm-up has passed; with ``PEERS`` it is Ready only then.
"""

from __future__ import annotations

import logging
from typing import Any

from scaler.model import Clock
from scaler.peers import Fetched, PeerClient
from scaler.persistence import Persistence
from scaler.store import Store

__all__ = ["WarmUp"]

logger = logging.getLogger(__name__)


class WarmUp:
    """One replica's warm start and warm-up. See the module docstring."""

    def __init__(
        self, store: Store, persistence: Persistence, peers: PeerClient, seconds: float, monotonic: Clock
    ) -> None:
        """``seconds`` of warm-up from now on ``monotonic``."""
        self.store = store
        self.persistence = persistence
        self.peers = peers
        self._monotonic = monotonic
        self._until = monotonic() + seconds
        self._from_peer = False
        self.peer_status: dict[str, Any] = {"peers": [str(p) for p in peers.sources]}
        """The peers and the warm start's outcome, as ``/info`` shows them."""

    async def warm_start(self) -> None:
        """A snapshot from a peer (``PEERS``), else the snapshot file (see the module docstring)."""
        if self.peers.configured:
            fetched = await self.peers.warm_start()
            if fetched is not None:
                self.restore_from_peer(fetched)
                return
            self.peer_status["warmStart"] = {"outcome": "none"}
            logger.warning("no peer gave a snapshot: the snapshot file, if any, and the warm-up apply")
        self.persistence.load()

    def restore_from_peer(self, fetched: Fetched) -> None:
        """Put a peer's snapshot into the empty store: this replica is then warmed (and Ready).
        The warm start's second half; the evaluation lab's restarted replicas call it too."""
        self.persistence.restore(fetched.snapshot, f"peer {fetched.peer}", fetched.seconds)
        self._from_peer = True
        self.peer_status["warmStart"] = {
            "outcome": "restored",
            "peer": fetched.peer,
            "bytes": fetched.size,
            "seconds": round(fetched.seconds, 3),
        }

    def warmed(self) -> bool:
        """The replica holds data (from a peer, the snapshot file or the collectors), a peer gave
        it a snapshot (even an empty one: the peer was warm), or the warm-up has passed."""
        return self._from_peer or self.store.series_count > 0 or not self.warming()

    def warming(self) -> bool:
        """Within WARMUP_SECONDS of start: "no data" means "not yet", not "zero"."""
        return self._monotonic() < self._until

    def remaining(self) -> float:
        return max(0.0, self._until - self._monotonic())

    def reason(self) -> str:
        """Why the replica is warmed, in words (for the log line that says it is Ready)."""
        if self._from_peer:
            return "warmed from a peer's snapshot"
        if self.store.series_count:
            return "the store holds data"
        return "no peers (PEERS unset)" if not self.peers.configured else "the warm-up has passed without data"
