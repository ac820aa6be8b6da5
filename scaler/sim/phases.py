"""A scenario's load phases: arrival processes and request shapes, and their YAML form.

Phase keys (see ``docs/lab.md``)::

    - name: peak                 # required
      seconds: 600               # required, > 0
      rate: 40                   # mean arrivals/s (Poisson), >= 0
      ramp_seconds: 120          # climb linearly from the previous phase's rate
      burst:                     # Markov-modulated Poisson: rate x factor, states in turn
        - {factor: 0.5, mean_seconds: 90}
        - {factor: 3.0, mean_seconds: 20}
      prompt: unique             # or repeated (one prompt for the whole phase)
      isl: {dist: lognormal, mu: 6.63, sigma: 0.99, max: 8192}   # or fixed / uniform / a number
      osl: 200
      mix:                       # instead of isl/osl: weighted request shapes
        - {name: chat, weight: 0.7, isl: ..., osl: ...}
      shared_prefix_tokens: 64   # one system prompt shared by every request of the phase
      prefix_ratio: 0.9          # or: this share of each prompt is one of prefix_groups prefixes
      prefix_groups: 20
      description: text
"""

from __future__ import annotations

import functools
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from scaler.sim.validate import SpecError, fraction, integer, mapping, number, required, strict, text

PHASE_KEYS = frozenset(
    {
        "name",
        "seconds",
        "rate",
        "ramp_seconds",
        "burst",
        "prompt",
        "isl",
        "osl",
        "mix",
        "shared_prefix_tokens",
        "prefix_ratio",
        "prefix_groups",
        "description",
    }
)


@dataclass(frozen=True)
class Dist:
    """An integer token-count distribution: ``fixed``, ``uniform`` or ``lognormal`` (clipped)."""

    kind: Literal["fixed", "uniform", "lognormal"]
    a: float
    b: float = 0.0
    lo: int = 1
    hi: int = 1 << 30

    def sample(self, rng: random.Random) -> int:
        if self.kind == "fixed":
            value = self.a
        elif self.kind == "uniform":
            value = rng.uniform(self.a, self.b)
        else:
            value = rng.lognormvariate(self.a, self.b)
        return max(self.lo, min(self.hi, round(value)))

    @property
    def mean(self) -> float:
        """The mean before clipping to ``[lo, hi]``."""
        if self.kind == "fixed":
            return self.a
        if self.kind == "uniform":
            return (self.a + self.b) / 2
        return math.exp(self.a + self.b**2 / 2)

    @functools.lru_cache(maxsize=256)  # noqa: B019 - frozen dataclass: hashable, few instances
    def quantile(self, q: float) -> float:
        """The ``q``-quantile (before rounding), clipped to ``[lo, hi]``."""
        if self.kind == "fixed":
            value = self.a
        elif self.kind == "uniform":
            value = self.a + q * (self.b - self.a)
        else:
            value = math.exp(self.a + self.b * _normal_quantile(q))
        return max(self.lo, min(self.hi, value))

    def clipped_mean(self, hi: int, samples: int = 4000) -> float:
        """The mean of ``min(sample, hi)`` (deterministic quadrature for lognormal)."""
        top = min(self.hi, hi)
        if self.kind == "fixed":
            return float(max(self.lo, min(top, round(self.a))))
        if self.kind == "uniform":
            a, b = max(self.lo, self.a), min(top, self.b)
            if b <= a:
                return float(min(top, max(self.lo, self.a)))
            inside = (b - a) / (self.b - self.a) if self.b > self.a else 1.0
            above = max(0.0, (self.b - top) / (self.b - self.a)) if self.b > self.a else 0.0
            return inside * (a + b) / 2 + above * top + (1 - inside - above) * max(self.lo, self.a)
        total = 0.0
        for i in range(samples):  # midpoint rule over the quantiles of the lognormal
            z = _normal_quantile((i + 0.5) / samples)
            total += max(self.lo, min(top, math.exp(self.a + self.b * z)))
        return total / samples


@dataclass(frozen=True)
class RequestClass:
    """One request shape of a phase's ``mix``."""

    weight: float
    isl: Dist
    osl: Dist
    name: str = ""


@dataclass(frozen=True)
class BurstState:
    factor: float
    """The arrival rate in this state is the phase's rate times ``factor``."""
    mean_seconds: float
    """Mean (exponential) time spent in this state before moving to the next."""


@dataclass(frozen=True)
class Phase:
    name: str
    seconds: float
    rate: float
    """Mean arrival rate (requests/s, Poisson) — before ``burst`` factors."""
    prompt: Literal["repeated", "unique"]
    """``repeated``: the same prompt every time; ``unique``: a fresh prompt per request."""
    isl: Dist
    osl: Dist
    shared_prefix_tokens: int = 0
    """For ``unique`` prompts: a system prompt shared by all requests of the phase."""
    ramp_seconds: float = 0.0
    """The rate climbs linearly from the previous phase's rate over this many seconds."""
    description: str = ""
    mix: tuple[RequestClass, ...] = ()
    """Weighted request shapes; empty: every request is ``isl``/``osl``."""
    prefix_ratio: float = 0.0
    """For ``unique`` prompts: this share of each prompt is one of ``prefix_groups`` shared prefixes."""
    prefix_groups: int = 1
    burst: tuple[BurstState, ...] = ()
    """Markov-modulated Poisson: states visited in turn (cyclically), exponential dwell times."""

    @property
    def classes(self) -> tuple[RequestClass, ...]:
        return self.mix or (RequestClass(1.0, self.isl, self.osl),)

    @property
    def peak_factor(self) -> float:
        return max((b.factor for b in self.burst), default=1.0)

    @property
    def mean_factor(self) -> float:
        """The long-run mean of the burst factor (time-weighted)."""
        if not self.burst:
            return 1.0
        return sum(b.factor * b.mean_seconds for b in self.burst) / sum(b.mean_seconds for b in self.burst)


