"""The Grafana dashboard ``dashboards/keda-otel-scaler.json``: its structure, and every panel
query run through our own ``/api/v1/query_range`` on simulator data, as Grafana would send it.

The server is fed as in a cluster: a minute of the simulated llm-d PD fleet (``scaler.sim``:
real vLLM metric names, labels and histogram buckets, converted to OTLP as the collector
sidecars do), KEDA's GetMetrics calls for the repository's ScaledObjects, and the scaler's
own ``/metrics`` scraped and stored as Prometheus would (job ``keda-otel-scaler``).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import yaml
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.metrics.v1 import metrics_pb2
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from scaler._gen import externalscaler_pb2 as pb
from scaler._gen import externalscaler_pb2_grpc as pb_grpc
from scaler.sim import demo
from scaler.sim.otlp_export import pod_resource, registry_to_metrics, resource_metrics
from tests.conftest import BASE_SETTINGS, RunningService

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "dashboards" / "keda-otel-scaler.json"
FLEET_SECONDS = 60.0
SCRAPE_ROUNDS = 5
# Grafana's Prometheus data source defaults: scrape interval 15 s; a panel about 1000 px wide.
SCRAPE_INTERVAL = 15
MAX_DATA_POINTS = 1000
BUILTINS = {"__rate_interval", "__interval", "__range"}

Doc = dict[str, Any]


def load() -> Doc:
    dashboard: Doc = json.loads(DASHBOARD.read_text())
    return dashboard


def panels(dashboard: Doc) -> Iterator[Doc]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def targets(dashboard: Doc) -> list[tuple[str, Doc]]:
    return [(p["title"], t) for p in panels(dashboard) if p["type"] != "row" for t in p["targets"]]


# ------------------------------------------------------------------------- structure


def test_dashboard_structure() -> None:
    dashboard = load()
    assert dashboard["uid"] and dashboard["title"] and dashboard["schemaVersion"] >= 36
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name, var in variables.items():
        if var["type"] == "query":
            assert var["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, name
    ids = [p["id"] for p in panels(dashboard)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    cells: set[tuple[int, int]] = set()
    for panel in panels(dashboard):
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        own = {(x, y) for x in range(pos["x"], pos["x"] + pos["w"]) for y in range(pos["y"], pos["y"] + pos["h"])}
        assert not own & cells, f"{panel['title']} overlaps another panel"
        cells |= own
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip(), f"{panel['title']} {target['refId']}: no expression"
            used = set(re.findall(r"\$\{?(\w+)", target["expr"]))
            assert used <= set(variables) | BUILTINS, (panel["title"], used)


def test_dashboard_has_the_panels_operators_ask_for() -> None:
    exprs = " ".join(t["expr"] for _, t in targets(load()))
    for needle in (
        "keda_trigger_value",
        "keda_trigger_target",
        "vllm:time_to_first_token_seconds_bucket",
        "vllm:inter_token_latency_seconds_bucket",
        "vllm:num_requests_waiting",
        "vllm:kv_cache_usage_perc",
        "otlp_points_received_total",
        "otlp_points_rejected_total",
        'keda_request_duration_seconds_bucket{job=~"$job", method="GetMetrics"}',
        "keda_errors_total",
    ):
        assert needle in exprs, needle


# ------------------------------------------------------------------ the fed server


def _otlp(svc: RunningService) -> Any:
    return metrics_service_pb2_grpc.MetricsServiceStub(grpc.insecure_channel(f"127.0.0.1:{svc.ports.otlp}"))  # type: ignore[no-untyped-call]


def _feed_fleet(svc: RunningService) -> None:
    """A minute of the simulated PD fleet, stamped over the last minute, pushed every 1 s of it."""
    run = demo.prepare(argparse.Namespace(scenario=None, duration=FLEET_SECONDS, manifests=None, seed=1))
    stub = _otlp(svc)
    start_ns = time.time_ns() - int(FLEET_SECONDS * 1e9)
    s = run.scenario
    t, next_export = 0.0, 0.0
    while t <= FLEET_SECONDS:
        run.sim.sync(t)
        if t >= next_export:
            batch = []
            for pod in run.fleet.pods():
                if pod.state == "starting":
                    continue
                pod.refresh_gauges()
                metrics = registry_to_metrics(pod.metrics.registry, start_ns + int(t * 1e9), start_ns)
                batch.append(resource_metrics(pod_resource(pod.name, pod.deployment, s.namespace, pod.role), metrics))
            stub.Export(metrics_service_pb2.ExportMetricsServiceRequest(resource_metrics=batch))
            next_export += s.scrape_interval_seconds
        t += 0.1


class _Scraped(Collector):
    def __init__(self, text: str) -> None:
        self.families = list(text_string_to_metric_families(text))

    def collect(self) -> Iterator[Any]:
        yield from self.families


def _keda_calls(svc: RunningService) -> None:
    """KEDA's GetMetrics for every trigger of the repository's ScaledObjects, and one bad call."""
    stub = pb_grpc.ExternalScalerStub(grpc.insecure_channel(f"127.0.0.1:{svc.ports.keda}"))
    for path in sorted((REPO / "manifests" / "keda").glob("scaledobject-*.yaml")):
        so = yaml.safe_load(path.read_text())
        for trigger in so["spec"]["triggers"]:
            ref = pb.ScaledObjectRef(name=so["metadata"]["name"], namespace="llm-d", scalerMetadata=trigger["metadata"])
            stub.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=ref, metricName=trigger["metadata"]["metricName"]))
    with pytest.raises(grpc.RpcError):
        stub.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=pb.ScaledObjectRef(name="broken", namespace="llm-d")))


def _scrape_into_store(svc: RunningService) -> None:
    """Store the scaler's /metrics in itself, as a Prometheus scraping job keda-otel-scaler would."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Scraped(httpx.get(svc.http + "/metrics").text))
    resource = {
        "service.name": "keda-otel-scaler",
        "service.instance.id": "10.0.0.7:9090",
        "k8s.namespace.name": "keda",
    }
    now = time.time_ns()
    request = metrics_service_pb2.ExportMetricsServiceRequest(
        resource_metrics=[resource_metrics(resource, registry_to_metrics(registry, now, now - 600 * 10**9))]
    )
    _otlp(svc).Export(request)


