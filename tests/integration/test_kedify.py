"""kedify/otel-add-on v0.1.4 compatibility (issue 16, docs/migrating-from-kedify.md): the compat
form's numbers where kedify's behaviour is a choice (activation, the unclamped fallback, ``rate``,
escaping in both directions, the metric name), its REST details, its self-metrics on the
internal-metrics port, and series identity. Expected values are kedify's, worked out by hand from
its code (``scaler/handlers.go``, ``metric/mem_store.go``, ``util/internal_metrics.go``)."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import grpc
import httpx
import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.metrics.v1 import metrics_pb2 as m
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from scaler import selfmetrics
from tests.conftest import RunningService
from tests.integration.test_keda import WAITING_DECODE, Keda, Pusher, _stream
from tests.otlpdata import DECODE, counter, gauge, kv, now_ns, otlp_stub

S = 1_000_000_000


def push(service: RunningService, metric: m.Metric, **resource: str) -> None:
    """One metric from a resource with exactly these attributes."""
    attributes = [kv(k, v) for k, v in resource.items()]
    rm = m.ResourceMetrics(resource=Resource(attributes=attributes), scope_metrics=[m.ScopeMetrics(metrics=[metric])])
    reply = otlp_stub(service.ports.otlp).Export(ExportMetricsServiceRequest(resource_metrics=[rm]))
    assert reply.partial_success.rejected_data_points == 0, reply


def rest_query(service: RunningService, q: str, op: str = "last_one") -> Any:
    reply = httpx.post(service.http + "/memstore/query", json={"query": q, "operationOverTime": op})
    assert reply.status_code == 200, reply.text
    return reply.json()["value"]


# ------------------------------------------------------------------ KEDA's numbers


def test_activation_without_a_key_is_the_value_keda_gets_above_zero(keda: Keda, pusher: Pusher) -> None:
    q = {"metricQuery": WAITING_DECODE, "targetValue": "1"}
    pusher.waiting(DECODE, "d0", 0)
    # clampMin 1 over a value of 0: GetMetrics says 1, so kedify is active (no scale to zero)
    assert keda.metrics(**q, clampMin="1").metricValueFloat == 1
    assert keda.active(**q, clampMin="1")
    assert not keda.active(**q)
    time.sleep(0.002)
    pusher.waiting(DECODE, "d0", 8)
    # clampMax 0 over a value of 8: GetMetrics says 0, so kedify is inactive
    assert keda.metrics(**q, clampMax="0").metricValueFloat == 0
    assert not keda.active(**q, clampMax="0")
    # with an activation key the key decides, on the unclamped value (8 > 7)
    assert keda.active(**q, clampMax="0", activationThreshold="7")
    # PromQL keeps KEDA's rule for its own scalers: the unclamped value above activationThreshold (0)
    promql = {"query": f'sum(vllm:num_requests_waiting{{deployment="{DECODE}"}})', "targetValue": "1"}
    assert keda.active(**promql, clampMax="0")


def test_not_found_answers_value_if_not_found_unclamped(keda: Keda) -> None:
    absent = {"metricQuery": "vllm:absent", "targetValue": "1"}
    assert keda.metrics(**absent, clampMin="1").metricValueFloat == 0  # kedify: 0, not clampMin
    assert not keda.active(**absent, clampMin="1")
    fallback = {**absent, "valueIfNotFound": "5", "clampMax": "1"}
    assert keda.metrics(**fallback).metricValueFloat == 5
    assert keda.active(**fallback)
    # PromQL keeps clamping the fallback
    assert keda.metrics(query="vllm:absent", targetValue="1", clampMin="1").metricValueFloat == 1
    # Go's boolean spellings
    with pytest.raises(grpc.RpcError) as caught:
        keda.metrics(**absent, errIfNotFound="t")
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND
    assert keda.metrics(**absent, errIfNotFound="F").metricValueFloat == 0


def test_rate_counts_a_reset_and_divides_by_the_sampled_time(keda: Keda, service: RunningService) -> None:
    t = now_ns()
    for i, value in enumerate((50.0, 60.0, 5.0, 15.0)):  # 10 s apart, a reset after 60
        push(service, counter("vllm:prompt_tokens_total", value, t - (30 - 10 * i) * S), **{"k8s.pod.name": "p"})
    q = {"metricQuery": "vllm:prompt_tokens_total{pod=p}", "targetValue": "1", "operationOverTime": "rate"}
    assert keda.metrics(**q).metricValueFloat == pytest.approx((10 + 5 + 10) / 30)
    assert rest_query(service, "vllm:prompt_tokens_total", "rate") == pytest.approx(25 / 30)
    push(service, counter("fresh_total", 3.0, t), **{"k8s.pod.name": "p"})
    assert rest_query(service, "fresh_total", "rate") == 0  # one sample: found, 0 (not "not found")


def test_the_query_command_explains_what_runs(service: RunningService) -> None:
    push(service, counter("vllm:prompt_tokens_total", 5.0, now_ns()), **{"k8s.pod.name": "p"})
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "scaler",
            "query",
            "--url",
            service.http,
            "--op",
            "rate",
            "--explain",
            "vllm:prompt_tokens_total",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert done.stdout.strip() == "0.0"  # one sample: kedify's rate is 0
    promql = "sum(kedify_rate(vllm:prompt_tokens_total[2m]) and vllm:prompt_tokens_total)"
    assert f"PromQL: {promql}" in done.stderr
    assert rest_query(service, "vllm:prompt_tokens_total", "rate") == 0
    assert (
        httpx.get(service.http + "/api/v1/query", params={"query": promql}).json()["data"]["result"][0]["value"][1]
        == "0"
    )


def test_names_match_in_both_escaped_directions(keda: Keda, service: RunningService) -> None:
    t = now_ns()
    push(service, gauge("foo_bar_baz", 1.0, t))
    push(service, gauge("ns/metric.x", 9.0, t))
    push(service, gauge("metric/one", 42.0, t, a="1", b="2"))
    assert rest_query(service, "foo.bar.baz") == 1  # stored with underscores, asked with dots
    assert rest_query(service, "ns/metric_x") == 9
    assert rest_query(service, "metric.one{b=2,a=1}") == 42  # kedify's mem_store_test.go:62
    assert keda.metrics(metricQuery="foo/bar.baz", targetValue="1").metricValueFloat == 1
    assert httpx.get(service.http + "/memstore/names").json() == ["foo_bar_baz", "metric/one", "ns/metric.x"]


def test_stream_is_active_repeats_the_state_at_the_polling_interval(
    service_factory: Callable[..., RunningService],
) -> None:
    svc = service_factory(is_active_polling_interval_ms=100)
    keda, pusher = Keda(svc), Pusher(svc)
    call, received, first = _stream(keda, metricQuery=WAITING_DECODE, targetValue="1")
    assert first.wait(5)
    time.sleep(1.0)
    steady = [r for _, r in received]
    assert len(steady) >= 3 and set(steady) == {False}  # repeated although nothing changed
    sent = time.monotonic()
    pusher.waiting(DECODE, "d0", 4)
    deadline = sent + 5
    while not (received and received[-1][1]) and time.monotonic() < deadline:
        time.sleep(0.001)
    assert received[-1][1] is True
    call.cancel()


# ------------------------------------------------------------------ REST


def test_rest_times_are_whole_seconds_and_info_starts_with_kedifys_flat_strings(
    pusher: Pusher, service: RunningService
) -> None:
    pusher.waiting(DECODE, "d0", 2)
    (series,) = httpx.get(service.http + "/memstore/data").json()["vllm:num_requests_waiting"]
    assert isinstance(series["lastUpdate"], int) and abs(series["lastUpdate"] - time.time()) < 60
    assert all(isinstance(p["time"], int) for p in series["data"])
    info = httpx.get(service.http + "/info").json()
    ports = service.ports
    kedify = {
        "retentionSeconds": "120",
        "scalerPort": str(ports.keda),
        "otlpPort": str(ports.otlp),
        "internalMetricsPort": str(ports.metrics),
        "restApiPort": str(ports.http),
    }
    assert {k: info[k] for k in kedify} == kedify
    for key in ("version", "goVersion", "arch", "os", "gitSha"):
        assert isinstance(info[key], str) and info[key], key
    assert info["goVersion"].startswith("python3.") and info["os"] == "linux"
    assert info["ports"]["metrics"] == ports.metrics and "config" in info  # ours, beside kedify's


def test_swagger_and_root_lead_to_the_docs(service: RunningService) -> None:
    root = httpx.get(service.http + "/")
    assert (root.status_code, root.headers["location"]) == (308, "/swagger/index.html")
    swagger = httpx.get(service.http + "/swagger/index.html", follow_redirects=True)
    assert swagger.status_code == 200 and str(swagger.url).endswith("/docs") and "swagger-ui" in swagger.text


def test_memstore_data_aggregates_each_series_alone(service: RunningService) -> None:
    t = now_ns()
    push(service, gauge("delta_counter", 10.0, t, x="1"))
    push(service, gauge("delta_counter", 20.0, t, x="1", y="a"))
    push(service, gauge("waiting", 100.0, t))
    push(service, gauge("waiting", 8.0, t, pod="b"))
    data = httpx.get(service.http + "/memstore/data").json()
    by_labels = {
        (name, tuple(sorted(s["labels"].items()))): s["aggregatesOverTime"] for name in data for s in data[name]
    }
    subset = by_labels["delta_counter", (("x", "1"),)]
    assert (subset["last_one"], subset["count"], subset["max"]) == (10, 1, 10)  # not 30, 2, 20
    assert by_labels["delta_counter", (("x", "1"), ("y", "a"))]["last_one"] == 20
    assert by_labels["waiting", ()]["last_one"] == 100  # not 108
    assert by_labels["waiting", (("pod", "b"),)]["last_one"] == 8


# ------------------------------------------------------------------ series identity


def test_two_sources_that_differ_only_in_host_name_stay_two_series(service: RunningService) -> None:
    t = now_ns()
    push(service, gauge("vllm:num_requests_running", 3.0, t), **{"host.name": "node-a"})
    push(service, gauge("vllm:num_requests_running", 5.0, t), **{"host.name": "node-b"})
    series = httpx.get(service.http + "/memstore/data").json()["vllm:num_requests_running"]
    assert sorted((s["labels"]["host.name"], [p["value"] for p in s["data"]]) for s in series) == [
        ("node-a", [3]),
        ("node-b", [5]),
    ]
    assert all(s["labels"] == {"host.name": s["labels"]["host.name"]} for s in series)
    assert rest_query(service, "vllm:num_requests_running") == 8  # kedify: 8 (one merged series: 5)
    assert rest_query(service, "vllm:num_requests_running{host.name=node-b}") == 5
    # sources that differ in an attribute that is not promoted stay apart too
    push(service, gauge("sidecars", 1.0, t), **{"k8s.pod.name": "p", "k8s.container.name": "a"})
    push(service, gauge("sidecars", 2.0, t), **{"k8s.pod.name": "p", "k8s.container.name": "b"})
    assert rest_query(service, "sidecars{pod=p}") == 3


# ------------------------------------------------------------------ self-metrics on 8080


def test_internal_metrics_port_serves_kedifys_metric_names_beside_ours(
    keda: Keda, pusher: Pusher, service: RunningService
) -> None:
    pusher.waiting(DECODE, "d0", 5)
    time.sleep(0.002)
    pusher.waiting(DECODE, "d1", 2)
    keda.metrics(metricQuery=WAITING_DECODE, targetValue="1", clampMax="4")
    internal = f"http://127.0.0.1:{service.ports.metrics}"
    scrape = httpx.get(internal + "/metrics")
    assert scrape.status_code == 200 and scrape.headers["content-type"].startswith("text/plain")
    text = scrape.text
    for name, kind in (
        ("metric_value", "gauge"),
        ("metric_value_clamped", "gauge"),
        ("metric_points_written", "counter"),
        ("metric_points_read", "counter"),
        ("runtime_info", "gauge"),
    ):
        assert f"# TYPE keda_otel_scaler_{name} {kind}\n" in text, name
    # label pairs sorted by name, as Go's client (and Python's) writes them
    labels = f'labels="map[deployment:{DECODE}]",name="vllm:num_requests_waiting"'
    value = f'keda_otel_scaler_metric_value{{aggregation="sum",{labels},timeOp="last_one"}} 7\n'
    clamped = (
        f'keda_otel_scaler_metric_value_clamped{{aggregation="sum",{labels},namespace="llm-d",'
        'scaledObject="pd-decode",timeOp="last_one"} 4\n'
    )
    assert value in text and clamped in text
    assert 'keda_otel_scaler_metric_points_written{name="vllm:num_requests_waiting"} 2\n' in text
    assert 'keda_otel_scaler_metric_points_read{name="vllm:num_requests_waiting"} 1\n' in text
    assert re.search(
        rf'^keda_otel_scaler_runtime_info\{{.*internalMetricsPort="{service.ports.metrics}".*\}} 1$', text, re.M
    )
    assert "keda_trigger_value{" in text and "otlp_points_received_total" in text  # ours, beside
    assert "process_resident_memory_bytes" in text
    assert httpx.get(internal + "/info").status_code == 404  # the internal port serves /metrics only
    assert httpx.get(service.http + "/metrics").text.count("keda_otel_scaler_metric_points_written{") == 1


def test_kedify_gauges_are_bounded(service: RunningService, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(selfmetrics, "_KEDIFY_CAP", 50)
    for i in range(60):  # a client asking ever new label values cannot grow the scrape without bound
        httpx.post(service.http + "/memstore/query", json={"query": f"nothing{{i={i}}}"}).raise_for_status()
    text = httpx.get(service.http + "/metrics").text
    assert text.count("keda_otel_scaler_metric_value{") == 50
    assert 'labels="map[i:59]"' in text and 'labels="map[i:9]"' not in text  # the oldest went first
    assert "keda_otel_scaler_metric_points_read{" not in text  # no such metric is stored


def test_kedify_counters_forget_names_the_store_dropped_without_a_scrape(
    service: RunningService, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(selfmetrics, "_KEDIFY_CAP", 20)
    kedify = service.call(lambda: service.service.metrics.kedify if service.service else None)
    assert kedify is not None
    kedify._prune_at = 20
    for i in range(50):  # ever new names: reads of metrics the store does not hold
        httpx.post(service.http + "/memstore/query", json={"query": f"churn_{i}"}).raise_for_status()
    assert service.call(lambda: len(kedify.read)) <= 20
