"""Internal value representations used during evaluation, and label-set helpers.

* :class:`Vec` — an instant vector as two parallel lists (label sets, float values).
* :class:`RangeData` — a range vector: every selected series' window concatenated into two
  numpy arrays with segment offsets, so range functions can work on all series at once.
"""

from __future__ import annotations

import itertools
from collections.abc import Generator
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from scaler.model import METRIC_NAME, STALE_NAN_BITS, LabelPairs
from scaler.query.errors import QueryError
from scaler.query.tokens import go_quote

if TYPE_CHECKING:
    from scaler.query.selection import Selection

Int64Array = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


class Vec:
    """An instant vector during evaluation. ``origin``/``rows``, when set: ``labels[i]`` is
    ``origin.dropped[rows[i]]`` (a range function's result over a selection), or with ``named``
    the series' own labels ``origin.series[rows[i]].labels`` (a function that keeps the name,
    such as ``last_over_time``); the labels are then made only when read, and fast paths may
    use the selection's memos (uniqueness, groups) instead. ``array``, when given instead of
    ``values``: the values as a float64 array (computed in C or numpy); the list is made only
    when read, and :meth:`floats` hands the array itself to whatever works on arrays."""

    __slots__ = ("_array", "_labels", "_values", "named", "origin", "rows")

    def __init__(
        self,
        labels: list[LabelPairs] | None = None,
        values: list[float] | None = None,
        origin: Selection | None = None,
        rows: Int64Array | None = None,
        array: FloatArray | None = None,
        *,
        named: bool = False,
    ) -> None:
        self._labels: list[LabelPairs] | None = labels if labels is not None or origin is not None else []
        if values is None and array is None:
            values = []
        self._values: list[float] | None = values
        self._array = array if values is None else None
        self.origin = origin
        self.rows = rows
        self.named = named

    @property
    def labels(self) -> list[LabelPairs]:
        labels = self._labels
        if labels is None:
            assert self.origin is not None and self.rows is not None
            if self.named:
                series = self.origin.series
                labels = self._labels = [series[i].labels for i in self.rows.tolist()]
            else:
                dropped = self.origin.dropped
                labels = self._labels = [dropped[i] for i in self.rows.tolist()]
        return labels

    @labels.setter
    def labels(self, labels: list[LabelPairs]) -> None:
        self._labels = labels

    @property
    def values(self) -> list[float]:
        values = self._values
        if values is None:  # from here on the list is the values (callers may append to it)
            assert self._array is not None
            values = self._values = self._array.tolist()
            self._array = None
        return values

    @values.setter
    def values(self, values: list[float]) -> None:
        self._values = values
        self._array = None

    def floats(self) -> FloatArray:
        """The values as a float64 array (the array itself when the vector was made from one)."""
        if self._array is not None:
            return self._array
        return np.array(self.values, dtype=np.float64)

    def __len__(self) -> int:
        return len(self._array) if self._array is not None else len(self.values)

    def append(self, labels: LabelPairs, value: float) -> None:
        self.labels.append(labels)
        self.values.append(value)

    def __repr__(self) -> str:
        return f"Vec({list(zip(self.labels, self.values, strict=True))!r})"


class RangeData:
    """Samples of a range selector: series ``i`` owns ``ts[offs[i]:offs[i+1]]`` (never empty;
    staleness markers already removed). ``start``/``end`` bound the window ``(start, end]``.
    ``origin``/``rows``, when set: the labels are those of ``origin.series[rows[i]]`` (a
    :class:`~scaler.query.selection.Selection`, whose memos fast paths may use)."""

    __slots__ = ("_labels", "end", "offs", "origin", "range_ms", "rows", "start", "ts", "vals")

    def __init__(
        self,
        labels: list[LabelPairs] | None,
        ts: Int64Array,
        vals: FloatArray,
        offs: Int64Array,
        start: int,
        end: int,
        range_ms: int,
        origin: Selection | None = None,
        rows: Int64Array | None = None,
    ) -> None:
        self._labels = labels
        """None: made from ``origin``/``rows`` when first read (a fast path may never need them)."""
        self.ts = ts
        self.vals = vals
        self.offs = offs
        self.start = start
        self.end = end
        self.range_ms = range_ms
        self.origin = origin
        self.rows = rows

    @classmethod
    def build(
        cls,
        labels: list[LabelPairs],
        ts_parts: list[Int64Array],
        val_parts: list[FloatArray],
        start: int,
        end: int,
        range_ms: int,
        lengths: list[int] | None = None,
    ) -> RangeData:
        """One series per part; or, with ``lengths``, parts that each hold several series
        back to back (``lengths[i]`` samples of series ``i``)."""
        if not ts_parts or not labels:
            empty_i = np.zeros(0, dtype=np.int64)
            return cls([], empty_i, np.zeros(0), np.zeros(1, dtype=np.int64), start, end, range_ms)
        sizes = lengths if lengths is not None else [p.shape[0] for p in ts_parts]
        offs = np.array([0, *itertools.accumulate(sizes)], dtype=np.int64)
        offs, ts, vals, kept = _without_stale(offs, np.concatenate(ts_parts), np.concatenate(val_parts))
        if kept is not None:
            labels = [lb for lb, ok in zip(labels, kept.tolist(), strict=True) if ok]
        return cls(labels, ts, vals, offs, start, end, range_ms)

    @classmethod
    def gathered(
        cls,
        origin: Selection,
        rows: Int64Array,
        offs: Int64Array,
        ts: Int64Array,
        vals: FloatArray,
        window: tuple[int, int, int],
    ) -> RangeData:
        """The windows of ``origin.series[rows[i]]`` read by ``gather``; ``window``:
        ``(start, end, range_ms)``."""
        offs, ts, vals, kept = _without_stale(offs, ts, vals)
        if kept is not None:
            rows = rows[kept]
        return cls(None, ts, vals, offs, *window, origin=origin, rows=rows)

    @property
    def labels(self) -> list[LabelPairs]:
        labels = self._labels
        if labels is None:
            assert self.origin is not None and self.rows is not None
            series = self.origin.series
            labels = self._labels = [series[i].labels for i in self.rows.tolist()]
        return labels

    def __len__(self) -> int:
        return len(self.offs) - 1

    def slice(self, a: int, b: int) -> RangeData:
        """Series ``a`` to ``b`` (exclusive) only, sharing this one's arrays."""
        if a == 0 and b >= len(self):
            return self
        offs = self.offs[a : b + 1]
        lo, hi = int(offs[0]), int(offs[-1])
        rows = None if self.rows is None else self.rows[a:b]
        return RangeData(
            None if self._labels is None else self._labels[a:b],
            self.ts[lo:hi],
            self.vals[lo:hi],
            offs - lo,
            self.start,
            self.end,
            self.range_ms,
            self.origin,
            rows,
        )


