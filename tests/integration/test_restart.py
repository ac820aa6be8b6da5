"""Warm restart: SIGTERM writes the snapshot, the next start loads it and answers the same;
without data, the warm-up answers UNAVAILABLE instead of a scale-down-inducing 0."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from opentelemetry.proto.metrics.v1 import metrics_pb2 as m

from scaler.runner import ScalerProcess
from tests.conftest import RunningService
from tests.integration.test_keda import Keda
from tests.otlpdata import DECODE, PREFILL, counter, gauge, histogram, now_ns, otlp_stub, request

WAITING = "vllm:num_requests_waiting"
DECODE_WAITING = f"{WAITING}{{deployment={DECODE}}}"

PROMQL = [
    f'sum({WAITING}{{deployment="{DECODE}"}})',
    f'sum(rate(vllm:prompt_tokens_total{{deployment="{PREFILL}"}}[1m]))',
    "histogram_quantile(0.9, sum by (le) (rate(vllm:time_to_first_token_seconds_bucket[1m])))",
    "count_over_time(vllm:num_requests_waiting[2m])",
    "sum(increase(vllm:request_success_total[2m]))",
    "vllm:kv_cache_usage_perc",
]


def ingest(port: int, t0_ns: int) -> None:
    """30 s of a small PD fleet at 5 s intervals, ending at ``t0_ns``."""
    stub = otlp_stub(port)
    for step in range(7):
        t = t0_ns - (6 - step) * 5_000_000_000
        for pod in ("d0", "d1"):
            stub.Export(
                request(
                    DECODE,
                    pod,
                    gauge(WAITING, step + (pod == "d1"), t),
                    gauge("vllm:kv_cache_usage_perc", 0.1 * step, t),
                    counter("vllm:request_success_total", 10.0 * step, t, finished_reason="stop"),
                )
            )
        stub.Export(
            request(
                PREFILL,
                "p0",
                gauge(WAITING, 2 * step, t),
                counter("vllm:prompt_tokens_total", 1000.0 * step, t),
                histogram(
                    "vllm:time_to_first_token_seconds", [0.1, 0.5, 1.0], [step, 2 * step, step, 0], 0.7 * step, t
                ),
            )
        )


def answers(http: str, at: float, queries: Sequence[str] = PROMQL) -> list[Any]:
    """Each query's result at ``at``, series sorted by labels (to compare two servers)."""
    out = []
    for q in queries:
        reply = httpx.get(f"{http}/api/v1/query", params={"query": q, "time": at}, timeout=10).json()
        assert reply["status"] == "success", reply
        out.append(sorted(reply["data"]["result"], key=lambda r: sorted(r["metric"].items())))
    return out


def test_sigterm_saves_the_store_and_the_next_start_answers_the_same(
    tmp_path: Path, scaler_process: Callable[..., ScalerProcess]
) -> None:
    snap = tmp_path / "state" / "store.snap"
    args = ["--snapshot-path", str(snap), "--warmup-seconds", "60"]
    t0_ns = now_ns() - 1_000_000_000
    at = t0_ns / 1e9
    trigger = {"metricQuery": DECODE_WAITING, "operationOverTime": "last_one", "targetValue": "1"}
    first = scaler_process([*args, "--log-level", "info"], log_path=tmp_path / "first.log")
    ingest(first.ports.otlp, t0_ns)
    before = answers(first.url(), at)
    series_before = httpx.get(first.url("/info")).json()["store"]["series"]
    keda_before = Keda(first.ports.keda).metrics(**trigger).metricValueFloat
    assert first.stop() == 0
    assert keda_before == 13.0  # d0 6 + d1 7
    assert "snapshot" in first.log_path.read_text() and snap.exists()
    assert all(r for r in before), before  # every query has an answer to compare

    second = scaler_process(args)
    info = httpx.get(second.url("/info")).json()
    assert info["snapshot"]["loaded"]["outcome"] == "restored"
    assert info["snapshot"]["loaded"]["series"] == series_before == info["store"]["series"]
    assert info["warmupRemainingSeconds"] > 0
    assert answers(second.url(), at) == before
    # restored data is data: no UNAVAILABLE during the warm-up
    assert Keda(second.ports.keda).metrics(**trigger).metricValueFloat == keda_before
    with pytest.raises(grpc.RpcError) as err:
        Keda(second.ports.keda).metrics(metricQuery="vllm:never_sent", targetValue="1")
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE


