"""Per-replica capacity hints (the trigger's optional ``profile`` key): seeds, never truths.

A profile is the analytical model of one vLLM replica from the shared capacity profiles
(``capacity-profiles.md`` §1.1, the same model Dynamo's pre-deployment profiling interpolates):

* prefill step ``a + b·T + c·Σ(chunk²)`` ms for ``T`` ≤ ``max_num_batched_tokens`` tokens;
* decode step ``d + e·B + f·S`` ms for ``B`` running sequences of total context ``S``;
* ``max_num_seqs`` batch slots and ``kv_capacity_tokens`` of KV cache;
* pod start-up between ``startup_seconds[0]`` and ``[1]``.

The planner turns it into a first guess of each role's capacity for the workload it observes
(mean prompt and output lengths) and then corrects that guess with what the pods actually do.

The key holds a built-in name (``llama8b-h100``) or a YAML/JSON flow mapping with the fields
of the capacity-profiles YAML, optionally on top of a built-in:
``{base: llama8b-h100, startup_seconds: [60, 90], decode: {d_ms: 8}}``. Two direct hints
override the model where a user has measured them: ``prefill_tokens_per_second`` (a replica's
saturated prefill throughput) and ``decode_tokens_per_second`` (tokens/s a decode replica
generates at the largest batch that keeps its step time within the ITL target).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import yaml


class ProfileError(ValueError):
    """The profile text does not parse; the message names the field."""


@dataclass(frozen=True)
class Profile:
    name: str
    max_num_seqs: int
    max_num_batched_tokens: int
    kv_capacity_tokens: int
    prefill_a_ms: float
    prefill_b_ms_per_tok: float
    prefill_c_ms_per_tok2: float
    decode_d_ms: float
    decode_e_ms_per_seq: float
    decode_f_ms_per_ctx_tok: float
    startup_seconds: tuple[float, float]
    prefill_tokens_per_second: float | None = None
    decode_tokens_per_second: float | None = None

    def prefill_service_s(self, isl: float) -> float:
        """One prompt of ``isl`` tokens prefilled alone."""
        return (self.prefill_a_ms + self.prefill_b_ms_per_tok * isl + self.prefill_c_ms_per_tok2 * isl * isl) / 1000

    def prefill_tokens_per_s(self, isl: float) -> float:
        """Saturated prefill throughput: full ``max_num_batched_tokens`` steps of ``isl``-token
        prompts (the quadratic term is per prompt: ``T/isl`` prompts of ``isl²`` each)."""
        if self.prefill_tokens_per_second is not None:
            return self.prefill_tokens_per_second
        tokens = float(self.max_num_batched_tokens)
        chunk = min(max(isl, 1.0), tokens)
        step_ms = self.prefill_a_ms + self.prefill_b_ms_per_tok * tokens + self.prefill_c_ms_per_tok2 * tokens * chunk
        return tokens / step_ms * 1000

    def decode_step_s(self, batch: float, context: float) -> float:
        """One decode step with ``batch`` sequences of ``context`` tokens each (the ITL)."""
        per_seq = self.decode_e_ms_per_seq + self.decode_f_ms_per_ctx_tok * context
        return (self.decode_d_ms + per_seq * batch) / 1000

    def decode_sequences_within(self, itl_s: float, context: float, tokens_per_seq: float) -> float:
        """Concurrent sequences one decode replica serves with its step time ≤ ``itl_s``:
        the least of the batch slots, the ITL bound and the KV bound (``tokens_per_seq`` =
        prompt + output tokens a sequence holds at most)."""
        per_seq = self.decode_e_ms_per_seq + self.decode_f_ms_per_ctx_tok * context
        itl_bound = (itl_s * 1000 - self.decode_d_ms) / per_seq if per_seq > 0 else math.inf
        kv_bound = self.kv_capacity_tokens / max(tokens_per_seq, 1.0)
        return max(0.0, min(float(self.max_num_seqs), itl_bound, kv_bound))

    @property
    def startup_max_s(self) -> float:
        return self.startup_seconds[1]


# capacity-profiles.md §1.3 (tags there: C config default, D derived, M measured, E estimate).
BUILTIN: dict[str, Profile] = {
    "opt125m-l4": Profile("opt125m-l4", 256, 2048, 570_000, 8.0, 0.004, 6.0e-7, 6.0, 0.01, 1.4e-4, (20.0, 60.0)),
    "llama8b-h100": Profile(
        "llama8b-h100", 1024, 8192, 430_000, 10.0, 0.0256, 8.2e-7, 7.36, 0.0112, 5.5e-5, (45.0, 120.0)
    ),
    "llama70b-tp4-h100": Profile(
        "llama70b-tp4-h100", 1024, 8192, 450_000, 25.0, 0.080, 1.0e-6, 19.0, 0.019, 4.1e-5, (180.0, 360.0)
    ),
}

_GROUPS = {
    "prefill": {
        "a_ms": "prefill_a_ms",
        "b_ms_per_tok": "prefill_b_ms_per_tok",
        "c_ms_per_tok2": "prefill_c_ms_per_tok2",
    },
    "decode": {
        "d_ms": "decode_d_ms",
        "e_ms_per_seq": "decode_e_ms_per_seq",
        "f_ms_per_ctx_tok": "decode_f_ms_per_ctx_tok",
    },
}
_SCALARS = {
    "max_num_seqs": int,
    "max_num_batched_tokens": int,
    "kv_capacity_tokens": int,
    "prefill_tokens_per_second": float,
    "decode_tokens_per_second": float,
}
_IGNORED = frozenset({"gpu", "tp", "enforce_eager", "kv_bytes_per_token", "max_model_len", "kv_transfer"})
"""Fields of the capacity-profiles YAML the planner does not use (accepted so it can be pasted)."""


def _number(raw: Any, where: str, kind: type = float) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise ProfileError(f"{where}: {raw!r} is not a number")
    value = float(raw)
    if not math.isfinite(value) or value < 0:
        raise ProfileError(f"{where}: {raw!r} must be a finite number >= 0")
    if kind is int and value != int(value):
        raise ProfileError(f"{where}: {raw!r} must be a whole number")
    return value


def _startup(raw: Any) -> tuple[float, float]:
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        value = _number(raw, "startup_seconds")
        return value, value
    if isinstance(raw, list) and len(raw) == 2:
        lo, hi = _number(raw[0], "startup_seconds[0]"), _number(raw[1], "startup_seconds[1]")
        if lo > hi:
            raise ProfileError("startup_seconds: the minimum is larger than the maximum")
        return lo, hi
    raise ProfileError("startup_seconds: expected seconds or [min, max]")


def _apply(profile: Profile, data: Mapping[str, Any]) -> Profile:
    changes: dict[str, Any] = {}
    for key, raw in data.items():
        if key in ("base", "name") or key in _IGNORED:
            continue
        if key == "startup_seconds":
            changes["startup_seconds"] = _startup(raw)
        elif key in _SCALARS:
            kind = _SCALARS[key]
            value = _number(raw, key, kind)
            changes[key] = int(value) if kind is int else value
        elif key in _GROUPS:
            if not isinstance(raw, Mapping):
                raise ProfileError(f"{key}: expected a mapping of {', '.join(_GROUPS[key])}")
            for sub, value in raw.items():
                if sub not in _GROUPS[key]:
                    raise ProfileError(f"{key}.{sub}: unknown field; use {', '.join(_GROUPS[key])}")
                changes[_GROUPS[key][sub]] = _number(value, f"{key}.{sub}")
        else:
            known = sorted({"base", "startup_seconds", *_SCALARS, *_GROUPS})
            raise ProfileError(f"unknown field {key!r}; use {', '.join(known)}")
    if changes.get("max_num_seqs", 1) < 1 or changes.get("max_num_batched_tokens", 1) < 1:
        raise ProfileError("max_num_seqs and max_num_batched_tokens must be at least 1")
    if changes.get("kv_capacity_tokens", 1) < 1:
        raise ProfileError("kv_capacity_tokens must be at least 1")
    return replace(profile, **changes)


def parse_profile(text: str) -> Profile:
    """A built-in name or a YAML/JSON mapping (see the module docstring); raises ProfileError."""
    text = text.strip()
    if text in BUILTIN:
        return BUILTIN[text]
    if not text.startswith("{"):
        raise ProfileError(f"{text!r} is neither a built-in profile ({', '.join(BUILTIN)}) nor a {{...}} mapping")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ProfileError(f"not valid YAML/JSON: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, Mapping):
        raise ProfileError("expected a {...} mapping")
    base_name = data.get("base")
    if base_name is not None:
        if base_name not in BUILTIN:
            raise ProfileError(f"base: unknown profile {base_name!r}; use one of {', '.join(BUILTIN)}")
        base = BUILTIN[str(base_name)]
    else:
        absent = [k for k in ("max_num_seqs", "max_num_batched_tokens", "kv_capacity_tokens", "startup_seconds")]
        absent = [k for k in absent if k not in data]
        for group, subs in _GROUPS.items():
            given = data.get(group)
            absent += [f"{group}.{s}" for s in subs if not isinstance(given, Mapping) or s not in given]
        if absent:
            raise ProfileError(f"without 'base' every field is needed; missing {', '.join(absent)}")
        base = replace(BUILTIN["opt125m-l4"], name="custom")
    name = str(data.get("name", f"{base.name}+" if base_name is not None else "custom"))
    return replace(_apply(base, data), name=name)
