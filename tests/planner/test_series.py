"""Block: many series sampled at many instants at once (sample-and-hold, freshness, staleness)."""

from __future__ import annotations

import numpy as np

from scaler.model import STALE_NAN, make_labels
from scaler.planner.series import Block, increase
from scaler.store import Store
from tests.planner.fleet import Clock

NOW_MS = 1_800_000_000_000


def _store(points: dict[str, list[tuple[int, float]]]) -> Store:
    store = Store(clock=Clock(NOW_MS / 1000))
    for pod, samples in points.items():
        labels = make_labels("m", {"pod": pod})
        store.append([(labels, NOW_MS + t, v, False) for t, v in samples])
    return store


def test_each_instant_takes_the_newest_sample_at_or_before_it() -> None:
    store = _store({"a": [(-10_000, 1.0), (-5_000, 2.0)], "b": [(-7_000, 5.0)]})
    block = Block.of(store.select([]))
    times = np.array([NOW_MS - 11_000, NOW_MS - 10_000, NOW_MS - 6_000, NOW_MS], dtype=np.int64)
    values = block.at(times)
    assert np.isnan(values[0, 0]) and values[0, 1:].tolist() == [1.0, 1.0, 2.0]
    assert np.isnan(values[1, :2]).all() and values[1, 2:].tolist() == [5.0, 5.0]


def test_a_sample_older_than_max_age_reads_as_missing() -> None:
    block = Block.of(_store({"a": [(-20_000, 3.0)]}).select([]))
    times = np.array([NOW_MS - 10_000, NOW_MS], dtype=np.int64)
    assert block.at(times, max_age_ms=15_000).tolist()[0][0] == 3.0
    assert np.isnan(block.at(times, max_age_ms=15_000)[0, 1])


def test_a_staleness_marker_ends_a_gauge_but_a_counter_keeps_its_last_value() -> None:
    store = _store({"a": [(-10_000, 4.0), (-5_000, STALE_NAN)]})
    times = np.array([NOW_MS - 6_000, NOW_MS], dtype=np.int64)
    assert np.isnan(Block.of(store.select([])).at(times)[0, 1])
    assert Block.of(store.select([]), drop_stale=True).at(times).tolist() == [[4.0, 4.0]]


def test_increase_is_sample_and_hold_with_resets_and_births() -> None:
    # a: steady 2/s; b: reset to 0 at -5 s then 3 more; c: born at -4 s with 7 already counted
    store = _store(
        {
            "a": [(t, 2.0 * (t + 40_000) / 1000) for t in range(-40_000, 1, 1000)],
            "b": [(-40_000, 100.0), (-20_000, 110.0), (-5_000, 0.0), (0, 3.0)],
            "c": [(-4_000, 7.0), (0, 9.0)],
        }
    )
    grown = increase(Block.of(store.select([]), drop_stale=True), np.array([NOW_MS], dtype=np.int64), 30_000)
    assert grown[:, 0].tolist() == [60.0, 3.0, 2.0]
