"""What every fuzz target shares: instrumented scaler imports, a fixed clock, the invariants of
translated samples and of the store, and a small store of vLLM-shaped series to query.

Import this module (or a target) only in a fuzz worker or a test: it imports :mod:`scaler`
under ``atheris.instrument_imports()``, which must happen before anything else imports it.
"""

from __future__ import annotations

import itertools
import math
import signal
import struct
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from types import FrameType
from typing import Any

import atheris as _atheris  # type: ignore[import-untyped]

atheris: Any = _atheris
"""The atheris module (it has no type stubs); the targets import it from here."""

with atheris.instrument_imports(include=["scaler"]):
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

    from scaler import nativeingest, otlp
    from scaler.config import Settings, StoreLimits
    from scaler.model import METRIC_NAME, STALE_NAN, LabelPairs, Sample, make_labels
    from scaler.store import AppendResult, Store

NOW_S = 1_800_000_000.0
"""The fixed 'now' of every store the harnesses build (2027-01-15)."""
NOW_MS = int(NOW_S * 1000)
MAX_SERIES = 50
"""A small series limit, so the limit path is exercised by ordinary inputs."""


class Clock:
    """A settable clock for :class:`Store`."""

    def __init__(self, now_s: float = NOW_S) -> None:
        self.now_s = now_s

    def __call__(self) -> float:
        return self.now_s


def fail(message: str, *context: object) -> None:
    """Report a violated invariant (libFuzzer then saves the input as a crash)."""
    detail = "".join(f"\n  {c!r}" for c in context)
    raise AssertionError(message + detail)


def check_labels(labels: object) -> None:
    """A canonical label set: a tuple of ``(str, str)`` pairs with strictly increasing names
    (sorted, no name twice), one non-empty ``__name__``, no empty value (an empty value means
    "no such label" and is dropped by the translation)."""
    if not isinstance(labels, tuple):
        fail("label set is not a tuple", labels)
    assert isinstance(labels, tuple)
    previous: str | None = None
    has_name = False
    for pair in labels:
        if not (isinstance(pair, tuple) and len(pair) == 2 and all(type(x) is str for x in pair)):
            fail("label pair is not a (str, str) tuple", pair, labels)
        name, value = pair
        if previous is not None and not previous < name:
            fail("label names not strictly increasing (unsorted or repeated)", labels)
        previous = name
        if not value:
            fail("empty label value", labels)
        if name == METRIC_NAME:
            has_name = True
    if not has_name:
        fail("label set has no __name__", labels)


def check_samples(samples: Sequence[Sample]) -> None:
    for sample in samples:
        if not (isinstance(sample, tuple) and len(sample) == 4):
            fail("sample is not a 4-tuple", sample)
        labels, ts, value, delta = sample
        check_labels(labels)
        if type(ts) is not int:
            fail("timestamp is not an int", sample)
        if type(value) is not float:
            fail("value is not a float", sample)
        if type(delta) is not bool:
            fail("is_delta is not a bool", sample)


def same_samples(a: Sequence[Sample], b: Sequence[Sample]) -> bool:
    """Equal sample lists, comparing values bit for bit (NaN == NaN, the stale NaN ≠ NaN)."""
    if len(a) != len(b):
        return False
    for (la, ta, va, da), (lb, tb, vb, db) in zip(a, b, strict=True):
        if la != lb or ta != tb or da != db or struct.pack("<d", va) != struct.pack("<d", vb):
            return False
    return True


def check_store(store: Store) -> None:
    limit = store.limits.max_series
    if store.series_count > limit:
        fail(f"{store.series_count} series stored, limit {limit}")
    for series in store.series():
        n = series.n
        if not 0 <= n <= len(series.ts) or len(series.ts) != len(series.vals):
            fail("series arrays inconsistent", series, len(series.ts), len(series.vals))
        ts = series.ts[:n].tolist()
        if any(b <= a for a, b in itertools.pairwise(ts)):
            fail("timestamps not strictly increasing", series, ts)
        if n and series.last != ts[-1]:
            fail("Series.last is not the newest timestamp", series, series.last, ts[-1])
        if store.get(series.labels) is not series:
            fail("series not found by its own labels", series)
        if not math.isfinite(series.delta_total):
            fail("a delta running total is not finite", series, series.delta_total)
        check_labels(series.labels)


def append_and_check(store: Store, samples: Sequence[Sample], clock: Clock) -> None:
    """Append in order, again in reverse (out-of-order inserts, overwrites), then let time
    pass and collect; the store's invariants must hold after each step."""
    for batch in (samples, samples[::-1]):
        result = store.append(batch)
        if result.accepted + result.rejected_total != len(batch):
            fail("append lost count of samples", result, len(batch))
        check_store(store)
    clock.now_s += store.limits.retention_seconds / 2
    store.collect(budget=7)
    store.collect()
    check_store(store)
    clock.now_s = NOW_S


PROMOTIONS = Settings().otlp.promotions
"""The default resource-label promotions."""

StoreState = dict[LabelPairs, tuple[list[int], bytes, bytes, int]]


def store_state(store: Store) -> StoreState:
    """Every series' samples, delta running total and array capacity (the native loop grows and
    trims the arrays itself, by the same policy), values as bytes (NaN == NaN, the stale NaN ≠ NaN)."""
    return {
        s.labels: (s.ts[: s.n].tolist(), s.vals[: s.n].tobytes(), struct.pack("<d", s.delta_total), len(s.ts))
        for s in store.series()
    }


