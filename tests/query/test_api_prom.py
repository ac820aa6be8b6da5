"""The Prometheus HTTP API router, in-process: parameters, JSON shapes, errors, POST forms."""

from __future__ import annotations

import json
import warnings
from typing import Any

import pytest
from fastapi import FastAPI
from starlette.exceptions import StarletteDeprecationWarning

with warnings.catch_warnings():
    # Starlette >= 1.x prefers the httpx2 package and warns (an error under our pytest
    # settings) when TestClient falls back to httpx; both work the same here.
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

from scaler import __version__, api_prom, httpserver, promjson, query
from scaler.api_prom import parse_step_ms, parse_time_ms
from scaler.lowpriority import LowPriority
from scaler.model import STALE_NAN
from tests.query.helpers import NOW_MS, store_with

S = 1000
SERIES = {
    'up{job="api",instance="a"}': [(NOW_MS - 20 * S, 1.0), (NOW_MS - 5 * S, 1.0)],
    'up{job="api",instance="b"}': [(NOW_MS - 5 * S, 0.0)],
    'up{job="db",instance="c"}': [(NOW_MS - 600 * S, 1.0)],
    'queue{pod="p1"}': [(NOW_MS - 30 * S, 3.0), (NOW_MS - 15 * S, 4.5), (NOW_MS - 1, 6.0)],
    'ratio{pod="p1"}': [(NOW_MS - 1, float("inf"))],
    'gone{pod="p1"}': [(NOW_MS - 30 * S, 1.0), (NOW_MS - 10 * S, STALE_NAN)],
}


@pytest.fixture
def client() -> TestClient:
    app = FastAPI()
    app.include_router(api_prom.router)
    store = store_with(SERIES)
    httpserver.provide(app, store, query.Engine(store), LowPriority())
    return TestClient(app)


def get(client: TestClient, path: str, **params: Any) -> tuple[int, dict[str, Any]]:
    response = client.get(path, params=params)
    assert response.headers["content-type"].startswith("application/json")
    return response.status_code, response.json()


def test_grafana_health_check_query(client: TestClient) -> None:
    response = client.get("/api/v1/query", params={"query": "1+1", "time": "1700000000.123"})
    assert response.status_code == 200
    assert response.text == ('{"status":"success","data":{"resultType":"scalar","result":[1700000000.123,"2"]}}')


def test_instant_vector_default_time_is_now(client: TestClient) -> None:
    status, body = get(client, "/api/v1/query", query='up{job="api"}')
    assert status == 200
    assert body == {
        "status": "success",
        "data": {
            "resultType": "vector",
            "result": [
                {"metric": {"__name__": "up", "instance": "a", "job": "api"}, "value": [3600, "1"]},
                {"metric": {"__name__": "up", "instance": "b", "job": "api"}, "value": [3600, "0"]},
            ],
        },
    }


def test_values_are_strings_with_special_floats(client: TestClient) -> None:
    _, body = get(client, "/api/v1/query", query="ratio or (queue / 0) or -ratio * 0")
    result = {r["metric"].get("__name__", "") + r["metric"]["pod"]: r["value"][1] for r in body["data"]["result"]}
    assert result == {"ratiop1": "+Inf"}
    _, body = get(client, "/api/v1/query", query="0/0")
    assert body["data"] == {"resultType": "scalar", "result": [3600, "NaN"]}
    _, body = get(client, "/api/v1/query", query="queue / 4")
    assert body["data"]["result"][0]["value"] == [3600, "1.5"]


def test_time_parameter_forms(client: TestClient) -> None:
    _, body = get(client, "/api/v1/query", query="queue", time="3599.5")
    assert body["data"]["result"][0]["value"] == [3599.5, "4.5"]
    _, body = get(client, "/api/v1/query", query="time()", time="1970-01-01T00:59:59.250Z")
    assert body["data"]["result"] == [3599.25, "3599.25"]
    _, body = get(client, "/api/v1/query", query="time()", time="1970-01-01T02:00:00+01:00")
    assert body["data"]["result"] == [3600, "3600"]


