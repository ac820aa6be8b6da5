"""The C ``rate``/``increase``/``delta`` over a selection's windows and the C per-group ``sum``
against the numpy and Python code they replace on the hot path (bit for bit), and whole queries
with the C paths against the same queries without them."""

from __future__ import annotations

import math
import random
import struct

import numpy as np
import pytest

from scaler.model import STALE_NAN, make_labels
from scaler.query import Engine, Result, Vector, parse_promql
from scaler.query import aggregate as agg
from scaler.query import evaluator as ev
from scaler.query import selection as sel
from scaler.query.aggregate import _SIMPLE, _SINGLE
from scaler.query.gomath import duration_seconds
from scaler.query.rangefuncs import RANGE_FUNCTIONS
from scaler.query.vec import RangeData, Vec
from scaler.series import Series
from scaler.seriesindex import drain
from tests.query.helpers import NOW_MS, store_with

S = 1000
WINDOWS = [(0, 10**9), (-5, 0), (30 * S, 31 * S), (100 * S, 400 * S), (450 * S, 450 * S), (10**9, 10**10), (0, 50 * S)]


def _bits(x: float) -> bytes:
    """Every NaN alike (its sign follows operand order; PromQL prints all of them ``NaN``)."""
    return b"NaN" if math.isnan(x) else struct.pack("<d", x)


def _value(rng: random.Random, last: float) -> float:
    kind = rng.random()
    if kind < 0.1:
        return STALE_NAN
    if kind < 0.15:
        return rng.choice([math.nan, math.inf, -math.inf, 0.0, -0.0])
    if kind < 0.3:
        return rng.uniform(-1e3, 1e3)  # resets, negative values
    return last + rng.choice([0.0, rng.uniform(0, 100), rng.uniform(0, 1e-9)])


def _random_series(rng: random.Random, count: int) -> list[Series]:
    out = []
    for i in range(count):
        s = Series(i, make_labels("m_total", {"i": str(i)}))
        t, v = rng.randrange(0, 50) * S, rng.uniform(0, 1e6)
        for _ in range(rng.choice([0, 1, 2, 3, 5, 40])):
            t += rng.randrange(1, 20) * S + rng.choice([0, 1, 7])
            v = _value(rng, v if math.isfinite(v) else 0.0)
            s.append(t, v, 0)
        out.append(s)
    return out


@pytest.mark.parametrize("seed", range(12))
def test_native_rate_is_the_numpy_rate(seed: int) -> None:
    assert sel.native_rate is not None, "the extension is not built (make native)"
    rng = random.Random(seed)
    series = _random_series(rng, 200)
    selection = sel.Selection(series)
    for lo, hi in WINDOWS:
        range_ms = hi - lo
        seconds = duration_seconds(range_ms) if range_ms else 1.0
        rows, offs, ts, vals = sel.gather_python(series, lo, hi)
        window = RangeData.gathered(selection, rows, offs, ts, vals, (lo, hi, range_ms))
        for func, kind in sel.RATE_KINDS.items():
            with np.errstate(all="ignore"):  # inf - inf: numpy warns, C does not
                expected = RANGE_FUNCTIONS[func](window, [], hi) if range_ms else None
            got_rows, got, samples = sel.native_rate(series, 0, len(series), lo, hi, kind, seconds)
            assert samples == len(window.ts)
            if expected is None:
                continue
            want_rows = [] if expected.rows is None else expected.rows.tolist()  # Vec() when none has two
            assert got_rows.tolist() == want_rows
            assert [_bits(x) for x in got.tolist()] == [_bits(x) for x in expected.values]


@pytest.mark.parametrize("seed", range(12))
def test_native_latest_is_the_python_latest(seed: int) -> None:
    assert sel.native_latest is not None, "the extension is not built (make native)"
    series = _random_series(random.Random(seed), 200)
    for lo, hi in WINDOWS:
        want = drain(sel.latest_python(series, lo, hi, 16))
        got = sel.native_latest(series, 0, len(series), lo, hi)
        assert [a.tolist() for a in got[:2]] == [a.tolist() for a in want[:2]]
        assert [_bits(x) for x in got[2].tolist()] == [_bits(x) for x in want[2].tolist()]
        stepped = drain(sel.latest_steps(series, lo, hi, 64))
        assert [a.tobytes() for a in stepped] == [a.tobytes() for a in got]
        part = sel.native_latest(series, 50, 120, lo, hi)
        assert part[0].tolist() == [r for r in got[0].tolist() if 50 <= r < 120]


