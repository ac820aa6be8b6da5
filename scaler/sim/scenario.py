"""Scenario YAML → a typed, validated :class:`Scenario`.

A scenario is data: the capacity profile of one vLLM replica (``profile``), the llm-d
gateway/EPP settings (``epp``), the fleet (names, start-up, drain), the KEDA/HPA timer
compression (``time_scale``), a latency multiplier (``slowdown``), the SLO used in the
summary, and the load ``phases``. Every error names the offending key.

``--duration`` rescales the phases proportionally and the KEDA/HPA timers (and pod
start-up/drain) with them, so a shorter run still shows a full up/down cycle.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml

DEFAULT_SCENARIO = "pd-default.yaml"


class ScenarioError(ValueError):
    """The scenario file is invalid; the message names the key."""


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
        if self.kind == "fixed":
            return self.a
        if self.kind == "uniform":
            return (self.a + self.b) / 2
        return math.exp(self.a + self.b**2 / 2)


@dataclass(frozen=True)
class Phase:
    name: str
    seconds: float
    rate: float
    """Mean arrival rate (requests/s, Poisson)."""
    prompt: Literal["repeated", "unique"]
    """``repeated``: the same prompt every time; ``unique``: a fresh prompt per request."""
    isl: Dist
    osl: Dist
    shared_prefix_tokens: int = 0
    """For ``unique`` prompts: a system prompt shared by all requests of the phase."""
    ramp_seconds: float = 0.0
    """The rate climbs linearly from the previous phase's rate over this many seconds."""
    description: str = ""


@dataclass(frozen=True)
class Profile:
    """One vLLM replica; see capacity-profiles.md §1.1 for the model."""

    name: str
    kv_bytes_per_token: int
    kv_capacity_tokens: int
    max_num_seqs: int
    max_num_batched_tokens: int
    max_model_len: int
    prefill_a_ms: float
    prefill_b_ms_per_tok: float
    prefill_c_ms_per_tok2: float
    decode_d_ms: float
    decode_e_ms_per_seq: float
    decode_f_ms_per_ctx_tok: float
    kv_t0_ms: float
    kv_link_gbps: float
    startup_seconds: tuple[float, float]

    def prefill_ms(self, tokens: int, quad: float) -> float:
        """One prefill step of ``tokens`` tokens; ``quad`` = Σ((done+chunk)² − done²)."""
        return self.prefill_a_ms + self.prefill_b_ms_per_tok * tokens + self.prefill_c_ms_per_tok2 * quad

    def decode_ms(self, batch: int, context: int) -> float:
        return self.decode_d_ms + self.decode_e_ms_per_seq * batch + self.decode_f_ms_per_ctx_tok * context

    def kv_transfer_s(self, tokens: int) -> float:
        return (self.kv_t0_ms + tokens * self.kv_bytes_per_token / (self.kv_link_gbps * 1e6)) / 1000.0


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


@dataclass(frozen=True)
class Slo:
    ttft_p90_seconds: float
    itl_p90_seconds: float


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
    """Multiplies every KEDA/HPA timer and pod start-up/drain (1 = real Kubernetes)."""
    hpa_sync_seconds: float = 15.0
    tick_seconds: float = 0.1
    export_interval_seconds: float = 1.0
    namespace: str = "llm-d"
    model_name: str = "facebook/opt-125m"
    prefill_deployment: str = "pd-llm-d-modelservice-prefill"
    decode_deployment: str = "pd-llm-d-modelservice-decode"
    initial_prefill: int = 1
    initial_decode: int = 1
    drain_seconds: float = 30.0
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
            replace(p, seconds=p.seconds * factor, ramp_seconds=p.ramp_seconds * factor) for p in self.phases
        )
        return replace(self, phases=phases, time_scale=self.time_scale * factor)

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


