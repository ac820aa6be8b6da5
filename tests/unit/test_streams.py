"""The StreamIsActive hub: whom an append wakes (by metric name and label, through both ingest
paths), when an idle stream is rechecked, and how many streams may be open."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

from scaler import nativeingest, query
from scaler.model import LabelPairs
from scaler.store import Store
from scaler.streams import StreamHub, StreamsExhausted, Watch
from tests.fuzz import common, seeds

NOW_S = seeds.NOW_NS / 1e9
NOW_MS = int(NOW_S * 1000)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _scrape(deployment: str, name: str = "vllm:num_requests_waiting") -> bytes:
    pod: dict[str, object] = {"k8s.deployment.name": deployment, "k8s.pod.name": f"{deployment}-0"}
    pod["k8s.namespace.name"] = "llm-d"
    return seeds.export(seeds.resource_metrics(pod, seeds.gauge(name, seeds.number(3.0)))).SerializeToString()


PATHS = ["reference", "native"]


def _ingest(path: str, store: Store) -> Callable[[bytes], None]:
    """Store a request through the reference path or the native one (in slices of one sample)."""
    native = nativeingest.NativeIngest(store, common.PROMOTIONS)

    def ingest(data: bytes) -> None:
        if path == "reference":
            common.reference_ingest(store, ExportMetricsServiceRequest.FromString(data))
        else:
            common.native_ingest(native, data, budget=1)

    return ingest


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    yield loop
    pending = asyncio.all_tasks(loop)  # the hubs' recheck tasks
    for task in pending:
        task.cancel()
    loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    loop.close()
    asyncio.set_event_loop(None)


def _open(loop: asyncio.AbstractEventLoop, hub: StreamHub, text: str) -> Watch:
    async def opened() -> Watch:
        watch = hub.open(query.parse_promql(text))
        watch.begin()
        return watch

    return loop.run_until_complete(opened())


def _woken(watch: Watch) -> bool:
    return watch.woken


@pytest.mark.parametrize("path", PATHS)
def test_an_append_wakes_the_streams_whose_selector_it_matches(loop: asyncio.AbstractEventLoop, path: str) -> None:
    store = Store(clock=lambda: NOW_S)
    hub = StreamHub(store, max_streams=100)
    ingest = _ingest(path, store)
    a = _open(loop, hub, 'sum(vllm:num_requests_waiting{deployment="pd-a", namespace="llm-d"})')
    b = _open(loop, hub, 'sum(vllm:num_requests_waiting{deployment="pd-b"})')
    fleet = _open(loop, hub, "sum(vllm:num_requests_waiting)")
    regex = _open(loop, hub, 'max(vllm:num_requests_waiting{deployment=~"pd-.*"})')
    other = _open(loop, hub, 'sum(vllm:num_requests_running{deployment="pd-a"})')
    nameless = _open(loop, hub, '{__name__=~"vllm:.*", deployment="pd-z"}')
    assert store.watched == {"vllm:num_requests_waiting", "vllm:num_requests_running"}
    ingest(_scrape("pd-a"))
    assert [_woken(w) for w in (a, b, fleet, regex, other, nameless)] == [True, False, True, True, False, True]
    for watch in (a, fleet, regex, nameless):
        watch.begin()
    ingest(_scrape("pd-b"))
    assert [_woken(w) for w in (a, b, fleet, regex, other, nameless)] == [False, True, True, True, False, True]


@pytest.mark.parametrize("path", PATHS)
def test_escaped_metric_names_wake_streams_in_either_form(loop: asyncio.AbstractEventLoop, path: str) -> None:
    store = Store(clock=lambda: NOW_S)
    hub = StreamHub(store, max_streams=100)
    ingest = _ingest(path, store)
    escaped = _open(loop, hub, 'sum(http_server_duration{deployment="pd-a"})')  # the Go reference's form
    named = _open(loop, hub, 'sum(http_server_duration{deployment="pd-a"}) + sum({__name__="x.y"})')
    ingest(_scrape("pd-a", "http.server.duration"))  # stored as it came: with dots
    assert _woken(escaped)
    assert "http.server.duration" in store.watched  # learnt when the series was created
    assert _woken(named)  # the `x.y` selector is name-only; the first one is keyed


def test_a_closed_stream_is_forgotten(loop: asyncio.AbstractEventLoop) -> None:
    store = Store(clock=lambda: NOW_S)
    hub = StreamHub(store, max_streams=100)
    watches = [_open(loop, hub, f'sum(vllm:num_requests_waiting{{deployment="d-{i}"}})') for i in range(3)]
    nameless = _open(loop, hub, '{__name__=~"x.*"}')
    assert hub.open_streams == 4
    assert (len(store._listeners), len(store._series_listeners)) == (1, 1)
    for watch in [*watches, nameless]:
        watch.close()
        watch.close()  # idempotent
    assert hub.open_streams == 0
    assert (hub._keyed, hub._named, hub._anywhere) == ({}, {}, set())
    assert store.watched == set()
    assert (store._listeners, store._series_listeners) == ([], [])  # the hub listens only while streams are open
    loop.run_until_complete(asyncio.sleep(0))  # the recheck task ends
    assert hub._rechecks is None


def test_streams_past_the_limit_are_refused_with_the_reason(loop: asyncio.AbstractEventLoop) -> None:
    hub = StreamHub(Store(), max_streams=2)
    first = _open(loop, hub, "up")
    _open(loop, hub, "up")
    with pytest.raises(StreamsExhausted, match=r"2 StreamIsActive streams are open.*MAX_STREAMS=2"):
        _open(loop, hub, "up")
    first.close()
    _open(loop, hub, "up")  # a slot freed


def test_idle_streams_are_rechecked_oldest_first_at_a_capped_rate(loop: asyncio.AbstractEventLoop) -> None:
    clock = Clock()
    hub = StreamHub(Store(), max_streams=100, recheck_seconds=5.0, recheck_rate=20.0, clock=clock)
    watches = [_open(loop, hub, "up") for _ in range(30)]
    loop.run_until_complete(asyncio.sleep(0.25))
    assert not any(_woken(w) for w in watches)  # none is due yet
    clock.now += 5.0
    loop.run_until_complete(asyncio.sleep(0.35))
    woken = [w for w in watches if _woken(w)]
    # 20/s, a few per tick and no burst: not all 30 at once
    assert 2 <= len(woken) <= 10
    assert woken == watches[: len(woken)]
    clock.now += 0.01
    for _ in range(20):
        loop.run_until_complete(asyncio.sleep(0.1))
    assert all(_woken(w) for w in watches)  # the rest came in later ticks
    for watch in watches:
        watch.begin()
    loop.run_until_complete(asyncio.sleep(0.25))
    assert not any(_woken(w) for w in watches)  # each recheck restarts the clock
    loop.run_until_complete(hub.aclose())


def test_both_ingest_paths_report_the_same_touched_series() -> None:
    store, twin = Store(clock=lambda: NOW_S), Store(clock=lambda: NOW_S)
    heard: dict[str, list[LabelPairs]] = {"reference": [], "native": []}
    for name, s in (("reference", store), ("native", twin)):
        s.set_watched({"vllm:num_requests_waiting", "vllm:time_to_first_token_seconds_bucket"})
        s.subscribe_series(lambda series, name=name: heard[name].extend(x.labels for x in series))  # type: ignore[misc]
    native = nativeingest.NativeIngest(twin, common.PROMOTIONS)
    for data in seeds.otlp_protobuf_seeds():
        request = ExportMetricsServiceRequest.FromString(data)
        common.reference_ingest(store, request)
        common.native_ingest(native, data, budget=3)
    assert heard["reference"]
    assert sorted(set(heard["reference"])) == sorted(set(heard["native"]))
    assert {dict(labels)["__name__"] for labels in heard["native"]} == store.watched


def test_a_stream_opened_before_any_data_is_indexed_again_by_its_most_selective_label(
    loop: asyncio.AbstractEventLoop,
) -> None:
    store = Store(clock=lambda: NOW_S)
    hub = StreamHub(store, max_streams=100)
    ingest = _ingest("native", store)
    watch = _open(loop, hub, 'sum(vllm:num_requests_waiting{namespace="llm-d", deployment="pd-a"})')
    assert watch.provisional  # nothing is known of either label: the longer value ("llm-d") for now
    assert list(hub._keyed["vllm:num_requests_waiting"]) == ["namespace"]
    for deployment in ("pd-a", "pd-b", "pd-c"):
        ingest(_scrape(deployment))
    watch.begin()  # three deployments, one namespace: deployment is the selective label
    assert not watch.provisional
    assert hub._keyed["vllm:num_requests_waiting"] == {"deployment": {"pd-a": {watch.entries[0][1]}}}
    ingest(_scrape("pd-b"))
    assert not watch.woken
    ingest(_scrape("pd-a"))
    assert watch.woken
