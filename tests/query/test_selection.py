"""Selections kept across queries, the C window gather against its Python reference, and the
numpy Kahan sums against Prometheus' loop (bit for bit)."""

from __future__ import annotations

import math
import random
import struct

import numpy as np
import pytest

from scaler.model import STALE_NAN, make_labels
from scaler.query import Engine, parse_metric_selector, parse_promql
from scaler.query import selection as sel
from scaler.query.aggregate import _SIMPLE
from scaler.query.gomath import kahan_avg, kahan_avg_array, kahan_sum_array
from scaler.series import Series
from scaler.store import drain
from tests.query.helpers import NOW_MS, store_with, values

S = 1000


def _random_series(rng: random.Random, count: int) -> list[Series]:
    out = []
    for i in range(count):
        s = Series(i, make_labels("m", {"i": str(i)}))
        t = rng.randrange(0, 50) * S
        for _ in range(rng.choice([0, 1, 2, 5, 40])):
            t += rng.randrange(1, 20) * S
            s.append(t, rng.choice([rng.uniform(-1e6, 1e6), 0.0, STALE_NAN]), 0)
        out.append(s)
    return out


def test_native_gather_is_the_python_reference() -> None:
    assert sel._native_gather is not None, "the extension is not built (make native)"
    rng = random.Random(20)
    series = _random_series(rng, 300)
    for lo, hi in [(0, 10**9), (-5, 0), (30 * S, 31 * S), (100 * S, 400 * S), (450 * S, 450 * S), (10**9, 10**10)]:
        native = sel._native_gather(series, lo, hi)
        python = sel.gather_python(series, lo, hi)
        for a, b in zip(native, python, strict=True):
            assert a.dtype == b.dtype
            assert a.tobytes() == b.tobytes()  # NaN payloads (staleness markers) included
    assert [len(a) for a in sel._native_gather([], 0, 1)] == [0, 1, 0, 0]


def test_native_gather_refuses_what_is_not_a_series() -> None:
    assert sel._native_gather is not None
    with pytest.raises(AttributeError):
        sel._native_gather([object()], 0, 1)  # type: ignore[list-item]
    with pytest.raises(TypeError):
        sel._native_gather("not a list", 0, 1)  # type: ignore[arg-type]
    bad = Series(1, make_labels("m", {}))
    bad.append(5, 1.0, 0)
    bad.ts = bad.ts.astype(np.int32)
    with pytest.raises(TypeError, match="not a contiguous 1-d array"):
        sel._native_gather([bad], 0, 10)


def _floats(rng: random.Random, n: int) -> list[float]:
    pool = [0.0, -0.0, 1e308, -1e308, math.inf, -math.inf, math.nan, 1e-300, 3.0, 0.1]
    out = []
    for _ in range(n):
        kind = rng.random()
        if kind < 0.1:
            out.append(rng.choice(pool))
        elif kind < 0.5:
            out.append(rng.uniform(-1, 1) * 10 ** rng.randrange(-20, 20))
        else:
            out.append(struct.unpack("<d", struct.pack("<Q", rng.getrandbits(63)))[0])  # any positive bits
    return out


def _bits(x: float) -> bytes:
    """The value's bits; every NaN alike: which NaN an x86 add makes (its sign) follows operand
    order and SIMD versus scalar code, and no PromQL answer shows it (all print ``NaN``)."""
    return b"NaN" if math.isnan(x) else struct.pack("<d", x)


@pytest.mark.parametrize("seed", range(40))
def test_numpy_kahan_sums_are_prometheus_bits(seed: int) -> None:
    rng = random.Random(seed)
    for n in (2, 3, 17, 100, 1000):
        vals = _floats(rng, n) if seed % 2 else [rng.uniform(0, 1e4) for _ in range(n)]
        if seed % 5 == 0:
            vals = [v for v in vals if math.isfinite(v)] or [1.0, 2.0]
        arr = np.array(vals)
        assert _bits(kahan_sum_array(arr)) == _bits(_SIMPLE["sum"](vals))
        assert _bits(kahan_avg_array(arr)) == _bits(kahan_avg(vals))


def test_a_repeated_query_reuses_its_selection_until_a_series_comes_or_goes() -> None:
    series = {
        f'c_total{{d="{i % 3}",i="{i}"}}': [(NOW_MS - 20 * S, 0.0), (NOW_MS - 5 * S, float(i))] for i in range(30)
    }
    store = store_with(series)
    engine = Engine(store)
    calls = []
    select = store.select_steps

    def counting(matchers):  # type: ignore[no-untyped-def]
        calls.append(matchers)
        return (yield from select(matchers))

    store.select_steps = counting  # type: ignore[method-assign]
    expr = parse_promql("sum by (d) (rate(c_total[1m]))")
    first = values(engine.instant(expr, NOW_MS))
    assert values(engine.instant(expr, NOW_MS)) == first
    assert len(calls) == 1
    new = make_labels("c_total", {"d": "0", "i": "new"})
    store.append([(new, NOW_MS - 20 * S, 0.0, False), (new, NOW_MS - 5 * S, 1000.0, False)])
    after = values(engine.instant(expr, NOW_MS))
    assert len(calls) == 2
    assert after['{d="0"}'] > first['{d="0"}']  # the new series is counted at once
    store.reset()
    assert values(engine.instant(expr, NOW_MS)) == {}
    kept = engine._evaluator._selections._entries
    assert [len(selection) for selection in kept.values()] == [0]  # the deleted series are not held


def test_selections_are_bounded() -> None:
    store = store_with({f'g{{i="{i}"}}': [(NOW_MS - S, float(i))] for i in range(20)})
    cache = sel.SelectionCache(store, size=4)
    for i in range(20):
        found = drain(cache.select_steps(tuple(parse_metric_selector(f'g{{i="{i}"}}'))))
        assert [s.labels for s in found.series] == [make_labels("g", {"i": str(i)})]
    assert len(cache._entries) == 4
