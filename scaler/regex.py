"""Label regular expressions with RE2, as Prometheus has them (Go's ``regexp`` is RE2).

RE2 matches in time linear in the input, whatever the pattern: with Python's backtracking
``re`` a query such as ``{__name__=~"(.*)*(.*)*(.*)*x"}`` ran for minutes and stalled the
event loop, i.e. anyone able to send a query could stop the scaler. RE2 is also the dialect
users write for Prometheus (``[[:alpha:]]``, ``\\p{L}``, repeat counts up to 1000).

Patterns are fully anchored, with ``.`` matching newlines: ``^(?s:pattern)$``. Errors are
:class:`RegexError` with Go's wording.
"""

from __future__ import annotations

from typing import Protocol, cast

import re2


class Match(Protocol):
    def group(self, group: int | str = 0, /) -> str | None: ...


class Pattern(Protocol):
    def fullmatch(self, text: str) -> Match | None: ...


class RegexError(ValueError):
    """A pattern RE2 cannot compile; ``msg`` is Go regexp's wording of the problem."""

    def __init__(self, msg: str, pattern: str) -> None:
        super().__init__(f"invalid regular expression {pattern!r}: {msg}")
        self.msg = msg


_GO_WORDING = {
    "missing ]": "missing closing ]",
    "missing )": "missing closing )",
    "trailing \\": "trailing backslash at end of expression",
    "no argument for repetition operator": "missing argument to repetition operator",
    "invalid repetition size": "invalid repeat count",
    "bad repetition operator": "invalid nested repetition operator",
    "invalid perl operator": "invalid or unsupported Perl syntax",
    "invalid named capture group": "invalid named capture",
    "pattern too large - compile failed": "expression too large",
}

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # RE2 would print every bad user pattern to stderr, unthrottled
_OPTIONS.dot_nl = True  # Prometheus' (?s): no wrapper, so errors are about the pattern as written


def compile_anchored(pattern: str) -> Pattern:
    """``^(?s:pattern)$`` for :meth:`Pattern.fullmatch`; raises :class:`RegexError`."""
    try:
        return cast(Pattern, re2.compile(pattern, _OPTIONS))
    except re2.error as exc:
        raw = exc.args[0] if exc.args else ""
        message = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
        code = message.partition(": ")[0]
        raise RegexError(_GO_WORDING.get(code, code or "invalid pattern"), pattern) from None
    except UnicodeEncodeError:
        raise RegexError("invalid UTF-8", pattern) from None