def _get(data: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in data:
        raise ScenarioError(f"{where}: missing key {key!r}")
    return data[key]


def _num(data: Mapping[str, Any], key: str, where: str, default: float | None = None, positive: bool = False) -> float:
    raw = data.get(key, default) if default is not None else _get(data, key, where)
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise ScenarioError(f"{where}.{key}: {raw!r} is not a number") from None
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise ScenarioError(f"{where}.{key}: {raw!r} must be {'> 0' if positive else '>= 0'}")
    return value


def _map(data: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise ScenarioError(f"{where}: expected a mapping, got {type(data).__name__}")
    return data


def _dist(raw: Any, where: str) -> Dist:
    if isinstance(raw, int | float):
        return Dist("fixed", float(raw))
    data = _map(raw, where)
    kind = data.get("dist", "uniform")
    lo, hi = int(data.get("min", 1)), int(data.get("max", 1 << 30))
    if kind == "fixed":
        return Dist("fixed", _num(data, "value", where, positive=True))
    if kind == "uniform":
        a, b = _num(data, "min", where, positive=True), _num(data, "max", where, positive=True)
        if b < a:
            raise ScenarioError(f"{where}: max < min")
        return Dist("uniform", a, b, lo, hi)
    if kind == "lognormal":
        return Dist("lognormal", float(_get(data, "mu", where)), _num(data, "sigma", where), lo, hi)
    raise ScenarioError(f"{where}.dist: {kind!r} is not fixed, uniform or lognormal")


def _phase(raw: Any, index: int) -> Phase:
    where = f"phases[{index}]"
    data = _map(raw, where)
    prompt = data.get("prompt", "unique")
    if prompt not in ("repeated", "unique"):
        raise ScenarioError(f"{where}.prompt: {prompt!r} is not 'repeated' or 'unique'")
    return Phase(
        name=str(_get(data, "name", where)),
        seconds=_num(data, "seconds", where, positive=True),
        rate=_num(data, "rate", where),
        prompt=prompt,
        isl=_dist(_get(data, "isl", where), f"{where}.isl"),
        osl=_dist(_get(data, "osl", where), f"{where}.osl"),
        shared_prefix_tokens=int(data.get("shared_prefix_tokens", 0)),
        ramp_seconds=_num(data, "ramp_seconds", where, 0.0),
        description=str(data.get("description", "")).strip(),
    )


def _profile(raw: Any) -> Profile:
    where = "profile"
    data = _map(raw, where)
    prefill = _map(_get(data, "prefill", where), f"{where}.prefill")
    decode = _map(_get(data, "decode", where), f"{where}.decode")
    kv = _map(_get(data, "kv_transfer", where), f"{where}.kv_transfer")
    startup = data.get("startup_seconds", [20, 60])
    if not (isinstance(startup, list) and len(startup) == 2 and 0 <= startup[0] <= startup[1]):
        raise ScenarioError(f"{where}.startup_seconds: expected [min, max] with 0 <= min <= max")
    return Profile(
        name=str(data.get("name", "custom")),
        kv_bytes_per_token=int(_num(data, "kv_bytes_per_token", where, positive=True)),
        kv_capacity_tokens=int(_num(data, "kv_capacity_tokens", where, positive=True)),
        max_num_seqs=int(_num(data, "max_num_seqs", where, positive=True)),
        max_num_batched_tokens=int(_num(data, "max_num_batched_tokens", where, positive=True)),
        max_model_len=int(_num(data, "max_model_len", where, positive=True)),
        prefill_a_ms=_num(prefill, "a_ms", f"{where}.prefill"),
        prefill_b_ms_per_tok=_num(prefill, "b_ms_per_tok", f"{where}.prefill"),
        prefill_c_ms_per_tok2=_num(prefill, "c_ms_per_tok2", f"{where}.prefill"),
        decode_d_ms=_num(decode, "d_ms", f"{where}.decode", positive=True),
        decode_e_ms_per_seq=_num(decode, "e_ms_per_seq", f"{where}.decode"),
        decode_f_ms_per_ctx_tok=_num(decode, "f_ms_per_ctx_tok", f"{where}.decode"),
        kv_t0_ms=_num(kv, "t0_ms", f"{where}.kv_transfer"),
        kv_link_gbps=_num(kv, "link_gbps", f"{where}.kv_transfer", positive=True),
        startup_seconds=(float(startup[0]), float(startup[1])),
    )


def parse(data: Any, source: str = "<scenario>") -> Scenario:
    """Validate a loaded YAML document; raises ScenarioError naming the key."""
    top = _map(data, source)
    phases_raw = _get(top, "phases", source)
    if not isinstance(phases_raw, list) or not phases_raw:
        raise ScenarioError(f"{source}: 'phases' must be a non-empty list")
    epp = _map(top.get("epp", {}), "epp")
    slo = _map(_get(top, "slo", source), "slo")
    fleet = _map(top.get("fleet", {}), "fleet")
    keda = _map(top.get("keda", {}), "keda")
    sim = _map(top.get("simulation", {}), "simulation")
    defaults = Scenario.__dataclass_fields__
    manifests = keda.get("manifests")
    return Scenario(
        name=str(top.get("name", Path(source).stem)),
        description=str(top.get("description", "")).strip(),
        phases=tuple(_phase(p, i) for i, p in enumerate(phases_raw)),
        profile=_profile(_get(top, "profile", source)),
        epp=Epp(
            non_cached_tokens=int(_num(epp, "non_cached_tokens", "epp", 8)),
            prefix_weight=_num(epp, "prefix_weight", "epp", 1.0),
            queue_weight=_num(epp, "queue_weight", "epp", 1.0),
            kv_weight=_num(epp, "kv_weight", "epp", 1.0),
            load_weight=_num(epp, "load_weight", "epp", 1.0),
            gateway_timeout_seconds=_num(epp, "gateway_timeout_seconds", "epp", 30.0, positive=True),
        ),
        slo=Slo(
            ttft_p90_seconds=_num(slo, "ttft_p90_seconds", "slo", positive=True),
            itl_p90_seconds=_num(slo, "itl_p90_seconds", "slo", positive=True),
        ),
        slowdown=_num(sim, "slowdown", "simulation", 1.0, positive=True),
        tick_seconds=_num(sim, "tick_seconds", "simulation", 0.1, positive=True),
        export_interval_seconds=_num(sim, "export_interval_seconds", "simulation", 1.0, positive=True),
        time_scale=_num(keda, "time_scale", "keda", 1.0, positive=True),
        hpa_sync_seconds=_num(keda, "hpa_sync_seconds", "keda", 15.0, positive=True),
        manifests=None if manifests is None else str(manifests),
        namespace=str(fleet.get("namespace", defaults["namespace"].default)),
        model_name=str(fleet.get("model_name", defaults["model_name"].default)),
        prefill_deployment=str(fleet.get("prefill_deployment", defaults["prefill_deployment"].default)),
        decode_deployment=str(fleet.get("decode_deployment", defaults["decode_deployment"].default)),
        initial_prefill=int(_num(fleet, "initial_prefill", "fleet", 1)),
        initial_decode=int(_num(fleet, "initial_decode", "fleet", 1)),
        drain_seconds=_num(fleet, "drain_seconds", "fleet", 30.0),
        source=source,
    )


def load(path: str | None) -> Scenario:
    """Load a scenario file, or the built-in default when ``path`` is None."""
    if path is None:
        text = resources.files("scaler.sim").joinpath("scenarios", DEFAULT_SCENARIO).read_text()
        source = f"scaler/sim/scenarios/{DEFAULT_SCENARIO}"
    else:
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise ScenarioError(f"cannot read scenario {path}: {exc.strerror}") from None
        source = path
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{source}: invalid YAML: {exc}") from None
    scenario = parse(data, source)
    if scenario.manifests is not None and path is not None and not Path(scenario.manifests).is_absolute():
        scenario = replace(scenario, manifests=str(Path(path).parent / scenario.manifests))
    return scenario
