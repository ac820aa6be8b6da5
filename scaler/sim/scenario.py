"""Scenario YAML → a typed, validated :class:`Scenario`.

A scenario is data: the capacity profile of one vLLM replica (``profile``: a name from
:mod:`scaler.sim.profiles` or an inline mapping), the llm-d gateway/EPP settings (``epp``),
the fleet (names, start-up, drain, pod limits), the KEDA/HPA timers (``keda``), the
simulation settings (``simulation``), the SLO, and the load ``phases``. Every error names
the file and the offending key; unknown keys are errors too (a typo must not silently
fall back to a default).

A phase is an arrival process (Poisson at ``rate``, optionally ramped from the previous
phase's rate, optionally Markov-modulated by ``burst``) and a request shape: one ISL/OSL
pair or a weighted ``mix`` of them, prompts that repeat or are unique, and a shared prefix
(``shared_prefix_tokens``, or ``prefix_ratio`` of each prompt over ``prefix_groups``
distinct prefixes) that prefix caches can reuse. See ``docs/lab.md`` for the keys.

``--duration`` (the demo) rescales the phases proportionally and the KEDA/HPA timers (and
pod start-up/drain) with them, so a shorter run still shows a full up/down cycle.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml

from scaler.sim import profiles
from scaler.sim.phases import BurstState, Dist, Phase, RequestClass, phases_of
from scaler.sim.profiles import Profile
from scaler.sim.validate import SpecError, fraction, integer, mapping, number, strict, text

__all__ = ["BurstState", "Dist", "Epp", "Phase", "Profile", "RequestClass", "Scenario", "ScenarioError", "Slo", "load"]

DEFAULT_SCENARIO = "pd-default.yaml"
Role = Literal["prefill", "decode"]


class ScenarioError(SpecError):
    """The scenario file is invalid; the message names the key."""


@dataclass(frozen=True)
class Epp:
    non_cached_tokens: int = 8
    """prefix-based-pd-decider: disaggregate when the uncached suffix is longer than this."""
    prefix_weight: float = 1.0
    queue_weight: float = 1.0
    kv_weight: float = 1.0
    load_weight: float = 1.0
    gateway_timeout_seconds: float = 30.0
    """A request waiting this long for any ready decode pod is dropped (HTTP 503)."""
    refresh_seconds: float = 0.05
    """How old the engine metrics the EPP scores with may be (its metrics refresh interval)."""
    pool: str = "gaie-pd"
    """The InferencePool's name (label ``name`` of ``llm_d_epp_per_endpoint_queue_size``)."""
    deployment: str = "gaie-pd-epp"


@dataclass(frozen=True)
class Slo:
    ttft_p90_seconds: float
    itl_p90_seconds: float
    goal: float = 0.9
    """Share of requests that must meet both targets for "meets the SLO" (0.9: a p90 SLO)."""


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    phases: tuple[Phase, ...]
    profile: Profile
    epp: Epp
    slo: Slo
    slowdown: float = 1.0
    """Multiplies every model latency (prefill, decode step, KV transfer)."""
    time_scale: float = 1.0
    """Multiplies every KEDA/HPA timer and pod start-up/drain (1 = real Kubernetes; demo only)."""
    hpa_sync_seconds: float = 15.0
    scrape_interval_seconds: float = 5.0
    """The collectors' scrape interval: each pod's metrics reach the scaler this often."""
    namespace: str = "llm-d"
    model_name: str = "facebook/opt-125m"
    prefill_deployment: str = "pd-llm-d-modelservice-prefill"
    decode_deployment: str = "pd-llm-d-modelservice-decode"
    initial_prefill: int = 1
    initial_decode: int = 1
    drain_seconds: float = 30.0
    limits: Mapping[Role, tuple[int, int]] = field(default_factory=dict)
    """Pod limits (min, max) per role that every recipe of the lab is held to."""
    slo_by_profile: Mapping[str, Slo] = field(default_factory=dict)
    tail_seconds: float = 600.0
    """After the last arrival, how long requests in flight may take to finish (lab)."""
    client_timeout_seconds: float = 600.0
    """A client gives up on a request without a first token after this long (vLLM aborts it)."""
    manifests: str | None = None
    source: str = ""

    @property
    def duration(self) -> float:
        return sum(p.seconds for p in self.phases)

    def with_duration(self, seconds: float) -> Scenario:
        """Phases scaled to last ``seconds`` in total; KEDA/HPA timers scaled alike."""
        if seconds <= 0:
            raise ScenarioError(f"duration must be > 0 (got {seconds})")
        factor = seconds / self.duration
        phases = tuple(
            replace(
                p,
                seconds=p.seconds * factor,
                ramp_seconds=p.ramp_seconds * factor,
                burst=tuple(replace(b, mean_seconds=b.mean_seconds * factor) for b in p.burst),
            )
            for p in self.phases
        )
        return replace(self, phases=phases, time_scale=self.time_scale * factor)

    def with_profile(self, profile: Profile) -> Scenario:
        """The same scenario on another profile, with that profile's SLO if the file gives one."""
        return replace(self, profile=profile, slo=self.slo_by_profile.get(profile.name, self.slo))

    def deployment(self, role: Role) -> str:
        return self.prefill_deployment if role == "prefill" else self.decode_deployment

    def phase_at(self, t: float) -> tuple[int, Phase]:
        end = 0.0
        for i, phase in enumerate(self.phases):
            end += phase.seconds
            if t < end:
                return i, phase
        return len(self.phases) - 1, self.phases[-1]

    def phase_starts(self) -> list[float]:
        starts, t = [], 0.0
        for phase in self.phases:
            starts.append(t)
            t += phase.seconds
        return starts


