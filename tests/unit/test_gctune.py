"""The GC policy the server installs at start-up (scaler/gctune.py): its thresholds, the freeze
of the start-up objects, and a freeze after a full collection once the survivors outnumber the
frozen — so later full collections skip them."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from scaler import gctune


@pytest.fixture
def restored_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    try:
        yield
    finally:
        if gctune._after_collection in gc.callbacks:
            gc.callbacks.remove(gctune._after_collection)
        gc.unfreeze()
        gc.set_threshold(*thresholds)


def test_install_sets_thresholds_and_freezes_start_up_objects(restored_gc: None) -> None:
    gctune.install()
    gctune.install()  # idempotent: one callback
    assert gc.get_threshold() == gctune.THRESHOLDS
    assert gc.get_freeze_count() > 0
    assert gc.callbacks.count(gctune._after_collection) == 1


def test_survivors_are_frozen_once_they_outnumber_the_frozen(restored_gc: None) -> None:
    gctune.install()
    frozen = gc.get_freeze_count()
    few = [[i] for i in range(1000)]  # noqa: F841 - kept alive across the collection
    gc.collect()
    assert gc.get_freeze_count() == frozen  # below FREEZE_MIN: nothing to gain
    many = [[i] for i in range(max(gctune.FREEZE_MIN, frozen) + 1000)]
    gc.collect()
    assert gc.get_freeze_count() >= frozen + len(many)
    assert len(gc.get_objects(2)) < gctune.FREEZE_MIN  # the next full collection skips them
    garbage: list[object] = [[]]
    garbage.append(garbage)  # a cycle made after the freeze is still collected
    del garbage
    assert gc.collect() >= 2
