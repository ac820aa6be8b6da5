"""Small scenarios and a recording observer for the simulator's unit tests."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from scaler.sim.request import Request
from scaler.sim.scenario import Dist, Epp, Phase, Profile, Scenario, Slo

PROFILE = Profile(
    name="test",
    kv_bytes_per_token=36864,
    kv_capacity_tokens=570_000,
    max_num_seqs=256,
    max_num_batched_tokens=2048,
    max_model_len=2048,
    prefill_a_ms=8.0,
    prefill_b_ms_per_tok=0.004,
    prefill_c_ms_per_tok2=6e-7,
    decode_d_ms=6.0,
    decode_e_ms_per_seq=0.01,
    decode_f_ms_per_ctx_tok=1.4e-4,
    kv_t0_ms=1.5,
    kv_link_gbps=0.4,
    startup_seconds=(20.0, 20.0),
)


def scenario(**overrides: Any) -> Scenario:
    profile = replace(PROFILE, **overrides.pop("profile", {}))
    base = Scenario(
        name="test",
        description="",
        phases=(Phase("only", 100.0, 0.0, "unique", Dist("fixed", 100), Dist("fixed", 10)),),
        profile=profile,
        epp=Epp(),
        slo=Slo(1.0, 0.05),
    )
    return replace(base, **overrides)


class Log:
    """A fleet Observer that keeps everything."""

    def __init__(self) -> None:
        self.first: list[tuple[int, float]] = []
        self.done: list[tuple[int, float]] = []
        self.prefilled: list[tuple[int, float]] = []
        self.failures: list[tuple[int, str]] = []
        self.itls: list[tuple[float, float, int]] = []

    def first_token(self, req: Request, t: float) -> None:
        self.first.append((req.rid, t))

    def finished(self, req: Request, t: float) -> None:
        self.done.append((req.rid, t))

    def prefill_done(self, req: Request, t: float) -> None:
        self.prefilled.append((req.rid, t))

    def itl(self, t: float, value: float, count: int) -> None:
        self.itls.append((t, value, count))

    def failed(self, req: Request, t: float, reason: str) -> None:
        self.failures.append((req.rid, reason))


def request(rid: int, t: float, isl: int, osl: int, key: str | None = None) -> Request:
    return Request(rid=rid, arrival=t, segments=((key or f"r{rid}", isl),), isl=isl, osl=osl)