# ---------------------------------------------------------------------------- parsing

TOP_KEYS = frozenset(
    {"name", "description", "profile", "simulation", "keda", "epp", "fleet", "slo", "phases"}
    | {"tail_seconds", "client_timeout_seconds"}
)
_SECTION_KEYS = {
    "simulation": frozenset({"slowdown", "scrape_interval_seconds"}),
    "keda": frozenset({"time_scale", "hpa_sync_seconds", "manifests"}),
    "epp": frozenset(
        {
            "non_cached_tokens",
            "prefix_weight",
            "queue_weight",
            "kv_weight",
            "load_weight",
            "gateway_timeout_seconds",
            "refresh_seconds",
            "pool",
            "deployment",
        }
    ),
    "fleet": frozenset(
        {
            "namespace",
            "model_name",
            "prefill_deployment",
            "decode_deployment",
            "initial_prefill",
            "initial_decode",
            "drain_seconds",
            "limits",
        }
    ),
}
_SLO_KEYS = frozenset({"ttft_p90_seconds", "itl_p90_seconds", "goal", "profiles"})


def _section(top: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    data = mapping(top.get(key, {}), key)
    strict(data, _SECTION_KEYS[key], key)
    return data


def _slo(raw: Any, where: str, base: Slo | None = None) -> Slo:
    data = mapping(raw, where)
    strict(data, _SLO_KEYS if base is None else _SLO_KEYS - {"profiles"}, where)
    if base is not None:
        return Slo(
            number(data, "ttft_p90_seconds", where, base.ttft_p90_seconds, positive=True),
            number(data, "itl_p90_seconds", where, base.itl_p90_seconds, positive=True),
            fraction(data, "goal", where, base.goal),
        )
    return Slo(
        number(data, "ttft_p90_seconds", where, positive=True),
        number(data, "itl_p90_seconds", where, positive=True),
        fraction(data, "goal", where, 0.9),
    )


def _limits(raw: Any) -> dict[Role, tuple[int, int]]:
    data = mapping(raw, "fleet.limits")
    strict(data, frozenset({"prefill", "decode"}), "fleet.limits")
    out: dict[Role, tuple[int, int]] = {}
    for role in ("prefill", "decode"):
        if role not in data:
            continue
        pair = data[role]
        ok = isinstance(pair, list) and len(pair) == 2 and all(type(v) is int for v in pair)
        if not ok or not 0 <= pair[0] <= pair[1] or pair[1] < 1:
            raise SpecError(f"fleet.limits.{role}: expected [min, max] with 0 <= min <= max and max >= 1")
        out[role] = (pair[0], pair[1])
    return out


def parse(data: Any, source: str = "<scenario>") -> Scenario:
    """Validate a loaded YAML document; raises ScenarioError naming the file and the key."""
    try:
        return _parse(data, source)
    except SpecError as exc:
        message = str(exc)
        raise ScenarioError(message if message.startswith(source) else f"{source}: {message}") from None


def _parse(data: Any, source: str) -> Scenario:
    top = mapping(data, source)
    strict(top, TOP_KEYS, source)
    if "slo" not in top:
        raise SpecError(f"{source}: missing key 'slo'")
    if "profile" not in top:
        raise SpecError(f"{source}: missing key 'profile'")
    epp, fleet, keda, sim = (_section(top, k) for k in ("epp", "fleet", "keda", "simulation"))
    slo = _slo(top["slo"], "slo")
    by_profile = mapping(mapping(top["slo"], "slo").get("profiles", {}), "slo.profiles")
    defaults = Scenario.__dataclass_fields__
    manifests = keda.get("manifests")
    return Scenario(
        name=str(top.get("name", Path(source).stem)),
        description=text(top, "description"),
        phases=phases_of(top, source),
        profile=resolve_profile(top["profile"]),
        epp=Epp(
            non_cached_tokens=integer(epp, "non_cached_tokens", "epp", 8),
            prefix_weight=number(epp, "prefix_weight", "epp", 1.0),
            queue_weight=number(epp, "queue_weight", "epp", 1.0),
            kv_weight=number(epp, "kv_weight", "epp", 1.0),
            load_weight=number(epp, "load_weight", "epp", 1.0),
            gateway_timeout_seconds=number(epp, "gateway_timeout_seconds", "epp", 30.0, positive=True),
            refresh_seconds=number(epp, "refresh_seconds", "epp", 0.05, positive=True),
            pool=str(epp.get("pool", Epp.pool)),
            deployment=str(epp.get("deployment", Epp.deployment)),
        ),
        slo=slo,
        slo_by_profile={str(name): _slo(raw, f"slo.profiles.{name}", slo) for name, raw in by_profile.items()},
        slowdown=number(sim, "slowdown", "simulation", 1.0, positive=True),
        scrape_interval_seconds=number(sim, "scrape_interval_seconds", "simulation", 5.0, positive=True),
        time_scale=number(keda, "time_scale", "keda", 1.0, positive=True),
        hpa_sync_seconds=number(keda, "hpa_sync_seconds", "keda", 15.0, positive=True),
        manifests=None if manifests is None else str(manifests),
        namespace=str(fleet.get("namespace", defaults["namespace"].default)),
        model_name=str(fleet.get("model_name", defaults["model_name"].default)),
        prefill_deployment=str(fleet.get("prefill_deployment", defaults["prefill_deployment"].default)),
        decode_deployment=str(fleet.get("decode_deployment", defaults["decode_deployment"].default)),
        initial_prefill=integer(fleet, "initial_prefill", "fleet", 1),
        initial_decode=integer(fleet, "initial_decode", "fleet", 1),
        drain_seconds=number(fleet, "drain_seconds", "fleet", 30.0),
        limits=_limits(fleet["limits"]) if "limits" in fleet else {},
        tail_seconds=number(top, "tail_seconds", source, 600.0),
        client_timeout_seconds=number(top, "client_timeout_seconds", source, 600.0, positive=True),
        source=source,
    )


def load(path: str | None) -> Scenario:
    """Load a scenario file, or the built-in demo scenario when ``path`` is None."""
    if path is None:
        text_ = resources.files("scaler.sim").joinpath("scenarios", DEFAULT_SCENARIO).read_text()
        source = f"scaler/sim/scenarios/{DEFAULT_SCENARIO}"
    else:
        try:
            text_ = Path(path).read_text()
        except OSError as exc:
            raise ScenarioError(f"cannot read scenario {path}: {exc.strerror}") from None
        source = path
    try:
        data = yaml.safe_load(text_)
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{source}: invalid YAML: {exc}") from None
    scenario = parse(data, source)
    if scenario.manifests is not None and path is not None and not Path(scenario.manifests).is_absolute():
        scenario = replace(scenario, manifests=str(Path(path).parent / scenario.manifests))
    return scenario


def resolve_profile(raw: Any, where: str = "profile") -> Profile:
    """A profile by library name, or an inline mapping."""
    if isinstance(raw, str):
        return profiles.named(raw, where)
    return profiles.parse(raw, where)
