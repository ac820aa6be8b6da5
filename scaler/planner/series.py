"""The stored series of one metric, sampled at many instants with a handful of numpy calls.

The planner evaluates its state-free recommendation at every instant of a fixed time grid
(see :mod:`scaler.planner.decide`), so it needs "the value of each series at each of ~100
instants". One ``searchsorted`` per series would cost ~1000 numpy calls for a 20-pod
deployment; instead :class:`Block` concatenates the series into one sorted key array
(``series index × SPAN + timestamp offset``) and answers every (series, instant) pair with one
``searchsorted``. The cost is one pass over the selected samples, whatever the grid size.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from scaler.model import STALE_NAN_BITS, LabelPairs
from scaler.series import FloatArray, Int64Array, Series

SPAN = 1 << 40
"""Key stride per series: larger than any timestamp offset a store can hold (~35 years in ms)."""
MAX_VALUE = float(2**53)
"""The largest magnitude the planner reads; a sample beyond it (±Inf, 1e308) is skipped, as if
not sent. No vLLM gauge comes near it, and a counter past it no longer counts by ones; read, it
would overflow the planner's sums into ±Inf (a pod's bad exporter must not take the role's
answer with it)."""


BoolArray = npt.NDArray[np.bool_]


def stale_mask(vals: FloatArray) -> BoolArray:
    """Which values are Prometheus staleness markers (a NaN with a distinct bit pattern)."""
    return np.asarray(vals.view(np.uint64) == np.uint64(STALE_NAN_BITS), dtype=np.bool_)


@dataclass(frozen=True)
class Copy:
    """A series' labels and samples, copied: safe to read off the event loop while the store
    keeps changing (an append may insert in place, the retention sweep trims)."""

    labels: LabelPairs
    ts: Int64Array
    vals: FloatArray

    @staticmethod
    def of(series: Series, since_ms: int) -> Copy:
        """The samples at or after ``since_ms`` (the retention's cut-off). The sweep trims the
        older ones a few series at a time: until it visits a series, the series still holds
        some, and a decision that read them would depend on where the sweep stood."""
        n = series.n
        start = int(np.searchsorted(series.ts[:n], since_ms, side="left"))
        return Copy(series.labels, series.ts[start:n].copy(), series.vals[start:n].copy())

    @property
    def n(self) -> int:
        return len(self.ts)


@dataclass(frozen=True)
class Block:
    """Samples of several series, keyed for vectorised point lookups.

    ``labels[i]`` names series ``i``. With ``drop_stale`` (for counters) staleness markers are
    removed, so a lookup returns the last real value; without it (gauges), a lookup that lands
    on a marker returns NaN: the series has ended.
    """

    labels: tuple[LabelPairs, ...]
    keys: Int64Array
    vals: FloatArray
    ts: Int64Array
    starts: Int64Array
    base: int

    @staticmethod
    def of(series: Sequence[Series | Copy], drop_stale: bool = False) -> Block:
        labels = tuple(s.labels for s in series)
        counts = np.fromiter((s.n for s in series), dtype=np.int64, count=len(series))
        if counts.sum() == 0:
            empty_i, empty_f = np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64)
            return Block(labels, empty_i, empty_f, empty_i, np.zeros(len(series), dtype=np.int64), 0)
        ts_all = np.concatenate([s.ts[: s.n] for s in series])
        vals_all = np.concatenate([s.vals[: s.n] for s in series])
        index = np.repeat(np.arange(len(series), dtype=np.int64), counts)
        keep = ~(np.abs(vals_all) > MAX_VALUE)  # NaN (a staleness marker) stays, for gauges
        if drop_stale:
            keep &= ~stale_mask(vals_all)
        if not keep.all():
            ts_all, vals_all, index = ts_all[keep], vals_all[keep], index[keep]
            counts = np.bincount(index, minlength=len(series)).astype(np.int64)
        starts = np.concatenate(([0], np.cumsum(counts)[:-1])).astype(np.int64)
        base = int(ts_all.min()) if len(ts_all) else 0
        keys = index * SPAN + (ts_all - base)
        return Block(labels, keys, vals_all, ts_all, starts, base)

    def label(self, i: int, name: str) -> str:
        for key, value in self.labels[i]:
            if key == name:
                return value
        return ""

    @property
    def size(self) -> int:
        return len(self.labels)

    def at(self, times: Int64Array, max_age_ms: int | None = None) -> FloatArray:
        """``[series, instant]`` → the newest value at or before the instant (NaN: none, or
        older than ``max_age_ms``, or a staleness marker)."""
        n, m = self.size, len(times)
        if n == 0 or m == 0:
            return np.full((n, m), np.nan)
        query = (np.arange(n, dtype=np.int64) * SPAN)[:, None] + (times[None, :] - self.base)
        pos = np.searchsorted(self.keys, query.ravel(), side="right").reshape(n, m) - 1
        valid = pos >= self.starts[:, None]
        safe = np.where(valid, pos, 0)
        out = np.where(valid, self.vals[safe] if len(self.vals) else np.nan, np.nan)
        if max_age_ms is not None:
            fresh = (times[None, :] - self.ts[safe]) <= max_age_ms if len(self.ts) else valid
            out = np.where(valid & fresh, out, np.nan)
        return out

    def first(self) -> FloatArray:
        """Each series' oldest value (NaN for an empty series)."""
        ends = np.append(self.starts[1:], len(self.vals))
        has = ends > self.starts
        safe = np.where(has, self.starts, 0)
        return np.where(has, self.vals[safe] if len(self.vals) else np.nan, np.nan)

    def first_ts(self) -> Int64Array:
        ends = np.append(self.starts[1:], len(self.ts))
        has = ends > self.starts
        safe = np.where(has, self.starts, 0)
        return np.where(has, self.ts[safe] if len(self.ts) else 0, np.iinfo(np.int64).max)


def increase(block: Block, times: Int64Array, window_ms: int) -> FloatArray:
    """``[series, instant]`` → how much each counter grew over ``(t − window, t]``.

    The value at each end is the newest sample at or before it (sample-and-hold), so a steady
    rate is measured without bias whatever the export interval. A series born inside the window
    counts from its first sample (a small undercount, never an invention); a decrease is a
    counter reset and counts the new value.
    """
    end = block.at(times)
    start = block.at(times - window_ms)
    first = block.first()[:, None]
    born = np.isnan(start) & ~np.isnan(end)
    start = np.where(born, first, start)
    grown = end - start
    return np.where(grown < 0, end, grown)
