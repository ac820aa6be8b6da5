"""The SLO-driven prefill/decode planner: desired replicas of one role from TTFT/ITL targets.

A pure core (no gRPC, no HTTP): :func:`parse_spec` validates a planner trigger's metadata;
:func:`plan` reads the role's stored vLLM series and returns a :class:`Plan` — the desired
replica count and the inputs, learned capacity, forecast and pending replicas it came from.
"""

from scaler.planner.plan import Plan, Tuning, plan
from scaler.planner.profile import BUILTIN, Profile, ProfileError, parse_profile
from scaler.planner.signals import METRIC_NAMES, watched
from scaler.planner.spec import KEYS, ROLES, PlannerSpec, Role, SpecError, parse_spec

__all__ = [
    "BUILTIN",
    "KEYS",
    "METRIC_NAMES",
    "ROLES",
    "Plan",
    "PlannerSpec",
    "Profile",
    "ProfileError",
    "Role",
    "SpecError",
    "Tuning",
    "parse_profile",
    "parse_spec",
    "plan",
    "watched",
]
