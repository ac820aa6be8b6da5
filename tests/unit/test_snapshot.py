"""Store snapshots: exact round trip, damage detection, retention and limits on restore."""

from __future__ import annotations

import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from scaler import snapshot
from scaler.config import StoreLimits
from scaler.model import STALE_NAN, LabelPairs, is_stale, make_labels
from scaler.store import Store
from tests.unit.test_store import NOW, NOW_MS
from tests.unit.test_store import FakeClock as Clock


def contents(store: Store) -> dict[LabelPairs, tuple[list[int], list[float], float]]:
    return {s.labels: (s.ts[: s.n].tolist(), s.vals[: s.n].tolist(), s.delta_total) for s in store.series()}


def filled_store(clock: Clock, series: int = 50) -> Store:
    store = Store(clock=clock)
    samples = []
    for i in range(series):
        lbl = make_labels("vllm:num_requests_waiting", {"pod": f"p{i}", "deployment": "decode" if i % 2 else "prefill"})
        samples += [(lbl, NOW_MS - 60_000 + k * 5000 + i, float(i * 100 + k), False) for k in range(12)]
    unicode = make_labels("vllm:prompt_tokens_total", {"model": "Ünïcødé/模型 ✓", "le": "+Inf"})
    samples += [(unicode, NOW_MS - 10_000, 5.0, True), (unicode, NOW_MS - 5_000, 7.0, True)]
    special = make_labels("special", {})
    samples += [
        (special, NOW_MS - 4000, math.nan, False),
        (special, NOW_MS - 3000, math.inf, False),
        (special, NOW_MS - 2000, -math.inf, False),
        (special, NOW_MS - 1000, STALE_NAN, False),
    ]
    assert store.append(samples).rejected_total == 0
    return store


def test_round_trip_is_exact_including_nan_inf_staleness_unicode_and_delta_state(tmp_path: Path) -> None:
    clock = Clock()
    store = filled_store(clock)
    path = tmp_path / "snap.bin"
    size = snapshot.write(path, snapshot.capture(store))
    assert size == path.stat().st_size
    assert [p.name for p in tmp_path.iterdir()] == ["snap.bin"]  # no temporary file left behind

    restored = Store(clock=clock)
    result = snapshot.restore(restored, snapshot.read(path))
    assert (result.series, result.skipped_series) == (store.series_count, 0)
    assert result.samples == store.sample_count()
    before, after = contents(store), contents(restored)
    assert before.keys() == after.keys()
    for key, (ts, vals, delta) in before.items():
        ts2, vals2, delta2 = after[key]
        assert ts == ts2 and delta == delta2
        assert np.array_equal(np.array(vals).view(np.int64), np.array(vals2).view(np.int64))  # bit for bit
    special = restored.get(make_labels("special", {}))
    assert special is not None and is_stale(float(special.vals[3]))
    # the delta accumulator continues: a new delta point adds to the restored total (5 + 7 + 1)
    lbl = make_labels("vllm:prompt_tokens_total", {"model": "Ünïcødé/模型 ✓", "le": "+Inf"})
    restored.append([(lbl, NOW_MS, 1.0, True)])
    series = restored.get(lbl)
    assert series is not None and series.last_value == 13.0


def test_restore_drops_what_aged_out_of_the_retention_while_the_server_was_down(tmp_path: Path) -> None:
    clock = Clock()
    path = tmp_path / "snap.bin"
    snapshot.write(path, snapshot.capture(filled_store(clock)))
    clock.t = NOW + 117  # retention 120 s: only samples at or after NOW-3 s are left
    restored = Store(clock=clock)
    result = snapshot.restore(restored, snapshot.read(path))
    # every pod series ended by NOW-4.95 s and the counter at NOW-5 s; `special` keeps 3 samples
    assert (result.series, result.samples, result.skipped_series) == (1, 3, 51)
    special = restored.get(make_labels("special", {}))
    assert special is not None and special.ts[: special.n].tolist() == [NOW_MS - 3000, NOW_MS - 2000, NOW_MS - 1000]