def test_a_damaged_snapshot_is_moved_aside_and_the_server_starts_empty(
    tmp_path: Path, service_factory: Callable[..., RunningService]
) -> None:
    snap = tmp_path / "store.snap"
    snap.write_bytes(b"KOTSNAP\n" + b"\x00" * 64)
    svc = service_factory(snapshot_path=str(snap))
    info = httpx.get(f"{svc.http}/info").json()
    assert info["snapshot"]["loaded"]["outcome"] == "unusable"
    assert "checksum" in info["snapshot"]["loaded"]["error"]
    assert info["store"]["series"] == 0
    assert (tmp_path / "store.snap.corrupt").exists() and not snap.exists()
    otlp_stub(svc.ports.otlp).Export(request(DECODE, "d0", gauge(WAITING, 4, now_ns())))
    svc.stop()
    assert snap.exists()  # the next shutdown writes a good one


def test_periodic_snapshots_while_running(tmp_path: Path, service_factory: Callable[..., RunningService]) -> None:
    snap = tmp_path / "store.snap"
    svc = service_factory(snapshot_path=str(snap), snapshot_interval_seconds=1.0)
    otlp_stub(svc.ports.otlp).Export(request(DECODE, "d0", gauge(WAITING, 4, now_ns())))
    deadline = time.monotonic() + 10
    while not snap.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    saved = httpx.get(f"{svc.http}/info").json()["snapshot"]["saved"]
    assert saved["outcome"] == "ok" and saved["series"] >= 1
    assert 'snapshot_writes_total{outcome="ok"}' in httpx.get(f"{svc.http}/metrics").text


def test_warm_up_without_data_answers_unavailable_then_the_value(
    service_factory: Callable[..., RunningService],
) -> None:
    svc = service_factory(warmup_seconds=30.0, value_if_not_found=0.0)
    keda = Keda(svc)
    trigger = {"metricQuery": DECODE_WAITING, "targetValue": "1"}
    for call in (lambda: keda.metrics(**trigger), lambda: keda.active(**trigger)):
        with pytest.raises(grpc.RpcError) as err:
            call()
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "warming up" in (err.value.details() or "")
    assert 'keda_errors_total{code="UNAVAILABLE",method="GetMetrics"}' in httpx.get(f"{svc.http}/metrics").text
    otlp_stub(svc.ports.otlp).Export(request(DECODE, "d0", gauge(WAITING, 5, now_ns())))
    assert keda.metrics(**trigger).metricValueFloat == 5.0
    assert keda.active(**trigger) is True


def test_warm_up_ends_and_not_found_means_value_if_not_found_again(
    service_factory: Callable[..., RunningService],
) -> None:
    svc = service_factory(warmup_seconds=1.0, value_if_not_found=0.0)
    keda = Keda(svc)
    time.sleep(1.2)
    assert keda.metrics(metricQuery=DECODE_WAITING, targetValue="1").metricValueFloat == 0.0


def test_stream_is_active_holds_during_warm_up_and_speaks_when_data_arrives(
    service_factory: Callable[..., RunningService],
) -> None:
    svc = service_factory(warmup_seconds=30.0)
    keda = Keda(svc)
    stream = keda.stub.StreamIsActive(keda.ref(metricQuery=DECODE_WAITING, targetValue="1"))
    time.sleep(0.5)  # a message here would be a premature "inactive"
    otlp_stub(svc.ports.otlp).Export(request(DECODE, "d0", gauge(WAITING, 3, now_ns())))
    first = next(stream)
    assert first.result is True
    stream.cancel()


def test_a_stale_series_is_not_data_during_warm_up(service_factory: Callable[..., RunningService]) -> None:
    svc = service_factory(warmup_seconds=30.0)
    marker = gauge(WAITING, 0.0, now_ns())
    marker.gauge.data_points[0].flags = m.DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK
    otlp_stub(svc.ports.otlp).Export(request(DECODE, "d0", marker))
    with pytest.raises(grpc.RpcError) as err:
        Keda(svc).metrics(metricQuery=DECODE_WAITING, targetValue="1")
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
