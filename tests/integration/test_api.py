"""The HTTP surface: memstore paths and shapes, reset, info, health, metrics, OpenAPI, offline docs."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx

from tests.conftest import RunningService
from tests.otlpdata import DECODE, PREFILL, gauge, now_ns, otlp_stub, request


def push(svc: RunningService, deployment: str, value: float, offset_s: float = 0.0) -> None:
    stub = otlp_stub(svc.ports.otlp)
    t = now_ns() - int(offset_s * 1e9)
    stub.Export(request(deployment, deployment[-6:], gauge("vllm:kv_cache_usage_perc", value, t)))


def test_memstore_data_shape_and_aggregates(service: RunningService) -> None:
    push(service, DECODE, 0.2, offset_s=20)
    push(service, DECODE, 0.6, offset_s=10)
    push(service, PREFILL, 0.1)
    data = httpx.get(service.http + "/memstore/data").json()
    series = {s["labels"]["deployment"]: s for s in data["vllm:kv_cache_usage_perc"]}
    decode = series[DECODE]
    assert set(decode) == {"labels", "data", "aggregatesOverTime", "lastUpdate"}
    assert [p["value"] for p in decode["data"]] == [0.2, 0.6]
    assert decode["aggregatesOverTime"]["min"] == 0.2  # right from the first sample
    assert decode["aggregatesOverTime"]["max"] == 0.6
    assert decode["aggregatesOverTime"]["count"] == 2
    assert decode["aggregatesOverTime"]["last_one"] == 0.6
    assert abs(decode["aggregatesOverTime"]["avg"] - 0.4) < 1e-9
    assert decode["lastUpdate"] == decode["data"][-1]["time"]
    only = httpx.get(service.http + "/memstore/data", params={"name": "nope"}).json()
    assert only == {}


def test_reset_is_disabled_without_token_and_guarded_with_one(service_factory: Any) -> None:
    open_svc = service_factory()
    reply = httpx.post(open_svc.http + "/memstore/reset")
    assert reply.status_code == 403 and "ADMIN_TOKEN" in reply.json()["detail"]

    svc = service_factory(admin_token="s3cret")
    push(svc, DECODE, 0.5)
    assert httpx.post(svc.http + "/memstore/reset").status_code == 401
    assert httpx.post(svc.http + "/memstore/reset", headers={"Authorization": "Bearer wrong"}).status_code == 401
    ok = httpx.post(svc.http + "/memstore/reset", headers={"Authorization": "Bearer s3cret"})
    assert ok.status_code == 200
    assert httpx.get(svc.http + "/memstore/names").json() == []
    info = httpx.get(svc.http + "/info").json()
    assert info["config"]["admin_token"] == "<set>"
    assert "s3cret" not in httpx.get(svc.http + "/info").text


def test_info_health_ready_and_metrics(service: RunningService) -> None:
    push(service, DECODE, 0.5)
    info = httpx.get(service.http + "/info").json()
    assert info["ports"] == {
        "otlp": service.ports.otlp,
        "keda": service.ports.keda,
        "http": service.ports.http,
        "metrics": service.ports.metrics,
    }
    assert info["store"]["series"] == 1 and info["store"]["samples"] == 1
    assert httpx.get(service.http + "/healthz").json() == {"status": "ok"}
    assert httpx.get(service.http + "/readyz").status_code == 200
    metrics = httpx.get(service.http + "/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    assert re.search(r"^store_series 1\.0$", metrics.text, re.M)
    assert 'otlp_points_received_total{transport="grpc"} 1.0' in metrics.text


def test_openapi_and_docs_work_offline(service: RunningService) -> None:
    spec = httpx.get(service.http + "/openapi.json").json()
    for path in ("/memstore/names", "/memstore/data", "/memstore/query", "/memstore/reset", "/v1/metrics", "/info"):
        assert path in spec["paths"], path
    docs = httpx.get(service.http + "/docs").text
    assets = re.findall(r"""(?:src|href)=['"]([^'"]+)['"]""", docs)
    assert assets and all(a.startswith("/") for a in assets), assets  # no CDN
    for asset in assets:
        assert httpx.get(service.http + asset).status_code == 200, asset


def test_query_bodies_are_bounded_even_when_chunked(service: RunningService) -> None:
    huge = b'{"query": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    reply = httpx.post(service.http + "/memstore/query", content=huge, headers={"Content-Type": "application/json"})
    assert reply.status_code == 413 and "exceeds" in reply.json()["error"]

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(huge), 65536):
            yield huge[i : i + 65536]

    form = {"Content-Type": "application/x-www-form-urlencoded"}
    reply = httpx.post(service.http + "/api/v1/query", content=chunks(), headers=form)
    assert reply.status_code == 413
    metrics = httpx.get(service.http + "/metrics").text
    assert 'http_requests_rejected_total{path="/api/v1/query",reason="too_large"} 1.0' in metrics
    assert 'http_requests_rejected_total{path="/memstore/query",reason="too_large"} 1.0' in metrics


def test_every_4xx_is_counted_by_route_template(service: RunningService) -> None:
    assert httpx.get(service.http + "/api/v1/query", params={"query": "sum("}).status_code == 400
    assert httpx.get(service.http + "/api/v1/query_range", params={"query": "up"}).status_code == 400
    for label in ("job", "pod"):
        assert httpx.get(service.http + f"/api/v1/label/{label}/values", params={"match[]": "{"}).status_code == 400
    bad_op = {"query": "x", "operationOverTime": "?"}
    assert httpx.post(service.http + "/memstore/query", json=bad_op).status_code == 400
    for i in range(3):
        assert httpx.get(service.http + f"/no/such/path/{i}").status_code == 404
    metrics = httpx.get(service.http + "/metrics").text
    assert 'http_requests_rejected_total{path="/api/v1/query",reason="400"} 1.0' in metrics
    assert 'http_requests_rejected_total{path="/api/v1/query_range",reason="400"} 1.0' in metrics
    assert 'http_requests_rejected_total{path="/api/v1/label/{name}/values",reason="400"} 2.0' in metrics
    assert 'http_requests_rejected_total{path="/memstore/query",reason="400"} 1.0' in metrics
    assert 'http_requests_rejected_total{path="other",reason="404"} 3.0' in metrics
