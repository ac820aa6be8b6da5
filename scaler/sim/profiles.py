"""Capacity profiles: one vLLM replica's costs, limits and start-up, by name or inline.

The library (``profiles.yaml`` next to this module) holds the profiles of
capacity-profiles.md §1.3 with their evidence tags; a scenario names one
(``profile: llama8b-h100``) or writes its own mapping with the same keys. See
:class:`Profile` for the cost model the numbers plug into.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import yaml

from scaler.sim.validate import SpecError, integer, mapping, number, required, strict, text

LIBRARY = "profiles.yaml"

KEYS = frozenset(
    {
        "name",
        "description",
        "gpu",
        "gpus_per_replica",
        "kv_bytes_per_token",
        "kv_capacity_tokens",
        "max_num_seqs",
        "max_num_batched_tokens",
        "max_model_len",
        "prefill",
        "decode",
        "kv_transfer",
        "startup_seconds",
    }
)
_SUBKEYS = {
    "prefill": frozenset({"a_ms", "b_ms_per_tok", "c_ms_per_tok2"}),
    "decode": frozenset({"d_ms", "e_ms_per_seq", "f_ms_per_ctx_tok"}),
    "kv_transfer": frozenset({"t0_ms", "link_gbps"}),
}


class ProfileError(SpecError):
    """A profile is invalid or unknown; the message names the key."""


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
    gpus_per_replica: int = 1
    gpu: str = ""
    description: str = ""

    def prefill_ms(self, tokens: int, quad: float) -> float:
        """One prefill step of ``tokens`` tokens; ``quad`` = Σ((done+chunk)² − done²)."""
        return self.prefill_a_ms + self.prefill_b_ms_per_tok * tokens + self.prefill_c_ms_per_tok2 * quad

    def decode_ms(self, batch: int, context: int) -> float:
        return self.decode_d_ms + self.decode_e_ms_per_seq * batch + self.decode_f_ms_per_ctx_tok * context

    def kv_transfer_s(self, tokens: int) -> float:
        return (self.kv_t0_ms + tokens * self.kv_bytes_per_token / (self.kv_link_gbps * 1e6)) / 1000.0


def parse(raw: Any, where: str = "profile", name: str = "custom") -> Profile:
    """Validate a profile mapping; raises ProfileError naming the key."""
    try:
        return _parse(raw, where, name)
    except ProfileError:
        raise
    except SpecError as exc:
        raise ProfileError(str(exc)) from None


def _parse(raw: Any, where: str, name: str) -> Profile:
    data = mapping(raw, where)
    strict(data, KEYS, where)
    parts = {}
    for key, allowed in _SUBKEYS.items():
        parts[key] = mapping(required(data, key, where), f"{where}.{key}")
        strict(parts[key], allowed, f"{where}.{key}")
    startup = data.get("startup_seconds", [20, 60])
    if not (
        isinstance(startup, list)
        and len(startup) == 2
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in startup)
        and 0 <= startup[0] <= startup[1]
    ):
        raise ProfileError(f"{where}.startup_seconds: expected [min, max] with 0 <= min <= max")
    pre, dec, kv = (parts[k] for k in ("prefill", "decode", "kv_transfer"))
    return Profile(
        name=str(data.get("name", name)),
        kv_bytes_per_token=integer(data, "kv_bytes_per_token", where, positive=True),
        kv_capacity_tokens=integer(data, "kv_capacity_tokens", where, positive=True),
        max_num_seqs=integer(data, "max_num_seqs", where, positive=True),
        max_num_batched_tokens=integer(data, "max_num_batched_tokens", where, positive=True),
        max_model_len=integer(data, "max_model_len", where, positive=True),
        prefill_a_ms=number(pre, "a_ms", f"{where}.prefill"),
        prefill_b_ms_per_tok=number(pre, "b_ms_per_tok", f"{where}.prefill"),
        prefill_c_ms_per_tok2=number(pre, "c_ms_per_tok2", f"{where}.prefill"),
        decode_d_ms=number(dec, "d_ms", f"{where}.decode", positive=True),
        decode_e_ms_per_seq=number(dec, "e_ms_per_seq", f"{where}.decode"),
        decode_f_ms_per_ctx_tok=number(dec, "f_ms_per_ctx_tok", f"{where}.decode"),
        kv_t0_ms=number(kv, "t0_ms", f"{where}.kv_transfer"),
        kv_link_gbps=number(kv, "link_gbps", f"{where}.kv_transfer", positive=True),
        startup_seconds=(float(startup[0]), float(startup[1])),
        gpus_per_replica=integer(data, "gpus_per_replica", where, 1, positive=True),
        gpu=str(data.get("gpu", "")),
        description=text(data, "description"),
    )


@cache
def library() -> dict[str, Profile]:
    """The built-in profiles by name."""
    text_ = resources.files("scaler.sim").joinpath(LIBRARY).read_text()
    data = mapping(yaml.safe_load(text_), LIBRARY)
    return {str(name): parse(raw, f"{LIBRARY}: {name}", str(name)) for name, raw in data.items()}


def named(name: str, where: str = "profile") -> Profile:
    profiles = library()
    if name not in profiles:
        raise ProfileError(f"{where}: unknown profile {name!r} (built-in: {', '.join(sorted(profiles))})")
    return profiles[name]
