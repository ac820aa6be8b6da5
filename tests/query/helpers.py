"""Small builders for query tests: a store with hand-placed samples and a result reader."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from scaler.config import StoreLimits
from scaler.model import make_labels
from scaler.query import Engine, Scalar, Value, Vector, parse_metric_selector
from scaler.store import Store

NOW_MS = 3_600_000


def store_with(series: Mapping[str, Sequence[tuple[int, float]]], now_ms: int = NOW_MS) -> Store:
    """``{'m{a="1"}': [(t_ms, value), ...]}`` → a store whose clock says ``now_ms``."""
    store = Store(StoreLimits(retention_seconds=86_400), clock=lambda: now_ms / 1000)
    samples = []
    for selector, points in series.items():
        labels = {m.name: m.value for m in parse_metric_selector(selector)}
        name = labels.pop("__name__")
        pairs = make_labels(name, labels)
        samples += [(pairs, t, float(v), False) for t, v in points]
    result = store.append(samples)
    assert result.rejected_total == 0, result
    return store


def engine_with(series: Mapping[str, Sequence[tuple[int, float]]], now_ms: int = NOW_MS) -> Engine:
    return Engine(store_with(series, now_ms))


def values(result: Value) -> dict[str, float]:
    """A vector as ``{'{a="1"}': value}`` (labels in PromQL spelling); a scalar as ``{'': v}``."""
    if isinstance(result, Scalar):
        return {"": result.value}
    assert isinstance(result, Vector), result
    out: dict[str, float] = {}
    for s in result:
        out["{" + ",".join(f'{k}="{v}"' for k, v in s.labels) + "}"] = s.value
    return out
