"""The levels the planner's need returns to: bursts, a periodic batch job (see :class:`Recurrence`)."""

from __future__ import annotations


class Recurrence:
    """The levels the need returns to. The need is *at* a level once it stayed at or above it
    for :attr:`Tuning.sustain_ms` (a burst, not a blip of the rates); it *returns* to the level
    when that happens after the need, since it was last there, stayed below the level for
    longer than the ordinary hold, i.e. after the planner had released it. Two returns within
    :attr:`Tuning.recur_hold_s` make the level recurring, and it is held until
    ``recur_hold_s`` after the need was last at it. A need that wobbles within a burst does not
    recur (the ordinary hold covers it, and a wobble never released the level); a burst that
    comes back after its replicas went does."""

    def __init__(self, hold_ms: int, recur_ms: int, sustain_ms: int) -> None:
        self.hold_ms = hold_ms
        self.recur_ms = recur_ms
        self.sustain_ms = sustain_ms
        self.run_start: dict[int, int] = {}
        """Since when the need has been at or above each level (levels it is below are absent)."""
        self.seen: dict[int, int] = {}
        """When the need was last at or above each level, however briefly."""
        self.released: set[int] = set()
        """Levels the need has been below for longer than the hold since it was last at them
        for a sustained while: their replicas went."""
        self.last_at: dict[int, int] = {}
        """When the need was last at each level (after it had stayed there ``sustain_ms``)."""
        self.returns: dict[int, list[int]] = {}

    def update(self, t_ms: int, need: int) -> None:
        for level in [level for level in self.run_start if level > need]:
            del self.run_start[level]
        for level, seen in self.seen.items():
            # a wobble below the level and back within the hold never released it: the answer
            # (the hold's highest need) stayed at it
            if level > need and t_ms - seen > self.sustain_ms:
                self.released.add(level)
        for level in range(1, need + 1):
            self.seen[level] = t_ms
            start = self.run_start.setdefault(level, t_ms)
            if t_ms - start < self.sustain_ms:
                continue
            if level not in self.last_at or level in self.released:
                self.returns.setdefault(level, []).append(start)
                self.released.discard(level)
            self.last_at[level] = t_ms

    def level(self, t_ms: int, floor: int) -> int:
        """The highest recurring level above ``floor`` still held at ``t_ms`` (else ``floor``)."""
        for level in sorted(self.last_at, reverse=True):
            if level <= floor:
                break
            times = self.returns.get(level, [])
            if (
                len(times) >= 2
                and times[-1] - times[-2] <= self.recur_ms
                and t_ms - self.last_at[level] <= self.recur_ms
            ):
                return level
        return floor
