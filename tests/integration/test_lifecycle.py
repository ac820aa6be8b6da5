"""The real process: configuration errors, ports 0 in /info, readiness, SIGTERM → exit 0."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable

import httpx
import pytest

from scaler import app
from tests.conftest import BASE_SETTINGS, RunningService
from tests.otlpdata import DECODE, gauge, now_ns, otlp_stub, request


def start(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "scaler", "serve", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def test_invalid_configuration_fails_fast_naming_the_variable() -> None:
    proc = start(env={"MAX_SERIES": "lots"})
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert "MAX_SERIES='lots'" in err
    proc = start("--otlp-receiver-port", "70000")
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2 and "--otlp-receiver-port" in err


def test_serve_on_free_ports_then_sigterm_exits_cleanly() -> None:
    proc = start(
        "--listen-address",
        "127.0.0.1",
        "--otlp-receiver-port",
        "0",
        "--keda-external-scaler-port",
        "0",
        "--rest-api-port",
        "0",
        "--internal-metrics-port",
        "0",
        "--log-format",
        "json",
        env={"METRIC_STORE_RETENTION_SECONDS": "60"},
    )
    try:
        assert proc.stderr is not None
        ports = None
        deadline = time.monotonic() + 30
        while ports is None and time.monotonic() < deadline:
            line = proc.stderr.readline()
            entry = json.loads(line) if line.startswith("{") else {}
            match = re.search(
                r"otlp-grpc=(\d+) keda-grpc=(\d+) http=(\d+) internal-metrics=(\d+)", entry.get("msg", "")
            )
            if match:
                ports = [int(p) for p in match.groups()]
        assert ports, "no ready line with the bound ports"
        info = httpx.get(f"http://127.0.0.1:{ports[2]}/info").json()
        assert info["ports"] == {"otlp": ports[0], "keda": ports[1], "http": ports[2], "metrics": ports[3]}
        assert info["config"]["retention_seconds"] == 60
        assert httpx.get(f"http://127.0.0.1:{ports[2]}/readyz").json() == {"status": "ready"}
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert '"msg": "stopped"' in err
    finally:
        if proc.poll() is None:
            proc.kill()


def test_query_command_against_a_running_server(service: RunningService) -> None:
    otlp_stub(service.ports.otlp).Export(request(DECODE, "d0", gauge("vllm:num_requests_waiting", 4.0, now_ns())))

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "scaler", "query", "--url", service.http, *args],
            check=False,
            capture_output=True,
            text=True,
            timeout=30,
        )

    ok = run(f"vllm:num_requests_waiting{{deployment={DECODE}}}")
    assert (ok.returncode, ok.stdout.strip()) == (0, "4.0")
    promql = run("--promql", 'sum(vllm:num_requests_waiting{deployment="x"} or vector(2))')
    assert (promql.returncode, promql.stdout.strip()) == (0, "2.0")
    missing = run("vllm:absent")
    assert missing.returncode == 3 and "Metric not found" in missing.stdout
    bad = run("--op", "median", "vllm:x")
    assert bad.returncode == 2 and "median" in bad.stderr
    down = run("--url", "http://127.0.0.1:1", "x")
    assert down.returncode == 1 and "cannot reach" in down.stderr


def test_a_taken_port_stops_start_up_with_a_message_and_exit_1() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        for flag, listener in (
            ("--otlp-receiver-port", "OTLP gRPC"),
            ("--rest-api-port", "HTTP"),
            ("--internal-metrics-port", "internal-metrics HTTP"),
        ):
            ports = {
                "--otlp-receiver-port": "0",
                "--keda-external-scaler-port": "0",
                "--rest-api-port": "0",
                "--internal-metrics-port": "0",
                flag: port,
            }
            proc = start("--listen-address", "127.0.0.1", *[x for kv in ports.items() for x in kv])
            _, err = proc.communicate(timeout=30)
            assert proc.returncode == 1, err
            assert f"cannot start: {listener} server cannot bind 127.0.0.1:{port}" in err


def test_each_listener_binds_its_own_address(service_factory: Callable[..., RunningService]) -> None:
    svc = service_factory(otlp_receiver_address="127.0.0.2", rest_api_address="127.0.0.3")
    ports = svc.ports
    reachable = {}
    for host in ("127.0.0.1", "127.0.0.2", "127.0.0.3"):
        for name, port in (("otlp", ports.otlp), ("keda", ports.keda), ("http", ports.http)):
            with socket.socket() as sock:
                sock.settimeout(2)
                reachable[name, host] = sock.connect_ex((host, port)) == 0
    assert {key for key, ok in reachable.items() if ok} == {
        ("otlp", "127.0.0.2"),
        ("keda", "127.0.0.1"),
        ("http", "127.0.0.3"),
    }
    config = httpx.get(f"http://127.0.0.3:{ports.http}/info").json()["config"]
    assert (config["otlp_receiver_address"], config["rest_api_address"]) == ("127.0.0.2", "127.0.0.3")


@pytest.mark.parametrize("listener", ["http", "internal-metrics", "OTLP gRPC", "KEDA gRPC"])
def test_a_listener_that_stops_by_itself_stops_the_service(listener: str, caplog: pytest.LogCaptureFixture) -> None:
    """Every server is watched after start: one that ends while nobody asked it to is logged at
    once, and the service stops and reports the failure (the CLI exits 1)."""
    service = app.Service(BASE_SETTINGS)

    async def main() -> None:
        stop = asyncio.Event()
        running = asyncio.ensure_future(app.serve_until(service, stop))
        while service.ports is None:
            await asyncio.sleep(0.01)
        async with httpx.AsyncClient() as client:
            assert (await client.get(f"http://127.0.0.1:{service.ports.http}/readyz")).status_code == 200
        if listener in ("http", "internal-metrics"):
            (server,) = [server for server, task in service.listeners.http if task.get_name() == listener]
            server.should_exit = True  # uvicorn returns as if it had crashed out
        else:
            await service.listeners.grpc[0 if listener == "OTLP gRPC" else 1].stop(0)
        with pytest.raises(app.ServiceFailed):
            await asyncio.wait_for(running, 30)
        assert not stop.is_set()

    with caplog.at_level(logging.ERROR, logger="scaler.app"):
        asyncio.run(main())
    assert any(f"the {listener} server stopped unexpectedly" in r.getMessage() for r in caplog.records), caplog.text
