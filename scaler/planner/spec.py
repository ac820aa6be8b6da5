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
    def ttft_budget_s(self) -> float:
        """This role's share of the end-to-end TTFT target. A disaggregated request's TTFT is
        the prefill pod's TTFT plus the decode pod's wait (KV pull and queue), so each role
        holds its part under half the target; their sum then stays within it."""
        return self.ttft_target_s / 2


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