def test_string_and_matrix_results(client: TestClient) -> None:
    _, body = get(client, "/api/v1/query", query='"hello"', time="10")
    assert body["data"] == {"resultType": "string", "result": [10, "hello"]}
    _, body = get(client, "/api/v1/query", query="queue[20s]")
    assert body["data"] == {
        "resultType": "matrix",
        "result": [
            {"metric": {"__name__": "queue", "pod": "p1"}, "values": [[3585, "4.5"], [3599.999, "6"]]},
        ],
    }
    _, body = get(client, "/api/v1/query", query="gone")
    assert body["data"]["result"] == []


@pytest.mark.parametrize(
    ("params", "status", "kind", "error"),
    [
        ({}, 400, "bad_data", 'invalid parameter "query": 1:1: parse error: no expression found in input'),
        ({"query": "sum("}, 400, "bad_data", 'invalid parameter "query": 1:5: parse error: unclosed left parenthesis'),
        (
            {"query": "up", "time": "soon"},
            400,
            "bad_data",
            'invalid parameter "time": cannot parse "soon" to a valid timestamp',
        ),
        (
            {"query": "up + on(job) up"},
            422,
            "execution",
            'found duplicate series for the match group {job="api"} on the right hand-side of the operation: '
            '[{__name__="up", instance="b", job="api"}, {__name__="up", instance="a", job="api"}];'
            "many-to-many matching not allowed: matching labels must be unique on one side",
        ),
        (
            {"query": "up", "lookback_delta": "x"},
            400,
            "bad_data",
            'invalid parameter "lookback_delta": cannot parse "x" to a valid duration',
        ),
    ],
)
def test_query_errors(client: TestClient, params: dict[str, str], status: int, kind: str, error: str) -> None:
    code, body = get(client, "/api/v1/query", **params)
    assert code == status
    assert body == {"status": "error", "errorType": kind, "error": error}


def test_lookback_delta_parameter(client: TestClient) -> None:
    _, body = get(client, "/api/v1/query", query="up", lookback_delta="10s")
    assert {r["metric"]["instance"] for r in body["data"]["result"]} == {"a", "b"}
    _, body = get(client, "/api/v1/query", query="up", lookback_delta="1h")
    assert {r["metric"]["instance"] for r in body["data"]["result"]} == {"a", "b", "c"}


def test_post_form_body_like_grafana(client: TestClient) -> None:
    response = client.post(
        "/api/v1/query?query=ignored&time=1",
        content="query=sum(up)&time=3600",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200
    assert response.json()["data"] == {"resultType": "vector", "result": [{"metric": {}, "value": [3600, "1"]}]}
    response = client.post("/api/v1/query_range", data={"query": "queue", "start": "3570", "end": "3600", "step": "15"})
    assert response.json()["data"]["result"][0]["values"] == [[3570, "3"], [3585, "4.5"], [3600, "6"]]


def test_range_query(client: TestClient) -> None:
    code, body = get(client, "/api/v1/query_range", query="sum by (job) (up)", start="3590", end="3600", step="5s")
    assert code == 200
    assert body["data"] == {
        "resultType": "matrix",
        "result": [
            {"metric": {"job": "api"}, "values": [[3590, "1"], [3595, "1"], [3600, "1"]]},
        ],
    }
    _, body = get(client, "/api/v1/query_range", query="2", start="0", end="1", step="0.5")
    assert body["data"]["result"] == [{"metric": {}, "values": [[0, "2"], [0.5, "2"], [1, "2"]]}]


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"query": "up", "end": "10", "step": "1"}, 'invalid parameter "start": cannot parse "" to a valid timestamp'),
        ({"query": "up", "start": "10", "end": "5", "step": "1"}, "end timestamp must not be before start time"),
        (
            {"query": "up", "start": "0", "end": "10", "step": "soon"},
            'invalid parameter "step": cannot parse "soon" to a valid duration',
        ),
        (
            {"query": "up", "start": "0", "end": "10", "step": "0"},
            "zero or negative query resolution step widths are not accepted. Try a positive integer",
        ),
        (
            {"query": "up", "start": "0", "end": "11001", "step": "1"},
            "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query "
            "resolution (?step=XX)",
        ),
        (
            {"query": "up[5m]", "start": "0", "end": "10", "step": "1"},
            'invalid parameter "query": invalid expression type "range vector" for range query, must be '
            "Scalar or instant Vector",
        ),
    ],
)
def test_range_query_errors(client: TestClient, params: dict[str, str], error: str) -> None:
    code, body = get(client, "/api/v1/query_range", **params)
    assert (code, body) == (400, {"status": "error", "errorType": "bad_data", "error": error})


