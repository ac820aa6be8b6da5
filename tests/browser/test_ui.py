"""``/ui`` in a real browser (Debian's headless Chromium): the rows of live ScaledObjects appear
and follow the data while a KEDA-like client polls over gRPC and pods export over OTLP; the page
fetches nothing but this scaler's API, breaks none of its Content-Security-Policy, and shows
client-supplied names as text.

The README's screenshot is taken here: ``UI_SCREENSHOT=docs/ui.png`` writes it there too.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from selenium.webdriver.chrome.webdriver import WebDriver

from scaler._gen import externalscaler_pb2 as pb
from scaler.sim.scenario import Epp
from tests.browser import chromium
from tests.browser.pdfleet import Fleet
from tests.conftest import ManualClock, RunningService
from tests.integration.test_keda import Keda
from tests.otlpdata import DECODE, PREFILL, gauge, otlp_stub, request

SCREENSHOT_ENV = "UI_SCREENSHOT"


@pytest.fixture
def wide(browser: WebDriver) -> Iterator[WebDriver]:
    """The browser at the width the README's screenshot has."""
    browser.set_window_size(1440, 1000)
    yield browser
    width, height = (int(x) for x in chromium.FLAGS[-1].removeprefix("--window-size=").split(","))
    browser.set_window_size(width, height)


def status(svc: RunningService) -> dict[str, Any]:
    body: dict[str, Any] = httpx.get(svc.http + "/api/v1/scaledobjects", params={"history": "true"}).json()
    return body


_SNAPSHOT = """
const text = node => (node ? node.textContent : null);
const out = { triggers: {}, objects: {}, sources: {}, rejected: {}, loaded: document.body.dataset.loaded === "true",
  cards: [...document.querySelectorAll(".summary .card")].map(c => [c.querySelector(".n").textContent,
    c.querySelector(".l").textContent, c.classList.contains("bad")]),
  warn: text(document.querySelector(".banner.warn")), error: text(document.querySelector(".banner.error")),
  names: [...document.querySelectorAll("section.so .name")].map(text),
  images: document.querySelectorAll("img").length, title: document.title };
for (const tr of document.querySelectorAll("tr.trigger")) {
  const f = name => tr.querySelector(`[data-field="${name}"]`);
  out.triggers[tr.dataset.trigger] = { state: tr.dataset.state, value: text(f("value")), target: text(f("target")),
    replicas: text(f("replicas")), reason: text(f("reason")), points: f("history").getAttribute("data-points"),
    calls: text(f("calls")), series: text(f("series")), badge: text(tr.querySelector(".badge")),
    errors: text(f("errors")) };
}
for (const so of document.querySelectorAll("section[data-so]")) {
  out.objects[so.dataset.so] = text(so.querySelector('.head [data-field="replicas"]'));
}
for (const tr of document.querySelectorAll("tr.source")) {
  out.sources[tr.dataset.source] = { lastExport: text(tr.querySelector('[data-field="lastExport"]')),
    series: text(tr.querySelector('[data-field="series"]')) };
  out.rejected[tr.dataset.source] = text(tr.querySelector('[data-field="rejected"]'));
}
return out;
"""


def dom(driver: WebDriver) -> dict[str, Any]:
    """What the page shows, read in one go (it re-renders on every refresh)."""
    shown: dict[str, Any] = driver.execute_script(_SNAPSHOT)
    return shown


def number(text: str) -> float:
    return float(text.replace(",", ""))


