"""The store: index selection, ordering, duplicates, retention, limits, memory release."""

from __future__ import annotations

import numpy as np
import pytest

from scaler.config import StoreLimits
from scaler.model import STALE_NAN, Matcher, RejectReason, is_stale, make_labels
from scaler.store import Store

NOW = 1_800_000_000.0
NOW_MS = int(NOW * 1000)


class FakeClock:
    def __init__(self, t: float = NOW) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def labels(name: str = "vllm:num_requests_waiting", **kv: str):  # type: ignore[no-untyped-def]
    return make_labels(name, kv)


def samples_of(store: Store, lbl) -> tuple[list[int], list[float]]:  # type: ignore[no-untyped-def]
    series = store.get(lbl)
    assert series is not None
    return series.ts[: series.n].tolist(), series.vals[: series.n].tolist()


def test_out_of_order_samples_are_inserted_in_time_order_and_duplicates_overwrite() -> None:
    store = Store(clock=FakeClock())
    lbl = labels(deployment="decode")
    result = store.append(
        [
            (lbl, NOW_MS - 1000, 3.0, False),
            (lbl, NOW_MS - 3000, 1.0, False),
            (lbl, NOW_MS - 2000, 2.0, False),
            (lbl, NOW_MS - 2000, 2.5, False),  # same timestamp: overwrite
            (lbl, NOW_MS - 1000, 3.5, False),  # same timestamp as the newest: overwrite
        ]
    )
    assert result.accepted == 5
    assert samples_of(store, lbl) == ([NOW_MS - 3000, NOW_MS - 2000, NOW_MS - 1000], [1.0, 2.5, 3.5])


def test_many_out_of_order_samples_grow_the_buffer_and_stay_sorted() -> None:
    store = Store(clock=FakeClock())
    lbl = labels()
    rng = np.random.default_rng(7)
    offsets = rng.permutation(100)
    store.append([(lbl, NOW_MS - 100_000 + int(o) * 1000, float(o), False) for o in offsets])
    ts, vals = samples_of(store, lbl)
    assert ts == sorted(ts) and len(ts) == 100
    assert vals == [float(i) for i in range(100)]


def test_negative_gauge_values_are_kept() -> None:
    store = Store(clock=FakeClock())
    lbl = labels("temperature")
    store.append([(lbl, NOW_MS, -4.5, False)])
    assert samples_of(store, lbl)[1] == [-4.5]


def test_retention_and_future_skew_reject_and_count() -> None:
    store = Store(StoreLimits(retention_seconds=60, max_future_skew_seconds=10), clock=FakeClock())
    lbl = labels()
    result = store.append(
        [
            (lbl, NOW_MS - 61_000, 1.0, False),
            (lbl, NOW_MS + 11_000, 1.0, False),
            (lbl, NOW_MS + 9_000, 1.0, False),
        ]
    )
    assert result.accepted == 1
    assert result.rejected == {RejectReason.TOO_OLD: 1, RejectReason.TOO_FAR_IN_FUTURE: 1}


def test_series_and_label_limits_reject_new_series_only() -> None:
    limits = StoreLimits(max_series=2, max_labels_per_series=2, max_label_name_length=5, max_label_value_length=3)
    store = Store(limits, clock=FakeClock())
    ok1, ok2 = labels("a", x="1"), labels("b", x="1")
    result = store.append(
        [
            (ok1, NOW_MS, 1.0, False),
            (labels("c", x="1", y="2", z="3"), NOW_MS, 1.0, False),
            (labels("c", longname="1"), NOW_MS, 1.0, False),
            (labels("c", x="long"), NOW_MS, 1.0, False),
            (ok2, NOW_MS, 1.0, False),
            (labels("d"), NOW_MS, 1.0, False),
            (ok1, NOW_MS + 1, 2.0, False),  # an existing series still accepts samples at the limit
        ]
    )
    assert result.accepted == 3
    assert result.rejected == {
        RejectReason.TOO_MANY_LABELS: 1,
        RejectReason.LABEL_NAME_TOO_LONG: 1,
        RejectReason.LABEL_VALUE_TOO_LONG: 1,
        RejectReason.SERIES_LIMIT: 1,
    }


def test_delta_samples_accumulate_into_a_counter() -> None:
    store = Store(clock=FakeClock())
    lbl = labels("requests_total")
    store.append([(lbl, NOW_MS - 2000, 5.0, True), (lbl, NOW_MS - 1000, 3.0, True)])
    store.append([(lbl, NOW_MS, 2.0, True)])
    assert samples_of(store, lbl)[1] == [5.0, 8.0, 10.0]


def test_select_uses_matcher_semantics_of_prometheus() -> None:
    store = Store(clock=FakeClock())
    a = labels(deployment="prefill", pod="p1")
    b = labels(deployment="decode", pod="d1")
    c = labels()  # no deployment label at all
    store.append([(x, NOW_MS, 1.0, False) for x in (a, b, c)])
    name = Matcher.of("__name__", "=", "vllm:num_requests_waiting")
    assert [s.labels for s in store.select([name, Matcher.of("deployment", "=", "decode")])] == [b]
    # `!=` matches series without the label (its value reads as "")
    assert {s.labels for s in store.select([name, Matcher.of("deployment", "!=", "decode")])} == {a, c}
    assert {s.labels for s in store.select([name, Matcher.of("deployment", "=~", "pre.*|dec.*")])} == {a, b}
    assert {s.labels for s in store.select([name, Matcher.of("deployment", "=~", "pre")])} == set()  # anchored
    assert {s.labels for s in store.select([name, Matcher.of("deployment", "=", "")])} == {c}
    assert store.select([Matcher.of("deployment", "=", "nope")]) == []


