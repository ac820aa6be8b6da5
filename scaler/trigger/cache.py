"""Parsed triggers and compiled queries kept between KEDA's calls (bounded LRUs)."""

from __future__ import annotations

from collections.abc import Mapping

from scaler.config import TriggerDefaults
from scaler.trigger.kinds import AnyTrigger
from scaler.trigger.metadata import parse_any
from scaler.trigger.queries import Lru, Queries


class TriggerCache:
    """LRU cache of parsed triggers keyed by their metadata (bad metadata is cached too), and of
    their compiled queries keyed by the query's own metadata, so that triggers that differ only
    elsewhere (``targetValue``, ``metricName``, …: several ScaledObjects or triggers on one
    query) share one compiled Query. Both hold at most ``size`` entries: the service sizes it
    ``max(4096, MAX_STREAMS)``, a trigger per open stream (~2.6 KB each with its Query)."""

    def __init__(self, defaults: TriggerDefaults, retention_seconds: float, size: int = 4096) -> None:
        self.defaults = defaults
        self.retention_seconds = retention_seconds
        self.size = size
        self._entries: Lru[frozenset[tuple[str, str]], AnyTrigger] = Lru(size)
        self.queries: Queries = Lru(size)

    def get(self, metadata: Mapping[str, str]) -> AnyTrigger:
        # KEDA's metadata is a protobuf map, which reads slower than a dict: the parse reads it
        # key by key (~7 µs of a ~45 µs parse), so it is copied once
        items = dict(metadata)
        return self._entries.get(
            frozenset(items.items()),
            lambda: parse_any(items, self.defaults, self.retention_seconds, self.queries),
        )

    def __len__(self) -> int:
        """Triggers cached."""
        return len(self._entries)
