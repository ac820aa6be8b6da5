"""StreamIsActive at scale: which open streams an append concerns, when an idle stream is
rechecked, and how many streams may be open.

KEDA keeps one ``StreamIsActive`` stream per ``external-push`` trigger, so a large cluster holds
thousands. Each stream re-evaluates its trigger when it is woken; the :class:`StreamHub` decides
whom to wake, so that an Export costs the streams it concerns and not all of them:

* **Index.** Each selector of a stream's query is indexed under its metric name and, when it
  has ``label="value"`` equality matchers, under one of them: the label with the most distinct
  values in the store (a deployment rather than a namespace; chosen again once the store has
  seen the labels, when the stream opened before any data). The store reports, besides the
  metric names an append touched, the series it touched of the indexed names
  (:attr:`Store.watched`); such a series wakes the streams indexed under one of its label
  pairs whose other equality matchers it satisfies too. A selector without an equality
  matcher wakes on any sample of its metric, one without a metric name on every append.
  Waking too often is harmless (the stream re-evaluates and sends nothing); a stream is never
  left asleep when data it selects arrived. Metric names in the Go reference's escaped form
  (``.`` and ``/`` as ``_``) match too.
* **Rechecks.** A window can age out without new data (``rate(...[1m])`` after traffic stops),
  so a stream not evaluated for ``recheck_seconds`` is woken once more. Rechecks are spread
  over time and capped at ``recheck_rate`` a second: up to ``recheck_rate × recheck_seconds``
  streams (2,000 by default) each is rechecked on time; past that the period stretches
  (10,000 streams: every 25 s), so idle streams never take the event loop from ingest and
  KEDA calls. Data-driven wake-ups are not capped.
* **Admission.** At most ``max_streams`` streams are open; :meth:`StreamHub.open` refuses one
  more with :class:`StreamsExhausted`, which the KEDA adapter answers ``RESOURCE_EXHAUSTED``
  with the reason, and counts.

Everything runs on the event loop; the hub keeps no reference to a stream once it closes, and
listens to the store only while a stream is open.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from scaler.model import METRIC_NAME, Matcher, MatchOp, escape_name
from scaler.query import Expr, selectors
from scaler.store import Series, Store

RECHECK_TICK_SECONDS = 0.02
"""Rechecks are woken this often, a few at a time, so that a flip never queues behind many."""
Pairs = tuple[tuple[str, str], ...]


class StreamsExhausted(Exception):
    """No stream can be opened now; the message says why."""


class Selector(NamedTuple):
    """What one vector selector needs of a series to concern its stream: the metric name
    ("" when the selector has none) and the ``label="value"`` equality matchers. A tuple: a
    stream's selectors are built and deduplicated (hashed) each time one opens."""

    name: str
    pairs: Pairs

    @staticmethod
    def of(matchers: Iterable[Matcher]) -> Selector:
        name = ""
        pairs: list[tuple[str, str]] = []
        for m in matchers:
            if m.op is MatchOp.EQ:
                if m.name == METRIC_NAME:
                    name = m.value
                elif m.value:
                    pairs.append((m.name, m.value))
        return Selector(name, tuple(sorted(set(pairs))) if len(pairs) > 1 else tuple(pairs))


@dataclass(frozen=True, eq=False)
class Entry:
    """A watch in one index bucket: the pairs a series must also carry to wake it."""

    watch: Watch
    rest: Pairs

    def concerns(self, series: Series) -> bool:
        return all(series.label(label) == value for label, value in self.rest)


