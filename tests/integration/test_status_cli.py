"""``keda-otel-scaler status``: the status of a running scaler as terminal tables, with an exit
status a script can act on."""

from __future__ import annotations

import contextlib
import io
import json
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

from scaler import cli
from scaler.trigger import Reading, State
from tests.conftest import ManualClock, RunningService
from tests.integration.test_keda import Keda
from tests.integration.test_status_api import DECODE_WAITING, PlannerTrigger, push_waiting
from tests.otlpdata import DECODE


def run_status(*args: str) -> subprocess.CompletedProcess[str]:
    """``keda-otel-scaler status ARGS`` in this process (so coverage sees it); its exit status and output."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), pytest.raises(SystemExit) as exited:
        cli.main(["status", *args])
    code = exited.value.code
    assert isinstance(code, int)
    return subprocess.CompletedProcess(["keda-otel-scaler", "status", *args], code, out.getvalue(), err.getvalue())


@pytest.fixture
def svc(service_factory: Callable[..., RunningService]) -> tuple[RunningService, ManualClock]:
    clock = ManualClock()
    return service_factory(clock=clock), clock


def test_tables_of_triggers_and_sources_and_exit_zero(svc: tuple[RunningService, ManualClock]) -> None:
    service, clock = svc
    push_waiting(service, clock, "decode-a", 3)
    push_waiting(service, clock, "decode-b", 4)
    keda = Keda(service)
    keda.spec(**DECODE_WAITING)
    keda.metrics(**DECODE_WAITING)
    clock.now += 2
    keda.active(**DECODE_WAITING)

    result = run_status("--url", service.http)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "llm-d/pd-decode: the HPA asks for 4 replicas (largest: decode-waiting)"
    header = ["TRIGGER", "STATE", "VALUE", "TARGET", "REPLICAS", "LAST", "CALL", "CALLS", "ERRORS", "SERIES"]
    assert lines[1].split() == header
    row = lines[2].split()
    assert row[:9] == ["decode-waiting", "active", "7", "2", "4", "IsActive", "0.0", "s", "ago"]
    assert row[9:] == ["3", "0", "2", "series,", "2", "pods,", "newest", "2.0", "s", "ago"]
    assert lines[3] == "      why: 7 against target 2 asks for 4 replicas (AverageValue); active (7 > activation 0)"
    sources = lines[lines.index("Sources (OTLP exporters)") + 1 :]
    assert sources[0].split() == ["NAMESPACE", "DEPLOYMENT", "POD", "LAST", "EXPORT", "SERIES", "EXPORTS", "REJECTED"]
    assert sources[1].split() == ["llm-d", DECODE, "decode-a", "2.0", "s", "ago", "1", "1", "0"]
    assert lines[-1] == "1 ScaledObject, 1 trigger (0 erroring); 2 sources."


def test_an_erroring_trigger_exits_3_and_says_why(svc: tuple[RunningService, ManualClock]) -> None:
    service, clock = svc
    keda = Keda(service)
    with pytest.raises(grpc.RpcError):
        keda.metrics(**DECODE_WAITING, errIfNotFound="true")
    with pytest.raises(grpc.RpcError):
        keda.metrics(metricQuery="x", targetValue="-1", metricName="broken")
    result = subprocess.run(  # the installed entry point, as a script would run it
        [str(Path(sys.executable).with_name("keda-otel-scaler")), "status", "--url", service.http],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 3
    assert "ERROR" in result.stdout and "1 NOT_FOUND" in result.stdout and "1 INVALID_ARGUMENT" in result.stdout
    assert "why: KEDA gets NOT_FOUND: no series matches" in result.stdout
    refused = "why: KEDA gets INVALID_ARGUMENT: the trigger's metadata key 'targetValue': '-1' must be greater"
    assert refused in result.stdout
    assert result.stdout.rstrip().endswith("2 triggers (2 erroring); 0 sources.")

    push_waiting(service, clock, "decode-a", 1)
    clock.now += 1
    keda.metrics(**DECODE_WAITING, errIfNotFound="true")
    as_json = run_status("--url", service.http, "--namespace", "llm-d", "--json")
    assert as_json.returncode == 3  # "broken" still errors
    body = json.loads(as_json.stdout)
    states = {t["metricName"]: t["erroring"] for t in body["scaledObjects"][0]["triggers"]}
    assert states == {"decode-waiting": False, "broken": True}
    text = run_status("--url", service.http).stdout
    assert "last error 1.0 s ago (GetMetrics NOT_FOUND): ScaledObject llm-d/pd-decode: no series matches" in text


def test_an_unreachable_scaler_exits_1_and_an_http_error_2(service: RunningService) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    result = run_status("--url", f"http://127.0.0.1:{closed}")
    assert result.returncode == 1 and "cannot read the status from" in result.stderr
    result = run_status("--url", service.http + "/nothing-here")
    assert result.returncode == 2 and "answered HTTP 404" in result.stderr


def test_an_idle_scaler_says_nothing_asked_yet(service: RunningService) -> None:
    result = run_status("--url", service.http)
    assert result.returncode == 0
    assert result.stdout.startswith("No ScaledObject has asked this scaler yet")
    assert "No OTLP export received yet." in result.stdout


def test_the_warm_up_and_a_planner_trigger_read_as_such(service_factory: Callable[..., RunningService]) -> None:
    service = service_factory(warmup_seconds=300.0)
    with pytest.raises(grpc.RpcError):
        Keda(service).metrics(**DECODE_WAITING)
    assert service.service is not None
    registry = service.service.status
    service.call(lambda: registry.read("llm-d", "pd-prefill", PlannerTrigger(), Reading(State.VALUE, raw=3.0)))
    result = run_status("--url", service.http)
    assert result.returncode == 0, result.stdout  # a hold is not an error
    assert result.stdout.startswith("Warming up for 30")
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines() if line.startswith("  ")}
    assert rows["decode-waiting"][1:3] == ["warming", "up"]
    assert rows["planner-decode"][1:5] == ["active", "3", "1", "3"]
    assert "planner: desired=3, demand=12.5, capacity=5, pending=1" in result.stdout