def reference_ingest(store: Store, request: ExportMetricsServiceRequest) -> tuple[AppendResult, int]:
    """The reference path: translate, then append; returns the outcome and the data points."""
    translation = otlp.translate(request, PROMOTIONS, store.now_ms())
    result = store.append(translation.samples)
    result.rejected.update(translation.rejected)
    return result, translation.data_points


def native_ingest(native: nativeingest.NativeIngest, data: bytes, budget: int) -> tuple[AppendResult, int]:
    """The native path over ``data`` in slices of ``budget`` samples, as the receivers run it."""
    native.prune()
    now_ms = native.store.now_ms()
    result = AppendResult()
    data_points = 0
    pos: tuple[int, int, int] | None = nativeingest.START
    while pos is not None:
        part = native.run(data, pos, now_ms, budget, result)
        data_points += part.data_points
        pos = part.next_pos
    return result, data_points


def compare_native(
    data: bytes, request: ExportMetricsServiceRequest, now_s: float, max_series: int, budget: int
) -> None:
    """Ingest one valid request into twin stores by the reference and the native path: once, again
    (from the native cache: overwrites), and after the store deleted every series (the cache holds
    dead series). The stores, accepted counts (in all and by metric name), rejections by reason
    and data points must agree."""
    clock = Clock(now_s)
    reference, twin = Store(StoreLimits(max_series=max_series), clock), Store(StoreLimits(max_series=max_series), clock)
    native = nativeingest.NativeIngest(twin, PROMOTIONS)
    for step in ("first", "again", "after deletion"):
        if step == "after deletion":
            clock.now_s += reference.limits.retention_seconds + 1
            reference.collect()
            twin.collect()
        expected, expected_points = reference_ingest(reference, request)
        got, got_points = native_ingest(native, data, budget)
        if (got.accepted, +got.rejected, got_points) != (expected.accepted, +expected.rejected, expected_points):
            fail(f"native path counts differ ({step})", (got, got_points), (expected, expected_points))
        if +got.written != +expected.written or sum(got.written.values()) != got.accepted:
            fail(f"native path counts by metric name differ ({step})", got.written, expected.written)
        if store_state(twin) != store_state(reference):
            fail(f"native path stored other samples ({step})", store_state(twin), store_state(reference))


def new_store(clock: Clock) -> Store:
    return Store(StoreLimits(max_series=MAX_SERIES), clock=clock)


def vllm_store() -> Store:
    """A store of vLLM-shaped series, 15 s apart over the last 10 minutes before ``NOW_MS``:
    counters (one with a reset), gauges (one stale, one NaN/±Inf), classic histogram buckets,
    and names that need escaping or quoting."""
    store = Store(StoreLimits(retention_seconds=3600.0, max_series=1000), clock=lambda: NOW_S)
    step = 15_000
    times = [NOW_MS - 600_000 + i * step for i in range(41)]
    samples: list[Sample] = []

    def add(name: str, labels: dict[str, str], value: Callable[[int], float], every: int = 1) -> None:
        pairs = make_labels(name, labels)
        samples.extend((pairs, t, value(i), False) for i, t in enumerate(times) if i % every == 0)

    for role, pod in (("prefill", "p-1"), ("prefill", "p-2"), ("decode", "d-1")):
        base = {"model_name": "llama", "role": role, "pod": pod, "namespace": "llm-d"}
        add("vllm:num_requests_waiting", base, lambda i: float(i % 7))
        add("vllm:num_requests_running", base, lambda i: float(i % 3), every=2)
        add("vllm:prompt_tokens_total", base, lambda i: float(i * 100 if i < 20 else (i - 20) * 50))
        add("vllm:gpu_cache_usage_perc", base, lambda i: (i % 10) / 10)
        for le, share in (("0.1", 1), ("0.5", 3), ("1", 4), ("+Inf", 5)):
            add("vllm:time_to_first_token_seconds_bucket", {**base, "le": le}, _times(share))
        add("vllm:time_to_first_token_seconds_count", base, lambda i: float(i * 5))
        add("vllm:time_to_first_token_seconds_sum", base, lambda i: i * 2.5)
    specials = (math.nan, math.inf, -math.inf, 0.0, -0.0, 1e308, -1e-308, 5e-324)
    add("weird_values", {"pod": "w-1"}, lambda i: specials[i % len(specials)])
    add("stale_gauge", {"pod": "s-1"}, lambda i: STALE_NAN if i in (10, 40) else float(i))
    add("http.server.duration", {"http.method": "GET", "k8s.pod.name": "p-1"}, float)
    add("sum", {"by": "x", "le": "0.5"}, lambda i: 1.0)
    result = store.append(samples)
    assert result.rejected_total == 0, result
    return store


def _times(factor: int) -> Callable[[int], float]:
    return lambda i: float(i * factor)


class Overrun(BaseException):
    """One input used up its CPU budget (a BaseException, so no ``except Exception`` in the
    code under test can swallow it)."""


@contextmanager
def cpu_budget(seconds: float) -> Iterator[None]:
    """Raise :class:`Overrun` after ``seconds`` of CPU time. Uses SIGVTALRM: libFuzzer's own
    ``-timeout`` (wall clock, SIGALRM) stays the backstop for hangs in native code."""

    def expire(_signum: int, _frame: FrameType | None) -> None:
        raise Overrun

    previous = signal.signal(signal.SIGVTALRM, expire)
    signal.setitimer(signal.ITIMER_VIRTUAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_VIRTUAL, 0)
        signal.signal(signal.SIGVTALRM, previous)
