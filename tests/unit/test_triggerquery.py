"""Trigger queries: `window` durations (PromQL syntax or plain seconds) and compat evaluation."""

from __future__ import annotations

import pytest

from scaler.model import Limits, make_labels
from scaler.query import Engine
from scaler.store import Store
from scaler.triggerquery import NotFound, TriggerQuery, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("2m", 120), ("1m30s", 90), ("500ms", 0.5), ("1h", 3600), ("45", 45), ("2.5", 2.5)],
)
def test_window_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "30 s", "0s", "0", "-5", "inf", "1m1h"])
def test_bad_window_durations(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


@pytest.mark.parametrize("age_s", [290, 310, 570])
def test_a_compat_window_longer_than_five_minutes_sees_every_series_in_it(age_s: int) -> None:
    """The compat form's staleness check (`and selector`) looks back as far as the window, not
    only PromQL's 5 m: a series last seen 310 s ago is in a 10 m window."""
    now = 1_800_000_000.0
    store = Store(Limits(retention_seconds=600), clock=lambda: now)
    store.append([(make_labels("g", {"pod": "a"}), int((now - age_s) * 1000), 4.0, False)])
    engine = Engine(store)
    assert TriggerQuery.compat("g{pod=a}", "count", 600).evaluate(engine, store.now_ms()) == 1
    assert TriggerQuery.compat("g", "last_one", 600).evaluate(engine, store.now_ms()) == 4.0
    with pytest.raises(NotFound):  # outside a 4 m window
        TriggerQuery.compat("g", "count", 240).evaluate(engine, store.now_ms())
