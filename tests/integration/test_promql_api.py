"""The Prometheus API's PromQL additions over a real server: annotations in ``warnings`` /
``infos``, ``/api/v1/format_query``, ``/api/v1/parse_query``, and a subquery trigger over KEDA."""

from __future__ import annotations

import httpx

from scaler.model import make_labels
from tests.conftest import RunningService
from tests.integration.test_keda import Keda


def _load(svc: RunningService) -> None:
    assert svc.service is not None
    store = svc.service.store
    now = store.now_ms()
    store.append(
        [(make_labels("requests", {"pod": "a"}), now - k * 15_000, float(100 - k), False) for k in range(8)]
        + [(make_labels("x_total", {"pod": "a"}), now - k * 15_000, float(100 - k), False) for k in range(8)]
    )


def test_annotations_travel_in_warnings_and_infos(service: RunningService) -> None:
    service.call(lambda: _load(service))
    body = httpx.get(f"{service.http}/api/v1/query", params={"query": "rate(requests[1m])"}).json()
    assert body["status"] == "success" and len(body["data"]["result"]) == 1
    assert body["infos"] == [
        'PromQL info: metric might not be a counter, name does not end in _total/_sum/_count/_bucket: "requests" (1:6)'
    ]
    assert "warnings" not in body
    assert service.service is not None
    now = service.service.store.now_ms() / 1000
    body = httpx.post(
        f"{service.http}/api/v1/query_range",
        data={"query": "quantile_over_time(1.5, requests[1m])", "start": str(now - 30), "end": str(now), "step": "15"},
    ).json()
    assert body["warnings"] == ["PromQL warning: quantile value should be between 0 and 1, got 1.5 (1:20)"]
    reply = httpx.post(f"{service.http}/memstore/query", json={"promql": "sum(rate(requests[1m]))"}).json()
    assert reply["ok"] and reply["infos"][0].startswith("PromQL info: metric might not be a counter")


def test_format_and_parse_query(service: RunningService) -> None:
    body = httpx.get(
        f"{service.http}/api/v1/format_query",
        params={"query": "max_over_time( sum(rate(x[1m]))[5m:30s] offset (1m+1m))"},
    ).json()
    assert body == {"status": "success", "data": "max_over_time(sum(rate(x[1m]))[5m:30s] offset (1m + 1m))"}
    body = httpx.get(f"{service.http}/api/v1/parse_query", params={"query": 'x{a="b"}[5m:]'}).json()
    assert body["data"] == {
        "type": "subquery",
        "expr": {
            "type": "vectorSelector",
            "name": "x",
            "offset": 0,
            "offsetExpr": None,
            "matchers": [{"type": "=", "name": "a", "value": "b"}, {"type": "=", "name": "__name__", "value": "x"}],
            "timestamp": None,
            "startOrEnd": None,
            "anchored": False,
            "smoothed": False,
        },
        "range": 300_000,
        "rangeExpr": None,
        "offset": 0,
        "offsetExpr": None,
        "step": 0,
        "stepExpr": None,
        "timestamp": None,
        "startOrEnd": None,
    }
    bad = httpx.get(f"{service.http}/api/v1/format_query", params={"query": "x[5m:"})
    assert bad.status_code == 400 and bad.json()["errorType"] == "bad_data"


def test_a_subquery_trigger_smooths_over_keda(service: RunningService) -> None:
    service.call(lambda: _load(service))
    value = Keda(service).metrics(query="max_over_time(sum(rate(x_total[1m]))[2m:15s])", targetValue="1")
    assert abs(value.metricValueFloat - 1 / 15) < 1e-9