def check_rows_match_the_api(shown: dict[str, Any], body: dict[str, Any]) -> None:
    rows = shown["triggers"]
    expected = {
        f"{so['namespace']}/{so['name']}/{t['metricName']}": t for so in body["scaledObjects"] for t in so["triggers"]
    }
    assert set(rows) == set(expected)
    for key, trigger in expected.items():
        row = rows[key]
        assert row["state"] == trigger["state"] == "value" and row["badge"] == "active"
        assert math.isclose(number(row["value"]), trigger["value"], rel_tol=1e-3), key
        assert math.isclose(number(row["target"]), trigger["target"]), key
        assert int(row["replicas"]) == trigger["replicas"]
        assert row["reason"] == trigger["reason"]
        assert int(row["points"]) == sum(1 for _, v in trigger["history"] if isinstance(v, float | int)) >= 50
        assert f"GetMetrics ×{trigger['rpcs']['GetMetrics']['count']}" in row["calls"] and "IsActive ×" in row["calls"]
        assert row["series"].startswith(f"{trigger['series']['count']} series") and row["errors"] is None
    assert shown["objects"] == {f"{so['namespace']}/{so['name']}": str(so["replicas"]) for so in body["scaledObjects"]}


def test_rows_of_live_scaled_objects_appear_and_follow_the_data(
    service_factory: Callable[..., RunningService], wide: WebDriver, tmp_path: Path
) -> None:
    clock = ManualClock()
    svc = service_factory(clock=clock)
    fleet = Fleet(svc, clock)
    fleet.spec()
    fleet.run(150)  # two and a half minutes of a PD fleet: the retention (2 min) is full

    wide.get(svc.http + "/ui?refresh=0.5")
    body = status(svc)  # the fleet is paused: the page and the API show the same state
    shown = chromium.wait(wide, lambda d: (snap := dom(d))["loaded"] and len(snap["triggers"]) == 4 and snap)
    check_rows_match_the_api(shown, body)
    assert [so["name"] for so in body["scaledObjects"]] == ["pd-decode", "pd-prefill"]
    sources = {f"{s['namespace']}/{s['deployment']}/{s['pod']}": s for s in body["sources"]}
    assert set(shown["sources"]) == set(sources) and len(sources) == 5
    for key, row in shown["sources"].items():
        assert row == {"lastExport": "just now", "series": str(sources[key]["series"])}
    assert shown["cards"][:3] == [
        ["2", "ScaledObjects asked about", False],
        ["4", "triggers", False],
        ["0", "triggers erroring", False],
    ]

    # The load rises and KEDA polls again: the page follows by itself.
    key = "llm-d/pd-prefill/prefill-waiting"
    before = number(shown["triggers"][key]["value"])
    fleet.load = 6.0
    fleet.run(6)
    body = status(svc)
    (waiting,) = [t for so in body["scaledObjects"] for t in so["triggers"] if t["metricName"] == "prefill-waiting"]
    assert waiting["value"] > before
    shown = chromium.wait(wide, lambda d: (snap := dom(d))["triggers"][key]["reason"] == waiting["reason"] and snap)
    assert number(shown["triggers"][key]["value"]) == waiting["value"]
    check_rows_match_the_api(shown, body)

    assert chromium.foreign_requests(wide, svc.http) == []
    assert chromium.console_errors(wide) == []  # a Content-Security-Policy violation would be one
    shot = chromium.save_screenshot(wide, tmp_path / "ui.png")
    assert shot.read_bytes().startswith(b"\x89PNG") and shot.stat().st_size > 50_000
    if target := os.environ.get(SCREENSHOT_ENV):
        shutil.copyfile(shot, target)


