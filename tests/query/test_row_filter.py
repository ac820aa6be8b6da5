"""``f(x[w]) and x`` / ``unless x`` by row (the compat form's set operation, without a
right-hand vector or label sets) against the general signature-matching path, on random stores
with staleness markers, samples after the evaluation time, several metric names and the
reserved ``__type__`` label."""

from __future__ import annotations

import math
import random
import struct
from collections.abc import Generator
from typing import Any

import pytest

from scaler.model import STALE_NAN, make_labels
from scaler.query import Engine, QueryError, QueryLimits, Result, Vector, parse_promql
from scaler.query import evaluator as ev
from scaler.query.selection import Selection
from scaler.series import Series
from tests.query.helpers import NOW_MS, store_with

S = 1000
ROW_FILTERED = [
    'sum(last_over_time(g{d="1"}[2m]) and g{d="1"})',
    "last_over_time(g[2m]) and g",
    "avg_over_time(g[5m]) and g",
    "max_over_time(g[1m]) unless g",
    "sum by (d) (count_over_time(g[10m]) and g)",
    "last_over_time(g[1m] offset 30s) and g",
    "min_over_time(g[3m]) and g offset 2m",
    "rate(m_total[1m]) and m_total",
    "increase(m_total[2m]) unless (m_total)",
    "last_over_time(g[2m] @ 3500) and g @ 3400",
    "sum(sum_over_time(m_total[2m]) and m_total) / sum(last_over_time(g[2m]) and g)",
    "g and g",
    "g unless g offset 1m",
    'sum by (__name__, d) (g{d!="0"} and g{d!="0"} @ 3400)',
]
"""Queries the row filter answers (every selection's signatures are its rows)."""
GENERAL = [
    'last_over_time({__name__=~"g|h"}[2m]) and {__name__=~"g|h"}',  # g and h share label sets
    "last_over_time(t[2m]) and t",  # __type__: a dropped label set is not the signature
    "last_over_time(g[2m]) and on (d) g",
    "last_over_time(g[2m]) and ignoring (i) g",
    "last_over_time(g[2m]) and h",
    'last_over_time(g[2m]) and g{d="1"}',
    "g and -g",
]
"""Queries the general path answers (the row filter declines them)."""


def _bits(x: float) -> bytes:
    return b"NaN" if math.isnan(x) else struct.pack("<d", x)


def _fleet(rng: random.Random) -> dict[str, list[tuple[int, float]]]:
    def points() -> list[tuple[int, float]]:
        t, out = NOW_MS - 600 * S, []
        for _ in range(rng.randrange(0, 30)):
            t += rng.randrange(1, 60) * S + rng.choice([0, 1, 7])
            kind = rng.random()
            value = STALE_NAN if kind < 0.15 else rng.choice([math.nan, -0.0]) if kind < 0.2 else rng.uniform(-9, 9)
            out.append((t, value))
        return out

    series: dict[str, list[tuple[int, float]]] = {}
    for i in range(40):
        series[f'g{{d="{i % 3}",i="{i}"}}'] = points()
        series[f'h{{d="{i % 3}",i="{i}"}}'] = points()
        series[f'm_total{{d="{i % 3}",i="{i}"}}'] = points()
        series[f't{{__type__="gauge",i="{i}"}}'] = points()
    return series


def _answer(result: Result) -> tuple[object, tuple[str, ...], tuple[str, ...]]:
    value = result.value
    assert isinstance(value, Vector), value
    return [(s.labels, _bits(s.value)) for s in value], result.warnings, result.infos


@pytest.fixture
def filtered(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Whether each row-filter attempt answered (True) or declined (False)."""
    seen: list[bool] = []
    general = ev.Evaluator._filter_rows

    def spy(self: ev.Evaluator, *args: Any) -> Generator[None, None, Any]:
        kept = yield from general(self, *args)
        seen.append(kept is not None)
        return kept

    monkeypatch.setattr(ev.Evaluator, "_filter_rows", spy)
    return seen


@pytest.mark.parametrize("seed", range(8))
def test_the_row_filter_answers_as_the_general_path(
    seed: int, filtered: list[bool], monkeypatch: pytest.MonkeyPatch
) -> None:
    store = store_with(_fleet(random.Random(seed)), now_ms=NOW_MS + 1200 * S)
    times = [NOW_MS - 300 * S, NOW_MS - 47 * S, NOW_MS]  # earlier ones see samples after them
    fast = Engine(store)
    answers = {}
    for q in ROW_FILTERED + GENERAL:
        for t in times:
            filtered.clear()
            answers[q, t] = _answer(fast.evaluate(parse_promql(q), t, text=q))
            assert (bool(filtered) and all(filtered)) == (q in ROW_FILTERED), (q, filtered)
    monkeypatch.setattr(ev, "_ROW_FILTERS", frozenset())
    slow = Engine(store)
    for (q, t), answer in answers.items():
        assert _answer(slow.evaluate(parse_promql(q), t, text=q)) == answer, (q, t)
    assert any(answer[0] for answer in answers.values())  # the stores are not all empty


def _fits(engine: Engine, q: str) -> bool:
    try:
        engine.instant(q, NOW_MS)
    except QueryError:
        return False
    return True


def test_the_row_filter_counts_the_samples_the_general_path_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    store = store_with({f'g{{i="{i}"}}': [(NOW_MS - k * 7 * S, float(i)) for k in range(3)] for i in range(10)})
    q = "last_over_time(g[1m]) and g"
    limits = range(1, 80)
    fast = [_fits(Engine(store, limits=QueryLimits(max_samples=n)), q) for n in limits]
    monkeypatch.setattr(ev, "_ROW_FILTERS", frozenset())
    slow = [_fits(Engine(store, limits=QueryLimits(max_samples=n)), q) for n in limits]
    assert fast == slow
    assert not fast[0] and fast[-1]


def _selection(*label_sets: dict[str, str], name: str = "g") -> Selection:
    return Selection([Series(i, make_labels(name, labels)) for i, labels in enumerate(label_sets)])


def test_signatures_are_rows_only_where_a_signature_names_one_series() -> None:
    assert _selection({"i": "1"}, {"i": "2"}).signatures_are_rows
    assert Selection([]).signatures_are_rows
    assert not _selection({"__type__": "gauge", "i": "1"}).signatures_are_rows
    same = Selection([Series(0, make_labels("g", {"i": "1"})), Series(1, make_labels("h", {"i": "1"}))])
    assert not same.signatures_are_rows
