"""Run ``keda-otel-scaler serve`` as a child process, as in production.

A separate process keeps the scaler and the simulator from competing for one GIL. The
ports are picked in the parent (bind to port 0, read it, close) so the parent knows all
three before the child starts; readiness is ``GET /readyz``. The child is always ended:
SIGTERM (the scaler's graceful stop), then SIGKILL after a grace period.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO


class ScalerStartError(RuntimeError):
    """The scaler did not become ready; the message carries the tail of its log."""


@dataclass(frozen=True)
class Ports:
    otlp: int
    keda: int
    http: int


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    sockets = []
    try:
        for _ in range(n):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((host, 0))
            sockets.append(sock)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _ready_ports(url: str) -> dict[str, int] | None:
    """The ports from ``/info`` once ``/readyz`` answers 200, else None."""
    try:
        with urllib.request.urlopen(url + "/readyz", timeout=1) as reply:
            if reply.status != 200:
                return None
        with urllib.request.urlopen(url + "/info", timeout=2) as info:
            ports: dict[str, int] = json.load(info).get("ports") or {}
            return ports
    except (OSError, urllib.error.URLError, ValueError):
        return None


class ScalerProcess:
    """``with ScalerProcess(log) as scaler: scaler.ports.keda …`` — always terminated on exit."""

    def __init__(self, log_path: Path | None = None, host: str = "127.0.0.1") -> None:
        self.host = host
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self.ports: Ports | None = None
        self._log: IO[bytes] | None = None

    def start(self, timeout: float = 30.0, attempts: int = 3) -> Ports:
        for attempt in range(1, attempts + 1):
            try:
                return self._start_once(timeout)
            except ScalerStartError:
                self.stop()
                if attempt == attempts:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _start_once(self, timeout: float) -> Ports:
        otlp, keda, http = free_ports(3, self.host)
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = self.log_path.open("w+b")
        else:
            self._log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        env = dict(os.environ)
        env.setdefault("LOG_LEVEL", "warning")
        cmd = [
            sys.executable,
            "-m",
            "scaler",
            "serve",
            "--listen-address",
            self.host,
            "--otlp-receiver-port",
            str(otlp),
            "--keda-external-scaler-port",
            str(keda),
            "--rest-api-port",
            str(http),
        ]
        self.process = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        url = f"http://{self.host}:{http}"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ScalerStartError(f"the scaler exited with code {self.process.returncode}:\n{self.log_tail()}")
            bound = _ready_ports(url)
            if bound is not None:
                self.ports = Ports(bound.get("otlp", otlp), bound.get("keda", keda), bound.get("http", http))
                return self.ports
            time.sleep(0.1)
        raise ScalerStartError(f"the scaler was not ready after {timeout:.0f}s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 20) -> str:
        if self._log is None:
            return ""
        with contextlib.suppress(OSError, ValueError):
            self._log.flush()
            self._log.seek(0)
            return "\n".join(self._log.read().decode(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self, grace: float = 5.0) -> int | None:
        """SIGTERM, wait ``grace`` seconds, then SIGKILL; returns the exit code."""
        process, self.process = self.process, None
        code = None
        if process is not None:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGTERM)
                try:
                    process.wait(grace)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            code = process.returncode
        if self._log is not None:
            self._log.close()
            self._log = None
        return code

    def __enter__(self) -> ScalerProcess:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
