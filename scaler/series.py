"""One series: a metric name + label set and its samples in two parallel numpy arrays
(timestamps in integer milliseconds, values as float64), oldest first.

The arrays grow by doubling and are trimmed to the retention window when they would grow, so
an active series holds about one window of samples. An append at or after the newest timestamp
is O(1); an older one is inserted in place; a repeated timestamp overwrites.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from scaler.model import METRIC_NAME, LabelPairs

Int64Array = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

INITIAL_CAPACITY = 8
NO_SAMPLE = -(2**62)


class Series:
    """One metric name + label set and its samples, oldest first."""

    __slots__ = ("alive", "delta_total", "id", "labels", "last", "n", "name", "ts", "vals")

    def __init__(self, series_id: int, labels: LabelPairs) -> None:
        self.id = series_id
        self.labels = labels
        self.name = self.label(METRIC_NAME)
        self.ts: Int64Array = np.empty(INITIAL_CAPACITY, dtype=np.int64)
        self.vals: FloatArray = np.empty(INITIAL_CAPACITY, dtype=np.float64)
        self.n = 0
        self.last = NO_SAMPLE
        """The newest timestamp as a Python int (no numpy scalar on the append fast path)."""
        self.delta_total = 0.0
        self.alive = True
        """False once the store has deleted the series (a cache holding it must look again)."""

    def __repr__(self) -> str:
        return f"Series({self.id}, {dict(self.labels)!r}, n={self.n})"

    def label(self, name: str) -> str:
        """The value of label ``name`` ("" when absent). A scan of ~10 pairs: cheaper than a
        per-series dict, which would cost ~0.4 KB of every series' memory."""
        for key, value in self.labels:
            if key == name:
                return value
        return ""

    @property
    def first_ts(self) -> int:
        return int(self.ts[0]) if self.n else 0

    @property
    def last_ts(self) -> int:
        return self.last if self.n else 0

    @property
    def last_value(self) -> float:
        return float(self.vals[self.n - 1]) if self.n else float("nan")

    def window(self, lo_exclusive: int, hi_inclusive: int) -> tuple[Int64Array, FloatArray]:
        """Views of the samples with ``lo_exclusive < ts <= hi_inclusive``."""
        n = self.n
        ts = self.ts[:n]
        end = n if n and hi_inclusive >= ts[n - 1] else int(ts.searchsorted(hi_inclusive, side="right"))
        start = int(ts.searchsorted(lo_exclusive, side="right"))
        return ts[start:end], self.vals[start:end]

    def append(self, ts_ms: int, value: float, cutoff_ms: int) -> None:
        """Store one sample; ``cutoff_ms`` is the oldest timestamp still retained."""
        n = self.n
        if ts_ms > self.last:
            if n == len(self.ts):
                self._make_room(cutoff_ms)
                n = self.n
            self.ts[n] = ts_ms
            self.vals[n] = value
            self.n = n + 1
            self.last = ts_ms
            return
        pos = int(np.searchsorted(self.ts[:n], ts_ms, side="left"))
        if self.ts[pos] == ts_ms:
            self.vals[pos] = value
            return
        if n == len(self.ts):
            self._make_room(cutoff_ms)
            n = self.n
            pos = int(np.searchsorted(self.ts[:n], ts_ms, side="left"))
        self.ts[pos + 1 : n + 1] = self.ts[pos:n].copy()
        self.vals[pos + 1 : n + 1] = self.vals[pos:n].copy()
        self.ts[pos] = ts_ms
        self.vals[pos] = value
        self.n = n + 1

    def load(self, ts: Int64Array, vals: FloatArray) -> None:
        """Replace the samples with ``ts`` (strictly increasing) and ``vals``."""
        capacity = max(INITIAL_CAPACITY, 1 << (len(ts) - 1).bit_length())
        self.ts = np.empty(capacity, dtype=np.int64)
        self.vals = np.empty(capacity, dtype=np.float64)
        self.ts[: len(ts)] = ts
        self.vals[: len(ts)] = vals
        self.n = len(ts)
        self.last = int(ts[-1]) if len(ts) else NO_SAMPLE

    def trim(self, cutoff_ms: int) -> int:
        """Drop samples older than ``cutoff_ms``; returns how many were dropped."""
        drop = int(np.searchsorted(self.ts[: self.n], cutoff_ms, side="left"))
        if drop:
            keep = self.n - drop
            self.ts[:keep] = self.ts[drop : self.n]
            self.vals[:keep] = self.vals[drop : self.n]
            self.n = keep
            if not keep:
                self.last = NO_SAMPLE
            capacity = len(self.ts)
            if capacity > INITIAL_CAPACITY and keep < capacity // 4:
                self._resize(max(INITIAL_CAPACITY, capacity // 2))
        return drop

    def _make_room(self, cutoff_ms: int) -> None:
        if self.trim(cutoff_ms) == 0 or self.n == len(self.ts):
            self._resize(len(self.ts) * 2)

    def _resize(self, capacity: int) -> None:
        ts = np.empty(capacity, dtype=np.int64)
        vals = np.empty(capacity, dtype=np.float64)
        ts[: self.n] = self.ts[: self.n]
        vals[: self.n] = self.vals[: self.n]
        self.ts, self.vals = ts, vals
