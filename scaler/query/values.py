"""Query results: :class:`Scalar`, :class:`String`, :class:`Vector` and :class:`Matrix`,
plus Prometheus' text forms of sample values and timestamps (used by the HTTP API).
"""

from __future__ import annotations

import decimal
import math
from collections.abc import Iterator
from dataclasses import dataclass

from scaler.model import LabelPairs


@dataclass(frozen=True, slots=True)
class Scalar:
    t_ms: int
    value: float

    kind = "scalar"


@dataclass(frozen=True, slots=True)
class String:
    t_ms: int
    value: str

    kind = "string"


@dataclass(frozen=True, slots=True)
class Sample:
    """One element of an instant vector."""

    labels: LabelPairs
    value: float

    @property
    def metric(self) -> dict[str, str]:
        return dict(self.labels)


@dataclass(frozen=True, slots=True)
class Vector:
    """An instant vector evaluated at ``t_ms``; iterable over its :class:`Sample` s."""

    t_ms: int
    samples: tuple[Sample, ...]

    kind = "vector"

    def __len__(self) -> int:
        return len(self.samples)

    def __iter__(self) -> Iterator[Sample]:
        return iter(self.samples)

    def __getitem__(self, index: int) -> Sample:
        return self.samples[index]


@dataclass(frozen=True, slots=True)
class TimeSeries:
    """One series of a :class:`Matrix`: parallel timestamps (ms) and values."""

    labels: LabelPairs
    timestamps: tuple[int, ...]
    values: tuple[float, ...]

    @property
    def metric(self) -> dict[str, str]:
        return dict(self.labels)


@dataclass(frozen=True, slots=True)
class Matrix:
    """A range vector (raw samples of ``x[5m]``) or the result of a range query."""

    series: tuple[TimeSeries, ...]

    kind = "matrix"

    def __len__(self) -> int:
        return len(self.series)

    def __iter__(self) -> Iterator[TimeSeries]:
        return iter(self.series)

    def __getitem__(self, index: int) -> TimeSeries:
        return self.series[index]


Value = Scalar | String | Vector | Matrix


def format_value(value: float) -> str:
    """Go's ``strconv.FormatFloat(v, 'f', -1, 64)``: shortest digits, never an exponent;
    ``NaN``, ``+Inf``, ``-Inf``."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    text = repr(value)
    if "e" in text:
        text = format(decimal.Decimal(text), "f")
    elif text.endswith(".0"):
        text = text[:-2]
    return text


def format_timestamp(t_ms: int) -> str:
    """A JSON number of seconds with millisecond precision, as Prometheus writes it."""
    sign = "-" if t_ms < 0 else ""
    t_ms = abs(t_ms)
    seconds, millis = divmod(t_ms, 1000)
    if millis == 0:
        return f"{sign}{seconds}"
    return f"{sign}{seconds}.{millis:03d}"
