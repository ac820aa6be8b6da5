"""Label regexes: RE2 semantics and linear time, as in Prometheus; Go's error wording."""

from __future__ import annotations

import re
import time

import pytest

from scaler.model import Matcher
from scaler.query import Engine, QueryError, parse_promql
from scaler.regex import RegexError, compile_anchored
from scaler.store import Store


@pytest.mark.parametrize(
    ("pattern", "text", "hit"),
    [
        ("pre.*", "prefill", True),
        ("pre", "prefill", False),  # fully anchored
        ("a.b", "a\nb", True),  # `.` matches a newline, as (?s) in Prometheus
        ("[[:alpha:]]+", "abc", True),  # POSIX classes mean what Go means
        ("[[:alpha:]]+", "ab1", False),
        (r"\p{L}+", "décodé", True),
        ("a{2,3}", "aaa", True),
    ],
)
def test_re2_semantics(pattern: str, text: str, hit: bool) -> None:
    assert (compile_anchored(pattern).fullmatch(text) is not None) is hit


@pytest.mark.parametrize(
    ("pattern", "wording"),
    [
        ("(", "missing closing )"),
        ("[a", "missing closing ]"),
        ("a{1001}", "invalid repeat count"),
        ("*", "missing argument to repetition operator"),
        ("a**", "invalid nested repetition operator"),
        ("\\", "trailing backslash at end of expression"),
        ("(?<n", "invalid named capture"),
    ],
)
def test_errors_use_go_wording_and_print_nothing(pattern: str, wording: str, capfd: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(RegexError) as err:
        compile_anchored(pattern)
    assert err.value.msg == wording
    assert capfd.readouterr().err == ""  # RE2 must not log user patterns to stderr
    with pytest.raises(QueryError, match=re.escape(f"error parsing regexp: {wording}")):
        parse_promql(f'x{{a=~"{pattern.replace(chr(92), chr(92) * 2)}"}}')


def test_a_catastrophic_pattern_runs_in_linear_time() -> None:
    """With a backtracking engine these take minutes on a 40-character value."""
    store = Store()
    name = "x" * 39 + "y"
    store.append([((("__name__", name), ("pod", "p" * 40)), store.now_ms(), 1.0, False)])
    engine = Engine(store)
    started = time.process_time()
    assert Matcher.of("__name__", "=~", "(.*)*(.*)*(.*)*(.*)*(.*)*x").matches(name) is False
    result = engine.instant(
        'label_replace({__name__=~".+"}, "q", "$1", "pod", "(p*)*(p*)*(p*)*(p*)*z")', store.now_ms()
    )
    assert len(result.samples) == 1  # type: ignore[union-attr]
    assert time.process_time() - started < 5
