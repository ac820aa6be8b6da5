"""The retention sweep of the housekeeping task on a real store and a real asyncio loop: it trims
and deletes as before, a ready KEDA step runs before its next piece, and its pieces are sized
by how long they take."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from scaler import housekeeping
from scaler.config import StoreLimits
from scaler.housekeeping import Housekeeping
from scaler.lowpriority import LowPriority
from scaler.persistence import Persistence
from scaler.selfmetrics import SelfMetrics
from scaler.store import Store

NOW_S = 1_796_500_000.0
NOW_MS = int(NOW_S * 1000)


class _Pieces(Store):
    """A store that notes each ``collect`` call (a piece of the sweep) in ``order``."""

    def __init__(self, order: list[str]) -> None:
        self.now = NOW_S - 150  # the samples are appended while still within the retention
        super().__init__(StoreLimits(), clock=lambda: self.now)
        self.order = order
        self.budgets: list[int | None] = []

    def collect(self, budget: int | None = None) -> int:
        self.order.append(f"piece{len(self.budgets)}")
        self.budgets.append(budget)
        return super().collect(budget)


def _filled(order: list[str], series: int) -> _Pieces:
    """``series`` series: even ones expired (last sample 200 s old), odd ones with one old and
    one fresh sample (retention 120 s)."""
    store = _Pieces(order)
    for i in range(series):
        labels = (("__name__", "m"), ("pod", str(i)))
        stamps = [NOW_MS - 200_000] if i % 2 == 0 else [NOW_MS - 200_000, NOW_MS - 1_000]
        assert store.append([(labels, ts, 1.0, False) for ts in stamps]).accepted == len(stamps)
    store.now = NOW_S
    return store


def _housekeeping(store: Store, turns: LowPriority | None = None) -> Housekeeping:
    return Housekeeping(store, Persistence("", store, SelfMetrics(lambda: store.series_count)), 0, turns)


def test_ten_sweeps_trim_every_series_and_delete_the_expired_ones() -> None:
    store = _filled([], 3000)
    keeper = _housekeeping(store)

    async def sweeps() -> int:
        # a tenth of the series a tick: a round takes a little over 10 ticks while series go
        for tick in range(1, 20):
            await keeper.sweep()
            if store.series_count == 1500:
                return tick
        return 0

    assert 10 <= asyncio.run(sweeps()) <= 15
    assert all(s.n == 1 and s.first_ts == NOW_MS - 1_000 for s in store.series())


def test_a_ready_keda_step_runs_before_the_next_piece(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(housekeeping, "_GC_SLICE", 25)  # several pieces in one sweep, however fast
    order: list[str] = []
    store = _filled(order, 3000)
    turns = LowPriority()
    keeper = _housekeeping(store, turns)
    keeper._piece = 25

    async def keda(steps: int) -> None:
        for i in range(steps):
            order.append(f"keda{i}")
            await asyncio.sleep(0)

    async def both() -> None:
        await asyncio.gather(keeper.sweep(), keda(4))

    asyncio.run(both())
    pieces = [i for i, step in enumerate(order) if step.startswith("piece")]
    assert len(pieces) >= 4
    # with a plain sleep(0) they alternate: piece0 keda0 piece1 keda1 ...
    assert order.index("keda1") < pieces[1]
    assert order.index("keda3") < pieces[3]
    assert turns.deferred >= 2 and turns.paused == 0


def test_pieces_shrink_when_slow_and_grow_back(monkeypatch: pytest.MonkeyPatch) -> None:
    store = _filled([], 5000)
    keeper = _housekeeping(store)
    costs = iter([0.002] * 3 + [0.0001] * 20)  # CPU seconds of each piece
    clock = itertools.count()
    elapsed = [0.0]

    def cpu_time() -> float:
        if next(clock) % 2:  # the reading after a piece
            elapsed[0] += next(costs)
        return elapsed[0]

    monkeypatch.setattr(housekeeping, "_cpu_time", cpu_time)
    asyncio.run(keeper.sweep())  # 500 series: 5000 / 10
    target = housekeeping._PIECE_SECONDS
    first = 250
    second = int(first * target / 0.002)  # 37
    third = int(second * target / 0.002)  # 5, raised to the floor
    floor = housekeeping._MIN_SLICE
    assert store.budgets[:4] == [first, second, max(floor, third), floor]
    assert store.budgets[4] == int(floor * target / 0.0001)  # 47: growing back
    assert sum(b or 0 for b in store.budgets) == 500
    assert None not in store.budgets