def test_range_query_at_the_resolution_limit(client: TestClient) -> None:
    code, body = get(client, "/api/v1/query_range", query="1", start="0", end="11000", step="1")
    assert code == 200 and len(body["data"]["result"][0]["values"]) == 11001


def test_series(client: TestClient) -> None:
    code, body = get(client, "/api/v1/series", **{"match[]": 'up{job="api"}'})
    assert (code, body["status"]) == (200, "success")
    assert body["data"] == [
        {"__name__": "up", "instance": "a", "job": "api"},
        {"__name__": "up", "instance": "b", "job": "api"},
    ]
    response = client.get("/api/v1/series", params=[("match[]", "queue"), ("match[]", 'up{job="db"}')])
    assert [s["__name__"] for s in response.json()["data"]] == ["queue", "up"]
    _, body = get(client, "/api/v1/series", **{"match[]": "up", "start": "3590", "end": "3600"})
    assert {s["instance"] for s in body["data"]} == {"a", "b"}
    _, body = get(client, "/api/v1/series", **{"match[]": "up", "limit": "1"})
    assert len(body["data"]) == 1 and body["warnings"] == ["results truncated due to limit"]


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({}, "no match[] parameter provided"),
        ({"match[]": '{job=""}'}, 'invalid parameter "match[]": match[] must contain at least one non-empty matcher'),
        ({"match[]": "rate(up[5m])"}, 'invalid parameter "match[]": 1:5: parse error: unexpected "("'),
        ({"match[]": "up", "limit": "-1"}, 'invalid parameter "limit": limit must be non-negative'),
    ],
)
def test_series_errors(client: TestClient, params: dict[str, str], error: str) -> None:
    code, body = get(client, "/api/v1/series", **params)
    assert (code, body) == (400, {"status": "error", "errorType": "bad_data", "error": error})


def test_labels_and_values(client: TestClient) -> None:
    _, body = get(client, "/api/v1/labels")
    assert body["data"] == ["__name__", "instance", "job", "pod"]
    response = client.post("/api/v1/labels", data={"match[]": "queue"})
    assert response.json()["data"] == ["__name__", "pod"]
    _, body = get(client, "/api/v1/label/__name__/values")
    assert body["data"] == ["gone", "queue", "ratio", "up"]
    _, body = get(client, "/api/v1/label/job/values")
    assert body["data"] == ["api", "db"]
    _, body = get(client, "/api/v1/label/instance/values", **{"match[]": 'up{job="api"}'})
    assert body["data"] == ["a", "b"]
    _, body = get(client, "/api/v1/label/nope/values")
    assert body["data"] == []