def _without_stale(
    offs: Int64Array, ts: Int64Array, vals: FloatArray
) -> tuple[Int64Array, Int64Array, FloatArray, npt.NDArray[np.bool_] | None]:
    """The segments without staleness markers, and which segments are left (None: all)."""
    stale = vals.view(np.uint64) == np.uint64(STALE_NAN_BITS)
    if not stale.any():
        return offs, ts, vals, None
    keep = ~stale
    kept = np.zeros(len(vals) + 1, dtype=np.int64)
    np.cumsum(keep, out=kept[1:])
    offs = kept[offs]
    ts, vals = ts[keep], vals[keep]
    lengths = np.diff(offs)
    if lengths.all():
        return offs, ts, vals, None
    nonempty = lengths > 0
    offs = np.zeros(int(nonempty.sum()) + 1, dtype=np.int64)
    np.cumsum(lengths[nonempty], out=offs[1:])
    return offs, ts, vals, nonempty


def joined(parts: list[Vec], origin: Selection | None) -> Vec:
    """The pieces of a range function's result as one vector (still labelled by the selection
    when every piece is)."""
    if len(parts) <= 1:
        return parts[0] if parts else Vec()
    values = [v for part in parts for v in part.values]
    rows = [part.rows for part in parts if part.rows is not None]
    named = parts[0].named
    if origin is not None and len(rows) == len(parts) and all(p.origin is origin and p.named == named for p in parts):
        return Vec(None, values, origin, np.concatenate(rows), named=named)
    return Vec([lb for part in parts for lb in part.labels], values)


_DROPPED: dict[LabelPairs, LabelPairs] = {}
_DROPPED_MAX = 1 << 16


_RESERVED = frozenset({METRIC_NAME, "__type__", "__unit__"})


def drop_name(labels: LabelPairs) -> LabelPairs:
    """The label set without ``__name__`` and the other names Prometheus 3 drops with it
    (``__type__``, ``__unit__``); memoised: the same series recur every query."""
    out = _DROPPED.get(labels)
    if out is not None:
        return out
    out = labels
    if any(name in _RESERVED for name, _ in labels):
        out = tuple(p for p in labels if p[0] not in _RESERVED)
    if len(_DROPPED) >= _DROPPED_MAX:
        _DROPPED.clear()
    _DROPPED[labels] = out
    return out


def without(labels: LabelPairs, names: frozenset[str]) -> LabelPairs:
    return tuple(p for p in labels if p[0] not in names)


def keep_only(labels: LabelPairs, names: frozenset[str]) -> LabelPairs:
    return tuple(p for p in labels if p[0] in names)


def set_label(labels: LabelPairs, name: str, value: str) -> LabelPairs:
    """Set (or, with an empty value, delete) one label; keeps the pairs sorted."""
    rest = [p for p in labels if p[0] != name]
    if value:
        rest.append((name, value))
        rest.sort()
    return tuple(rest)


def format_labels(labels: LabelPairs) -> str:
    """Prometheus' ``labels.String()``: ``{__name__="x", a="b"}``."""
    return "{" + ", ".join(f"{k}={go_quote(v)}" for k, v in labels) + "}"


def check_unique(vec: Vec) -> Vec:
    if len(set(vec.labels)) != len(vec.labels):
        raise QueryError.execution(_SAME_LABELSET)
    return vec


_SAME_LABELSET = "vector cannot contain metrics with the same labelset"
UNIQUE_STEP = 4096
"""Label sets hashed between two of :func:`unique_steps`' yields (~2 ms: a label set of ten
pairs is hashed afresh every time, tuples do not cache their hash)."""


def unique_steps(vec: Vec) -> Generator[None, None, Vec]:
    """:func:`check_unique` in pieces: over 50k series the one set is ~30 ms of hashing."""
    # before the labels are read (a selection's result may never need them): the series' own
    # label sets are distinct, and their dropped ones when the selection says so
    if vec.origin is not None and (vec.named or vec.origin.dropped_unique):
        return vec
    labels = vec.labels
    if len(labels) <= UNIQUE_STEP:
        return check_unique(vec)
    seen: set[LabelPairs] = set()
    for a in range(0, len(labels), UNIQUE_STEP):
        seen.update(labels[a : a + UNIQUE_STEP])
        yield
    if len(seen) != len(labels):
        raise QueryError.execution(_SAME_LABELSET)
    return vec
