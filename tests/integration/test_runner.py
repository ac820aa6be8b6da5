"""The process runner: a real ``keda-otel-scaler serve`` child on free ports, its environment,
readiness, a configuration error that is not retried, and the graceful stop."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest

from scaler.runner import CONFIG_ERROR_EXIT, ScalerProcess, ScalerStartError


def test_a_child_on_free_ports_with_its_environment(
    scaler_process: Callable[..., ScalerProcess], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ADMIN_TOKEN", "inherited")
    child = scaler_process(["--max-labels-per-series", "9"], env={"MAX_SERIES": "7", "ADMIN_TOKEN": None})
    info = httpx.get(child.url("/info")).json()
    ports = child.ports
    assert info["ports"] == {"otlp": ports.otlp, "keda": ports.keda, "http": ports.http, "metrics": ports.metrics}
    assert (info["config"]["max_series"], info["config"]["max_labels_per_series"]) == (7, 9)
    assert info["config"]["admin_token"] == ""  # None removed the inherited variable
    assert child.alive and child.rss_mib() > 10
    log = child.log_path
    assert child.stop() == 0  # SIGTERM is a graceful stop
    assert not child.alive and not log.exists()  # its own temporary log is removed


def test_a_configuration_error_fails_at_once_without_retries() -> None:
    child = ScalerProcess(env={"MAX_SERIES": "lots"})
    started = time.monotonic()
    with pytest.raises(ScalerStartError) as caught:
        child.start(timeout=30, attempts=3)
    assert caught.value.exit_code == CONFIG_ERROR_EXIT
    assert "MAX_SERIES='lots'" in str(caught.value)
    assert time.monotonic() - started < 20
    child.stop()
