"""The levels the planner's need returns to: bursts, a periodic batch job (see :class:`Recurrence`)."""

from __future__ import annotations

from dataclasses import dataclass

from scaler.planner.tuning import Tuning


@dataclass(slots=True)
class _Run:
    """One stretch of instants at which the need was at or above a level."""

    start: int
    last: int
    surged: bool
    """The demand surged (:func:`~scaler.planner.forecast.settle`) at one of its instants."""


class Recurrence:
    """The levels the need returns to, held longer than the ordinary hold.

    **Recurring levels.** The need is *at* a level once it stayed at or above it for
    :attr:`Tuning.sustain_ms` (a burst, not a blip of the rates); it *returns* to the level
    when that happens after the need, since it was last there, stayed below the level for
    longer than the sustain. Two returns within :attr:`Tuning.recur_hold_s` make the level
    recurring, and it is held until ``recur_hold_s`` after the need was last at it, or after a
    surge of the demand last reached it for one rate window (``touch_ms``), if that was later:
    a burst shorter than the sustain is still a burst (it surged, and the rate showed it over a
    whole window), and the held replicas served it. Without that, a lull that bursts of 20–25 s
    interrupted counted as one lull, and the level went 600 s after the last burst of 30 s or
    more (bursty seed 1: a decode pod released at 2 130 s, 285 s after a 25-s burst had needed
    it, and the burst at 2 190 s missed three windows while it started again). A need
    that wobbles within a burst does not recur (the ordinary hold covers it, and a wobble
    never released the level); a burst that comes back after its replicas went does. Where the
    history was cut off (``truncated``: the planner's grid begins at the store's retention), a
    stretch that began within its first hold is no return: one under way at the first instant
    began at an unknown time, and one that begins soon after may be the forward pass's own
    start. Counted as returns, whether a level recurred depended on where the retention's edge
    fell (decode-heavy, seed 2: 1 and 2 decode pods on calls 15 s apart).

    **Burst trains.** Before a level recurs, the ordinary hold alone decides, and bursts shorter
    than the sustain with lulls a little longer than the hold between them release the level
    between each two (a reversal: a start-up paid, and the next burst missed while the
    replica starts again). So when the need's last two stretches at a level both came with a
    surge of the demand, and the second came back within one hold after the first (the lull
    was ``gap``, no longer than the hold: the ordinary hold bridged it), the level is held
    ``hold + gap`` after the need was last at it: the next burst is expected after a lull like
    the last, and a replica released sooner would be asked back for it. A need that wobbles
    at a level boundary on a plateau does not surge, and keeps the ordinary hold.

    Every figure comes from the needs fed in, oldest first: the planner recomputes it on every
    call from the stored series (no state is kept between calls)."""

    def __init__(
        self, hold_ms: int, recur_ms: int, sustain_ms: int, truncated: bool = False, touch_ms: int = Tuning.window_ms
    ) -> None:
        self.hold_ms = hold_ms
        self.touch_ms = touch_ms
        """How long a surge must stay at a recurring level to renew its hold: the rate window
        (:attr:`Tuning.window_ms`), since a shorter one may be the rate's noise."""
        self.truncated = truncated
        """The needs fed in begin inside the history (the store's retention cut it off): a
        stretch under way at the first instant began at an unknown time, and one that begins
        within the first hold may be the forward pass's own start (without the answers before
        it, its first needs can differ from what the planner said then): neither is a return."""
        self.origin: int | None = None
        self.recur_ms = recur_ms
        self.sustain_ms = sustain_ms
        self.need = 0
        """The need at the last instant fed in: each level up to it has a stretch under way (the
        last of :attr:`runs`)."""
        self.touched: dict[int, int] = {}
        """When a surge of the demand was last at each level, after it had stayed there ``touch_ms``."""
        self.surge_from: dict[int, int] = {}
        """Where the surge under way reached each level it is at."""
        self.seen: dict[int, int] = {}
        """When the need was last at or above each level, however briefly."""
        self.released: set[int] = set()
        """Levels the need has been below for longer than the sustain since it was last at them:
        their replicas may have gone."""
        self.last_at: dict[int, int] = {}
        """When the need was last at each level (after it had stayed there ``sustain_ms``)."""
        self.returns: dict[int, list[int]] = {}
        self.runs: dict[int, list[_Run]] = {}
        """The last two stretches at each level (the last one under way while the need is at it)."""

    def update(self, t_ms: int, need: int, surging: bool = False) -> None:
        if self.origin is None:
            self.origin = t_ms
        for level, seen in self.seen.items():
            # a wobble below the level and back within the sustain never released it: the
            # answer (the hold's highest need) stayed at it
            if level > need and t_ms - seen > self.sustain_ms:
                self.released.add(level)
        for level in range(1, need + 1):
            if level > self.need or not surging:
                self.surge_from.pop(level, None)
            if surging and t_ms - self.surge_from.setdefault(level, t_ms) >= self.touch_ms:
                self.touched[level] = t_ms
            self.seen[level] = t_ms
            if level > self.need:
                runs = self.runs.setdefault(level, [])
                runs.append(_Run(t_ms, t_ms, surging))
                del runs[:-2]
            run = self.runs[level][-1]
            run.last, run.surged = t_ms, run.surged or surging
            if t_ms - run.start < self.sustain_ms:
                continue
            if level in self.released or (level not in self.last_at and not self._cut(run.start)):
                self.returns.setdefault(level, []).append(run.start)
                self.released.discard(level)
            self.last_at[level] = t_ms
        self.need = need

    def level(self, t_ms: int, floor: int) -> tuple[int, int]:
        """The highest level above ``floor`` still held at ``t_ms``, recurring or a burst
        train's, and how long after the need was last at it it is held (``floor`` and 0 when
        none is)."""
        for level in sorted(self.seen, reverse=True):
            if level <= floor:
                break
            if self._recurs(level, t_ms):
                return level, self.recur_ms
            gap = self._train_gap(level)
            if gap is not None and t_ms - self.seen[level] <= self.hold_ms + gap:
                return level, self.hold_ms + gap
        return floor, 0

    def _cut(self, start: int) -> bool:
        """A stretch that began within the first hold of a cut-off history (see ``truncated``)."""
        return self.truncated and self.origin is not None and start < self.origin + self.hold_ms

    def _recurs(self, level: int, t_ms: int) -> bool:
        times = self.returns.get(level, [])
        return (
            len(times) >= 2
            and times[-1] - times[-2] <= self.recur_ms
            and t_ms - max(self.last_at[level], self.touched.get(level, self.last_at[level])) <= self.recur_ms
        )

    def _train_gap(self, level: int) -> int | None:
        """The lull between the level's last two stretches, if both surged and the lull was no
        longer than the hold."""
        runs = self.runs.get(level, [])
        if len(runs) < 2 or not (runs[0].surged and runs[1].surged):
            return None
        gap = runs[1].start - runs[0].last
        return gap if gap <= self.hold_ms else None