@pytest.fixture(scope="module")
def fed() -> Iterator[RunningService]:
    svc = RunningService(BASE_SETTINGS)
    svc.start()
    try:
        _feed_fleet(svc)
        for _ in range(SCRAPE_ROUNDS):
            _keda_calls(svc)
            # Things operators want to see counted: a rejected sample, a rejected HTTP body.
            future = time.time_ns() + 3600 * 10**9
            _otlp(svc).Export(
                metrics_service_pb2.ExportMetricsServiceRequest(
                    resource_metrics=[resource_metrics({"k8s.deployment.name": "clock-skewed"}, [_gauge(future)])]
                )
            )
            assert httpx.post(svc.http + "/memstore/query", json={"query": 5}).status_code == 400
            _scrape_into_store(svc)
            time.sleep(1.0)
        yield svc
    finally:
        svc.stop()


def _gauge(time_ns: int) -> metrics_pb2.Metric:
    point = metrics_pb2.NumberDataPoint(time_unix_nano=time_ns, as_double=1.0)
    return metrics_pb2.Metric(name="vllm:num_requests_waiting", gauge=metrics_pb2.Gauge(data_points=[point]))


# ---------------------------------------------------- Grafana's variable substitution


def _regex_escape(value: str) -> str:
    """Grafana's escaping of a multi-value variable for a Prometheus regex matcher."""
    return re.sub(r"([\\^$.|?*+()\[\]{}])", r"\\\\\1", value)


def _duration(seconds: int) -> str:
    return f"{seconds // 60}m" if seconds % 60 == 0 else f"{seconds}s"


def _grafana_time(start: float, end: float) -> dict[str, str]:
    """$__interval and $__rate_interval as Grafana computes them for this time range."""
    interval = max(math.ceil((end - start) / MAX_DATA_POINTS), SCRAPE_INTERVAL)
    rate_interval = max(interval + SCRAPE_INTERVAL, 4 * SCRAPE_INTERVAL)
    return {"__interval": _duration(interval), "__rate_interval": _duration(rate_interval), "step": str(interval)}


def _variable_values(svc: RunningService, dashboard: Doc, start: float, end: float) -> dict[str, str]:
    """Each query variable, evaluated as Grafana does for label_values(metric, label)."""
    values = {}
    for var in dashboard["templating"]["list"]:
        if var["type"] != "query":
            continue
        m = re.fullmatch(r"label_values\((.+), (\w+)\)", var["query"]["query"])
        assert m, var["query"]
        reply = httpx.get(
            f"{svc.http}/api/v1/label/{m.group(2)}/values",
            params={"match[]": m.group(1), "start": str(start), "end": str(end)},
        ).json()
        assert reply["status"] == "success" and reply["data"], (var["name"], reply)
        # All values selected, multi-value: Grafana sends (a|b|...) with regex escaping.
        values[var["name"]] = "(" + "|".join(_regex_escape(v) for v in reply["data"]) + ")"
    return values


def _substitute(expr: str, values: dict[str, str]) -> str:
    out = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: values[m.group(1) or m.group(2)], expr)
    assert "$" not in out, out
    return out


def test_variables_resolve_on_our_api(fed: RunningService) -> None:
    end = time.time()
    values = _variable_values(fed, load(), end - FLEET_SECONDS, end)
    assert values["namespace"] == "(llm-d)"
    assert values["job"] == "(keda-otel-scaler)"


@pytest.mark.parametrize(("panel", "ref"), [(title, t["refId"]) for title, t in targets(load())])
def test_every_panel_query_returns_data(fed: RunningService, panel: str, ref: str) -> None:
    dashboard = load()
    (target,) = [t for title, t in targets(dashboard) if title == panel and t["refId"] == ref]
    end = time.time()
    start = end - FLEET_SECONDS
    timing = _grafana_time(start, end)
    expr = _substitute(target["expr"], {**_variable_values(fed, dashboard, start, end), **timing})
    reply = httpx.post(
        fed.http + "/api/v1/query_range",
        data={"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": timing["step"]},
    )
    assert reply.status_code == 200, (expr, reply.text)
    body = reply.json()
    assert body["status"] == "success", (expr, body)
    assert body["data"]["resultType"] == "matrix"
    series = body["data"]["result"]
    assert series, f"{panel} {ref}: no series for {expr}"
    finite = [float(v) for s in series for _, v in s["values"] if math.isfinite(float(v))]
    assert finite, f"{panel} {ref}: only NaN/Inf for {expr}"