def test_native_rate_in_steps_keeps_rows_and_counts_samples() -> None:
    assert sel.native_rate is not None
    rng = random.Random(7)
    selection = sel.Selection(_random_series(rng, 300))
    counted: list[int] = []
    steps = sel.rate_steps(selection, 0, 10**9, "increase", 1.0, counted.append, step=64)
    yields = 0
    while True:
        try:
            next(steps)
            yields += 1
        except StopIteration as stop:
            vec = stop.value
            break
    assert yields == 4  # 300 series in 5 pieces of 64
    whole_rows, whole, samples = sel.native_rate(selection.series, 0, 300, 0, 10**9, 1, 1.0)
    assert sum(counted) == samples
    assert vec.rows is not None and vec.rows.tolist() == whole_rows.tolist()
    assert vec.floats().tobytes() == whole.tobytes()
    assert vec.origin is selection


def test_native_rate_refuses_bad_input() -> None:
    assert sel.native_rate is not None and sel.native_latest is not None
    with pytest.raises(ValueError, match="kind"):
        sel.native_rate([], 0, 0, 0, 1, 3, 1.0)
    with pytest.raises(ValueError, match="first"):
        sel.native_rate([], 1, 0, 0, 1, 2, 1.0)
    with pytest.raises(AttributeError):
        sel.native_rate([object()], 0, 1, 0, 1, 2, 1.0)  # type: ignore[list-item]
    bad = Series(1, make_labels("m", {}))
    bad.append(5, 1.0, 0)
    bad.vals = bad.vals[:0]
    with pytest.raises(TypeError, match="not a contiguous 1-d array"):
        sel.native_rate([bad], 0, 1, 0, 10, 2, 1.0)
    with pytest.raises(TypeError, match="not a contiguous 1-d array"):
        sel.native_latest([bad], 0, 1, 0, 10)
    with pytest.raises(ValueError, match="first"):
        sel.native_latest([], 1, 0, 0, 1)
    assert [len(a) for a in sel.native_latest([], 0, 5, 0, 1)] == [0, 0, 0]
    assert [len(a) for a in sel.native_rate([], 0, 5, 0, 1, 2, 1.0)[:2]] == [0, 0]


def _python_group_sums(values: list[float], groups: list[int]) -> tuple[list[int], list[float]]:
    members: dict[int, list[float]] = {}
    for v, g in zip(values, groups, strict=True):
        members.setdefault(g, []).append(v)
    sums = [_SINGLE["sum"](m[0]) if len(m) == 1 else _SIMPLE["sum"](m) for m in members.values()]
    return list(members), sums


@pytest.mark.parametrize("seed", range(20))
def test_native_group_sums_are_prometheus_bits(seed: int) -> None:
    assert sel.native_group_sums is not None
    rng = random.Random(seed)
    pool = [0.0, -0.0, 1e308, -1e308, math.inf, -math.inf, math.nan, 1e-300, 0.1]
    for n, ngroups in ((1, 1), (5, 3), (100, 7), (1000, 40), (3000, 1)):
        values = [rng.choice(pool) if rng.random() < 0.1 else rng.uniform(-1, 1) * 10 ** rng.randrange(-20, 20)]
        values += [rng.uniform(-1, 1) * 10 ** rng.randrange(-20, 20) for _ in range(n - 1)]
        if seed % 3 == 0:
            values = [v for v in values if math.isfinite(v)] or [1.0]
        groups = [rng.randrange(ngroups + 2) for _ in values]  # some groups never appear
        order, sums = sel.native_group_sums(np.array(values), np.array(groups, dtype=np.int64), ngroups + 2)
        want_order, want = _python_group_sums(values, groups)
        assert order.tolist() == want_order
        assert [_bits(x) for x in sums.tolist()] == [_bits(x) for x in want]


