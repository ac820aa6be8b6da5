"""Gateway/EPP routing and the Deployment controller: prefix-cache skip, start-up, drain, gateway."""

from __future__ import annotations

import random

from scaler.sim.decode_engine import DecodeEngine
from scaler.sim.fleet import Fleet
from scaler.sim.vllm_engine import PrefillEngine
from tests.sim.helpers import Log, request, scenario


def fleet(prefill: int = 1, decode: int = 1, **overrides: object) -> tuple[Fleet, Log]:
    log = Log()
    sc = scenario(initial_prefill=prefill, initial_decode=decode, **overrides)
    return Fleet(sc, random.Random(1), log), log


def test_repeated_prompt_skips_prefill_once_cached_on_the_decode_pod() -> None:
    f, log = fleet()
    first = request(1, 0.0, 512, 4, key="the-prompt")
    f.advance(0.1, [first])
    f.advance(2.0, [])
    second = request(2, 2.0, 512, 4, key="the-prompt")
    unique = request(3, 2.0, 512, 4)
    f.advance(2.1, [second, unique])
    f.advance(4.0, [])
    assert first.remote_prefill  # nothing cached yet: 512 > nonCachedTokens (8)
    assert not second.remote_prefill  # full prefix hit on the same decode pod: decode-only
    assert unique.remote_prefill
    assert [rid for rid, _ in log.prefilled] == [1, 3]
    assert {rid for rid, _ in log.done} == {1, 2, 3}
    prefill_pod = f.by_role("prefill").pods[0]
    assert prefill_pod.metrics.prompt_tokens.value == 2 * 512


def test_short_prompts_and_missing_prefill_pods_stay_decode_only() -> None:
    f, _ = fleet()
    short = request(1, 0.0, 8, 4)  # non-cached 8 is not > nonCachedTokens 8
    f.advance(0.1, [short])
    assert not short.remote_prefill
    f2, _ = fleet(prefill=0)
    long = request(2, 0.0, 1500, 4)
    f2.advance(0.1, [long])
    assert not long.remote_prefill  # no prefill endpoint: the decode pod prefills locally


def test_new_pods_count_as_replicas_at_once_but_serve_after_start_up() -> None:
    f, _ = fleet(prefill=0, decode=1)  # start-up is 20 s in the test profile (time_scale 1)
    f.scale(f.scenario.decode_deployment, 2)
    f.advance(1.0, [])
    dep = f.by_role("decode")
    assert (dep.spec_replicas, dep.status_replicas, dep.ready_replicas) == (2, 2, 1)
    old, new = dep.pods
    early = [request(i, 9.5, 64, 2) for i in range(20)]
    f.advance(10.0, early)
    assert {r.decode_pod for r in early} == {old.name}
    assert (new.engine.idle, new.state) == (True, "starting")
    f.advance(21.5, [])
    assert new.state == "ready" and dep.ready_replicas == 2
    f.advance(22.0, [request(100 + i, 21.6 + i * 0.01, 64, 200) for i in range(20)])
    assert not new.engine.idle  # the EPP routes to it now
    f.scale(dep.name, 1)
    f.advance(22.1, [])
    assert (old.state, new.state) == ("ready", "terminating")  # ReplicaSet ranking: most recently ready goes


def test_scale_in_drains_a_pod_then_removes_it() -> None:
    f, log = fleet(prefill=0, decode=2)
    dep = f.by_role("decode")
    reqs = [request(i, 0.0, 64, 300) for i in range(10)]
    f.advance(0.1, reqs)
    busy = {p.name: p.engine.in_flight for p in dep.pods}
    assert all(n > 0 for n in busy.values())
    f.scale(dep.name, 1)
    f.advance(0.2, [])
    terminating = [p for p in dep.pods if p.state == "terminating"]
    assert len(terminating) == 1 and dep.status_replicas == 1
    victim = terminating[0]
    late = [request(50 + i, 0.25, 64, 2) for i in range(5)]
    f.advance(0.3, late)
    assert all(r.decode_pod not in ("", victim.name) for r in late)  # no new work for a terminating pod
    for t in range(1, 40):
        f.advance(0.3 + t * 0.5, [])
    assert victim not in dep.pods
    assert f.removed == [victim]  # its series get one staleness marker at the next export
    assert not log.failures  # drained, nothing aborted
    assert len(log.done) == 15


def test_drain_deadline_aborts_what_is_left() -> None:
    f, log = fleet(prefill=0, decode=2, drain_seconds=1.0)
    dep = f.by_role("decode")
    f.advance(0.1, [request(i, 0.0, 64, 2000) for i in range(10)])
    f.scale(dep.name, 1)
    f.advance(0.2, [])
    f.advance(2.0, [])
    assert dep.status_replicas == 1 and len(dep.pods) == 1
    assert log.failures and all(reason == "aborted by pod termination" for _, reason in log.failures)


def test_requests_wait_at_the_gateway_without_decode_pods_then_time_out() -> None:
    f, log = fleet(prefill=1, decode=0)
    f.advance(0.1, [request(1, 0.0, 64, 2)])
    assert len(f.gateway) == 1
    f.advance(31.0, [])
    assert not f.gateway and log.failures == [(1, "no ready decode pod (gateway timeout)")]


def test_engines_match_roles() -> None:
    f, _ = fleet(prefill=1, decode=1)
    assert isinstance(f.by_role("prefill").pods[0].engine, PrefillEngine)
    assert isinstance(f.by_role("decode").pods[0].engine, DecodeEngine)


def test_clients_give_up_without_a_first_token_and_vllm_drops_their_requests() -> None:
    f, log = fleet(prefill=1, decode=1, client_timeout_seconds=5.0, profile={"max_num_seqs": 2})
    dep = f.by_role("decode")
    hogs = [request(i, 0.0, 64, 5000) for i in range(2)]  # fill both batch slots for ~30 s
    queued = [request(10 + i, 0.5, 1500, 10) for i in range(4)]  # P/D, then wait for a slot
    f.advance(1.0, hogs + queued)
    assert dep.pods[0].in_flight == 6
    f.advance(7.0)
    assert sorted(rid for rid, _ in log.failures) == [10, 11, 12, 13]
    assert {reason for _, reason in log.failures} == {"client timed out before the first token"}
    pod = dep.pods[0]
    assert pod.in_flight == 2 and pod.metrics._success["abort"].value == 4  # dropped where they waited
    prefill = f.by_role("prefill").pods[0]
    assert prefill.engine.in_flight == 0  # the prompts' KV is freed though never pulled
    assert all(r.first_token is not None for r in hogs)
