"""Planner trigger metadata (INTERFACE §8) → a validated :class:`PlannerSpec`.

Keys: ``planner`` (``prefill`` or ``decode``), ``deployment`` (the role's Deployment, matched
on the promoted ``deployment`` label), ``ttftTarget`` and ``itlTarget`` (durations such as
``1s``, ``50ms``; both are required because both roles share the end-to-end SLO) and the
optional ``profile`` (:mod:`scaler.planner.profile`). Every error names the key.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from scaler.planner.profile import Profile, ProfileError, parse_profile
from scaler.query.tokens import parse_duration_ms

Role = Literal["prefill", "decode"]
ROLES: tuple[Role, Role] = ("prefill", "decode")

KEYS = frozenset({"planner", "deployment", "ttftTarget", "itlTarget", "profile"})

DEFAULT_STARTUP_S = 60.0
"""Start-up interval assumed without a profile (the upper end of a warm vLLM pod, E in
capacity-profiles.md §4)."""


_DECIMAL = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|s|m)?")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0}


PREFILL_TTFT_SHARE = 0.7
"""Prefill's share of the TTFT target; decode's queue holds the rest. Prefill's part is the
prompt's own compute plus its queue, and is most of a request's TTFT; decode's part is its
queue, which a decode fleet sized for the ITL keeps near zero until it saturates, when it
grows past any share within seconds. An even split held prefill at half the target and ran
up to 1.5x the prefill replicas the SLO needs (measured in the lab: prefill-heavy, 6 pods
where 4 meet the SLO). 0.3 of a 1-s target is also the first bound of vLLM's queue-time
histogram, the finest it resolves."""


class SpecError(ValueError):
    """Invalid planner metadata; ``key`` names the offending key."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"metadata key {key!r}: {problem}")
        self.key = key
        self.problem = problem


@dataclass(frozen=True)
class PlannerSpec:
    """What one planner trigger plans for."""

    role: Role
    deployment: str
    ttft_target_s: float
    itl_target_s: float
    profile: Profile | None = None

    @property
    def startup_s(self) -> float:
        """Longest expected pod start-up: the forecast horizon and how long an asked-for
        replica counts as pending."""
        return self.profile.startup_max_s if self.profile is not None else DEFAULT_STARTUP_S

    @property
    def arrival_s(self) -> float:
        """Expected pod start-up, the middle of the profile's range: how long prefill's queue
        is projected to keep growing before a replica asked for arrives (see
        :func:`~scaler.planner.steps.forward`)."""
        if self.profile is None:
            return DEFAULT_STARTUP_S
        fastest, slowest = self.profile.startup_seconds
        return (fastest + slowest) / 2

    @property
    def ttft_budget_s(self) -> float:
        """This role's share of the end-to-end TTFT target (:data:`PREFILL_TTFT_SHARE`). A
        disaggregated request's TTFT is the prefill pod's TTFT plus the decode pod's wait (KV
        pull and queue); each role holds its part under its share, so their sum stays within
        the target."""
        share = PREFILL_TTFT_SHARE if self.role == "prefill" else 1 - PREFILL_TTFT_SHARE
        return self.ttft_target_s * share


def _duration(metadata: Mapping[str, str], key: str) -> float:
    raw = metadata.get(key, "").strip()
    if not raw:
        raise SpecError(key, "required (a duration such as 1s or 50ms)")
    decimal = _DECIMAL.fullmatch(raw)
    if decimal is not None:
        seconds = float(decimal[1]) * _UNITS[decimal[2] or "s"]
    else:
        ms = parse_duration_ms(raw)
        if ms is None:
            raise SpecError(key, f"{raw!r} is not a duration (use e.g. 1s, 1.5s, 500ms, 2.5)")
        seconds = ms / 1000
    if not math.isfinite(seconds) or seconds <= 0:
        raise SpecError(key, f"{raw!r} must be a positive duration")
    return seconds


def parse_spec(metadata: Mapping[str, str]) -> PlannerSpec:
    """Validate planner metadata; raises SpecError naming the key at fault."""
    role = metadata.get("planner", "").strip()
    if role not in ROLES:
        raise SpecError("planner", f"{role!r} is not a role; use prefill or decode")
    deployment = metadata.get("deployment", "").strip()
    if not deployment:
        raise SpecError("deployment", "required: the role's Deployment (its pods' promoted 'deployment' label)")
    ttft = _duration(metadata, "ttftTarget")
    itl = _duration(metadata, "itlTarget")
    profile = None
    if metadata.get("profile", "").strip():
        try:
            profile = parse_profile(metadata["profile"])
        except ProfileError as exc:
            raise SpecError("profile", str(exc)) from None
    return PlannerSpec(role, deployment, ttft, itl, profile)
