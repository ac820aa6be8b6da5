"""Profiles (built-in or a mapping) and planner metadata: values and errors naming the key."""

from __future__ import annotations

import dataclasses
from dataclasses import replace

import pytest

from scaler.planner import BUILTIN, ProfileError, SpecError, parse_profile, parse_spec
from scaler.sim import profiles

GOOD = {"planner": "decode", "deployment": "pd-decode", "ttftTarget": "1s", "itlTarget": "50ms"}


def test_builtin_profiles_give_capacity_profiles_md_figures() -> None:
    llama8b = BUILTIN["llama8b-h100"]
    # capacity-profiles.md §1.2: "34k tok/s at 1-2k"; 8192-token steps of 1500-token prompts:
    # 8192 / (10 + 0.0256*8192 + 8.2e-7*8192*1500) ms
    assert llama8b.prefill_tokens_per_s(1500) == pytest.approx(8192 / (10 + 209.7152 + 10.0762) * 1000)
    assert 34_000 < llama8b.prefill_tokens_per_s(1500) < 36_000
    # ITL example "B=256 at ctx 1024: 24.3 ms" (M): d + (e + f*ctx) * B
    assert llama8b.decode_step_s(256, 1024) == pytest.approx(0.0245, abs=3e-4)
    # decode, ITL bound (50-7.36)/(0.0112+5.5e-5*1100)=594 vs KV bound 430000/1200=358
    assert llama8b.decode_sequences_within(0.05, 1100, 1200) == pytest.approx(430_000 / 1200)
    opt = BUILTIN["opt125m-l4"]
    assert opt.decode_sequences_within(0.05, 700, 900) == 256.0  # batch slots bind first
    assert BUILTIN["llama70b-tp4-h100"].startup_seconds == (180.0, 360.0)


def test_a_mapping_overrides_a_base_and_direct_hints_win_over_the_model() -> None:
    profile = parse_profile(
        "{base: llama8b-h100, startup_seconds: [60, 90], decode: {d_ms: 8}, prefill_tokens_per_second: 20000}"
    )
    assert profile.startup_seconds == (60.0, 90.0)
    assert profile.decode_d_ms == 8.0 and profile.decode_e_ms_per_seq == 0.0112
    assert profile.prefill_tokens_per_s(1000) == 20_000
    assert parse_profile('{"base": "opt125m-l4", "decode_tokens_per_second": 9000}').decode_tokens_per_second == 9000


def test_a_full_mapping_without_base_is_accepted_and_a_partial_one_is_not() -> None:
    full = (
        "{max_num_seqs: 64, max_num_batched_tokens: 4096, kv_capacity_tokens: 100000, startup_seconds: 30,"
        " prefill: {a_ms: 5, b_ms_per_tok: 0.01, c_ms_per_tok2: 0}, decode: {d_ms: 5, e_ms_per_seq: 0.1,"
        " f_ms_per_ctx_tok: 0}, gpu: L4, kv_bytes_per_token: 1}"
    )
    assert parse_profile(full).max_num_seqs == 64
    with pytest.raises(ProfileError, match=r"missing .*prefill\.c_ms_per_tok2"):
        parse_profile(full.replace(", c_ms_per_tok2: 0", ""))


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("h100-fast", "neither a built-in profile"),
        ("{base: a100}", "base: unknown profile 'a100'"),
        ("{base: llama8b-h100, max_num_seqs: -1}", "max_num_seqs: -1 must be a finite number >= 0"),
        ("{base: llama8b-h100, max_num_seqs: 1.5}", "max_num_seqs: 1.5 must be a whole number"),
        ("{base: llama8b-h100, decode: {g_ms: 1}}", "decode.g_ms: unknown field"),
        ("{base: llama8b-h100, turbo: true}", "unknown field 'turbo'"),
        ("{base: llama8b-h100, startup_seconds: [90, 60]}", "minimum is larger than the maximum"),
        ("{base: [", "not valid YAML/JSON"),
    ],
)
def test_a_bad_profile_names_the_field(text: str, problem: str) -> None:
    with pytest.raises(ProfileError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        parse_profile(text)


def test_good_metadata_parses_durations_and_the_profile() -> None:
    spec = parse_spec(GOOD | {"ttftTarget": "1.5", "itlTarget": "0.05", "profile": "opt125m-l4"})
    assert (spec.role, spec.deployment, spec.ttft_target_s, spec.itl_target_s) == ("decode", "pd-decode", 1.5, 0.05)
    # decode's queue holds 30 % of the TTFT target, prefill 70 %
    assert spec.startup_s == 60.0 and spec.ttft_budget_s == pytest.approx(0.45)
    assert replace(spec, role="prefill").ttft_budget_s == pytest.approx(1.05)
    assert parse_spec(GOOD).profile is None and parse_spec(GOOD).startup_s == 60.0
    # a queue is projected to the expected start-up: the middle of the profile's range
    assert spec.arrival_s == 40.0 and parse_spec(GOOD).arrival_s == 60.0
    ranged = parse_spec(GOOD | {"profile": "{base: llama8b-h100, startup_seconds: [60, 90]}"})
    assert (ranged.startup_s, ranged.arrival_s) == (90.0, 75.0)
    assert parse_spec(GOOD | {"ttftTarget": "1.5s", "itlTarget": "0.5m"}).itl_target_s == 30.0
    assert parse_spec(GOOD | {"ttftTarget": "1m30s"}).ttft_target_s == 90.0


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"planner": "both"}, "planner"),
        ({"planner": ""}, "planner"),
        ({"deployment": " "}, "deployment"),
        ({"ttftTarget": "soon"}, "ttftTarget"),
        ({"ttftTarget": "0s"}, "ttftTarget"),
        ({"itlTarget": "-1"}, "itlTarget"),
        ({"itlTarget": ""}, "itlTarget"),
        ({"profile": "{base: llama8b-h100, max_num_seqs: many}"}, "profile"),
    ],
)
def test_bad_metadata_names_the_key(change: dict[str, str], key: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(GOOD | change)
    assert info.value.key == key and f"metadata key {key!r}" in str(info.value)


def test_builtin_profiles_are_the_simulators() -> None:
    # the planner (core) keeps its own copy of the capacity profiles' model figures, since the
    # simulator's library is not part of the service; the two must not drift apart
    library = profiles.library()
    assert set(BUILTIN) == set(library)
    for name, ours in BUILTIN.items():
        sim = library[name]
        fields = [f.name for f in dataclasses.fields(ours) if hasattr(sim, f.name)]
        assert len(fields) == 11, fields  # the model, its limits and start-up (the hints are the planner's)
        assert {f: getattr(ours, f) for f in fields} == {f: getattr(sim, f) for f in fields}
