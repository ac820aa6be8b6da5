"""Store snapshots: the whole store in one file, so a restart loses nothing.

Format (little-endian), designed to be written and read with a handful of numpy calls even
for 100k+ series, and to be rejected whole when damaged:

=========  ==========================================================================
magic      ``b"KOTSNAP\\n"`` (8 bytes)
u32 ×2     format version (1), header length H
header     H bytes of JSON: ``createdMs``, ``series`` N, ``pairs`` P, ``samples`` M and
           ``strings``: every distinct label name and value, once
int32[N]   label pairs per series
int32[2P]  label pairs as (name, value) indexes into ``strings``
int64[N]   samples per series
float64[N] per-series delta-sum accumulator (OTLP delta sums continue where they were)
int64[M]   timestamps (ms), series after series
float64[M] values
u32        CRC-32 of everything above
=========  ==========================================================================

:func:`write` is atomic (temporary file in the same directory, fsync, rename, fsync of the
directory): a crash mid-write leaves the previous snapshot intact. :func:`read` checks the
magic, version, sizes, indexes and checksum and raises :class:`SnapshotError` naming the
problem; nothing is restored from a damaged file. :func:`restore` applies retention, skew
and the store's limits exactly as ingestion does.
"""

from __future__ import annotations

import json
import os
import struct
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from scaler.model import METRIC_NAME, LabelPairs
from scaler.series import FloatArray, Int64Array, Series
from scaler.store import Store

MAGIC = b"KOTSNAP\n"
VERSION = 1
_FIXED = struct.Struct("<II")


class SnapshotError(Exception):
    """The snapshot file cannot be used; the message says why."""


@dataclass
class Snapshot:
    created_ms: int
    labels: list[LabelPairs]
    ts: list[Int64Array]
    vals: list[FloatArray]
    deltas: list[float]

    @property
    def samples(self) -> int:
        return sum(len(t) for t in self.ts)


@dataclass
class Capture:
    """Copies series one at a time, so the caller can yield to its event loop in between."""

    labels: list[LabelPairs] = field(default_factory=list)
    ts: list[Int64Array] = field(default_factory=list)
    vals: list[FloatArray] = field(default_factory=list)
    deltas: list[float] = field(default_factory=list)

    def add(self, series: Series) -> None:
        if not series.n:
            return
        self.labels.append(series.labels)
        self.ts.append(series.ts[: series.n].copy())
        self.vals.append(series.vals[: series.n].copy())
        self.deltas.append(series.delta_total)

    def finish(self, created_ms: int) -> Snapshot:
        return Snapshot(created_ms, self.labels, self.ts, self.vals, self.deltas)


def capture(store: Store) -> Snapshot:
    """The whole store at once (for a stopped service; a running one uses :class:`Capture`)."""
    c = Capture()
    for series in store.series():
        c.add(series)
    return c.finish(store.now_ms())


def encode(snapshot: Snapshot) -> bytes:
    strings: dict[str, int] = {}
    pair_counts = np.fromiter((len(labels) for labels in snapshot.labels), np.int32, len(snapshot.labels))
    refs = [strings.setdefault(text, len(strings)) for labels in snapshot.labels for pair in labels for text in pair]
    header = json.dumps(
        {
            "createdMs": snapshot.created_ms,
            "series": len(snapshot.labels),
            "pairs": len(refs) // 2,
            "samples": snapshot.samples,
            "strings": list(strings),
        },
        separators=(",", ":"),
    ).encode()
    counts = np.fromiter((len(t) for t in snapshot.ts), np.int64, len(snapshot.ts))
    empty_i, empty_f = np.empty(0, np.int64), np.empty(0, np.float64)
    body = b"".join(
        (
            MAGIC,
            _FIXED.pack(VERSION, len(header)),
            header,
            pair_counts.astype("<i4").tobytes(),
            np.asarray(refs, dtype="<i4").tobytes(),
            counts.astype("<i8").tobytes(),
            np.asarray(snapshot.deltas, dtype="<f8").tobytes(),
            np.concatenate(snapshot.ts or [empty_i]).astype("<i8").tobytes(),
            np.concatenate(snapshot.vals or [empty_f]).astype("<f8").tobytes(),
        )
    )
    return body + struct.pack("<I", zlib.crc32(body))