def test_native_group_sums_refuse_bad_input() -> None:
    assert sel.native_group_sums is not None
    with pytest.raises(ValueError, match="out of range"):
        sel.native_group_sums(np.ones(2), np.array([0, 2], dtype=np.int64), 2)
    with pytest.raises(ValueError, match="one group per value"):
        sel.native_group_sums(np.ones(2), np.array([0], dtype=np.int64), 2)
    with pytest.raises(TypeError, match="groups"):
        sel.native_group_sums(np.ones(2), np.array([0, 1], dtype=np.int32), 2)
    order, sums = sel.native_group_sums(np.ones(0), np.zeros(0, dtype=np.int64), 0)
    assert len(order) == len(sums) == 0


def test_a_vector_made_from_an_array_reads_as_a_list() -> None:
    vec = Vec([(), ()], None, array=np.array([1.5, -0.0]))
    assert len(vec) == 2
    assert vec.floats().tolist() == [1.5, -0.0]
    assert vec.values == [1.5, -0.0]
    vec.values.append(3.0)  # the list is the values from then on
    assert len(vec) == 3 and vec.floats().tolist() == [1.5, -0.0, 3.0]
    assert len(Vec()) == 0 and Vec().values == []


QUERIES = [
    "rate(m_total[1m])",
    "increase(m_total[90s])",
    "delta(g[2m])",
    "sum(rate(m_total[1m]))",
    "sum by (d) (rate(m_total[1m]))",
    "sum without (i) (increase(m_total[5m] offset 1m))",
    "avg by (d) (rate(m_total[1m]))",
    "histogram_quantile(0.9, sum by (le) (rate(h_bucket[2m])))",
    "sum by (le) (rate(h_bucket[2m] @ 3500))",
    "rate(g[1m])",  # not named like a counter: the general path, with its warning
    "sum(delta(m_total[1m])) / sum(rate(m_total[1m]))",
    "g",
    "g offset 2m",
    "sum by (d) (g)",
    "max(g @ 3500)",
    "timestamp(g)",
    "sum(last_over_time(g[2m]) and g)",
]


def _fleet(rng: random.Random) -> dict[str, list[tuple[int, float]]]:
    series: dict[str, list[tuple[int, float]]] = {}

    def points() -> list[tuple[int, float]]:
        t, v, out = NOW_MS - 400 * S, 0.0, []
        for _ in range(rng.randrange(0, 40)):
            t += rng.randrange(1, 30) * S
            v = _value(rng, v if math.isfinite(v) else 0.0)
            out.append((t, v))
        return out

    for i in range(60):
        series[f'm_total{{d="{i % 4}",i="{i}"}}'] = points()
        series[f'g{{d="{i % 4}",i="{i}"}}'] = points()
    for pod in range(10):
        for le in ("0.1", "1", "10", "+Inf"):
            series[f'h_bucket{{pod="{pod}",le="{le}"}}'] = points()
    return series


def _answer(result: Result) -> tuple[list[tuple[object, bytes]], tuple[str, ...], tuple[str, ...]]:
    assert isinstance(result.value, Vector)
    return [(s.labels, _bits(s.value)) for s in result.value], result.warnings, result.infos


@pytest.mark.parametrize("seed", range(6))
def test_queries_answer_the_same_with_and_without_the_c_paths(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    store = store_with(_fleet(random.Random(seed)))
    fast = Engine(store)
    answers = {q: _answer(fast.evaluate(parse_promql(q), NOW_MS, text=q)) for q in QUERIES}
    monkeypatch.setattr(ev, "native_rate", None)
    monkeypatch.setattr(agg, "native_group_sums", None)
    monkeypatch.setattr(sel, "native_latest", None)
    monkeypatch.setattr(ev, "native_latest", None)
    slow = Engine(store)
    for q in QUERIES:
        assert _answer(slow.evaluate(parse_promql(q), NOW_MS, text=q)) == answers[q], q