def test_restore_applies_the_store_limits(tmp_path: Path) -> None:
    clock = Clock()
    path = tmp_path / "snap.bin"
    snapshot.write(path, snapshot.capture(filled_store(clock)))
    small = Store(StoreLimits(max_series=10), clock=clock)
    result = snapshot.restore(small, snapshot.read(path))
    assert small.series_count == result.series == 10
    assert result.skipped_series == 42


def test_empty_store_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "empty.bin"
    snapshot.write(path, snapshot.capture(Store(clock=Clock())))
    loaded = snapshot.read(path)
    assert loaded.labels == [] and loaded.samples == 0


def _resealed(body: bytes) -> bytes:
    return body + struct.pack("<I", zlib.crc32(body))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: d[: len(d) // 2], "checksum mismatch"),
        (lambda d: d[:10], "bad magic"),
        (lambda d: b"", "bad magic"),
        (lambda d: b"PK\x03\x04" + d[4:], "bad magic"),
        (lambda d: d[:100] + bytes([d[100] ^ 0x01]) + d[101:], "checksum mismatch"),
        (lambda d: _resealed(d[:8] + struct.pack("<I", 2) + d[12:-4]), "format version 2"),
        (lambda d: _resealed(d[:-12]), "truncated"),
        (lambda d: _resealed(d[:-4] + b"extra"), "unexpected bytes"),
    ],
    ids=["half", "tiny", "empty", "zip", "bit-flip", "version", "short-values", "trailing"],
)
def test_a_damaged_file_is_rejected_with_the_reason(tmp_path: Path, damage, message: str) -> None:  # type: ignore[no-untyped-def]
    data = snapshot.encode(snapshot.capture(filled_store(Clock(), series=5)))
    with pytest.raises(snapshot.SnapshotError, match=message):
        snapshot.decode(damage(data))


def test_a_resealed_file_with_inconsistent_counts_or_indexes_is_rejected() -> None:
    data = bytearray(snapshot.encode(snapshot.capture(filled_store(Clock(), series=3)))[:-4])
    (header_len,) = struct.unpack("<I", data[12:16])
    first_pair_count = 16 + header_len
    data[first_pair_count : first_pair_count + 4] = struct.pack("<i", 99)
    with pytest.raises(snapshot.SnapshotError, match="label pair counts"):
        snapshot.decode(_resealed(bytes(data)))
    data = bytearray(snapshot.encode(snapshot.capture(filled_store(Clock(), series=3)))[:-4])
    refs = first_pair_count + 4 * 5  # after the pair counts of 5 series: 3 pods, the counter, `special`
    data[refs : refs + 4] = struct.pack("<i", 10_000)
    with pytest.raises(snapshot.SnapshotError, match="does not exist"):
        snapshot.decode(_resealed(bytes(data)))


def test_a_failed_write_raises_oserror_and_keeps_the_previous_snapshot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "snap.bin"
    snapshot.write(path, snapshot.capture(filled_store(Clock(), series=2)))
    old = path.read_bytes()

    def disk_full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space"):
        snapshot.write(path, snapshot.capture(Store(clock=Clock())))
    assert path.read_bytes() == old
    assert [p.name for p in tmp_path.iterdir()] == ["snap.bin"]


def test_a_path_under_a_regular_file_raises_oserror(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(OSError):
        snapshot.write(tmp_path / "file" / "snap.bin", snapshot.capture(Store(clock=Clock())))


def test_restore_sorts_unsorted_samples_and_the_later_duplicate_wins() -> None:
    store = Store(clock=Clock())
    lbl = make_labels("g", {"pod": "a"})
    ts = np.array([NOW_MS - 1000, NOW_MS - 3000, NOW_MS - 1000, NOW_MS - 500_000], dtype=np.int64)
    vals = np.array([1.0, 2.0, 3.0, 4.0])
    assert store.restore(lbl, ts, vals, 0.0) == 2
    series = store.get(lbl)
    assert series is not None
    assert (series.ts[: series.n].tolist(), series.vals[: series.n].tolist()) == (
        [NOW_MS - 3000, NOW_MS - 1000],
        [2.0, 3.0],
    )
    assert store.restore(lbl, ts, vals, 0.0) == 0  # an existing series is never overwritten