def write(path: Path, snapshot: Snapshot) -> int:
    """Write atomically; returns the size in bytes. Raises ``OSError``."""
    data = encode(snapshot)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    return len(data)


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, size: int, what: str) -> bytes:
        if size < 0 or self.pos + size > len(self.data):
            raise SnapshotError(f"truncated: {what} needs {size} bytes at offset {self.pos}")
        chunk = self.data[self.pos : self.pos + size]
        self.pos += size
        return chunk

    def array(self, dtype: str, count: int, what: str) -> np.ndarray:
        size = np.dtype(dtype).itemsize
        return np.frombuffer(self.take(count * size, what), dtype=dtype).astype(dtype[1:])


def decode(data: bytes) -> Snapshot:
    """Parse and check a snapshot; raises :class:`SnapshotError` naming what is wrong."""
    if len(data) < len(MAGIC) + _FIXED.size + 4 or not data.startswith(MAGIC):
        raise SnapshotError("not a keda-otel-scaler snapshot (bad magic)")
    body, (crc,) = data[:-4], struct.unpack("<I", data[-4:])
    if zlib.crc32(body) != crc:
        raise SnapshotError("checksum mismatch: the file is damaged")
    r = _Reader(body)
    r.take(len(MAGIC), "magic")
    version, header_len = _FIXED.unpack(r.take(_FIXED.size, "version"))
    if version != VERSION:
        raise SnapshotError(f"format version {version} is not supported (expected {VERSION})")
    try:
        header = json.loads(r.take(header_len, "header"))
        n, pairs, m = int(header["series"]), int(header["pairs"]), int(header["samples"])
        strings = header["strings"]
        created_ms = int(header["createdMs"])
    except (ValueError, KeyError, TypeError) as exc:
        raise SnapshotError(f"bad header: {exc}") from None
    if not isinstance(strings, list) or not all(isinstance(t, str) for t in strings):
        raise SnapshotError("bad header: strings is not a list of strings")
    pair_counts = r.array("<i4", n, "label pair counts")
    refs = r.array("<i4", 2 * pairs, "label pairs")
    counts = r.array("<i8", n, "sample counts")
    deltas = r.array("<f8", n, "delta accumulators")
    ts = r.array("<i8", m, "timestamps")
    vals = r.array("<f8", m, "values")
    if r.pos != len(body):
        raise SnapshotError(f"{len(body) - r.pos} unexpected bytes after the values")
    if (pair_counts < 1).any() or int(pair_counts.sum()) != pairs:
        raise SnapshotError("label pair counts do not add up")
    if (counts < 1).any() or int(counts.sum()) != m:
        raise SnapshotError("sample counts do not add up")
    if len(refs) and (refs.min() < 0 or refs.max() >= len(strings)):
        raise SnapshotError("a label refers to a string that does not exist")
    labels: list[LabelPairs] = []
    text = [strings[i] for i in refs.tolist()]
    at = 0
    for count in pair_counts.tolist():
        flat = text[at : at + 2 * count]
        at += 2 * count
        labels.append(tuple(zip(flat[0::2], flat[1::2], strict=True)))
    bounds = np.concatenate(([0], np.cumsum(counts)))
    return Snapshot(
        created_ms,
        labels,
        [ts[bounds[i] : bounds[i + 1]] for i in range(n)],
        [vals[bounds[i] : bounds[i + 1]] for i in range(n)],
        deltas.tolist(),
    )


def read(path: Path) -> Snapshot:
    """Read and check ``path``; raises ``FileNotFoundError`` or :class:`SnapshotError`."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise SnapshotError(f"cannot read {path}: {exc.strerror}") from None
    return decode(data)


@dataclass(frozen=True)
class Restored:
    series: int
    samples: int
    skipped_series: int
    """Series left out: malformed labels, nothing left in the retention window, or a limit."""


def restore(store: Store, snapshot: Snapshot) -> Restored:
    series = samples = skipped = 0
    for labels, ts, vals, delta in zip(snapshot.labels, snapshot.ts, snapshot.vals, snapshot.deltas, strict=True):
        names = [name for name, _ in labels]
        if names != sorted(set(names)) or METRIC_NAME not in names:  # never from our own writer
            skipped += 1
            continue
        restored = store.restore(labels, ts, vals, delta)
        if restored:
            series += 1
            samples += restored
        else:
            skipped += 1
    return Restored(series, samples, skipped)