def test_buildinfo_and_grafana_probes(client: TestClient) -> None:
    _, body = get(client, "/api/v1/status/buildinfo")
    assert body["status"] == "success"
    assert body["data"]["version"] == __version__
    assert set(body["data"]) >= {"version", "revision", "branch", "buildUser", "buildDate", "goVersion"}
    assert get(client, "/api/v1/metadata")[1]["data"]["queue"] == [{"type": "unknown", "help": "", "unit": ""}]
    assert get(client, "/api/v1/metadata", metric="nope")[1]["data"] == {}
    assert "yaml" in get(client, "/api/v1/status/config")[1]["data"]
    assert get(client, "/api/v1/rules")[1] == {"status": "success", "data": {"groups": []}}
    assert get(client, "/api/v1/alerts")[1] == {"status": "success", "data": {"alerts": []}}
    assert get(client, "/api/v1/query_exemplars", query="up")[1] == {"status": "success", "data": []}
    assert get(client, "/api/v1/status/flags")[1]["data"] == {"query.lookback-delta": "300s"}


def test_json_is_compact_and_exact(client: TestClient) -> None:
    text = client.get("/api/v1/query", params={"query": "queue", "time": "3600.000"}).text
    assert text == (
        '{"status":"success","data":{"resultType":"vector","result":[{"metric":'
        '{"__name__":"queue","pod":"p1"},"value":[3600,"6"]}]}}'
    )
    json.loads(text)


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("1700000000", 1_700_000_000_000),
        ("1700000000.1234", 1_700_000_000_123),
        ("1700000000.0005", 1_700_000_000_000),
        ("0.0015", 2),
        ("-1.5", -1500),
        ("2023-11-14T22:13:20Z", 1_700_000_000_000),
        ("2023-11-14T22:13:20.5+00:00", 1_700_000_000_500),
    ],
)
def test_parse_time(text: str, ms: int) -> None:
    assert parse_time_ms(text) == ms


@pytest.mark.parametrize("text", ["", "now", "2023-11-14", "NaN", "2023-11-14T22:13:20"])
def test_parse_time_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="to a valid timestamp"):
        parse_time_ms(text)


@pytest.mark.parametrize(("text", "ms"), [("15", 15_000), ("0.5", 500), ("1m30s", 90_000), ("250ms", 250)])
def test_parse_step(text: str, ms: int) -> None:
    assert parse_step_ms(text) == ms


def test_big_results_are_streamed_whole() -> None:
    """Past one render slice the answer is streamed (chunked) in slices: the same JSON, every
    series once, in order, the annotations after the data."""
    n = 2 * promjson._RENDER_SLICE + 7
    series = {f'rq{{pod="p{i:05d}"}}': [(NOW_MS - 20 * S, float(i)), (NOW_MS - 5 * S, float(2 * i))] for i in range(n)}
    app = FastAPI()
    app.include_router(api_prom.router)
    store = store_with(series)
    turns = LowPriority()
    pauses: list[int] = []
    plain = turns.pause

    async def counted() -> None:
        pauses.append(1)
        await plain()

    turns.pause = counted  # type: ignore[method-assign]
    httpserver.provide(app, store, query.Engine(store), turns)
    client = TestClient(app)
    response = client.get("/api/v1/query", params={"query": "rate(rq[1m])", "time": NOW_MS / 1000})
    assert response.status_code == 200
    # the slices gave the loop back as low-priority turns (ready KEDA work first), not bare ones
    assert len(pauses) >= 2
    assert "content-length" not in response.headers
    body = response.json()
    result = body["data"]["result"]
    assert body["data"]["resultType"] == "vector"
    assert [r["metric"]["pod"] for r in result] == [f"p{i:05d}" for i in range(n)]
    # increase (n-1) over 15 s sampled, extrapolated by 7.5 s to the start and 5 s to the end
    assert float(result[-1]["value"][1]) == pytest.approx((n - 1) * 27.5 / 15 / 60)
    assert body["infos"] == [
        'PromQL info: metric might not be a counter, name does not end in _total/_sum/_count/_bucket: "rq" (1:6)'
    ]
    matrix = client.get("/api/v1/query", params={"query": "rq[1m]", "time": NOW_MS / 1000}).json()
    assert [len(r["values"]) for r in matrix["data"]["result"]] == [2] * n
