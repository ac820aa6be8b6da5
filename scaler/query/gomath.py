"""Float arithmetic with Go's (IEEE 754) results instead of Python exceptions.

PromQL is specified by its Go implementation: ``1/0`` is ``+Inf``, ``ln(-1)`` is ``NaN``,
``math.Max(NaN, +Inf)`` is ``+Inf``. Python raises on several of these, so every operation
the evaluator applies to sample values goes through here.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

INF = math.inf
NAN = math.nan
_LOG2E = 1.44269504088896340735992468100189214  # 1/Ln2 as Go's exact constant
_LOG10_2 = 0.301029995663981195213738894724493027  # Ln2/Ln10


def div(x: float, y: float) -> float:
    try:
        return x / y
    except ZeroDivisionError:
        if math.isnan(x) or x == 0:
            return NAN
        return math.copysign(INF, x) * math.copysign(1.0, y)


def mod(x: float, y: float) -> float:
    if y == 0 or math.isinf(x) or math.isnan(x) or math.isnan(y):
        return NAN
    return math.fmod(x, y)


def _is_odd_int(y: float) -> bool:
    return math.isfinite(y) and y == math.floor(y) and abs(y) < 2**53 and int(y) % 2 == 1


def pow_(x: float, y: float) -> float:
    try:
        return math.pow(x, y)
    except OverflowError:
        return -INF if x < 0 and _is_odd_int(y) else INF
    except ValueError:
        if x == 0:  # 0 ** negative
            return math.copysign(INF, x) if _is_odd_int(y) else INF
        return NAN


def atan2(y: float, x: float) -> float:
    return math.atan2(y, x)


def go_max(x: float, y: float) -> float:
    if INF in (x, y):
        return INF
    if math.isnan(x) or math.isnan(y):
        return NAN
    if x == 0 and y == 0:
        return y if math.copysign(1.0, x) < 0 else x
    return x if x > y else y


def go_min(x: float, y: float) -> float:
    if -INF in (x, y):
        return -INF
    if math.isnan(x) or math.isnan(y):
        return NAN
    if x == 0 and y == 0:
        return x if math.copysign(1.0, x) < 0 else y
    return x if x < y else y


def ln(x: float) -> float:
    if x > 0:
        return math.log(x)
    if x == 0:
        return -INF
    return NAN


def log2(x: float) -> float:
    """Go's ``math.Log2`` (exact for powers of two)."""
    if math.isnan(x) or x < 0:
        return NAN
    if x == 0:
        return -INF
    if math.isinf(x):
        return INF
    frac, exp = math.frexp(x)
    if frac == 0.5:
        return float(exp - 1)
    return math.log(frac) * _LOG2E + float(exp)


def log10(x: float) -> float:
    """Go's ``math.Log10`` = ``Log2(x) * (Ln2/Ln10)``."""
    return log2(x) * _LOG10_2


def sqrt(x: float) -> float:
    if x < 0:
        return NAN
    return math.sqrt(x)


def exp(x: float) -> float:
    try:
        return math.exp(x)
    except OverflowError:
        return INF


def _domain(fn: Callable[[float], float], overflow: Callable[[float], float]) -> Callable[[float], float]:
    def wrapped(x: float) -> float:
        try:
            return fn(x)
        except OverflowError:
            return overflow(x)
        except ValueError:
            return NAN

    return wrapped


def _atanh(x: float) -> float:
    if abs(x) == 1:
        return math.copysign(INF, x)
    return math.atanh(x) if abs(x) < 1 else NAN


TRIG: dict[str, Callable[[float], float]] = {
    "sin": _domain(math.sin, lambda x: NAN),
    "cos": _domain(math.cos, lambda x: NAN),
    "tan": _domain(math.tan, lambda x: NAN),
    "asin": _domain(math.asin, lambda x: NAN),
    "acos": _domain(math.acos, lambda x: NAN),
    "atan": _domain(math.atan, lambda x: NAN),
    "sinh": _domain(math.sinh, lambda x: math.copysign(INF, x)),
    "cosh": _domain(math.cosh, lambda x: INF),
    "tanh": _domain(math.tanh, lambda x: NAN),
    "asinh": _domain(math.asinh, lambda x: NAN),
    "acosh": _domain(math.acosh, lambda x: NAN),
    "atanh": _atanh,
}


