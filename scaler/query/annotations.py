"""Prometheus' query annotations: warnings and infos that travel beside a result.

Texts and triggering conditions are Prometheus 3's (``util/annotations/annotations.go``): each
names the problem, and ends with the position in the query text of the expression that caused
it, ``(line:col)``. Equal texts are kept once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from scaler.query.printer import format_number
from scaler.query.tokens import go_quote

Kind = Literal["warning", "info"]
Pos = tuple[int, int]

_WARNING = "PromQL warning"
_INFO = "PromQL info"
_MONOTONICITY = (
    "input to histogram_quantile needed to be fixed for monotonicity "
    "(see https://prometheus.io/docs/prometheus/latest/querying/functions/#histogram_quantile)"
)
COUNTER_SUFFIXES = ("_total", "_sum", "_count", "_bucket")


def _metric_name_suffix(metric_name: str) -> str:
    return f" for metric name {go_quote(metric_name)}" if metric_name else ""


@dataclass
class Annotations:
    """The annotations of one query, in the order they were first raised."""

    text: str = ""
    """The query text, for positions; empty when the query was given as a tree."""
    _items: dict[str, Kind] = field(default_factory=dict)

    def add(self, kind: Kind, message: str, pos: Pos) -> None:
        prefix = _WARNING if kind == "warning" else _INFO
        text = f"{prefix}: {message}"
        if self.text:
            offset = max(0, min(pos[0], len(self.text)))
            line = self.text.count("\n", 0, offset) + 1
            col = offset - (self.text.rfind("\n", 0, offset) + 1) + 1
            text += f" ({line}:{col})"
        self._items.setdefault(text, kind)

    @property
    def warnings(self) -> list[str]:
        return [t for t, k in self._items.items() if k == "warning"]

    @property
    def infos(self) -> list[str]:
        return [t for t, k in self._items.items() if k == "info"]

    # -------------------------------------------------------------- the annotations

    def invalid_quantile(self, q: float, pos: Pos) -> None:
        self.add("warning", f"quantile value should be between 0 and 1, got {format_number(q)}", pos)

    def bad_bucket_label(self, metric_name: str, le: str, pos: Pos) -> None:
        message = f'bucket label "le" is missing or has a malformed value of {go_quote(le)}'
        self.add("warning", message + _metric_name_suffix(metric_name), pos)

    def forced_monotonicity(self, metric_name: str, pos: Pos) -> None:
        self.add("info", _MONOTONICITY + _metric_name_suffix(metric_name), pos)

    def possible_non_counter(self, metric_name: str, pos: Pos) -> None:
        message = "metric might not be a counter, name does not end in _total/_sum/_count/_bucket:"
        self.add("info", f"{message} {go_quote(metric_name)}", pos)