class Watch:
    """One open stream's wake-ups (see :class:`StreamHub`): ``await wait()`` returns when data
    the stream's query selects has arrived, or its recheck is due, since :meth:`begin`."""

    __slots__ = ("_event", "_hub", "closed", "entries", "provisional", "selectors")

    def __init__(self, hub: StreamHub, selectors: tuple[Selector, ...]) -> None:
        self._hub = hub
        self.selectors = selectors
        self.entries: list[tuple[tuple[str, ...], Entry]] = []
        """Where the watch is indexed: (bucket key, entry)."""
        self.provisional = False
        """Indexed before the store knew its labels: index it again at the next begin()."""
        self._event = asyncio.Event()
        self.closed = False

    def begin(self) -> None:
        """Call before each evaluation: forget wake-ups so far; the recheck clock restarts."""
        self._event.clear()
        self._hub.evaluated(self)

    async def wait(self) -> None:
        await self._event.wait()

    def wake(self) -> None:
        self._event.set()

    @property
    def woken(self) -> bool:
        return self._event.is_set()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._hub.close(self)


class StreamHub:
    """Open streams indexed by what their queries select. See the module docstring."""

    def __init__(
        self,
        store: Store,
        max_streams: int,
        recheck_seconds: float = 5.0,
        recheck_rate: float = 400.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.max_streams = max_streams
        self.recheck_seconds = recheck_seconds
        self.recheck_rate = recheck_rate
        self._now = clock
        self._keyed: dict[str, dict[str, dict[str, set[Entry]]]] = {}
        """metric name → label → value → entries"""
        self._named: dict[str, set[Entry]] = {}
        self._anywhere: set[Entry] = set()
        self._last_evaluated: OrderedDict[Watch, float] = OrderedDict()
        """Every open watch, least recently evaluated first."""
        self._escaped: dict[str, str] = {}
        self._rechecks: asyncio.Task[None] | None = None
        self._unsubscribe: list[Callable[[], None]] = []
        """While a stream is open, the hub listens to the store's appends."""

    # ----------------------------------------------------------------- streams

    @property
    def open_streams(self) -> int:
        return len(self._last_evaluated)

    def open(self, expr: Expr) -> Watch:
        """A watch for a stream of the query ``expr``; raises StreamsExhausted when full."""
        if len(self._last_evaluated) >= self.max_streams:
            raise StreamsExhausted(
                f"{len(self._last_evaluated)} StreamIsActive streams are open, the most this scaler serves "
                f"(MAX_STREAMS={self.max_streams}); raise MAX_STREAMS or spread the ScaledObjects over more scalers"
            )
        watch = Watch(self, tuple(dict.fromkeys(Selector.of(matchers) for matchers in selectors(expr))))
        self._index(watch)
        self._last_evaluated[watch] = self._now()
        if not self._unsubscribe:
            self._unsubscribe = [self.store.subscribe(self._on_names), self.store.subscribe_series(self._on_series)]
        if self._rechecks is None or self._rechecks.done():
            self._rechecks = asyncio.get_running_loop().create_task(self._recheck_loop(), name="stream-rechecks")
        return watch

    def evaluated(self, watch: Watch) -> None:
        if watch in self._last_evaluated:
            if watch.provisional:
                self._unindex(watch)
                self._index(watch)
            self._last_evaluated[watch] = self._now()
            self._last_evaluated.move_to_end(watch)

    def close(self, watch: Watch) -> None:
        if self._last_evaluated.pop(watch, None) is None:
            return
        self._unindex(watch)
        if not self._last_evaluated:
            for unsubscribe in self._unsubscribe:
                unsubscribe()
            self._unsubscribe = []
            if self._rechecks is not None:
                self._rechecks.cancel()
                self._rechecks = None

    async def aclose(self) -> None:
        """Stop the recheck task (the service stops)."""
        task, self._rechecks = self._rechecks, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # ----------------------------------------------------------------- the index

    def _index(self, watch: Watch) -> None:
        watch.provisional = False
        for selector in watch.selectors:
            if not selector.name:
                key: tuple[str, ...] = ()
                entry = Entry(watch, selector.pairs)
            elif not selector.pairs:
                key, entry = (selector.name,), Entry(watch, ())
            else:
                (label, value), known = self._most_selective(selector.pairs)
                watch.provisional |= not known
                key = (selector.name, label, value)
                entry = Entry(watch, tuple(p for p in selector.pairs if p != (label, value)))
            self._bucket(key).add(entry)
            watch.entries.append((key, entry))
        self.store.set_watched(self._keyed)

    def _unindex(self, watch: Watch) -> None:
        for key, entry in watch.entries:
            bucket = self._bucket(key)
            bucket.discard(entry)
            if not bucket:
                self._drop(key)
        watch.entries.clear()
        self.store.set_watched(self._keyed)

    def _most_selective(self, pairs: Pairs) -> tuple[tuple[str, str], bool]:
        """The pair whose label has the most distinct values in the store (ties: the longer
        value), and whether the store knows any of these labels yet."""
        if len(pairs) == 1:  # the common case: one label besides the name
            return pairs[0], self.store.distinct_values(pairs[0][0]) > 0
        counts = {label: self.store.distinct_values(label) for label, _ in pairs}
        best = max(pairs, key=lambda pair: (counts[pair[0]], len(pair[1])))
        return best, any(counts.values())

    def _bucket(self, key: tuple[str, ...]) -> set[Entry]:
        if not key:
            return self._anywhere
        if len(key) == 1:
            return self._named.setdefault(key[0], set())
        name, label, value = key
        return self._keyed.setdefault(name, {}).setdefault(label, {}).setdefault(value, set())

    def _drop(self, key: tuple[str, ...]) -> None:
        if len(key) == 1:
            self._named.pop(key[0], None)
        elif len(key) == 3:
            name, label, value = key
            labels = self._keyed[name]
            del labels[label][value]
            if not labels[label]:
                del labels[label]
                if not labels:
                    del self._keyed[name]

    # ----------------------------------------------------------------- wake-ups

    def _on_names(self, names: frozenset[str]) -> None:
        for entry in self._anywhere:  # rare: a selector without a metric name
            entry.watch.wake()
        if not self._named:
            return
        for name in names:
            for key in (name, self._escape(name)) if "." in name or "/" in name else (name,):
                for entry in self._named.get(key, ()):
                    entry.watch.wake()

    def _on_series(self, touched: Sequence[Series]) -> None:
        keyed = self._keyed
        seen: set[int] = set()
        for series in touched:
            if series.id in seen:
                continue
            seen.add(series.id)
            name = series.name
            for key in (name, self._escape(name)) if "." in name or "/" in name else (name,):
                labels = keyed.get(key)
                if labels is None:
                    continue
                for label, values in labels.items():
                    entries = values.get(series.label(label))
                    if entries:
                        for entry in entries:
                            if not entry.rest or entry.concerns(series):
                                entry.watch.wake()

    def _escape(self, name: str) -> str:
        escaped = self._escaped.get(name)
        if escaped is None:
            if len(self._escaped) > 100_000:
                self._escaped.clear()
            escaped = self._escaped[name] = escape_name(name)
        return escaped

    # ----------------------------------------------------------------- rechecks

    async def _recheck_loop(self) -> None:
        """Wake the watches whose recheck is due, oldest first, at most ``recheck_rate``/s."""
        budget = 0.0
        tick = time.monotonic()
        while self._last_evaluated:
            await asyncio.sleep(RECHECK_TICK_SECONDS)
            last, tick = tick, time.monotonic()
            allowance = self.recheck_rate * (tick - last)  # no burst: what is not used is lost
            budget = min(budget + allowance, max(1.0, allowance))
            due = self._now() - self.recheck_seconds
            woken: list[Watch] = []
            for watch, last in self._last_evaluated.items():
                if last > due or budget < 1:
                    break
                woken.append(watch)
                budget -= 1
            for watch in woken:  # evaluated() reorders the dict: wake after the walk
                watch.wake()
                self.evaluated(watch)  # its recheck clock restarts now, not when it runs