def _normal_quantile(p: float) -> float:
    """Inverse of the standard normal CDF (Acklam's rational approximation, |error| < 1.2e-9)."""
    a = (-3.969683028665376e01, 2.209460984245205e02, -2.759285104469687e02, 1.383577518672690e02,
         -3.066479806614716e01, 2.506628277459239e00)  # fmt: skip
    b = (-5.447609879822406e01, 1.615858368580409e02, -1.556989798598866e02, 6.680131188771972e01,
         -1.328068155288572e01)  # fmt: skip
    c = (-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e00, -2.549732539343734e00,
         4.374664141464968e00, 2.938163982698783e00)  # fmt: skip
    d = (7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e00, 3.754408661907416e00)
    if p < 0.02425:
        q = math.sqrt(-2 * math.log(p))
        return (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) / (
            (((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1
        )
    if p > 1 - 0.02425:
        return -_normal_quantile(1 - p)
    q = p - 0.5
    r = q * q
    return (
        (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5])
        * q
        / (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1)
    )


# ---------------------------------------------------------------------------- parsing

_DIST_KEYS = {
    "fixed": frozenset({"dist", "value"}),
    "uniform": frozenset({"dist", "min", "max"}),
    "lognormal": frozenset({"dist", "mu", "sigma", "min", "max"}),
}


def parse_dist(raw: Any, where: str) -> Dist:
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        if raw <= 0:
            raise SpecError(f"{where}: {raw!r} must be > 0")
        return Dist("fixed", float(raw))
    data = mapping(raw, where)
    kind = data.get("dist", "uniform")
    if kind not in _DIST_KEYS:
        raise SpecError(f"{where}.dist: {kind!r} is not fixed, uniform or lognormal")
    strict(data, _DIST_KEYS[kind], where)
    if kind == "fixed":
        return Dist("fixed", number(data, "value", where, positive=True))
    if kind == "uniform":
        a, b = number(data, "min", where, positive=True), number(data, "max", where, positive=True)
        if b < a:
            raise SpecError(f"{where}: max < min")
        return Dist("uniform", a, b, int(a), int(b))
    mu = required(data, "mu", where)
    if not isinstance(mu, int | float) or isinstance(mu, bool):
        raise SpecError(f"{where}.mu: {mu!r} is not a number")
    lo = integer(data, "min", where, 1, positive=True)
    hi = integer(data, "max", where, 1 << 30, positive=True)
    return Dist("lognormal", float(mu), number(data, "sigma", where), lo, hi)


def _mix(raw: Any, where: str) -> tuple[RequestClass, ...]:
    if not isinstance(raw, list) or not raw:
        raise SpecError(f"{where}: expected a non-empty list of {{weight, isl, osl}}")
    out = []
    for i, item in enumerate(raw):
        w = f"{where}[{i}]"
        data = mapping(item, w)
        strict(data, frozenset({"name", "weight", "isl", "osl"}), w)
        out.append(
            RequestClass(
                number(data, "weight", w, positive=True),
                parse_dist(required(data, "isl", w), f"{w}.isl"),
                parse_dist(required(data, "osl", w), f"{w}.osl"),
                str(data.get("name", f"class{i}")),
            )
        )
    return tuple(out)


def _burst(raw: Any, where: str) -> tuple[BurstState, ...]:
    if not isinstance(raw, list) or len(raw) < 2:
        raise SpecError(f"{where}: expected a list of at least two {{factor, mean_seconds}} states")
    out = []
    for i, item in enumerate(raw):
        w = f"{where}[{i}]"
        data = mapping(item, w)
        strict(data, frozenset({"factor", "mean_seconds"}), w)
        out.append(BurstState(number(data, "factor", w), number(data, "mean_seconds", w, positive=True)))
    return tuple(out)


def parse_phase(raw: Any, index: int) -> Phase:
    where = f"phases[{index}]"
    data = mapping(raw, where)
    strict(data, PHASE_KEYS, where)
    prompt = data.get("prompt", "unique")
    if prompt not in ("repeated", "unique"):
        raise SpecError(f"{where}.prompt: {prompt!r} is not 'repeated' or 'unique'")
    mix = _mix(data["mix"], f"{where}.mix") if "mix" in data else ()
    if mix:
        for key in ("isl", "osl"):
            if key in data:
                raise SpecError(f"{where}.{key}: give either 'mix' or 'isl'/'osl', not both")
        isl, osl = mix[0].isl, mix[0].osl
    else:
        isl = parse_dist(required(data, "isl", where), f"{where}.isl")
        osl = parse_dist(required(data, "osl", where), f"{where}.osl")
    return Phase(
        name=str(required(data, "name", where)),
        seconds=number(data, "seconds", where, positive=True),
        rate=number(data, "rate", where),
        prompt=prompt,
        isl=isl,
        osl=osl,
        shared_prefix_tokens=integer(data, "shared_prefix_tokens", where, 0),
        ramp_seconds=number(data, "ramp_seconds", where, 0.0),
        description=text(data, "description"),
        mix=mix,
        prefix_ratio=fraction(data, "prefix_ratio", where, 0.0),
        prefix_groups=integer(data, "prefix_groups", where, 1, positive=True),
        burst=_burst(data["burst"], f"{where}.burst") if "burst" in data else (),
    )


def phases_of(data: Mapping[str, Any], where: str) -> tuple[Phase, ...]:
    raw = required(data, "phases", where)
    if not isinstance(raw, list) or not raw:
        raise SpecError(f"{where}: 'phases' must be a non-empty list")
    return tuple(parse_phase(p, i) for i, p in enumerate(raw))
