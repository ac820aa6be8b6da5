"""Run ``keda-otel-scaler serve`` as a child process: how tests, benchmarks and the simulator
start the service as production runs it (its own process, so never a shared GIL).

The four ports are picked in the parent (bind to port 0, read it, close), so the parent knows
them before the child starts, whatever the child's log level or format; readiness is ``GET
/readyz``, then ``GET /info`` confirms the bound ports. If another process takes a port in
between, the child exits and the start is retried on new ports. The child is always ended:
SIGTERM (the scaler's graceful stop), then SIGKILL after a grace period.

This module imports nothing of the service: it talks to it over the wire only.
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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Self

CONFIG_ERROR_EXIT = 2
"""``serve``'s exit code for an invalid configuration: retrying on other ports cannot help."""


class ScalerStartError(RuntimeError):
    """The scaler did not become ready; the message carries the tail of its log."""

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        """The child's exit code when it exited by itself; None when it hung."""


@dataclass(frozen=True)
class Ports:
    """The child's listeners."""

    otlp: int
    keda: int
    http: int
    metrics: int


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """``n`` distinct ports that were free a moment ago."""
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
    """``with ScalerProcess(["--max-series", "10"], env={"LOG_LEVEL": "debug"}) as s: s.ports.keda``.

    ``env`` is laid over this process's environment (a None value removes the variable);
    ``cwd`` is the child's working directory, which ``python -m`` puts first on ``sys.path``;
    ``entry`` is how Python starts the CLI (``-c CODE`` lets a benchmark run code before it).
    ``ports`` fixes the listeners' ports (a replica restarted where its peers and exporters
    expect it); by default free ones are picked at each start.
    The child's stdout and stderr go to ``log_path`` (a temporary file, removed by :meth:`stop`,
    when not given)."""

    def __init__(
        self,
        args: Sequence[str] = (),
        env: Mapping[str, str | None] | None = None,
        *,
        host: str = "127.0.0.1",
        log_path: Path | None = None,
        cwd: Path | None = None,
        entry: Sequence[str] = ("-m", "scaler"),
        ports: Ports | None = None,
    ) -> None:
        self.args = list(args)
        self.fixed_ports = ports
        self.entry = list(entry)
        self.env = dict(env or {})
        self.host = host
        self.cwd = cwd
        self._own_log = log_path is None
        self.log_path = log_path or Path(tempfile.mkstemp(prefix="keda-otel-scaler-", suffix=".log")[1])
        self.process: subprocess.Popen[bytes] | None = None
        self._ports: Ports | None = None
        self._log: IO[bytes] | None = None

    @property
    def ports(self) -> Ports:
        if self._ports is None:
            raise RuntimeError("the scaler is not running")
        return self._ports

    @property
    def pid(self) -> int:
        if self.process is None:
            raise RuntimeError("the scaler is not running")
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def url(self, path: str = "") -> str:
        return f"http://{self.host}:{self.ports.http}{path}"

    def rss_mib(self) -> float:
        """The child's resident memory in MiB (Linux: ``/proc/<pid>/statm``)."""
        resident_pages = int(Path(f"/proc/{self.pid}/statm").read_text(encoding="ascii").split()[1])
        return resident_pages * os.sysconf("SC_PAGE_SIZE") / (1 << 20)

    def start(self, timeout: float = 60.0, attempts: int = 3) -> Ports:
        """Start and wait for readiness; a child that exits during start-up (a port taken in
        between) is retried on new ports, one that hangs or rejects its configuration is not."""
        for attempt in range(1, attempts + 1):
            try:
                return self._start_once(timeout)
            except ScalerStartError as exc:
                self._end()
                if attempt == attempts or exc.exit_code in (None, CONFIG_ERROR_EXIT):
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _command(self, ports: Sequence[int]) -> list[str]:
        otlp, keda, http, metrics = ports
        return [
            sys.executable,
            *self.entry,
            "serve",
            "--listen-address",
            self.host,
            "--otlp-receiver-port",
            str(otlp),
            "--keda-external-scaler-port",
            str(keda),
            "--rest-api-port",
            str(http),
            "--internal-metrics-port",
            str(metrics),
            *self.args,
        ]

    def _environment(self) -> dict[str, str]:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        for name, value in self.env.items():
            if value is None:
                env.pop(name, None)
            else:
                env[name] = value
        return env

    def _start_once(self, timeout: float) -> Ports:
        fixed = self.fixed_ports
        picked = [fixed.otlp, fixed.keda, fixed.http, fixed.metrics] if fixed else free_ports(4, self.host)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("w+b")
        self.process = subprocess.Popen(
            self._command(picked), stdout=self._log, stderr=subprocess.STDOUT, env=self._environment(), cwd=self.cwd
        )
        deadline = time.monotonic() + timeout
        url = f"http://{self.host}:{picked[2]}"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                code = self.process.returncode
                raise ScalerStartError(f"the scaler exited with code {code}:\n{self.log_tail()}", code)
            bound = _ready_ports(url)
            if bound is not None:
                self._ports = Ports(
                    bound.get("otlp", picked[0]),
                    bound.get("keda", picked[1]),
                    bound.get("http", picked[2]),
                    bound.get("metrics", picked[3]),
                )
                return self._ports
            time.sleep(0.05)
        raise ScalerStartError(f"the scaler was not ready after {timeout:.0f}s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            text = self.log_path.read_bytes().decode(errors="replace")
            return "\n".join(text.splitlines()[-lines:])
        return ""

    def _end(self, grace: float = 30.0) -> int | None:
        """SIGTERM, wait ``grace`` seconds, then SIGKILL; returns the exit code."""
        process, self.process = self.process, None
        self._ports = None
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

    def stop(self, grace: float = 30.0) -> int | None:
        """End the child (SIGTERM, then SIGKILL after ``grace`` s); returns its exit code."""
        code = self._end(grace)
        if self._own_log:
            self.log_path.unlink(missing_ok=True)
        return code

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
