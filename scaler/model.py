"""The domain model shared by every layer: label sets, samples, matchers, staleness, reject reasons.

No protocol code lives here (no grpc, fastapi or generated protobuf): the store, the query
engine and the OTLP translation all speak these types.
"""

from __future__ import annotations

import enum
import math
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from scaler.regex import Pattern, compile_anchored

LabelPairs = tuple[tuple[str, str], ...]
"""A series identity: ``(name, value)`` pairs sorted by name, including ``__name__``."""

Sample = tuple[LabelPairs, int, float, bool]
"""``(labels, timestamp_ms, value, is_delta)``: one translated OTLP data point."""

Clock = Callable[[], float]
"""Returns the current time in Unix seconds (``time.time`` in production)."""

METRIC_NAME = "__name__"

# Prometheus' staleness marker: a NaN with a distinct bit pattern, so a real NaN sample value
# is never mistaken for "this series ended".
STALE_NAN_BITS = 0x7FF0000000000002
STALE_NAN: float = struct.unpack("<d", struct.pack("<Q", STALE_NAN_BITS))[0]


def is_stale(value: float) -> bool:
    """True when ``value`` is the staleness marker (not merely any NaN)."""
    return math.isnan(value) and struct.pack("<d", value) == struct.pack("<Q", STALE_NAN_BITS)


def escape_name(name: str) -> str:
    """The Go reference's escaped metric-name form: ``.`` and ``/`` become ``_``."""
    return name.replace(".", "_").replace("/", "_")


def make_labels(name: str, labels: Mapping[str, str]) -> LabelPairs:
    """Build a canonical label set from a metric name and its other labels."""
    pairs = dict(labels)
    pairs[METRIC_NAME] = name
    return tuple(sorted(pairs.items()))


def metric_name(labels: LabelPairs) -> str:
    for key, value in labels:
        if key == METRIC_NAME:
            return value
    return ""


class MatchOp(enum.Enum):
    EQ = "="
    NE = "!="
    RE = "=~"
    NRE = "!~"


@dataclass(frozen=True, slots=True)
class Matcher:
    """A label matcher with Prometheus semantics: an absent label has the value ``""``;
    regular expressions are fully anchored."""

    name: str
    op: MatchOp
    value: str
    _regex: Pattern | None = field(default=None, compare=False, repr=False)

    @staticmethod
    def of(name: str, op: MatchOp | str, value: str) -> Matcher:
        mop = MatchOp(op)
        regex = None
        if mop in (MatchOp.RE, MatchOp.NRE):
            regex = compile_anchored(value)  # RegexError is a ValueError naming the problem
        return Matcher(name, mop, value, regex)

    def matches(self, value: str) -> bool:
        if self.op is MatchOp.EQ:
            return value == self.value
        if self.op is MatchOp.NE:
            return value != self.value
        assert self._regex is not None
        hit = self._regex.fullmatch(value) is not None
        return hit if self.op is MatchOp.RE else not hit

    @property
    def matches_empty(self) -> bool:
        return self.matches("")

    def __str__(self) -> str:
        escaped = self.value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'{self.name}{self.op.value}"{escaped}"'


class RejectReason(enum.StrEnum):
    """Why a sample was not stored; the ``reason`` label of the rejection counters."""

    TOO_OLD = "too_old"
    TOO_FAR_IN_FUTURE = "too_far_in_future"
    SERIES_LIMIT = "series_limit"
    TOO_MANY_LABELS = "too_many_labels"
    LABEL_NAME_TOO_LONG = "label_name_too_long"
    LABEL_VALUE_TOO_LONG = "label_value_too_long"
    INVALID_NAME = "invalid_metric_name"
    INVALID_VALUE = "invalid_value"
    """A delta sum point that is NaN or ±Inf, or would overflow the running total."""
    UNSUPPORTED = "unsupported_point"