def test_count_matching_agrees_with_select() -> None:
    store = Store(clock=FakeClock())
    for i in range(30):
        store.append([(labels(pod=f"p{i % 3}", namespace=f"n{i % 2}", le=str(i)), NOW_MS, 1.0, False)])
    cases = ([("pod", "p1")], [("pod", "p1"), ("namespace", "n0")], [("pod", "none")], [("pod", "p2"), ("x", "y")])
    for pairs in cases:
        expected = len(store.select([Matcher.of(name, "=", value) for name, value in pairs]))
        assert store.count_matching(pairs) == expected
    assert store.count_matching([("pod", "p1"), ("namespace", "n0")]) == 5
    assert store.count_matching([]) == store.series_count == 30


def test_select_resolves_the_escaped_metric_name_form() -> None:
    store = Store(clock=FakeClock())
    real = labels("http.server/duration", route="x")
    store.append([(real, NOW_MS, 1.0, False)])
    found = store.select([Matcher.of("__name__", "=", "http_server_duration")])
    assert [s.labels for s in found] == [real]


def test_collect_trims_old_samples_and_deletes_empty_series_and_their_postings() -> None:
    clock = FakeClock()
    store = Store(StoreLimits(retention_seconds=10), clock=clock)
    old, live = labels(pod="old"), labels(pod="live")
    store.append([(old, NOW_MS - 5000, 1.0, False), (live, NOW_MS - 5000, 1.0, False), (live, NOW_MS, 2.0, False)])
    clock.t = NOW + 6  # old's only sample is now 11 s old; live keeps its newest
    assert store.collect() == 1
    assert store.get(old) is None and store.series_count == 1
    assert store.label_values("pod") == ["live"]
    assert samples_of(store, live) == ([NOW_MS], [2.0])
    clock.t = NOW + 20
    store.collect()
    assert store.series_count == 0 and store.names() == [] and store.label_names() == []


def test_active_series_memory_stays_bounded_by_the_window() -> None:
    clock = FakeClock()
    store = Store(StoreLimits(retention_seconds=10), clock=clock)
    lbl = labels()
    for i in range(1000):  # 1000 s of 1 s samples through a 10 s window
        clock.t = NOW + i
        store.append([(lbl, int(clock.t * 1000), float(i), False)])
    series = store.get(lbl)
    assert series is not None
    assert series.n <= 32 and len(series.ts) <= 32


def test_collect_in_slices_visits_every_series() -> None:
    clock = FakeClock()
    store = Store(StoreLimits(retention_seconds=10), clock=clock)
    store.append([(labels(pod=str(i)), NOW_MS, 1.0, False) for i in range(25)])
    clock.t = NOW + 11
    deleted = sum(store.collect(budget=10) for _ in range(3))
    assert deleted == 25 and store.series_count == 0


def test_staleness_marker_is_distinct_from_nan() -> None:
    assert is_stale(STALE_NAN)
    assert not is_stale(float("nan"))
    assert not is_stale(1.0)


def test_listeners_hear_the_names_that_received_samples() -> None:
    store = Store(clock=FakeClock())
    heard: list[frozenset[str]] = []
    unsubscribe = store.subscribe(heard.append)
    store.append([(labels("a"), NOW_MS, 1.0, False), (labels("b"), NOW_MS, 1.0, False)])
    store.append([(labels("a"), NOW_MS - 10**9, 1.0, False)])  # rejected: nothing stored, no call
    unsubscribe()
    store.append([(labels("c"), NOW_MS, 1.0, False)])
    assert heard == [frozenset({"a", "b"})]


def test_reset_forgets_everything() -> None:
    store = Store(clock=FakeClock())
    store.append([(labels(pod="x"), NOW_MS, 1.0, False)])
    store.reset()
    assert store.series_count == 0 and store.names() == []
    store.append([(labels(pod="x"), NOW_MS, 1.0, False)])
    assert store.series_count == 1


@pytest.mark.parametrize("op", ["=~", "!~"])
def test_invalid_regex_is_a_value_error(op: str) -> None:
    with pytest.raises(ValueError, match="invalid regular expression"):
        Matcher.of("x", op, "(")


def test_a_non_finite_delta_is_rejected_and_the_running_total_survives() -> None:
    store = Store(clock=FakeClock())
    lbl = labels("vllm:prompt_tokens_total")
    result = store.append(
        [
            (lbl, NOW_MS - 3000, 5.0, True),
            (lbl, NOW_MS - 2000, float("nan"), True),
            (lbl, NOW_MS - 1500, float("inf"), True),
            (lbl, NOW_MS - 1000, 2.0, True),
            (lbl, NOW_MS - 900, 1.7e308, True),
            (lbl, NOW_MS - 800, 1.7e308, True),  # the total would overflow to +Inf
        ]
    )
    assert result.accepted == 3 and result.rejected[RejectReason.INVALID_VALUE] == 3
    assert samples_of(store, lbl) == ([NOW_MS - 3000, NOW_MS - 1000, NOW_MS - 900], [5.0, 7.0, 7.0 + 1.7e308])