def exact_sum(values: list[float]) -> float:
    """The correctly rounded sum (``math.fsum``), or IEEE 754's where fsum raises instead:
    ``+Inf`` and ``-Inf`` together are ``NaN``, and partial sums past the float range ``±Inf``."""
    try:
        return math.fsum(values)
    except (ValueError, OverflowError):
        return sum(values, 0.0)


def kahan_inc(inc: float, total: float, c: float) -> tuple[float, float]:
    """One step of Prometheus' Kahan–Neumaier summation."""
    t = total + inc
    if math.isinf(t):
        c = 0.0
    elif abs(total) >= abs(inc):
        c += (total - t) + inc
    else:
        c += (inc - t) + total
    return t, c


def kahan_avg(values: list[float]) -> float:
    """Prometheus' mean: a Kahan sum, switching to an incremental mean if the sum overflows."""
    total = mean = values[0]
    c, count, incremental = 0.0, 1.0, False
    for f in values[1:]:
        count += 1
        if not incremental:
            new_total, new_c = kahan_inc(f, total, c)
            if not math.isinf(new_total):
                total, c = new_total, new_c
                continue
            incremental = True
            mean = total / (count - 1)
            c /= count - 1
        q = (count - 1) / count
        mean, c = kahan_inc(f / count, q * mean, q * c)
    return mean + c if incremental else total / count + c / count


def quantile(q: float, values: list[float]) -> float:
    """Prometheus' ``quantile``: linear interpolation between closest ranks; NaNs sort first."""
    if not values or math.isnan(q):
        return NAN
    if q < 0:
        return -INF
    if q > 1:
        return INF
    ordered = sorted(values, key=lambda v: (0, 0.0) if math.isnan(v) else (1, v))
    n = float(len(ordered))
    rank = q * (n - 1)
    lower = max(0.0, math.floor(rank))
    upper = min(n - 1, lower + 1)
    weight = rank - math.floor(rank)
    return ordered[int(lower)] * (1 - weight) + ordered[int(upper)] * weight


FloatArray = npt.NDArray[np.float64]


def _kahan_terms(v: FloatArray) -> tuple[FloatArray, FloatArray]:
    """The running sums of Prometheus' Kahan–Neumaier loop over ``v`` (``total`` after each
    step; numpy's ``add.accumulate`` adds strictly left to right) and each step's
    compensation term (``-0`` made ``+0``, which cannot change a sum started from ``+0``)."""
    with np.errstate(invalid="ignore", over="ignore"):  # inf - inf is NaN, as in Go
        totals = np.add.accumulate(v)
        prev, inc, cur = totals[:-1], v[1:], totals[1:]
        terms = np.where(np.abs(prev) >= np.abs(inc), (prev - cur) + inc, (inc - cur) + prev) + 0.0
    return totals, terms


def kahan_sum_array(v: FloatArray) -> float:
    """Prometheus' ``sum`` of ``v`` (:func:`kahan_inc` from the first value; two or more
    values): the same bits without a Python loop."""
    totals, terms = _kahan_terms(v)
    inf = np.isinf(totals[1:])
    if inf.any():  # the compensation restarts from 0 after the last infinite running sum
        terms = terms[len(inf) - int(np.argmax(inf[::-1])) :]
    with np.errstate(invalid="ignore", over="ignore"):
        c = float(np.add.accumulate(terms)[-1]) if len(terms) else 0.0
    return float(totals[-1]) + c


def kahan_avg_array(v: FloatArray) -> float:
    """:func:`kahan_avg` of ``v``: the Kahan sum over the count while it stays finite."""
    totals, terms = _kahan_terms(v)
    if np.isinf(totals[1:]).any():  # the incremental mean takes over: Python's loop
        return kahan_avg(v.tolist())
    count = float(len(v))
    with np.errstate(invalid="ignore", over="ignore"):
        c = float(np.add.accumulate(terms)[-1])
    return float(totals[-1]) / count + c / count


def duration_seconds(ms: int) -> float:
    """Go's ``Duration.Seconds()`` for a whole number of milliseconds (whole seconds plus the
    nanoseconds / 1e9: for some values, 1118 ms, one bit off ``ms / 1000``)."""
    whole, frac = divmod(ms, 1000)
    return float(whole) + frac * 1_000_000 / 1e9