def test_errors_the_warm_up_and_hostile_names_show_as_such(
    service_factory: Callable[..., RunningService], browser: WebDriver
) -> None:
    svc = service_factory(warmup_seconds=300.0)
    keda = Keda(svc)
    hostile = "<img src=x onerror=\"document.title='pwned'\">"
    ref = pb.ScaledObjectRef(name=hostile, namespace="llm-d", scalerMetadata={"metricQuery": "x", "targetValue": "0"})
    with pytest.raises(grpc.RpcError):
        keda.stub.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=ref, metricName="x"))
    with pytest.raises(grpc.RpcError):  # no data yet, during the warm-up: held
        keda.metrics(metricQuery="vllm:num_requests_waiting", targetValue="1", metricName="waiting")
    late = request(DECODE, "decode-late", gauge("vllm:num_requests_waiting", 1, 1))  # 1970: too old
    assert otlp_stub(svc.ports.otlp).Export(late).partial_success.rejected_data_points == 1

    browser.get(svc.http + "/ui?refresh=0.5")
    shown = chromium.wait(browser, lambda d: len((snap := dom(d))["triggers"]) == 2 and snap)
    broken, held = shown["triggers"][f"llm-d/{hostile}/x"], shown["triggers"]["llm-d/pd-decode/waiting"]
    assert (broken["state"], broken["badge"]) == ("refused", "bad metadata")
    assert broken["reason"].startswith("KEDA gets INVALID_ARGUMENT: the trigger's metadata key 'targetValue'")
    assert broken["errors"].startswith("errors answered: INVALID_ARGUMENT ×1 · last ")
    assert (held["state"], held["badge"], held["value"]) == ("hold", "warming up", "—")
    assert held["errors"].startswith("errors answered: UNAVAILABLE ×1")
    assert shown["warn"].startswith("Warming up for ") and "KEDA keeps the current replicas" in shown["warn"]
    assert [c for c in shown["cards"] if c[2]] == [["1", "triggers erroring", True]]
    assert shown["rejected"] == {f"llm-d/{DECODE}/decode-late": "1 too_old ×1"}

    # A name from a client is text: no element was made of it, no script of it ran.
    assert hostile in shown["names"] and shown["images"] == 0 and shown["title"] == "keda-otel-scaler · status"

    # The scaler goes away: the page says so and keeps what it showed.
    svc.stop()
    shown = chromium.wait(browser, lambda d: (snap := dom(d))["error"] and snap)
    assert shown["error"].startswith("Cannot read the status from the scaler") and len(shown["triggers"]) == 2
    assert chromium.foreign_requests(browser, svc.http) == []
    errors = chromium.console_errors(browser)
    assert errors and all("/api/v1/scaledobjects" in e and "net::ERR_CONNECTION_REFUSED" in e for e in errors)


@pytest.mark.slow
def test_the_demo_points_at_its_page_which_shows_both_scaled_objects(browser: WebDriver) -> None:
    """What a newcomer does after ``make demo``: open the printed URL and see each ScaledObject."""
    demo = subprocess.Popen(
        [sys.executable, "-m", "scaler", "demo", "--duration", "20", "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert demo.stdout is not None
        url = ""
        for line in demo.stdout:
            if found := re.search(r"live while the demo runs: (http://127\.0\.0\.1:\d+/ui)$", line.rstrip()):
                url = found.group(1)
                break
        assert url, "the demo did not print its /ui address"
        browser.get(url)

        def answering(driver: WebDriver) -> dict[str, Any] | None:
            snap = dom(driver)
            rows = snap["triggers"]
            wanted = {f"llm-d/pd-{role}/{role}-{name}" for role, name in TRIGGERS}
            return snap if set(rows) == wanted and all(rows[k]["state"] == "value" for k in wanted) else None

        shown = chromium.wait(browser, answering, timeout=60)
        for row in shown["triggers"].values():
            assert number(row["value"]) >= 0 and number(row["target"]) > 0 and int(row["replicas"]) >= 0
            assert " against target " in row["reason"] and "GetMetrics ×" in row["calls"]
        assert set(shown["objects"]) == {"llm-d/pd-prefill", "llm-d/pd-decode"}
        # the two roles' pods, and the simulated gateway's EPP, which exports llm-d's EPP metrics
        assert {key.split("/")[1] for key in shown["sources"]} == {PREFILL, DECODE, Epp().deployment}
        assert chromium.foreign_requests(browser, url) == [] and chromium.console_errors(browser) == []
    finally:
        demo.terminate()
        demo.wait(30)


TRIGGERS = [("prefill", "waiting"), ("prefill", "prompt-tokens"), ("decode", "kv-cache"), ("decode", "running")]
