"""Durations for `window`: PromQL duration syntax (as in range selectors) or plain seconds."""

from __future__ import annotations

import pytest

from scaler.triggerquery import parse_duration


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
