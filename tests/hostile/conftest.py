"""Every hostile case is followed by the invariants of :meth:`Hostile.check` on every running
server of the module: ready, alive, RSS bounded, sentinel values exact."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.hostile.support import Hostile


@pytest.fixture(autouse=True)
def _invariants_hold_after_each_case() -> Iterator[None]:
    yield
    for hostile in list(Hostile.live):
        hostile.check()
