"""The SLO-driven prefill/decode planner: desired replicas of one role from TTFT/ITL targets.

A pure core (no gRPC, no HTTP): :func:`parse_spec` validates a planner trigger's metadata;
:func:`plan` reads the role's stored vLLM series and returns a :class:`Plan` — the desired
replica count and the inputs, learned capacity, forecast and pending replicas it came from.
:func:`plan` is :func:`take` (select and copy the series, on the event loop) then :func:`decide`
(pure, on the copies: a worker thread may run it).
"""

from scaler.planner.plan import Plan, Snapshot, decide, history_needed_s, plan, take
from scaler.planner.profile import BUILTIN, Profile, ProfileError, parse_profile
from scaler.planner.selection import METRIC_NAMES, watched
from scaler.planner.spec import KEYS, ROLES, PlannerSpec, Role, SpecError, parse_spec
from scaler.planner.tuning import Tuning

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
    "Snapshot",
    "SpecError",
    "Tuning",
    "decide",
    "history_needed_s",
    "parse_profile",
    "parse_spec",
    "plan",
    "take",
    "watched",
]
